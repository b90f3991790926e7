package analysis

// Moments is a streaming accumulator of the count N, the mean and the sum
// of squared deviations from the mean M2 = Σ (x − mean)² of a sample.
// The zero value is an empty sample. Add uses Welford's update and Merge
// the pairwise combination of Chan, Golub and LeVeque, so that accumulators
// built on separate shards (instances, time slices) can be combined
// without loss of precision:
//
//	Add:   n' = n + 1,  δ = x − mean,  mean' = mean + δ/n',  M2' = M2 + δ (x − mean')
//	Merge: n = n_a + n_b,  δ = mean_b − mean_a,
//	       mean = mean_a + δ n_b/n,  M2 = M2_a + M2_b + δ² n_a n_b / n
//
// Neither update subtracts large sums of squares, so the variance keeps
// its relative precision when the mean is large compared with the spread
// (revenue in cents, latencies in nanoseconds).
//
// Moments does not filter its input: a NaN or infinite observation makes
// the mean and variance NaN. Callers drop such values before Add.
//
// References: Welford (1962), "Note on a method for calculating corrected
// sums of squares and products", Technometrics 4, 419–420; Chan, Golub and
// LeVeque (1979), "Updating formulae and a pairwise algorithm for computing
// sample variances", Stanford CS report STAN-CS-79-773.
type Moments struct {
	N    float64 // number of observations
	Mean float64 // sample mean; 0 when N = 0
	M2   float64 // sum of squared deviations from the mean
}

// Add adds the observation x.
func (m *Moments) Add(x float64) {
	m.N++
	d := x - m.Mean
	m.Mean += d / m.N
	m.M2 += d * (x - m.Mean)
}

// Merge adds all the observations summarized by o.
func (m *Moments) Merge(o Moments) {
	switch {
	case o.N == 0:
		return
	case m.N == 0:
		*m = o
		return
	}
	n := m.N + o.N
	d := o.Mean - m.Mean
	m.Mean += d * (o.N / n)
	m.M2 += o.M2 + d*d*(m.N/n)*o.N
	m.N = n
}

// Variance returns the sample variance with the n − 1 denominator,
//
//	s² = M2 / (N − 1),
//
// as R's var and gonum's stat.Variance. It returns 0 when N < 2, where the
// variance is not estimable.
func (m Moments) Variance() float64 {
	if m.N < 2 {
		return 0
	}
	return m.M2 / (m.N - 1)
}
