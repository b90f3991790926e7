package stat

import "math"

// BetaMixtureLogE returns the logarithm of the beta-mixture e-value of
// x successes and y failures against a binomial proportion p0: for
// H0: π = p0 (TwoSided), π ≤ p0 (Greater) or π ≥ p0 (Less), the likelihood
// ratio mixed over the prior Beta(a, b) on π, restricted to the
// alternative side for the one-sided tests,
//
//	E = ∫ (π/p0)^x ((1 − π)/(1 − p0))^y dΠ(π)
//	  = [B(a + x, b + y) / B(a, b)] / (p0^x (1 − p0)^y) · S(a + x, b + y) / S(a, b),
//
// with S(α, β) the Beta(α, β) mass on the alternative side: 1 (TwoSided),
// Pr(Beta(α, β) > p0) = I_{1−p0}(β, α) (Greater), Pr(Beta(α, β) < p0) =
// I_{p0}(α, β) (Less). E is a nonnegative martingale in the trials under
// π = p0 and, since the prior puts no mass on the null side, a
// supermartingale under the whole one-sided null (monotone likelihood
// ratio): Pr(∃t: E_t ≥ 1/α) ≤ α (Ville). Counts need not be whole (the
// likelihood is the binomial's kernel), and may come in any batches.
//
// Applied to rates, given N = N_B + N_C events the canary's count N_C is
// binomial with π = ρr/(1 − ρ + ρr), ρ the canary's share of exposure, r
// the rate ratio (see RateTest): Lindon and Malek's test of r with the
// prior Beta(kρ, k(1 − ρ)) (Netflix's k = 100), or centred at the null,
// Beta(k p0, k (1 − p0)), to put the mixture where one-sided alternatives
// are. Known values (x = 25, y = 90, p0 = 0.1, Beta(10, 90), TwoSided:
// Netflix's figures): E = 31.23; x = 130, y = 900: E = 7.717.
//
// Everything is computed in log space, the incomplete beta function by its
// continued fraction with a saddle-point prefactor: within 1e-9 relative
// of scipy's betaln and beta.logsf/logcdf and of numerical integration of
// the ratio (testdata/sequential_vectors.json). With no trials log E = 0.
// 1 − p0 is formed by subtraction.
//
// BetaMixtureLogE panics if a count is negative or not finite, p0 is not
// in (0, 1), a or b is not positive and finite, or alt is unknown.
//
// References: Lindon and Malek (2022), "Anytime-valid inference for
// multinomial count data", NeurIPS; Lindon, Sanden and Shirikian (2022),
// "Rapid regression detection in software deployments through sequential
// testing", KDD; Ville (1939), Étude critique de la notion de collectif.
func BetaMixtureLogE(x, y, p0, a, b float64, alt Alternative) float64 {
	mustAlternative("BetaMixtureLogE", alt)
	if !(x >= 0) || !(y >= 0) || math.IsInf(x, 1) || math.IsInf(y, 1) {
		panic("stat: BetaMixtureLogE: counts must be finite and >= 0")
	}
	if !(p0 > 0 && p0 < 1) {
		panic("stat: BetaMixtureLogE: p0 must be in (0, 1)")
	}
	if !(a > 0) || !(b > 0) || math.IsInf(a, 1) || math.IsInf(b, 1) {
		panic("stat: BetaMixtureLogE: a and b must be positive and finite")
	}
	q0 := 1 - p0
	le := lbeta(a+x, b+y) - lbeta(a, b)
	if x > 0 {
		le -= x * math.Log(p0)
	}
	if y > 0 {
		le -= y * math.Log(q0)
	}
	switch alt {
	case Greater:
		_, up1, _ := betaIncLog(a+x, b+y, p0, q0)
		_, up0, _ := betaIncLog(a, b, p0, q0)
		le += up1 - up0
	case Less:
		lo1, _, _ := betaIncLog(a+x, b+y, p0, q0)
		lo0, _, _ := betaIncLog(a, b, p0, q0)
		le += lo1 - lo0
	}
	return le
}
