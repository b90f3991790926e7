package analysis

import (
	"fmt"
	"math"
	"sort"
	"sync"
)

// DistBinRelErr bounds the relative distance between an observation held
// by a binned Dist and the value of its bin: bins span at most 2⁻⁷ of
// their value and are represented by their midpoints (see Dist).
const DistBinRelErr = 0x1p-8

// dkwA is the leading constant A of the time-uniform DKW bound, the value
// recommended by Howard and Ramdas (2022) and confseq's default.
const dkwA = 0.85

// TimeUniformDKW returns the radius ε_t of Howard and Ramdas's
// time-uniform Dvoretzky–Kiefer–Wolfowitz band (their Theorem 2 with
// A = 0.85): for i.i.d. observations from any distribution F, with F̂_t
// the empirical CDF of the first t,
//
//	Pr( ∃t ≥ tMin: sup_x |F̂_t(x) − F(x)| > ε_t ) ≤ alpha,   ε_t = A √( (log(1 + log(t/tMin)) + C) / t ),
//
// where C is the smallest constant whose error bound, minimized over the
// theorem's free parameter η > 1,
//
//	4 e^{−γ² C} (1 + 1/((γ² − 1) log η)),   γ² = (2/η) (A − √(2(η − 1)/C))²   (γ² > 1),
//
// equals alpha. This is confseq's empirical_process_lil_bound, and agrees
// with its unit test (t = 1000, alpha = 0.05, tMin = 100: 0.08204769) and
// with an independent scipy solution to 1e-9; the closed form
// C = 0.8 log(1612/alpha) quoted in STATS-NOTES.md is slightly larger
// (conservative) for alpha ≤ 0.1. ε_t is +Inf for t < tMin.
//
// TimeUniformDKW panics unless alpha is in (0, 1) and tMin ≥ 1.
//
// Reference: Howard and Ramdas (2022), "Sequential estimation of quantiles
// with applications to A/B-testing and best-arm identification",
// Bernoulli 28, 1704–1728; github.com/gostevehoward/confseq.
func TimeUniformDKW(t, alpha, tMin float64) float64 {
	if !(alpha > 0 && alpha < 1) {
		panic("analysis: TimeUniformDKW: alpha must be in (0, 1)")
	}
	if !(tMin >= 1) {
		panic("analysis: TimeUniformDKW: tMin must be >= 1")
	}
	return dkwEps(t, tMin, dkwC(math.Log(alpha)))
}

// dkwEps returns ε_t for the constant C.
func dkwEps(t, tMin, c float64) float64 {
	if !(t >= tMin) {
		return math.Inf(1)
	}
	return dkwA * math.Sqrt((math.Log1p(math.Log(t/tMin))+c)/t)
}

// dkwLogErr returns the log of the error bound of TimeUniformDKW for the
// constant C, minimized over η.
func dkwLogErr(c float64) float64 {
	// η ranges over (1, η_max), η_max the root of √(η/2) + √(2(η−1)/C) = A,
	// beyond which γ ≤ 1 (or A − √(2(η−1)/C) < 0).
	etaMax := seqBisectIncreasing(func(eta float64) float64 {
		return math.Sqrt(eta/2) + math.Sqrt(2*(eta-1)/c) - dkwA
	}, 1, 2*dkwA*dkwA)
	f := func(eta float64) float64 {
		g := dkwA - math.Sqrt(2*(eta-1)/c)
		g2 := 2 / eta * g * g
		if !(g2 > 1) || !(eta > 1) {
			return math.Inf(1)
		}
		return math.Log(4) - g2*c + math.Log1p(1/((g2-1)*math.Log(eta)))
	}
	// Golden-section search; f is unimodal on (1, η_max), infinite at both ends.
	const invPhi = 0.6180339887498949
	a, b := 1.0, etaMax
	x1, x2 := b-invPhi*(b-a), a+invPhi*(b-a)
	f1, f2 := f(x1), f(x2)
	for range 100 {
		if b-a <= 1e-13*b {
			break
		}
		if f1 <= f2 {
			b, x2, f2 = x2, x1, f1
			x1 = b - invPhi*(b-a)
			f1 = f(x1)
		} else {
			a, x1, f1 = x1, x2, f2
			x2 = a + invPhi*(b-a)
			f2 = f(x2)
		}
	}
	return math.Min(f1, f2)
}

// dkwCHalf is dkwC(log ½), the start of every SeqQuantileTest's search,
// computed once.
var dkwCHalf = sync.OnceValue(func() float64 { return dkwC(math.Log(0.5)) })

