package stat

import (
	"math"
	"sort"

	"gonum.org/v1/gonum/stat/distuv"
)

// RateResult is the outcome of RateTest.
type RateResult struct {
	// Ratio is the point estimate of the rate ratio
	// r = (countC/exposureC) / (countB/exposureB). It is +Inf when the
	// baseline saw no events and the canary some, 0 when only the baseline
	// saw events, and 1 when neither saw any (both observed rates are 0, so
	// they are equal). It is never NaN.
	Ratio float64
	// Lower and Upper bound the confidence interval for r. For the
	// one-sided alternatives the interval is half-infinite, as in R:
	// Greater gives [Lower, +Inf), Less gives [0, Upper].
	Lower, Upper float64
	// P is the p-value.
	P float64
	// Theta0 is the null probability that an event is the canary's,
	// θ₀ = ρ·r₀/(1 − ρ + ρ·r₀) with ρ the canary's share of exposure.
	Theta0 float64
}

// RateTest tests the canary's event rate against the baseline's, given the
// exposure behind each count (errors per request, crashes per
// instance-hour). It conditions on the total number of events: the counts
// are taken to be independent Poisson variables with means r·λ·exposureC
// and λ·exposureB, so that given N = countB + countC,
//
//	countC ~ Binomial(N, θ),   θ = ρ·r / (1 − ρ + ρ·r),   ρ = exposureC / (exposureB + exposureC),
//
// whatever the common baseline rate λ, and r = (rate of C)/(rate of B) is a
// monotone function of θ:
//
//	r = θ (1 − ρ) / (ρ (1 − θ)).
//
// The null hypothesis is r = ratio0 (for Greater, r ≤ ratio0 against
// r > ratio0; for Less, r ≥ ratio0 against r < ratio0), that is θ = θ₀.
// The p-value is the exact binomial test's:
//
//	Greater:  P = Pr(X ≥ countC)
//	Less:     P = Pr(X ≤ countC)
//	TwoSided: P = Σ Pr(X = k) over the k with Pr(X = k) ≤ Pr(X = countC)·(1 + 10⁻⁷)
//
// (the "minlike" two-sided p-value of R's binom.test and scipy's
// binomtest, with their relative tolerance), X ~ Binomial(N, θ₀). The
// interval is the Clopper–Pearson interval for θ at confLevel, mapped to r.
// The result is that of R's
//
//	poisson.test(c(countC, countB), c(exposureC, exposureB), r = ratio0,
//	             alternative = alt, conf.level = confLevel)
//
// and of scipy.stats.binomtest(countC, N, θ₀, alt) with
// proportion_ci(confLevel, method="exact"), mapped to r.
//
// Numerics: densities use Loader's saddle-point expansion (no lgamma
// cancellation), tails the regularized incomplete beta function by its
// continued fraction with that prefactor, or, when θ₀ or 1 − θ₀ is below
// 0.01, a sum from the observed count outward; both agree with R to about
// 1e-12 relative at N = 1e7 (better for smaller N), tiny tails included.
// The far end of the two-sided sum is found by binary search on the
// density (sort.Search), and each interval end by Root on the logit scale,
// so the work grows as log N plus O(√N) continued-fraction or summation
// terms, never as N. 1 − θ₀ is formed as exposureB/(ratio0·exposureC +
// exposureB), not by subtraction.
//
// Special cases:
//   - Counts are rounded to the nearest integer.
//   - If neither cohort saw an event (N = 0), the data say nothing about r:
//     Ratio = 1, P = 1 and the interval is [0, +Inf). (R's poisson.test
//     stops with an error.)
//   - If the baseline saw no events but the canary did, Ratio = +Inf and
//     Upper = +Inf; if only the baseline did, Ratio = 0 and Lower = 0.
//   - If an exposure is not positive and finite, or a count is negative or
//     not finite, the data are unusable: Ratio = 1, P = 1, the interval is
//     [0, +Inf) and Theta0 = 0.
//
// RateTest panics if ratio0 is negative, infinite or NaN, if alt is not one
// of TwoSided, Greater, Less, or if confLevel is not in (0, 1).
//
// References: Przyborowski and Wilenski (1940), "Homogeneity of results in
// testing samples from Poisson series", Biometrika 31, 313–323; Clopper and
// Pearson (1934), Biometrika 26, 404–413; Loader (2000), "Fast and accurate
// computation of binomial probabilities"; R stats::poisson.test and
// stats::binom.test.
func RateTest(countB, exposureB, countC, exposureC, ratio0 float64, alt Alternative, confLevel float64) RateResult {
	mustTestArgs("RateTest", alt, confLevel)
	if !(ratio0 >= 0) || math.IsInf(ratio0, 1) {
		panic("stat: RateTest: ratio0 must be finite and nonnegative")
	}
	inf := math.Inf(1)
	if !(exposureB > 0) || !(exposureC > 0) || math.IsInf(exposureB, 1) || math.IsInf(exposureC, 1) ||
		!(countB >= 0) || !(countC >= 0) || math.IsInf(countB, 1) || math.IsInf(countC, 1) {
		return RateResult{Ratio: 1, Lower: 0, Upper: inf, P: 1}
	}
	cB, cC := math.Round(countB), math.Round(countC)
	// θ₀ as R computes it, and 1 − θ₀ without cancellation.
	den := ratio0*exposureC + exposureB
	p0, q0 := ratio0*exposureC/den, exposureB/den
	res := RateResult{Theta0: p0}
	n := cB + cC
	if n == 0 {
		res.Ratio, res.Lower, res.Upper, res.P = 1, 0, inf, 1
		return res
	}
	// +Inf when cB = 0 < cC; computed in logs if both rates overflowed
	// or underflowed.
	res.Ratio = (cC / exposureC) / (cB / exposureB)
	if math.IsNaN(res.Ratio) {
		res.Ratio = math.Exp(math.Log(cC) - math.Log(exposureC) - math.Log(cB) + math.Log(exposureB))
	}
	res.P = binomTestPQ(cC, n, p0, q0, alt)
	etaL, etaU := clopperPearsonLogit(cC, n, alt, confLevel)
	res.Lower, res.Upper = rateFromLogit(etaL, exposureB, exposureC), rateFromLogit(etaU, exposureB, exposureC)
	return res
}

