package analysis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// DefaultSeqRateK is the default concentration k of SeqRate's prior,
// Beta(kρ, k(1−ρ)) on the canary's share of events; Netflix uses k = 100
// (Lindon and Malek 2022; Netflix tech blog, "Sequential A/B testing keeps
// the world streaming", part 2).
const DefaultSeqRateK = 100

// The grid of SeqRate, in u = log r: nodes every seqRateStep on
// [−seqRateInner, seqRateInner] (r from 0.22 to 4.5, 1% apart), then steps
// growing by seqRateGrowth out to ±seqRateOuter (r from 0.0009 to 1100),
// plus the pinned nulls: 385 nodes and the nulls.
const (
	seqRateStep   = 0.01
	seqRateInner  = 1.5
	seqRateGrowth = 1.1
	seqRateOuter  = 7.0
	// seqRateMaxNulls bounds SeqRateOptions.Nulls.
	seqRateMaxNulls = 8
)

// ErrBadBatch is returned by SeqRate.Add for counts or exposures that are
// negative, NaN or infinite.
var ErrBadBatch = errors.New("counts and exposures must be finite and >= 0")

// SeqRateOptions configure a SeqRate.
type SeqRateOptions struct {
	// Rho is the canary's share of exposure the prior is centred on, the
	// planned traffic split (0.1 for a one-box beside nine baseline
	// instances); in (0, 1). The batches may have other shares: each
	// batch's own share enters its likelihood.
	Rho float64
	// K is the prior concentration k; 0 means DefaultSeqRateK.
	K float64
	// Nulls are the rate ratios r0 whose e-values the caller needs (1 +
	// tolerance, 1 − tolerance). Each becomes a node of the grid, so that
	// its e-value is exact, and the SeqRate keeps the running maximum of
	// its e-values for P. At most 8, each in [e^−7, e^7].
	Nulls []float64
}