// dkwC returns the constant C with dkwLogErr(C) = logAlpha, by the
// Illinois (regula falsi) method: dkwLogErr is decreasing and nearly
// linear in C.
func dkwC(logAlpha float64) float64 {
	g := func(c float64) float64 { return dkwLogErr(c) - logAlpha }
	a, b := 1.0, 8.0
	ga, gb := g(a), g(b)
	for ga < 0 {
		b, gb = a, ga
		a /= 2
		ga = g(a)
	}
	for gb > 0 {
		a, ga = b, gb
		b *= 2
		gb = g(b)
	}
	side := 0
	for range 100 {
		c := (a*gb - b*ga) / (gb - ga)
		if !(c > a && c < b) {
			c = a + (b-a)/2
		}
		gc := g(c)
		if math.Abs(b-a) <= 1e-13*b || gc == 0 {
			return c
		}
		if gc > 0 {
			a, ga = c, gc
			if side == 1 {
				gb /= 2
			}
			side = 1
		} else {
			b, gb = c, gc
			if side == -1 {
				ga /= 2
			}
			side = -1
		}
	}
	return (a + b) / 2
}

// SeqQuantileOptions configure SeqQuantileTest.
type SeqQuantileOptions struct {
	// Alternative is Greater (H1: Q_x(p) > c·Q_y(p)), Less or TwoSided.
	Alternative Alternative
	// Alpha is the level of the reported band [Lower, Upper]; 0 skips the
	// band (P does not depend on it).
	Alpha float64
	// MinN is the first sample size per stream at which the band may be
	// used (tMin of TimeUniformDKW); 0 means 1. Setting it to the metric's
	// minimum-sample gate tightens the band, provided nothing is decided
	// before the gate: P is 1 while either stream is smaller.
	MinN float64
	// RelErr is the relative precision of the values: 0 for raw values,
	// DistBinRelErr when either stream comes from a binned Dist. Each
	// quantile bound is widened by that factor.
	RelErr float64
}

// SeqQuantileResult is the outcome of SeqQuantileTest.
type SeqQuantileResult struct {
	// Estimate is Q̂_x(p)/Q̂_y(p), the ratio of the empirical quantiles
	// (R's type 1); 1 when both are 0 and +Inf when only Q̂_y(p) is.
	Estimate float64
	// Lower and Upper bound Q_x(p)/Q_y(p) at level 1 − Alpha, valid
	// simultaneously over time (0 and +Inf when a band end is beyond the
	// data, or Alpha is 0).
	Lower, Upper float64
	// P is the anytime p-value: the smallest α at which the test rejects.
	P float64
}