// rateFromLogit returns r = θ/(1−θ) · (1−ρ)/ρ = exp(logit θ) · eB/eC.
func rateFromLogit(eta, eB, eC float64) float64 {
	switch {
	case math.IsInf(eta, -1):
		return 0
	case math.IsInf(eta, 1):
		return math.Inf(1)
	}
	r := math.Exp(eta) * (eB / eC)
	if r == 0 || math.IsInf(r, 0) || math.IsNaN(r) { // extreme exposures
		r = math.Exp(eta + math.Log(eB) - math.Log(eC))
	}
	return r
}

// BinomialTail returns a tail probability of X ~ Binomial(n, p):
//
//	Less:    Pr(X ≤ k)
//	Greater: Pr(X ≥ k)
//
// both including k, as the one-sided p-values of the binomial test; in
// terms of the regularized incomplete beta function,
// Pr(X ≥ k) = I_p(k, n − k + 1). The smaller tail is computed directly,
// to about 1e-12 relative or better for n ≤ 1e7 however small it is (see
// RateTest for the method), and the larger as its complement. n is rounded to an
// integer and k to the nearest integer. BinomialTail panics if alt is
// TwoSided (see RateTest for the two-sided test), if n is negative or not finite, or if p is
// not in [0, 1].
func BinomialTail(k, n, p float64, alt Alternative) float64 {
	k, n = math.Round(k), math.Round(n)
	if !(n >= 0) || math.IsInf(n, 1) || !(p >= 0 && p <= 1) || math.IsNaN(k) {
		panic("stat: BinomialTail: need n ≥ 0 finite and 0 ≤ p ≤ 1")
	}
	switch alt {
	case Less:
		return binomLowerTail(k, n, p, 1-p)
	case Greater:
		return binomUpperTail(k, n, p, 1-p)
	}
	panic("stat: BinomialTail: alternative must be Less or Greater")
}