// SeqRate is an anytime-valid test and confidence sequence for the ratio
// r = λ_C/λ_B of the canary's event rate to the baseline's (errors per
// request), fed batch by batch. It follows Lindon and Malek (2022): given
// the N_t = N_{B,t} + N_{C,t} events of batch t, with Poisson counts whose
// means are λ_t·exposure_{B,t} and r·λ_t·exposure_{C,t} for any baseline
// rate λ_t shared by both cohorts,
//
//	N_{C,t} ~ Binomial(N_t, θ_t(r)),   θ_t(r) = ρ_t r / (1 − ρ_t + ρ_t r),   ρ_t = exposure_{C,t} / (exposure_{B,t} + exposure_{C,t}),
//
// so the likelihood of r over the batches so far is, relative to r = 1,
//
//	ℓ_t(u) = Σ_{s≤t} [ N_{C,s}·u − N_s·log(1 − ρ_s + ρ_s e^u) ],   u = log r.
//
// Each batch uses its own ρ_s, so traffic shifts between the cohorts
// (autoscaling, a deploy of the baseline) and a baseline rate that moves
// with time (a traffic dip, an incident downstream) keep the test valid.
// SeqRate holds ℓ_t on a fixed grid of u (385 nodes, 1% apart for r in
// [0.22, 4.5], steps growing by 10% beyond, out to [e^−7, e^7]) plus the
// nulls pinned by the options: 3.2 KiB encoded and 13 KiB in memory
// (with the grid) whatever the number of batches. A batch costs one log1p
// per node (about 7 µs).
//
// The e-value of H0: r = r0 (TwoSided), r ≤ r0 (Greater) or r ≥ r0 (Less)
// mixes the likelihood ratios over a discrete prior π on the nodes,
//
//	E_t(r0) = Σ_j π_j exp(ℓ_t(u_j) − ℓ_t(u0)),   u0 = log r0,
//
// with π_j ∝ g(u_j)·Δu_j, the density g of u when θ = expit(logit ρ + u)
// has the Beta(kρ, k(1−ρ)) distribution of the options (the prior of
// Netflix's test mapped to r; centred near r = 1 with standard deviation
// about 1/√(kρ(1−ρ)) in log r) times the node's trapezoid width, restricted
// to the nodes u_j > u0 for Greater and u_j < u0 for Less and normalised
// there. For every r on the null side each batch's likelihood ratio
// against r0 has conditional expectation ≤ 1, so E_t is a nonnegative
// supermartingale under the whole composite null and Pr(∃t: E_t ≥ 1/α) ≤ α
// (Ville). For a constant ρ equal to the options' Rho the mixture is, up
// to the quadrature of the grid, the closed form of RateMixtureEValue.
//
// The confidence sequence is {r : E_t(r) < 1/α} with the two-sided prior,
// an interval because ℓ_t is concave in u; CS reports it at the
// resolution of the grid, rounded outwards.
//
// Assumptions: within a batch, each cohort's events are Poisson with a
// mean proportional to its exposure, at rates λ_t and r·λ_t (binomial
// errors out of requests are close to that while the error rate is small,
// up to a few %), independent given the exposures; see the package notes
// on instances, whose persistent differences break this.
//
// Feeding: one Add per judging interval, with both cohorts' counts and
// exposures over the same interval (summed over each cohort's instances).
// A batch with one cohort's exposure at 0 carries no information about r
// and only adds to the totals. Splitting an interval into finer batches is
// valid; pairing one cohort's counts of one interval with the other's of
// another is not.
//
// Merge adds the log-likelihoods of another SeqRate built with the same
// options: per-batch likelihood ratios multiply in any order, so the
// merged state is that of the union of the two sets of batches (time
// slices or strata, each batch pairing both cohorts). Summing two
// accumulators that hold one cohort each is not meaningful.
//
// The zero value is not usable; call NewSeqRate. A SeqRate is not safe
// for concurrent use.
//
// References: Lindon and Malek (2022), "Anytime-valid inference for
// multinomial count data", NeurIPS; Lindon, Sanden and Shirikian (2022),
// "Rapid regression detection in software deployments through sequential
// testing", KDD; Ville (1939), Étude critique de la notion de collectif.
type SeqRate struct {
	rho, k float64
	nulls  []float64 // as given
	u      []float64 // nodes, ascending
	em1    []float64 // expm1(u)
	logw   []float64 // log prior weight, unnormalised
	ll     []float64 // ℓ_t at the nodes
	nullAt []int     // node index of each null
	// edge[k] are the weight factors of null k's own node in its Greater
	// and Less mixtures, den[k] the log prior normalisers of its
	// TwoSided, Greater and Less mixtures (see logE).
	edge [][2]float64
	den  [][3]float64
	// maxLogE[i] is the running maximum of log E(nulls[i]) for TwoSided,
	// Greater and Less (0 before any batch: E_0 = 1).
	maxLogE [][3]float64

	batches                              uint64
	countB, exposureB, countC, exposureC float64
}

// NewSeqRate returns an empty SeqRate. It panics if Rho is not in (0, 1),
// K is negative or not finite, or a null is outside [e^−7, e^7] or there
// are more than 8.
func NewSeqRate(opts SeqRateOptions) *SeqRate {
	k := opts.K
	if k == 0 {
		k = DefaultSeqRateK
	}
	if !(opts.Rho > 0 && opts.Rho < 1) {
		panic("analysis: NewSeqRate: Rho must be in (0, 1)")
	}
	if !(k > 0) || math.IsInf(k, 1) {
		panic("analysis: NewSeqRate: K must be positive and finite")
	}
	if len(opts.Nulls) > seqRateMaxNulls {
		panic("analysis: NewSeqRate: too many nulls")
	}
	s := &SeqRate{rho: opts.Rho, k: k, nulls: slices.Clone(opts.Nulls)}
	s.u = seqRateNodes()
	for _, r0 := range s.nulls {
		u0 := math.Log(r0)
		if !(math.Abs(u0) <= seqRateOuter) {
			panic("analysis: NewSeqRate: nulls must be in [e^-7, e^7]")
		}
		i, found := slices.BinarySearch(s.u, u0)
		switch {
		case found:
		case i > 0 && u0-s.u[i-1] < 1e-9:
			s.u[i-1] = u0
		case i < len(s.u) && s.u[i]-u0 < 1e-9:
			s.u[i] = u0
		default:
			s.u = slices.Insert(s.u, i, u0)
		}
	}
	n := len(s.u)
	s.em1 = make([]float64, n)
	s.logw = make([]float64, n)
	s.ll = make([]float64, n)
	a, b := k*s.rho, k*(1-s.rho)
	lr := math.Log(s.rho) - math.Log1p(-s.rho)
	for j, u := range s.u {
		s.em1[j] = math.Expm1(u)
		// log g(u) = a log θ + b log(1−θ) − log B(a, b), θ = expit(lr + u);
		// B(a, b) cancels in the normalisation.
		eta := lr + u
		lg := -a*seqSoftplus(-eta) - b*seqSoftplus(eta)
		lo, hi := s.u[max(j-1, 0)], s.u[min(j+1, n-1)]
		s.logw[j] = lg + math.Log((hi-lo)/2)
	}
	s.nullAt = make([]int, len(s.nulls))
	for i, r0 := range s.nulls {
		s.nullAt[i], _ = slices.BinarySearch(s.u, math.Log(r0))
	}
	s.maxLogE = make([][3]float64, len(s.nulls))
	s.edge = make([][2]float64, len(s.nulls))
	s.den = make([][3]float64, len(s.nulls))
	for k, j := range s.nullAt {
		s.edge[k] = [2]float64{1, 1}
		if j > 0 && j+1 < n {
			w := s.u[j+1] - s.u[j-1]
			s.edge[k] = [2]float64{(s.u[j+1] - s.u[j]) / w, (s.u[j] - s.u[j-1]) / w}
		}
		_, d0 := s.mixture(0, n, TwoSided)
		_, d1 := s.mixture(j, n, Greater)
		_, d2 := s.mixture(0, j+1, Less)
		s.den[k] = [3]float64{d0, d1, d2}
	}
	return s
}

