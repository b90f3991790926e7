package analysis

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// HLResult is a Hodges-Lehmann shift (or ratio) estimate with its
// distribution-free confidence interval.
type HLResult struct {
	// Estimate is the median of the pairwise differences x_i - y_j (of
	// the ratios x_i / y_j for HodgesLehmannRatio).
	Estimate float64
	// Lower and Upper bound the confidence interval; a one-sided
	// alternative leaves one end infinite (0 for the lower end of a
	// ratio), as R does.
	Lower, Upper float64
	// Exact reports whether the interval comes from the exact null
	// distribution of U.
	Exact bool
	// ConfLevel is the confidence level of the interval: the requested
	// one, or, as in R, the achieved 1 - α when the exact distribution
	// cannot come within α/2 of the requested α.
	ConfLevel float64
}

// HodgesLehmann estimates the shift of x relative to y by the median of the
// nx·ny pairwise differences and gives the distribution-free confidence
// interval that inverts the Mann-Whitney test, as R's
// wilcox.test(x, y, alternative, conf.int = TRUE, conf.level, exact) with
// its default correct = TRUE. With D_(1) ≤ … ≤ D_(P) the ordered
// differences x_i - y_j, P = nx·ny and α = 1 - confLevel,
//
//	Estimate   = median{D_(k)} = (D_(⌊(P+1)/2⌋) + D_(⌊P/2⌋+1)) / 2
//	Exact      : [D_(q), D_(P-q+1)],  q = max(qwilcox(α/2, nx, ny), 1)
//	Asymptotic : [D_(P+1-⌈K⌉), D_(⌈K⌉)],  K = P/2 + ½ + z_{1-α/2}·σ₀
//
// where σ₀² = (nx·ny/12)·[(N+1) - Σ(t³-t)/(N(N-1))] with the ties within
// x and within y only, and ranks outside 1..P are clamped. A one-sided
// alternative uses α in place of α/2 and keeps only the lower (Greater) or
// the upper (Less) end, the other being ±Inf. As in R, when the exact
// distribution cannot come within α/2 of α, ConfLevel reports the achieved
// level 1 - 2·P(U ≤ q-1) (1 - P(U ≤ q-1) one-sided).
//
// The asymptotic ranks are where R's root search lands: R solves
// z(d) = ±z_{1-α/2} with uniroot, z(d) being the continuity-corrected,
// tie-corrected statistic of x - d against y. z(d) is a step function that
// jumps only at the D_(k) and between them equals
// (#{D > d} - P/2 - ½)/σ₀, so it crosses the target exactly at the order
// statistics above. R stops uniroot at tol.root = 1e-4, so its ends differ
// from these by up to about 1e-4 (absolute). R's asymptotic point estimate
// is uniroot's root of the uncorrected z(d) = 0, which is any point between
// the two middle order statistics, wherever the iteration happens to stop;
// HodgesLehmann reports their midpoint, the median, in every case.
//
// The method chooses the exact interval as MannWhitney chooses its p-value
// (see MWUMethod; ties are counted with Mu = 0). Order statistics are found
// by bisection on d, each step counting the pairs D ≤ d by one merge of the
// sorted bins, so each costs O(len(x)+len(y)) per step whatever the number
// of observations: about log2(range/bin width) steps for binned data, at
// most about 256 in any case. The result is a pairwise difference exactly. With bin counts the ranks
// above are weighted: D_(k) is the smallest d with #{D ≤ d} ≥ k, counting
// each pair with weight Count_i·Count_j.
//
// Special cases: an empty sample gives Estimate = 0 and the interval
// (-Inf, +Inf). HodgesLehmann panics on misuse: invalid bins (see
// MannWhitney), a non-finite Value, confLevel outside (0, 1), or an
// unknown alternative or method.
//
// References: J. L. Hodges and E. L. Lehmann (1963), "Estimates of location
// based on rank tests", Ann. Math. Statist. 34(2):598–611; D. F. Bauer
// (1972), "Constructing confidence sets using rank statistics", J. Amer.
// Statist. Assoc. 67:687–690; M. Hollander, D. A. Wolfe and E. Chicken
// (2014), Nonparametric Statistical Methods, 3rd ed., Wiley, §4.2–4.3;
// R 4.2.2 wilcox.test (package stats).
func HodgesLehmann(x, y []Bin, confLevel float64, alt Alternative, method MWUMethod) HLResult {
	return hodgesLehmann("HodgesLehmann", x, y, confLevel, alt, method, true, false)
}

