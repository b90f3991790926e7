package stat

import "math"

// MixtureSPRT returns the e-value of the mixture sequential probability
// ratio test (mSPRT) of a contrast Δ between two streams, for
// H0: Δ = 0 (TwoSided), Δ ≤ 0 (Greater) or Δ ≥ 0 (Less), given its
// estimate d = Δ̂ (for two cohorts, x̄ − c·ȳ), the estimate's variance
// v = s² (s_x²/n_x + c² s_y²/n_y) and the per-observation variance
// sz2 = s_x² + c² s_y² that tunes the mixture. With the mixing distribution
// N(0, τ²) on Δ,
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
// Pr(∃t: E_t ≥ 1/α) ≤ α. τ is tuned to make the boundary tightest when
// each stream has n0 observations (Howard, Ramdas, McAuliffe and Sekhon
// 2021; confseq's best_rho, with 2α for one-sided mixtures as there):
//
//	τ² = sz2 · (2L + log(1 + 2L)) / n0,   L = log(1/α) (TwoSided), max(log(1/(2α)), 0.05) (one-sided).
//
// alpha only tunes τ: the e-value is valid at every level.
//
// Assumptions and caveats: the observations are independent, and the
// variances are plug-in estimates. The guarantee is asymptotic: it holds
// when s² is close to the true variance of Δ̂ at every look, which needs a
// few hundred observations for skewed data (revenue, latency) and is why
// looks before n0 observations should not decide. Simulation
// (sequential_sim_test.go): lognormal data with σ = 1, n0 = 100, judged
// every 50 observations per stream for 5,000 observations, rejects within
// α. The exactly valid alternative for small samples is the g-prior t
// e-value of Lindon, Ham, Tingley and Bojinov (2022), for equal variances.
//
// Special cases, none of which panics or yields NaN:
//   - d, v or sz2 NaN or infinite, v or sz2 negative: E = 1.
//   - Data essentially constant (s ≤ 10ε·scale, scale the magnitude of the
//     means, as in R's t.test): E = +Inf if |Δ̂| > 10ε·scale lies on the
//     side of the alternative, else 1.
//   - E overflows to +Inf for overwhelming evidence.
//
// MixtureSPRT panics if alt is unknown, alpha is not in (0, 1) or n0 is
// not in [1, +Inf).
//
// References: Johari, Koomen, Pekelis and Walsh (2022), "Always valid
// inference: continuous monitoring of A/B tests", Operations Research 70,
// 1806–1821; Robbins (1970), "Statistical methods related to the law of the
// iterated logarithm"; Howard, Ramdas, McAuliffe and Sekhon (2021),
// "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann.
// Statist. 49, 1055–1080.
func MixtureSPRT(d, v, sz2, scale float64, alt Alternative, alpha, n0 float64) float64 {
	mustAlternative("MixtureSPRT", alt)
	mustMixture("MixtureSPRT", alpha, n0)
	if !finite(d) || !finite(v) || !finite(sz2) || v < 0 || sz2 < 0 {
		return 1
	}
	if math.Sqrt(v) <= 10*dblEpsilon*scale {
		if math.Abs(d) > 10*dblEpsilon*scale && (alt == TwoSided || (alt == Greater) == (d > 0)) {
			return math.Inf(1)
		}
		return 1
	}
	l := math.Log(1 / alpha)
	if alt != TwoSided {
		l = math.Max(math.Log(1/(2*alpha)), 0.05) // α ≥ ½ one-sided: any τ is valid; keep it finite
	}
	r := sz2 * (2*l + math.Log1p(2*l)) / n0 / v // τ²/s²
	z := d / math.Sqrt(v)
	// log Λ as a function of the standardized contrast.
	logLambda := -0.5*math.Log1p(r) + z*z*r/(2*(1+r))
	switch alt {
	case Greater:
		return math.Exp(math.Ln2 + logLambda + logNormCDF(z*math.Sqrt(r/(1+r))))
	case Less:
		return math.Exp(math.Ln2 + logLambda + logNormCDF(-z*math.Sqrt(r/(1+r))))
	}
	return math.Exp(logLambda)
}

// MixtureSPRTRadius returns the half-width, in standard errors √v, of the
// two-sided confidence sequence of MixtureSPRT at level 1 − alpha, the set
// of Δ whose two-sided e-value stays below 1/α:
//
//	Δ̂ ± k √v,   k = √( (1 + r)/r · (2 log(1/α) + log(1 + r)) ),   r = τ²/v,
//
// with τ² tuned as MixtureSPRT's two-sided test (Johari et al. 2022;
// Howard et al. 2021). It is +Inf when r is 0 or not finite (no
// information on the spread), and panics where MixtureSPRT does.
func MixtureSPRTRadius(v, sz2, alpha, n0 float64) float64 {
	mustMixture("MixtureSPRTRadius", alpha, n0)
	la := math.Log(1 / alpha)
	r := sz2 * (2*la + math.Log1p(2*la)) / n0 / v
	if !(r > 0) || math.IsInf(r, 1) {
		return math.Inf(1)
	}
	return math.Sqrt((1 + r) / r * (2*la + math.Log1p(r)))
}

// MixtureSPRTBoundary returns the smallest standardized contrast |Δ̂|/s at
// which the two-sided MixtureSPRT rejects at level alpha, over every
// mixing variance: with r = τ²/s²,
//
//	z*(α) = min_{r>0} √( (1 + r)/r · (2 log(1/α) + log(1 + r)) ) = √(1 + r*),   r* − log(1 + r*) = 2 log(1/α),
//
// since the derivative in r of the expression under the root vanishes
// where r = 2 log(1/α) + log(1 + r), and there it equals 1 + r (Johari et
// al. 2022; the boundary of the two-sided sequence). r* is the root of an
// increasing function, found by Root; the one-sided tests at level α
// reject at about z*(2α). It panics unless alpha is in (0, 1).
func MixtureSPRTBoundary(alpha float64) float64 {
	if !(alpha > 0 && alpha < 1) {
		panic("stat: MixtureSPRTBoundary: alpha must be in (0, 1)")
	}
	l := 2 * math.Log(1/alpha)
	// h(r) = r − log(1 + r) − l increases on r > 0 from −l; h(2l + 2) > 0
	// since log(1 + r) < r/2 for r ≥ 2.52.
	r, err := Root(func(r float64) float64 { return r - math.Log1p(r) - l }, 0, 2*l+3, 1e-14)
	if err != nil {
		panic("stat: MixtureSPRTBoundary: " + err.Error()) // cannot happen: the bracket holds the root
	}
	return math.Sqrt(1 + r)
}

func mustMixture(fn string, alpha, n0 float64) {
	if !(alpha > 0 && alpha < 1) {
		panic("stat: " + fn + ": alpha must be in (0, 1)")
	}
	if !(n0 >= 1) || math.IsInf(n0, 1) {
		panic("stat: " + fn + ": n0 must be >= 1 and finite")
	}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