// seqRateNodes returns the fixed part of the grid.
func seqRateNodes() []float64 {
	inner := int(math.Round(seqRateInner / seqRateStep))
	var outer []float64
	step := seqRateStep
	for u := seqRateInner; u < seqRateOuter; {
		step *= seqRateGrowth
		u = math.Min(u+step, seqRateOuter)
		outer = append(outer, u)
	}
	nodes := make([]float64, 0, 2*inner+1+2*len(outer))
	for i := len(outer) - 1; i >= 0; i-- {
		nodes = append(nodes, -outer[i])
	}
	for j := -inner; j <= inner; j++ {
		nodes = append(nodes, float64(j)*seqRateStep)
	}
	return append(nodes, outer...)
}

// seqSoftplus returns log(1 + e^x) without overflow.
func seqSoftplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

// Add adds one batch: the events and exposure of each cohort over the same
// interval. Counts need not be integers (the likelihood is the binomial's
// kernel). It returns ErrBadBatch, changing nothing, for negative, NaN or
// infinite inputs.
func (s *SeqRate) Add(countB, exposureB, countC, exposureC float64) error {
	for _, v := range [4]float64{countB, exposureB, countC, exposureC} {
		if !(v >= 0) || math.IsInf(v, 1) {
			return ErrBadBatch
		}
	}
	s.batches++
	s.countB += countB
	s.countC += countC
	s.exposureB += exposureB
	s.exposureC += exposureC
	n := countB + countC
	if n == 0 || exposureB == 0 || exposureC == 0 {
		return nil
	}
	rho := exposureC / (exposureB + exposureC)
	for j := range s.ll {
		s.ll[j] += countC*s.u[j] - n*math.Log1p(rho*s.em1[j])
	}
	s.updateMax()
	return nil
}

// updateMax folds the current e-values of the nulls into their running
// maxima: the three mixtures of each null in one pass over the nodes
// (one exp per node), with the prior normalisers of s.den.
func (s *SeqRate) updateMax() {
	m := math.Inf(-1)
	for i, l := range s.ll {
		m = max(m, s.logw[i]+l)
	}
	var two float64
	var gr, ls [seqRateMaxNulls]float64
	for i, l := range s.ll {
		t := math.Exp(s.logw[i] + l - m)
		two += t
		for k, j := range s.nullAt {
			switch {
			case i > j:
				gr[k] += t
			case i < j:
				ls[k] += t
			default:
				gr[k] += t * s.edge[k][0]
				ls[k] += t * s.edge[k][1]
			}
		}
	}
	for k, j := range s.nullAt {
		l0 := s.ll[j]
		mx := &s.maxLogE[k]
		mx[0] = max(mx[0], m+math.Log(two)-s.den[k][0]-l0)
		mx[1] = max(mx[1], m+math.Log(gr[k])-s.den[k][1]-l0)
		mx[2] = max(mx[2], m+math.Log(ls[k])-s.den[k][2]-l0)
	}
}

