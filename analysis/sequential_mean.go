package analysis

import "math"

// SeqMean returns the mixture sequential probability ratio test (mSPRT) of
// the contrast Δ = mean_x − c·mean_y between two streams summarized by
// their running Moments (x the canary, y the baseline): the e-value e of
// H0: Δ = 0 (TwoSided), Δ ≤ 0 (Greater) or Δ ≥ 0 (Less), and the
// confidence sequence [lo, hi] for Δ at level 1 − alpha (half-infinite
// for the one-sided alternatives, as the fixed-sample tests' intervals).
// With c = 1 + tolerance and Greater, it tests the canary against the
// tolerance boundary as the fixed-sample contrast test does.
//
// With Δ̂ = x̄ − c ȳ, s² = s_x²/n_x + c² s_y²/n_y (plug-in variances) and
// the mixing distribution N(0, τ²) on Δ,
//
//	Λ = √(s² / (s² + τ²)) · exp( τ² Δ̂² / (2 s² (s² + τ²)) )                    (TwoSided)
//	E = 2 Φ( Δ̂ τ / (s √(s² + τ²)) ) · Λ                                       (Greater; Less with −Δ̂)
//
// the second being the mixture over the half-normal on Δ > 0 (Johari,
// Koomen, Pekelis and Walsh 2017/2022 for Λ; the one-sided form is
// confseq's OneSidedNormalMixture). Under the Gaussian model the process
// Δ̂_t/s_t² is a Brownian motion with drift Δ in the information time
// 1/s_t², whatever the sizes of the two streams, so Λ is a nonnegative
// martingale under Δ = 0 and E a supermartingale under Δ ≤ 0; hence
// Pr(∃t: E_t ≥ 1/α) ≤ α. The two-sided sequence is
//
//	Δ̂ ± √( (s² (s² + τ²) / τ²) · (2 log(1/α) + log((s² + τ²)/s²)) ),
//
// and the one-sided ends solve E = 1/α by bisection. τ is tuned to make
// the boundary tightest at the minimum-sample gate n0 per stream
// (Howard, Ramdas, McAuliffe and Sekhon 2021; confseq's best_rho, with
// 2α for one-sided mixtures as there):
//
//	τ² = (s_x² + c² s_y²) · (2L + log(1 + 2L)) / n0,   L = log(1/α) (TwoSided), log(1/(2α)) (one-sided).
//
// Assumptions and caveats: the observations are independent (see the
// package notes on instances), and the variances are plug-in estimates.
// The guarantee is asymptotic: it holds when s² is close to the true
// variance of Δ̂ at every look, which needs a few hundred observations for
// skewed data (revenue, latency) and is why looks before the gate n0
// should not decide. Simulation (sequential_sim_test.go): lognormal data
// with σ = 1, n0 = 100, judged every 50 observations per stream for 5,000
// observations, rejects within α. The exactly valid alternative for small
// samples is the g-prior t e-value of Lindon, Ham, Tingley and Bojinov
// (2022), for equal variances.
//
// The caller keeps the running maximum of e (p = min(1, 1/max e) is the
// anytime p-value) and may intersect the intervals over time.
//
// Special cases, none of which panics or yields NaN:
//   - n_x < 2 or n_y < 2, or a summary with a NaN or infinite field: e = 1
//     and the interval is (−Inf, +Inf).
//   - Both streams essentially constant (s ≤ 10ε·max(|x̄|, |c ȳ|)), as in
//     the fixed-sample tests: e = +Inf if Δ̂ ≠ 0 lies on the side of the alternative,
//     else 1, and the interval shrinks to Δ̂.
//   - e overflows to +Inf for overwhelming evidence.
//
// SeqMean panics if c is not finite, alt is unknown, alpha is not in
// (0, 1) or n0 < 1.
//
// References: Johari, Koomen, Pekelis and Walsh (2022), "Always valid
// inference: continuous monitoring of A/B tests", Operations Research 70,
// 1806–1821; Robbins (1970), "Statistical methods related to the law of the
// iterated logarithm"; Howard, Ramdas, McAuliffe and Sekhon (2021),
// "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann.
// Statist. 49, 1055–1080.
func SeqMean(x, y Moments, c float64, alt Alternative, alpha, n0 float64) (e, lo, hi float64) {
	mustSeqMean("SeqMean", c, alt, alpha, n0)
	inf := math.Inf(1)
	if !finiteMoments(x) || !finiteMoments(y) || x.N < 2 || y.N < 2 {
		return 1, -inf, inf
	}
	vx, vy := x.Variance(), c*c*y.Variance()
	return seqMeanFrom(x.Mean-c*y.Mean, vx/x.N+vy/y.N, vx+vy, math.Max(math.Abs(x.Mean), math.Abs(c*y.Mean)), alt, alpha, n0)
}