// ClopperPearson returns the Clopper–Pearson ("exact") confidence interval
// for a binomial proportion from k successes in n trials: with
// α = 1 − confLevel,
//
//	TwoSided: [B(α/2; k, n−k+1), B(1−α/2; k+1, n−k)]
//	Greater:  [B(α; k, n−k+1), 1]
//	Less:     [0, B(1−α; k+1, n−k)]
//
// where B(q; a, b) is the q-quantile of the Beta(a, b) distribution, the
// lower bound being 0 when k = 0 and the upper 1 when k = n. It matches
// binom.test(k, n)$conf.int in R. Each bound is found by Root on the
// logit scale, from the normal approximation there.
// k and n are rounded; ClopperPearson panics unless 0 ≤ k ≤ n, n ≥ 1 and
// confLevel is in (0, 1).
//
// Reference: Clopper and Pearson (1934), "The use of confidence or fiducial
// limits illustrated in the case of the binomial", Biometrika 26, 404–413.
func ClopperPearson(k, n float64, alt Alternative, confLevel float64) (lower, upper float64) {
	mustTestArgs("ClopperPearson", alt, confLevel)
	k, n = math.Round(k), math.Round(n)
	if !(n >= 1) || !(k >= 0) || k > n || math.IsInf(n, 1) {
		panic("stat: ClopperPearson: need 0 ≤ k ≤ n, n ≥ 1")
	}
	etaL, etaU := clopperPearsonLogit(k, n, alt, confLevel)
	return expit(etaL), expit(etaU)
}

// mustTestArgs panics, naming fn, unless alt is a known alternative and
// confLevel is in (0, 1).
func mustTestArgs(fn string, alt Alternative, confLevel float64) {
	mustAlternative(fn, alt)
	if !(confLevel > 0 && confLevel < 1) {
		panic("stat: " + fn + ": confLevel must be in (0, 1)")
	}
}

