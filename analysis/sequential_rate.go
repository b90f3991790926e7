package analysis

import "math"

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