func mustSeqMean(fn string, c float64, alt Alternative, alpha, n0 float64) {
	mustTestArgs(fn, alt, 0.5)
	if math.IsNaN(c) || math.IsInf(c, 0) {
		panic("analysis: " + fn + ": c must be finite")
	}
	if !(alpha > 0 && alpha < 1) {
		panic("analysis: " + fn + ": alpha must be in (0, 1)")
	}
	if !(n0 >= 1) || math.IsInf(n0, 1) {
		panic("analysis: " + fn + ": n0 must be >= 1 and finite")
	}
}

// seqMeanFrom is SeqMean from the contrast d, its variance s2, the
// per-observation variance sz2 used to tune τ, and the scale of the means
// for the constant-data test.
func seqMeanFrom(d, s2, sz2, scale float64, alt Alternative, alpha, n0 float64) (e, lo, hi float64) {
	inf := math.Inf(1)
	if math.Sqrt(s2) <= 10*dblEpsilon*scale {
		e = 1
		if math.Abs(d) > 10*dblEpsilon*scale && (alt == TwoSided || (alt == Greater) == (d > 0)) {
			e = inf
		}
		switch alt {
		case Greater:
			return e, d, inf
		case Less:
			return e, -inf, d
		}
		return e, d, d
	}
	la := math.Log(1 / alpha)
	l := la
	if alt != TwoSided {
		l = math.Log(1 / (2 * alpha))
	}
	l = math.Max(l, 0.05) // α ≥ ½ one-sided: any τ is valid; keep it finite
	tau2 := sz2 * (2*l + math.Log1p(2*l)) / n0
	r := tau2 / s2
	s := math.Sqrt(s2)
	z := d / s
	// log Λ as a function of the standardized contrast.
	logLambda := func(z float64) float64 { return -0.5*math.Log1p(r) + z*z*r/(2*(1+r)) }
	oneSided := func(z float64) float64 { return math.Ln2 + logLambda(z) + seqLogNormCDF(z*math.Sqrt(r/(1+r))) }
	half := s * math.Sqrt((1+r)/r*(2*la+math.Log1p(r)))
	switch alt {
	case Greater, Less:
		sign := 1.0
		if alt == Less {
			sign = -1
		}
		e = math.Exp(oneSided(sign * z))
		// The one-sided E is increasing in the standardized contrast and
		// at least Λ for z > 0, so its root lies in [0, half/s].
		w := seqBisectIncreasing(func(z float64) float64 { return oneSided(z) - la }, 0, half/s) * s
		if alt == Greater {
			return e, d - w, inf
		}
		return e, -inf, d + w
	}
	return math.Exp(logLambda(z)), d - half, d + half
}

// seqBisectIncreasing returns the root of an increasing g on [a, b] with
// g(a) ≤ 0 ≤ g(b), to the resolution of float64.
func seqBisectIncreasing(g func(float64) float64, a, b float64) float64 {
	for range 200 {
		m := a + (b-a)/2
		if m == a || m == b {
			break
		}
		if g(m) < 0 {
			a = m
		} else {
			b = m
		}
	}
	return a + (b-a)/2
}

// BernoulliMoments returns the Moments of count successes in trials 0/1
// observations (errors out of requests): N = trials, Mean = count/trials,
// M2 = count·(1 − count/trials). It lets SeqMean judge proportions
// and the judge summarize per-instance error rates. It returns the zero
// Moments when trials is 0, and panics unless 0 ≤ count ≤ trials.
func BernoulliMoments(count, trials float64) Moments {
	if !(count >= 0) || !(count <= trials) || math.IsInf(trials, 1) {
		panic("analysis: BernoulliMoments: need 0 <= count <= trials, finite")
	}
	if trials == 0 {
		return Moments{}
	}
	p := count / trials
	return Moments{N: trials, Mean: p, M2: count * (1 - p)}
}

// finiteMoments reports whether m holds usable numbers: a finite count,
// mean and M2, M2 ≥ 0.
func finiteMoments(m Moments) bool {
	return !math.IsNaN(m.N) && !math.IsInf(m.N, 0) && !math.IsNaN(m.Mean) && !math.IsInf(m.Mean, 0) &&
		m.M2 >= 0 && !math.IsInf(m.M2, 0)
}