// EValue returns the e-value E_t(r0) of the batches so far for
// H0: r = r0 (TwoSided), r ≤ r0 (Greater) or r ≥ r0 (Less); see SeqRate.
// It is exact when r0 is a node of the grid (every null of the options,
// and r0 = 1). Between nodes ℓ(log r0) is replaced by an upper bound from
// the concavity of ℓ (the secants of the neighbouring nodes, extended),
// which can only make E smaller, so the result is still a valid e-value,
// slightly conservative. Before any informative batch E = 1.
// EValue panics if r0 is outside [e^−7, e^7] or alt is unknown.
func (s *SeqRate) EValue(r0 float64, alt Alternative) float64 {
	mustTestArgs("SeqRate.EValue", alt, 0.5)
	u0 := math.Log(r0)
	if !(math.Abs(u0) <= seqRateOuter) {
		panic("analysis: SeqRate.EValue: r0 must be in [e^-7, e^7]")
	}
	j, found := slices.BinarySearch(s.u, u0)
	n := len(s.u)
	if found { // exact: the null node closes the truncated prior
		l0 := s.ll[j]
		switch alt {
		case Greater:
			return math.Exp(s.logE(j, n, l0, Greater))
		case Less:
			return math.Exp(s.logE(0, j+1, l0, Less))
		}
		return math.Exp(s.logE(0, n, l0, TwoSided))
	}
	// Between nodes u[j−1] < u0 < u[j]: the prior on the nodes beyond u0.
	l0 := s.llUpper(j, u0)
	switch alt {
	case Greater:
		return math.Exp(s.logE(j, n, l0, TwoSided))
	case Less:
		return math.Exp(s.logE(0, j, l0, TwoSided))
	}
	return math.Exp(s.logE(0, n, l0, TwoSided))
}

// llUpper returns an upper bound on ℓ(u0) for u[j−1] < u0 < u[j]: a
// concave function lies below each of its secants outside the secant's
// interval.
func (s *SeqRate) llUpper(j int, u0 float64) float64 {
	bound := math.Inf(1)
	if j >= 2 {
		a, b := j-2, j-1
		bound = min(bound, s.ll[b]+(s.ll[b]-s.ll[a])/(s.u[b]-s.u[a])*(u0-s.u[b]))
	}
	if j+1 < len(s.u) {
		a, b := j, j+1
		bound = min(bound, s.ll[a]+(s.ll[b]-s.ll[a])/(s.u[b]-s.u[a])*(u0-s.u[a]))
	}
	return bound
}

// logE returns log of the mixture over nodes [lo, hi) of exp(ℓ − l0),
// with the prior restricted to those nodes and normalised there. With
// edge set, the end node lying on the null (lo for Greater, hi−1 for Less)
// gets the weight of the end of a trapezoid rule, half its interval on the
// alternative side, so that the discrete prior is the quadrature of the
// truncated continuous one; the null point's likelihood ratio is 1, so
// the mixture stays a supermartingale under the null.
func (s *SeqRate) logE(lo, hi int, l0 float64, edge Alternative) float64 {
	if lo >= hi {
		return 0
	}
	num, den := s.mixture(lo, hi, edge)
	return num - den - l0
}

// mixture returns log Σ w_i e^{ℓ_i} and log Σ w_i over nodes [lo, hi),
// with the edge weighting of logE.
func (s *SeqRate) mixture(lo, hi int, edge Alternative) (num, den float64) {
	num, den = math.Inf(-1), math.Inf(-1)
	for i := lo; i < hi; i++ {
		lw := s.logw[i]
		switch {
		case edge == Greater && i == lo && i > 0 && i+1 < len(s.u):
			lw += math.Log((s.u[i+1] - s.u[i]) / (s.u[i+1] - s.u[i-1]))
		case edge == Less && i == hi-1 && i > 0 && i+1 < len(s.u):
			lw += math.Log((s.u[i] - s.u[i-1]) / (s.u[i+1] - s.u[i-1]))
		}
		num = seqLogAddExp(num, lw+s.ll[i])
		den = seqLogAddExp(den, lw)
	}
	return num, den
}