// binomTestPQ returns the p-value of the exact binomial test of H0: π = p
// for x successes in n trials, q = 1 − p given separately so that a p
// close to 1 loses nothing:
//
//	Greater:  Pr(X ≥ x)
//	Less:     Pr(X ≤ x)
//	TwoSided: Σ Pr(X = i) over the i with Pr(X = i) ≤ Pr(X = x)·(1 + 10⁻⁷)
//
// with X ~ Binomial(n, p), as R's binom.test(x, n, p)$p.value and
// scipy.stats.binomtest(x, n, p).pvalue.
func binomTestPQ(x, n, p, q float64, alt Alternative) float64 {
	switch alt {
	case Less:
		return binomLowerTail(x, n, p, q)
	case Greater:
		return binomUpperTail(x, n, p, q)
	}
	if p == 0 {
		return b2f(x == 0)
	}
	if q == 0 {
		return b2f(x == n)
	}
	m := n * p
	if x == m {
		return 1
	}
	// Compare densities in log space: R compares dbinom(i) <= d*relErr,
	// which is the same up to rounding but cannot underflow.
	ld := binomLogPMF(x, n, p, q) + math.Log1p(1e-7)
	f := func(i float64) float64 { return binomLogPMF(i, n, p, q) }
	var pv float64
	if x < m {
		// The density is non-increasing on [ceil(m), n]: find the first
		// j there with f(j) <= ld; the tail from j on is the other side.
		j := n + 1
		if lo := math.Ceil(m); f(n) <= ld {
			j = lo + float64(sort.Search(int(n-lo), func(i int) bool { return f(lo+float64(i)) <= ld }))
		}
		pv = binomLowerTail(x, n, p, q) + binomUpperTail(j, n, p, q)
	} else {
		// The density is non-decreasing on [0, floor(m)]: find the last
		// j there with f(j) <= ld, before the first with f(j) > ld.
		j := -1.0
		if f(0) <= ld {
			j = float64(sort.Search(int(math.Floor(m))+1, func(i int) bool { return f(float64(i)) > ld })) - 1
		}
		pv = binomLowerTail(j, n, p, q) + binomUpperTail(x, n, p, q)
	}
	return math.Min(1, pv)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// binomUpperTail returns Pr(X ≥ k) for X ~ Binomial(n, p), q = 1 − p.
func binomUpperTail(k, n, p, q float64) float64 {
	_, up := binomTailsLog(k-1, n, p, q)
	return math.Exp(up)
}

// binomLowerTail returns Pr(X ≤ k) for X ~ Binomial(n, p), q = 1 − p.
func binomLowerTail(k, n, p, q float64) float64 {
	lo, _ := binomTailsLog(k, n, p, q)
	return math.Exp(lo)
}

// binomApproxMin is the n·min(p, q) beyond which binomTailsLog uses the
// normal approximation of the signed root of the deviance: both exact
// methods take O(√(n min(p, q))) steps (the sum never ends beyond 2⁵³
// trials, where k ± 1 = k), while the approximation's relative error,
// O(1/(n p q)), is then negligible.
const binomApproxMin = 1e8

// binomTailsNormalLog returns log Pr(X ≤ k) and log Pr(X ≥ k+1) for
// X ~ Binomial(n, p) by the normal approximation of the signed root of the
// deviance with a continuity correction: with x = k + ½,
//
//	r = sign(x − n p) √(2 [x log(x/(n p)) + (n − x) log((n − x)/(n q))])
//	Pr(X ≤ k) ≈ Φ(r),  Pr(X ≥ k+1) ≈ Φ(−r)
//
// accurate on the log scale far into the tails (Cressie and Read's
// likelihood-ratio root; Loader's bd0 for the deviance). For n p q large.
func binomTailsNormalLog(k, n, p, q float64) (lower, upper float64) {
	x := k + 0.5
	r := math.Sqrt(2 * devPair(x, n-x, p, q))
	if x < n*p {
		r = -r
	}
	return logNormCDF(r), logNormCDF(-r)
}

// binomTailsLog returns log Pr(X ≤ k) and log Pr(X ≥ k+1) for
// X ~ Binomial(n, p), q = 1 − p given separately. The smaller tail is
// computed directly and the other as its complement. Usually the tail is
// the regularized incomplete beta function,
//
//	Pr(X ≥ k+1) = I_p(k+1, n−k),
//
// by its continued fraction; when p or q is below 0.01 the continued
// fraction would be evaluated close to 1, where it loses about
// log10(1/min(p, q)) digits, and the tail is summed instead from k
// outward, term ratios with the density recomputed every 64 terms, which
// takes O(√(n min(p, q))) terms. Beyond n·min(p, q) = binomApproxMin both
// take too long, and binomTailsNormalLog approximates the tails.
func binomTailsLog(k, n, p, q float64) (lower, upper float64) {
	ninf := math.Inf(-1)
	switch {
	case k < 0:
		return ninf, 0
	case k >= n:
		return 0, ninf
	case p == 0:
		return 0, ninf
	case q == 0:
		return ninf, 0
	}
	if n*math.Min(p, q) > binomApproxMin {
		return binomTailsNormalLog(k, n, p, q)
	}
	if math.Min(p, q) >= 0.01 {
		ip, iq, _ := betaIncLog(k+1, n-k, p, q)
		return iq, ip
	}
	if n >= 1<<53 && p > q {
		// Beyond 2⁵³ trials a count near n·p cannot be stepped by one
		// (k − 1 = k): count the failures instead, Y = n − X ~
		// Binomial(n, q), whose mean n·q ≤ binomApproxMin can.
		lo, up := binomTailsLog(n-k-1, n, q, p)
		return up, lo
	}
	if k <= n*p {
		lower = binomSumLog(k, -1, n, p, q)
		return lower, math.Log1p(-math.Exp(lower))
	}
	upper = binomSumLog(k+1, 1, n, p, q)
	return math.Log1p(-math.Exp(upper)), upper
}

// binomSumLog returns log Σ Pr(X = j) over j = k, k+dir, k+2·dir, … (dir =
// −1: down to 0; dir = 1: up to n), stopping when the terms no longer
// change the sum; the terms must decrease in that direction.
func binomSumLog(k, dir, n, p, q float64) float64 {
	l0 := binomLogPMF(k, n, p, q)
	r := q / p
	if dir > 0 {
		r = p / q
	}
	sum, term := 1.0, 1.0
	for j, i := k, 1; (dir < 0 && j > 0) || (dir > 0 && j < n); j, i = j+dir, i+1 {
		if i%64 == 0 { // re-anchor, so rounding cannot accumulate
			term = math.Exp(binomLogPMF(j+dir, n, p, q) - l0)
		} else if dir < 0 { // Pr(X = j−1)/Pr(X = j) = j/(n−j+1) · q/p
			term *= j / (n - j + 1) * r
		} else { // Pr(X = j+1)/Pr(X = j) = (n−j)/(j+1) · p/q
			term *= (n - j) / (j + 1) * r
		}
		sum += term
		if term < 0x1p-53*sum {
			break
		}
	}
	return l0 + math.Log(sum)
}

// clopperPearsonLogit returns the logits of the Clopper–Pearson bounds for
// x successes in n ≥ 1 trials (±Inf for 0 and 1).
func clopperPearsonLogit(x, n float64, alt Alternative, confLevel float64) (lo, hi float64) {
	lo, hi = math.Inf(-1), math.Inf(1)
	switch alt {
	case TwoSided:
		a := (1 - confLevel) / 2
		lo, hi = cpLowerLogit(x, n, a), cpUpperLogit(x, n, a)
	case Greater:
		lo = cpLowerLogit(x, n, 1-confLevel)
	case Less:
		hi = cpUpperLogit(x, n, 1-confLevel)
	}
	return lo, hi
}

// cpLowerLogit solves Pr(X ≥ x; θ) = I_θ(x, n−x+1) = alpha for η = logit θ.
func cpLowerLogit(x, n, alpha float64) float64 {
	if x <= 0 {
		return math.Inf(-1)
	}
	la := math.Log(alpha)
	if x >= n { // θⁿ = α
		t := la / n
		return t - math.Log(-math.Expm1(t))
	}
	g := func(eta float64) float64 { // increasing in η
		_, lu := binomTailsLog(x-1, n, expit(eta), expit(-eta))
		return lu - la
	}
	// Start from the normal approximation on the logit scale.
	se := math.Sqrt(n / (x * (n - x)))
	z := distuv.UnitNormal.Quantile(1 - alpha)
	return rootIncreasing(g, math.Log(x/(n-x))-z*se, se/4)
}

// cpUpperLogit solves Pr(X ≤ x; θ) = 1 − I_θ(x+1, n−x) = alpha for η = logit θ.
func cpUpperLogit(x, n, alpha float64) float64 {
	if x >= n {
		return math.Inf(1)
	}
	la := math.Log(alpha)
	if x <= 0 { // (1−θ)ⁿ = α
		t := la / n
		return math.Log(-math.Expm1(t)) - t
	}
	g := func(eta float64) float64 { // increasing in η
		ll, _ := binomTailsLog(x, n, expit(eta), expit(-eta))
		return la - ll
	}
	se := math.Sqrt(n / (x * (n - x)))
	z := distuv.UnitNormal.Quantile(1 - alpha)
	return rootIncreasing(g, math.Log(x/(n-x))+z*se, se/4)
}

// rootIncreasing returns the root of an increasing function g near the
// guess x0: RootOutward from x0 with the first step h, rightward when
// g(x0) < 0, then Root to 1e-14 (absolute below 1, relative above). A NaN
// of g, which only an underflow far in a tail could produce, counts as
// that tail's side; 2000 away from x0 (on the logit or log scale, θ or t
// beyond e^±2000) the search stops.
func rootIncreasing(g func(float64) float64, x0, h float64) float64 {
	f := func(x float64) float64 {
		v := g(x)
		if math.IsNaN(v) {
			return math.Copysign(math.Inf(1), x-x0)
		}
		return v
	}
	f0 := f(x0)
	if f0 > 0 {
		h = -h
	}
	x, _ := rootOutward(f, x0, f0, h, 2000, 1e-14)
	return x
}