// HodgesLehmannRatio is HodgesLehmann on the ratio scale for non-negative
// data: the estimate is the median of the nx·ny pairwise ratios
//
//	R_ij = x_i / y_j,  with 0/0 = 1 and x/0 = +Inf for x > 0,
//
// and the interval is [R_(lo), R_(hi)] with the ranks of HodgesLehmann (the
// automatic choice of the exact or normal null distribution, continuity-
// corrected). When all values are positive this is HodgesLehmann on log
// values, transformed back: R's
// exp(wilcox.test(log(x), log(y), conf.int = TRUE)$conf.int). An even
// number of pairs takes the geometric mean of the two middle ratios (the
// median on the log scale), with the geometric mean of 0 and +Inf defined
// as 1. It reports, for example, that the canary's latency is 1.12 times
// the baseline's.
//
// Special cases: an empty sample gives Estimate = 1 and the interval
// [0, +Inf]; a one-sided interval has Lower = 0 (Less) or Upper = +Inf
// (Greater). It panics on a negative or non-finite Value and on the misuse
// listed for HodgesLehmann.
func HodgesLehmannRatio(x, y []Bin, confLevel float64, alt Alternative) HLResult {
	return hodgesLehmann("HodgesLehmannRatio", x, y, confLevel, alt, MWUAuto, true, true)
}

func hodgesLehmann(fn string, x, y []Bin, confLevel float64, alt Alternative, method MWUMethod, correct, ratio bool) HLResult {
	nx := mwuCheckBins(fn, "x", x)
	ny := mwuCheckBins(fn, "y", y)
	mwuCheckAlternative(fn, alt)
	mwuCheckMethod(fn, method)
	if !(confLevel > 0 && confLevel < 1) {
		panic(fmt.Sprintf("analysis: %s: confLevel = %v, want 0 < confLevel < 1", fn, confLevel))
	}
	for _, s := range [2][]Bin{x, y} {
		for _, b := range s {
			if math.IsInf(b.Value, 0) {
				panic(fmt.Sprintf("analysis: %s: Value %v, want finite", fn, b.Value))
			}
			if ratio && b.Value < 0 {
				panic(fmt.Sprintf("analysis: %s: Value %v, want non-negative", fn, b.Value))
			}
		}
	}

	res := HLResult{Lower: math.Inf(-1), Upper: math.Inf(1), ConfLevel: confLevel}
	if ratio {
		res.Estimate, res.Lower = 1, 0
	}
	if nx == 0 || ny == 0 {
		return res
	}
	p := newHLPairs(x, y, ratio)
	total := nx * ny
	lo := p.orderStat(total/2, false)
	hi := lo
	if p.countLE(lo) <= total/2 { // the median falls between two pair values
		hi = p.orderStat(total/2, true)
	}
	res.Estimate = p.middle(lo, hi)

	alpha := 1 - confLevel
	if mwuUseExact(method, nx, ny, mwuMerge(x, y, 0).ties) {
		res.Exact = true
		dist := newMWUNull(int(nx), int(ny))
		a := alpha
		if alt == TwoSided {
			a = alpha / 2
		}
		q := max(dist.quantile(a), 1)
		achieved := dist.cdf(q - 1)
		if alt == TwoSided {
			achieved *= 2
		}
		if alt != Less {
			res.Lower = p.orderStat(float64(q), false)
		}
		if alt != Greater {
			res.Upper = p.orderStat(float64(dist.mn-q+1), false)
		}
		if achieved-alpha > alpha/2 {
			res.ConfLevel = 1 - achieved
		}
		return res
	}

	// Asymptotic: between distinct differences R's statistic is
	// (#{D > d} - P/2 - c)/σ₀; it falls below z where #{D > d} < K, so
	// Lower is the smallest d with #{D ≤ d} > P - K and, by symmetry, Upper
	// the smallest d with #{D ≤ d} ≥ K (see the doc comment).
	z := -distuv.UnitNormal.Quantile(alpha)
	if alt == TwoSided {
		z = -distuv.UnitNormal.Quantile(alpha / 2)
	}
	var c float64
	if correct {
		c = 0.5
	}
	k := total/2 + c + z*mwuSigma(nx, ny, mwuTieTermWithin(x, y))
	if alt != Less {
		res.Lower = p.orderStat(total-k, true)
	}
	if alt != Greater {
		res.Upper = p.orderStat(k, false)
	}
	return res
}

// hlPairs gives weighted order statistics of f(x_i, y_j), where f is x - y
// or the ratio x / y; both are non-decreasing in x and non-increasing in y.
type hlPairs struct {
	x, y  []Bin
	ratio bool
	ysuf  []float64 // ysuf[j] = Σ_{k ≥ j} y[k].Count
}

func newHLPairs(x, y []Bin, ratio bool) *hlPairs {
	p := &hlPairs{x: x, y: y, ratio: ratio, ysuf: make([]float64, len(y)+1)}
	for j := len(y) - 1; j >= 0; j-- {
		p.ysuf[j] = p.ysuf[j+1] + y[j].Count
	}
	return p
}