// P returns the anytime p-value min(1, 1/max_{s≤t} E_s(r0)) of the null
// r0, which must be one of the options' Nulls (P panics otherwise): the
// maximum runs over the e-values after every Add. Pr(∃t: P ≤ α) ≤ α under
// the null.
func (s *SeqRate) P(r0 float64, alt Alternative) float64 {
	mustTestArgs("SeqRate.P", alt, 0.5)
	i := slices.Index(s.nulls, r0)
	if i < 0 {
		panic("analysis: SeqRate.P: r0 is not one of the options' Nulls")
	}
	a := 0
	switch alt {
	case Greater:
		a = 1
	case Less:
		a = 2
	}
	return math.Min(1, math.Exp(-s.maxLogE[i][a]))
}

// CS returns the confidence sequence for r at level 1 − alpha after the
// batches so far, {r : E_t(r) < 1/α} with the two-sided prior, at the
// resolution of the grid: each end is the last node outside the set, so
// the interval can only be too wide, by at most one node spacing (1% for r
// in [0.22, 4.5]). An end beyond the grid is 0 or +Inf. The coverage
// Pr(∀t: r ∈ CS_t) ≥ 1 − α holds simultaneously over time, so the caller
// may intersect the intervals it has seen. CS panics unless alpha is in
// (0, 1).
func (s *SeqRate) CS(alpha float64) (lo, hi float64) {
	if !(alpha > 0 && alpha < 1) {
		panic("analysis: SeqRate.CS: alpha must be in (0, 1)")
	}
	// log E(u_i) = M − ℓ_i with M the log mixture: accept where ℓ_i > M + log α.
	num, den := math.Inf(-1), math.Inf(-1)
	best := 0
	for i := range s.u {
		num = seqLogAddExp(num, s.logw[i]+s.ll[i])
		den = seqLogAddExp(den, s.logw[i])
		if s.ll[i] > s.ll[best] {
			best = i
		}
	}
	cut := num - den + math.Log(alpha)
	first, last := -1, -1
	for i, l := range s.ll {
		if l > cut {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 { // the set lies between nodes around the maximum
		first, last = best, best
	}
	lo, hi = 0, math.Inf(1)
	if first > 0 {
		lo = math.Exp(s.u[first-1])
	}
	if last < len(s.u)-1 {
		hi = math.Exp(s.u[last+1])
	}
	return lo, hi
}

// Ratio returns the ratio of the observed rates over all batches,
// (countC/exposureC)/(countB/exposureB), with the conventions of
// RateResult.Ratio: +Inf when only the canary saw events, 0 when only the
// baseline did, 1 when neither did or an exposure is 0.
func (s *SeqRate) Ratio() float64 {
	switch {
	case s.exposureB == 0 || s.exposureC == 0 || s.countB+s.countC == 0:
		return 1
	case s.countB == 0:
		return math.Inf(1)
	}
	return (s.countC / s.exposureC) / (s.countB / s.exposureB)
}

// Totals returns the sums of the batches' counts and exposures and the
// number of batches.
func (s *SeqRate) Totals() (countB, exposureB, countC, exposureC float64, batches uint64) {
	return s.countB, s.exposureB, s.countC, s.exposureC, s.batches
}

// ErrSeqRateMismatch is returned by SeqRate.Merge for accumulators built
// with different options.
var ErrSeqRateMismatch = errors.New("sequential rate accumulators have different options")

// Merge adds the batches of o to s (see SeqRate). The running maxima of
// the e-values stay those of s, then take the merged state as one more
// look: o's batches count as arriving after s's, in one step, which is
// valid (fewer looks) whatever their real order. It returns
// ErrSeqRateMismatch, changing nothing, if the options differ.
func (s *SeqRate) Merge(o *SeqRate) error {
	if s.rho != o.rho || s.k != o.k || !slices.Equal(s.nulls, o.nulls) || len(s.ll) != len(o.ll) {
		return ErrSeqRateMismatch
	}
	for j := range s.ll {
		s.ll[j] += o.ll[j]
	}
	s.batches += o.batches
	s.countB += o.countB
	s.countC += o.countC
	s.exposureB += o.exposureB
	s.exposureC += o.exposureC
	s.updateMax()
	return nil
}

// Size returns the approximate number of bytes the SeqRate occupies.
func (s *SeqRate) Size() int {
	return 128 + 8*(4*len(s.u)+len(s.nulls)+len(s.nullAt)+3*len(s.maxLogE))
}

const seqRateVersion = 1

// MarshalBinary encodes the SeqRate: its options, totals, running maxima
// and the log-likelihood at each node (8 bytes each), about 3.2 KiB.
func (s *SeqRate) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+8*len(s.ll)+32*len(s.nulls))
	f := func(v float64) { b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) }
	b = append(b, seqRateVersion)
	f(s.rho)
	f(s.k)
	b = binary.AppendUvarint(b, uint64(len(s.nulls)))
	for i, r0 := range s.nulls {
		f(r0)
		for _, v := range s.maxLogE[i] {
			f(v)
		}
	}
	b = binary.AppendUvarint(b, s.batches)
	f(s.countB)
	f(s.exposureB)
	f(s.countC)
	f(s.exposureC)
	b = binary.AppendUvarint(b, uint64(len(s.ll)))
	for _, v := range s.ll {
		f(v)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded, rebuilding the grid
// from the options.
func (s *SeqRate) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	if v := r.byte(); v != seqRateVersion {
		return fmt.Errorf("decode sequential rate: unknown version %d", v)
	}
	f := func() float64 { return math.Float64frombits(r.uint64()) }
	opts := SeqRateOptions{Rho: f(), K: f()}
	n := r.uvarint()
	if n > seqRateMaxNulls {
		return fmt.Errorf("decode sequential rate: %d nulls exceed %d", n, seqRateMaxNulls)
	}
	maxima := make([][3]float64, n)
	for i := range maxima {
		opts.Nulls = append(opts.Nulls, f())
		for a := range maxima[i] {
			maxima[i][a] = f()
		}
	}
	batches := r.uvarint()
	cb, eb, cc, ec := f(), f(), f(), f()
	m := r.uvarint()
	if r.err != nil {
		return fmt.Errorf("decode sequential rate: %w", r.err)
	}
	if !(opts.Rho > 0 && opts.Rho < 1) || !(opts.K > 0) || math.IsInf(opts.K, 1) {
		return errors.New("decode sequential rate: bad options")
	}
	for _, r0 := range opts.Nulls {
		if !(math.Abs(math.Log(r0)) <= seqRateOuter) {
			return errors.New("decode sequential rate: bad null")
		}
	}
	out := NewSeqRate(opts)
	if m != uint64(len(out.ll)) {
		return fmt.Errorf("decode sequential rate: %d nodes, want %d", m, len(out.ll))
	}
	for j := range out.ll {
		out.ll[j] = f()
		if math.IsNaN(out.ll[j]) || math.IsInf(out.ll[j], 0) {
			return errors.New("decode sequential rate: bad log-likelihood")
		}
	}
	if r.err != nil {
		return fmt.Errorf("decode sequential rate: %w", r.err)
	}
	if len(r.b) != 0 {
		return errors.New("decode sequential rate: trailing bytes")
	}
	for _, m := range maxima {
		for _, v := range m {
			if !(v >= 0) || math.IsInf(v, 1) {
				return errors.New("decode sequential rate: bad running maximum")
			}
		}
	}
	for _, v := range [4]float64{cb, eb, cc, ec} {
		if !(v >= 0) || math.IsInf(v, 1) {
			return errors.New("decode sequential rate: bad totals")
		}
	}
	out.maxLogE = maxima
	out.batches, out.countB, out.exposureB, out.countC, out.exposureC = batches, cb, eb, cc, ec
	*s = *out
	return nil
}

