package stat

import "math"

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

// MomentsOf returns the Moments of vs by the corrected two-pass algorithm
// (Chan, Golub and LeVeque 1983, "Algorithms for computing the sample
// variance: analysis and recommendations", Amer. Statist. 37, eq. 1.7):
//
//	mean = Σ x / n,   c = Σ (x − mean),   M2 = Σ (x − mean)² − c²/n,   mean' = mean + c/n,
//
// the squared deviations from the mean less the rounding error of the
// mean. It has no division per value, unlike Moments.Add, and is as
// accurate. Empty input gives the zero Moments.
func MomentsOf(vs []float64) Moments {
	if len(vs) == 0 {
		return Moments{}
	}
	n := float64(len(vs))
	s := 0.0
	for _, v := range vs {
		s += v
	}
	mean := s / n
	var m2, c float64
	for _, v := range vs {
		d := v - mean
		m2 += d * d
		c += d
	}
	return Moments{N: n, Mean: mean + c/n, M2: max(0, m2-c*c/n)}
}

// LogMomentsOf returns the Moments of the logarithms of the positive
// values of vs (values ≤ 0 and NaN are left out), in one pass with the
// data shifted by the first logarithm k (the shifted-data algorithm: Chan,
// Golub and LeVeque 1983, §3),
//
//	d = log x − k,   mean = k + Σ d / n,   M2 = Σ d² − (Σ d)²/n,
//
// which keeps the precision of the variance since log values vary little
// around their shift. No positive value gives the zero Moments.
func LogMomentsOf(vs []float64) Moments {
	var n, s, ss, k float64
	for _, v := range vs {
		if !(v > 0) {
			continue
		}
		l := math.Log(v)
		if n == 0 {
			k = l
		}
		d := l - k
		n++
		s += d
		ss += d * d
	}
	if n == 0 {
		return Moments{}
	}
	return Moments{N: n, Mean: k + s/n, M2: max(0, ss-s*s/n)}
}

// BernoulliMoments returns the Moments of count successes in trials 0/1
// observations (errors out of requests):
//
//	N = trials,   Mean = count/trials,   M2 = count·(1 − count/trials).
//
// It returns the zero Moments when trials is 0, and panics unless
// 0 ≤ count ≤ trials and trials is finite.
func BernoulliMoments(count, trials float64) Moments {
	if !(count >= 0) || !(count <= trials) || math.IsInf(trials, 1) {
		panic("stat: BernoulliMoments: need 0 <= count <= trials, finite")
	}
	if trials == 0 {
		return Moments{}
	}
	p := count / trials
	return Moments{N: trials, Mean: p, M2: count * (1 - p)}
}