func (p *hlPairs) f(a, b float64) float64 {
	if !p.ratio {
		return a - b
	}
	if b == 0 {
		if a == 0 {
			return 1
		}
		return math.Inf(1)
	}
	return a / b
}

// countLE returns the weight of the pairs with f(x_i, y_j) ≤ t. For each x_i
// those pairs are the y_j from some index on, and that index does not
// decrease with i, so one merge suffices.
func (p *hlPairs) countLE(t float64) float64 {
	c, _, _ := p.count(t)
	return c
}

// count returns countLE(t) together with the largest pair value ≤ t and
// the smallest pair value > t (NaN where there is none). In row i the pairs
// ≤ t are those from index j on, so the row's candidates are f(x_i, y_j)
// and f(x_i, y_{j-1}).
func (p *hlPairs) count(t float64) (c, below, above float64) {
	below, above = math.NaN(), math.NaN()
	j := 0
	for _, xb := range p.x {
		moved := false
		var v, prev float64 // f(x_i, y_j) and f(x_i, y_{j-1}) when moved
		for j < len(p.y) {
			if v = p.f(xb.Value, p.y[j].Value); v <= t {
				break
			}
			prev, moved = v, true
			j++
		}
		c += xb.Count * p.ysuf[j]
		if j < len(p.y) && !(v <= below) {
			below = v
		}
		if j > 0 {
			if !moved {
				prev = p.f(xb.Value, p.y[j-1].Value)
			}
			if !(prev >= above) {
				above = prev
			}
		}
	}
	return c, below, above
}

// orderStat returns the smallest pair value d with countLE(d) ≥ k (> k when
// strict), clamped to the smallest and largest pair values. It bisects
// between a value that fails and a pair value that passes, snapping each
// probe to the nearest pair values on either side, and stops when no pair
// value lies strictly between them; the result is a pair value exactly.
// Probes are value midpoints, which for binned data close in on the answer
// in about log2(range / bin width) steps, and every fourth probe is the
// midpoint of the float64 order, which bounds the search by about 4·64
// steps whatever the spread of magnitudes.
func (p *hlPairs) orderStat(k float64, strict bool) float64 {
	ok := func(c float64) bool {
		if strict {
			return c > k
		}
		return c >= k
	}
	lo := p.f(p.x[0].Value, p.y[len(p.y)-1].Value)
	hi := p.f(p.x[len(p.x)-1].Value, p.y[0].Value)
	if ok(p.countLE(lo)) {
		return hlNoNegZero(lo)
	}
	if !ok(p.ysuf[0] * hlTotal(p.x)) { // k beyond the total weight
		return hlNoNegZero(hi)
	}
	// Invariant: a fails, b is a pair value that passes, a < b.
	a, b := lo, hi
	for step := 1; ; step++ {
		mid := a + (b-a)/2
		if math.IsInf(mid, 0) { // b - a overflowed
			mid = a/2 + b/2
		}
		if step%4 == 0 || !(a < mid && mid < b) {
			ka, kb := hlKey(a), hlKey(b)
			if kb-ka <= 1 {
				return hlNoNegZero(b)
			}
			mid = hlFromKey(ka + (kb-ka)/2)
		}
		c, below, above := p.count(mid)
		if ok(c) {
			b = below // same count as mid
			continue
		}
		a = mid
		if above == b { // no pair value in (a, b)
			return hlNoNegZero(b)
		}
	}
}

func hlTotal(b []Bin) float64 {
	var n float64
	for _, e := range b {
		n += e.Count
	}
	return n
}

// hlNoNegZero turns -0 into 0.
func hlNoNegZero(v float64) float64 {
	if v == 0 {
		return 0
	}
	return v
}

// middle is the median from the two middle order statistics: their mean,
// or their geometric mean on the ratio scale.
func (p *hlPairs) middle(lo, hi float64) float64 {
	if lo == hi {
		return lo
	}
	if p.ratio {
		switch {
		case lo == 0 && math.IsInf(hi, 1):
			return 1
		case lo == 0:
			return 0
		case math.IsInf(hi, 1):
			return hi
		}
		return math.Sqrt(lo) * math.Sqrt(hi)
	}
	if math.IsInf(lo, -1) && math.IsInf(hi, 1) {
		return 0
	}
	if m := (lo + hi) / 2; !math.IsInf(m, 0) {
		return m
	}
	return lo/2 + hi/2
}

// hlKey maps float64 values (not NaN) to uint64 keys in the same order.
func hlKey(f float64) uint64 {
	b := math.Float64bits(f)
	if b>>63 != 0 {
		return ^b
	}
	return b | 1<<63
}

// hlFromKey inverts hlKey.
func hlFromKey(k uint64) float64 {
	if k>>63 != 0 {
		return math.Float64frombits(k &^ (1 << 63))
	}
	return math.Float64frombits(^k)
}