// RateMixtureEValue returns the closed-form e-value of Lindon and Malek
// (2022) for a constant exposure share: with N_B baseline and N_C canary
// events, the canary's share of exposure rho, and the prior
// Beta(a, b) = Beta(k·rho, k·(1−rho)) on θ, the probability that an event
// is the canary's,
//
//	E = [B(a + N_C, b + N_B) / B(a, b)] / (θ₀^{N_C} (1 − θ₀)^{N_B}),   θ₀ = rho·r0 / (1 − rho + rho·r0),
//
// for H0: r = r0 (TwoSided). For Greater (H0: r ≤ r0) the prior is
// truncated to θ > θ₀, and for Less to θ < θ₀:
//
//	E_Greater = E · S(a + N_C, b + N_B) / S(a, b),   S(α, β) = Pr(Beta(α, β) > θ₀) = I_{1−θ₀}(β, α),
//
// and with Pr(Beta(α, β) < θ₀) = I_{θ₀}(α, β) for Less. Everything is
// computed in log space, the incomplete beta function by its continued
// fraction with a saddle-point prefactor. E is a nonnegative martingale in
// the events under r = r0 and a supermartingale under the one-sided null,
// so Pr(∃t: E_t ≥ 1/α) ≤ α; it is SeqRate's e-value, without the grid,
// when every batch has the share rho.
//
// Known values (k = 100, rho = 0.1, r0 = 1, TwoSided; Netflix's
// figures, reproduced by testdata/gen/sequential.py): N_B = 90, N_C = 25
// gives E = 31.23; N_B = 900, N_C = 130 gives E = 7.717.
//
// Counts are not rounded. With no events E = 1. RateMixtureEValue panics
// if a count is negative or not finite, rho is not in (0, 1), k is not
// positive and finite, r0 is not positive and finite, or alt is unknown.
func RateMixtureEValue(countB, countC, rho, k, r0 float64, alt Alternative) float64 {
	mustTestArgs("RateMixtureEValue", alt, 0.5)
	mustRateMixture("RateMixtureEValue", countB, countC, rho, k)
	if !(r0 > 0) || math.IsInf(r0, 1) {
		panic("analysis: RateMixtureEValue: r0 must be positive and finite")
	}
	den := 1 - rho + rho*r0
	return math.Exp(rateMixtureLogE(countB, countC, k*rho, k*(1-rho), rho*r0/den, (1-rho)/den, alt))
}

