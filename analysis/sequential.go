package analysis

// Anytime-valid statistics: the tests behind continuous judging.
//
// A fixed-sample test (RateTest, a t-test, MannWhitney) holds its level at
// one look at the data. Judged after every batch, its chance of ever
// rejecting a canary identical to its baseline grows with the number of
// looks (about 70% over 10,000 looks for a repeated Mann-Whitney test;
// Netflix, "Sequential A/B testing keeps the world streaming", part 1,
// 2024). The statistics of the sequential*.go files keep their level
// however often, and whenever, one looks:
//
//   - an e-process E_t is a nonnegative process with E_0 = 1 that is a
//     supermartingale (or is dominated by one) under every distribution of
//     the null hypothesis; by Ville's inequality
//
//     Pr(∃t: E_t ≥ 1/α) ≤ α,
//
//     so "reject when E_t ≥ 1/α" is a test at level α under continuous
//     monitoring and optional stopping;
//   - the anytime p-value p_t = min(1, 1/max_{s≤t} E_s) is non-increasing
//     and Pr(∃t: p_t ≤ α) ≤ α; p_t = min(1, 1/E_t) at the current look is
//     valid too, slightly less powerful;
//   - a confidence sequence (lo_t, hi_t) covers the parameter at all times
//     simultaneously with probability ≥ 1 − α; its running intersection
//     (max of lo, min of hi) is one too.
//
// One-sided tests against a boundary (H0: canary ≤ (1 + tolerance) ·
// baseline) mix only over the alternative side: each likelihood ratio
// against the boundary is then a supermartingale under every point of the
// composite null, not only at its boundary (monotone likelihood ratio).
//
// Across tests, Holm's procedure on anytime p-values keeps the family-wise
// error under continuous monitoring: the first time a true null is
// rejected, its p-value is at most α/m₀ (m₀ true nulls), so
// Pr(ever) ≤ Σ_{true nulls} Pr(∃t: p_t ≤ α/m₀) ≤ α. Benjamini–Hochberg and
// Simes are not safe with data-dependent stopping.
//
// Every method here assumes that, given the past, the observations are
// independent draws. Requests of one instance are not (a slow host moves
// all of its requests together); the judge accounts for that with its
// design effects (instances.go).

import "math"

// seqLogAddExp returns log(e^a + e^b).
func seqLogAddExp(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(a, -1) {
		return a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// seqLogNormCDF returns log Φ(z) for the standard normal CDF Φ, accurate in
// the far lower tail where Φ underflows.
func seqLogNormCDF(z float64) float64 {
	switch {
	case z > 5:
		return math.Log1p(-0.5 * math.Erfc(z/math.Sqrt2))
	case z > -37:
		return math.Log(0.5 * math.Erfc(-z/math.Sqrt2))
	}
	// Φ(z) = φ(z)/|z| · (1 − 1/z² + 3/z⁴ − 15/z⁶ + …) (Abramowitz and
	// Stegun 26.2.12); at |z| ≥ 37 the omitted terms are below 1e-15.
	w := 1 / (z * z)
	return -0.5*z*z - math.Log(-z) - lnSqrt2Pi + math.Log1p(w*(-1+w*(3-w*15)))
}