// SeqQuantileTest compares the p-quantiles of two streams, x the canary
// and y the baseline, given as sorted bins of non-negative values (raw
// values with multiplicities, or a Dist's bins), with time-uniform bands on
// each stream's empirical CDF (Howard and Ramdas 2022, Corollary 2).
// With ε_x, ε_y the radii of TimeUniformDKW at α/2 for each stream's
// size, and Q̂ the empirical quantile function (R's type 1),
//
//	Q̂_x(p − ε_x) ≤ Q_x(p) ≤ Q̂_x(p + ε_x)   for all t ≥ MinN, with probability ≥ 1 − α/2,
//
// and likewise for y. The test of H0: Q_x(p) ≤ c·Q_y(p) (Greater) rejects
// at level α when
//
//	Q̂_x(p − ε_x) > c · Q̂_y(p + ε_y),
//
// which on the event that both bands hold contradicts H0, so the chance of
// ever rejecting a true H0 is at most α under continuous monitoring
// (Less: Q̂_x(p + ε_x) < c·Q̂_y(p − ε_y); TwoSided: either). P is the
// smallest such α, found by bisection on the constant C of the bound (the
// rejection is monotone in α); it needs no running minimum, since
// Pr(∃t: P_t ≤ α) ≤ α. Because each band holds for all quantiles at once,
// the minimum of the P of several quantiles of the same streams is also
// an anytime p-value.
//
// On bins, Q̂(q) is the value of the bin holding the ⌈nq⌉-th observation,
// the lower bound is 0 when p − ε ≤ 0 and the upper +Inf when p + ε > 1.
// Binned values stand for any value within RelErr of them: the lower
// bounds are multiplied by 1 − RelErr and the upper by 1 + RelErr, so the
// test remains valid for the unbinned data.
//
// Assumptions: within each stream the observations are i.i.d. (see the
// package notes on instances; per-instance-interval aggregates restore
// this for transient instance effects). The bands are nonparametric and
// about twice as wide as a fixed-sample DKW band: detecting a 10%
// quantile shift of a lognormal latency with σ = 0.5 takes several
// thousand observations per stream.
//
// Special cases: an empty stream, or one below MinN, gives P = 1 and the
// band [0, +Inf).
//
// SeqQuantileTest panics if p is not in (0, 1), c is not positive and
// finite, the alternative is unknown, Alpha is not 0 or in (0, 1), RelErr
// is not in [0, 1), or a stream is not sorted by value with non-negative
// values and positive counts.
func SeqQuantileTest(x, y []Bin, p, c float64, opts SeqQuantileOptions) SeqQuantileResult {
	const fn = "SeqQuantileTest"
	mwuCheckAlternative(fn, opts.Alternative)
	if !(p > 0 && p < 1) {
		panic("analysis: SeqQuantileTest: p must be in (0, 1)")
	}
	if !(c > 0) || math.IsInf(c, 1) {
		panic("analysis: SeqQuantileTest: c must be positive and finite")
	}
	if !(opts.Alpha == 0 || (opts.Alpha > 0 && opts.Alpha < 1)) {
		panic("analysis: SeqQuantileTest: Alpha must be 0 or in (0, 1)")
	}
	if !(opts.RelErr >= 0 && opts.RelErr < 1) {
		panic("analysis: SeqQuantileTest: RelErr must be in [0, 1)")
	}
	tMin := math.Max(1, opts.MinN)
	sx, sy := newSeqSample(fn, "x", x), newSeqSample(fn, "y", y)
	inf := math.Inf(1)
	res := SeqQuantileResult{Estimate: 1, Lower: 0, Upper: inf, P: 1}
	if sx.n == 0 || sy.n == 0 {
		return res
	}
	qx, qy := sx.at(p), sy.at(p)
	switch {
	case qy > 0:
		res.Estimate = qx / qy
	case qx > 0:
		res.Estimate = inf
	}
	if sx.n < tMin || sy.n < tMin {
		return res
	}
	lo, hi := 1-opts.RelErr, 1+opts.RelErr
	// bounds returns the band of each quantile for the constant C.
	bounds := func(cc float64) (xl, xu, yl, yu float64) {
		ex, ey := dkwEps(sx.n, tMin, cc), dkwEps(sy.n, tMin, cc)
		return sx.lower(p-ex) * lo, sx.upper(p+ex) * hi, sy.lower(p-ey) * lo, sy.upper(p+ey) * hi
	}
	reject := func(cc float64) bool {
		xl, xu, yl, yu := bounds(cc)
		greater := xl > c*yu
		less := xu < c*yl
		switch opts.Alternative {
		case Greater:
			return greater
		case Less:
			return less
		}
		return greater || less
	}
	// α(C) = 2·err(C) (each stream at α/2). Find the largest C that
	// rejects, starting from α = 1.
	cLo := dkwCHalf()
	if reject(cLo) {
		cHi := 2 * cLo
		for reject(cHi) {
			cLo, cHi = cHi, 2*cHi
		}
		for range 100 {
			m := cLo + (cHi-cLo)/2
			if m == cLo || m == cHi || cHi-cLo <= 1e-12*cHi {
				break
			}
			if reject(m) {
				cLo = m
			} else {
				cHi = m
			}
		}
		res.P = math.Min(1, 2*math.Exp(dkwLogErr(cLo)))
	}
	if opts.Alpha > 0 {
		xl, xu, yl, yu := bounds(dkwC(math.Log(opts.Alpha / 2)))
		res.Lower, res.Upper = 0, inf
		if yu > 0 && !math.IsInf(yu, 1) {
			res.Lower = xl / yu
		}
		if yl > 0 && !math.IsInf(xu, 1) {
			res.Upper = xu / yl
		}
	}
	return res
}

// seqSample is a sorted sample of bins with cumulative counts.
type seqSample struct {
	bins []Bin
	cum  []float64
	n    float64
}

func newSeqSample(fn, name string, b []Bin) seqSample {
	n := mwuCheckBins(fn, name, b)
	s := seqSample{bins: b, cum: make([]float64, len(b)), n: n}
	var acc float64
	for i, bin := range b {
		if !(bin.Value >= 0) || math.IsInf(bin.Value, 1) {
			panic(fmt.Sprintf("analysis: %s: %s[%d].Value = %v, want finite and >= 0", fn, name, i, bin.Value))
		}
		acc += bin.Count
		s.cum[i] = acc
	}
	return s
}

// orderStat returns the value of the k-th smallest observation, k ≥ 1.
func (s seqSample) orderStat(k float64) float64 {
	i := sort.SearchFloat64s(s.cum, k)
	return s.bins[min(i, len(s.bins)-1)].Value
}

// at returns Q̂(q) = the ⌈nq⌉-th smallest observation (at least the first).
func (s seqSample) at(q float64) float64 {
	return s.orderStat(math.Max(1, math.Ceil(s.n*q)))
}

// lower returns the lower confidence bound Q̂(q) for q = p − ε: 0 when
// q ≤ 0. Rounding of n·q is resolved downwards.
func (s seqSample) lower(q float64) float64 {
	k := math.Ceil(s.n*q - 1e-9)
	if !(k >= 1) {
		return 0
	}
	return s.orderStat(k)
}

// upper returns the upper confidence bound Q̂(q) for q = p + ε: +Inf when
// q > 1. Rounding of n·q is resolved upwards.
func (s seqSample) upper(q float64) float64 {
	k := math.Ceil(s.n*q + 1e-9)
	if k > s.n {
		if s.n*q <= s.n {
			return s.bins[len(s.bins)-1].Value
		}
		return math.Inf(1)
	}
	return s.orderStat(math.Max(k, 1))
}