// RateBoundaryK is the prior concentration the judge uses with
// RateBoundaryEValue. In the simulator (canaryctl simulate, scenarios
// errors, onebox and conversions, 100 runs each), the median minutes to
// roll back an error-rate regression of 4× the tolerance were 21, 20, 21
// and 23 for k = 10, 20, 50 and 100, with detection of 2× at 15–18%
// whatever k: the width matters little, and k = 20 is among the best.
const RateBoundaryK = 20

// RateBoundaryEValue is RateMixtureEValue with the prior centred at the
// null boundary instead of at θ = rho: with θ₀ = rho·r0/(1 − rho + rho·r0),
// the prior on θ is Beta(k θ₀, k (1 − θ₀)), truncated to θ > θ₀ for
// Greater and θ < θ₀ for Less (untruncated for TwoSided),
//
//	E = ∫ (θ/θ₀)^{N_C} ((1 − θ)/(1 − θ₀))^{N_B} dπ(θ).
//
// For a one-sided test against the tolerance boundary (r0 = 1 ± tol) the
// mass of RateMixtureEValue's prior, centred at no change, lies mostly on
// the null side and is cut away; centring it at the boundary puts the
// mixture where the alternatives are. Any prior gives a nonnegative
// martingale under θ = θ₀ (a supermartingale under the one-sided null, by
// monotone likelihood ratio), so Pr(∃t: E_t ≥ 1/α) ≤ α as before.
// Counts need not be whole (the judge passes effective counts). It panics
// where RateMixtureEValue does.
func RateBoundaryEValue(countB, countC, rho, k, r0 float64, alt Alternative) float64 {
	mustTestArgs("RateBoundaryEValue", alt, 0.5)
	mustRateMixture("RateBoundaryEValue", countB, countC, rho, k)
	if !(r0 > 0) || math.IsInf(r0, 1) {
		panic("analysis: RateBoundaryEValue: r0 must be positive and finite")
	}
	den := 1 - rho + rho*r0
	t0, q0 := rho*r0/den, (1-rho)/den
	return math.Exp(rateMixtureLogE(countB, countC, k*t0, k*q0, t0, q0, alt))
}

// rateMixtureLogE is log E of RateMixtureEValue for the prior Beta(a, b)
// on θ and the null θ₀ = t0 (q0 = 1 − θ₀, given without cancellation).
func rateMixtureLogE(countB, countC, a, b, t0, q0 float64, alt Alternative) float64 {
	le := seqLbeta(a+countC, b+countB) - seqLbeta(a, b)
	if countC > 0 {
		le -= countC * math.Log(t0)
	}
	if countB > 0 {
		le -= countB * math.Log(q0)
	}
	switch alt {
	case Greater:
		_, up1, _ := betaIncLog(a+countC, b+countB, t0, q0)
		_, up0, _ := betaIncLog(a, b, t0, q0)
		le += up1 - up0
	case Less:
		lo1, _, _ := betaIncLog(a+countC, b+countB, t0, q0)
		lo0, _, _ := betaIncLog(a, b, t0, q0)
		le += lo1 - lo0
	}
	return le
}

// RateMixtureCS returns the confidence sequence for the rate ratio r that
// inverts the two-sided RateMixtureEValue: the interval of r with
// E(r) < 1/alpha, found by bisection on log r (log E is convex in log r,
// with its minimum ≤ 0 at the maximum-likelihood ratio). The lower end is
// 0 when the canary saw no events and the upper +Inf when the baseline saw
// none; with no events at all the interval is [0, +Inf).
//
// Known values (k = 100, rho = 0.1, alpha = 0.05): N_B = 90, N_C = 25
// gives [1.034, 5.334]; N_B = 900, N_C = 130 gives [0.9672, 1.712].
//
// RateMixtureCS panics on the arguments RateMixtureEValue panics on, and
// unless alpha is in (0, 1).
func RateMixtureCS(countB, countC, rho, k, alpha float64) (lo, hi float64) {
	mustRateMixture("RateMixtureCS", countB, countC, rho, k)
	if !(alpha > 0 && alpha < 1) {
		panic("analysis: RateMixtureCS: alpha must be in (0, 1)")
	}
	n := countB + countC
	if n == 0 {
		return 0, math.Inf(1)
	}
	a, b := k*rho, k*(1-rho)
	// log E(u) = c0 − ℓ(u), ℓ(u) = N_C u − N log(1 − ρ + ρ e^u).
	c0 := seqLbeta(a+countC, b+countB) - seqLbeta(a, b)
	if countC > 0 {
		c0 -= countC * math.Log(rho)
	}
	if countB > 0 {
		c0 -= countB * math.Log1p(-rho)
	}
	em1 := func(u float64) float64 {
		return rho * math.Expm1(u)
	}
	g := func(u float64) float64 { // log E(u) − log(1/α)
		return c0 - countC*u + n*math.Log1p(em1(u)) + math.Log(alpha)
	}
	lr := math.Log(rho) - math.Log1p(-rho)
	lo, hi = 0, math.Inf(1)
	switch {
	// With no events on one side, log E decreases towards that side to
	// log B(a, b+N)/B(a, b) ≤ 0 (or its mirror): start far out.
	case countC == 0:
		hi = math.Exp(seqBisectUp(g, -math.Abs(lr)-40, 1))
	case countB == 0:
		lo = math.Exp(seqBisectUp(g, math.Abs(lr)+40, -1))
	default:
		uhat := math.Log(countC/countB) - lr
		lo = math.Exp(seqBisectUp(g, uhat, -1))
		hi = math.Exp(seqBisectUp(g, uhat, 1))
	}
	return lo, hi
}

// seqBisectUp finds the root of g on the ray from u0 in direction dir (±1),
// where g(u0) < 0 and g increases along the ray, by doubling steps and
// bisection.
func seqBisectUp(g func(float64) float64, u0, dir float64) float64 {
	inner, step := u0, 1.0
	outer := u0 + dir*step
	for g(outer) < 0 {
		inner = outer
		step *= 2
		outer = u0 + dir*step
		if step > 1e6 {
			return outer
		}
	}
	for range 200 {
		mid := inner + (outer-inner)/2
		if mid == inner || mid == outer {
			break
		}
		if g(mid) < 0 {
			inner = mid
		} else {
			outer = mid
		}
	}
	return inner + (outer-inner)/2
}

func mustRateMixture(fn string, countB, countC, rho, k float64) {
	if !(countB >= 0) || !(countC >= 0) || math.IsInf(countB, 1) || math.IsInf(countC, 1) {
		panic("analysis: " + fn + ": counts must be finite and >= 0")
	}
	if !(rho > 0 && rho < 1) {
		panic("analysis: " + fn + ": rho must be in (0, 1)")
	}
	if !(k > 0) || math.IsInf(k, 1) {
		panic("analysis: " + fn + ": k must be positive and finite")
	}
}

// seqLbeta returns log B(a, b) for a, b > 0.
func seqLbeta(a, b float64) float64 {
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	return la + lb - lab
}
