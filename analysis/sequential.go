package analysis

// Anytime-valid statistics: the tests behind continuous judging.
//
// The fixed-sample tests of this package (RateTest, WelchContrastTest,
// MannWhitney) hold their level at one look at the data. Judged after every
// batch, their chance of ever rejecting a canary identical to its baseline
// grows with the number of looks (about 70% over 10,000 looks for a
// repeated Mann-Whitney test; Netflix, "Sequential A/B testing keeps the
// world streaming", part 1, 2024). The statistics of the sequential*.go
// files keep their level however often, and whenever, one looks:
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
//     and Pr(∃t: p_t ≤ α) ≤ α; more generally any p_t with that property is
//     an anytime-valid p-value (SeqQuantileTest's is of that kind);
//   - a confidence sequence (lo_t, hi_t) covers the parameter at all times
//     simultaneously with probability ≥ 1 − α; its running intersection
//     (max of lo, min of hi) is one too.
//
// The tests are one-sided against the tolerance boundary, as the
// fixed-sample tests of evaluate.go: for bad direction increase,
//
//	H0: canary ≤ (1 + tolerance) · baseline   vs   H1: canary > (1 + tolerance) · baseline,
//
// with 1 − tolerance and Less for decrease. Each e-process below is a
// supermartingale under every point of that composite null, not only at
// its boundary: its mixing distribution puts mass only on the alternative
// side, and each likelihood ratio against the boundary is a supermartingale
// below it (monotone likelihood ratio).
//
// # What the judge calls
//
// α' below is the metric's share of the family-wise level (see Holm).
//
//   - Rate metrics (errors/requests): RateBoundaryEValue(baseline events,
//     canary events, ρ, RateBoundaryK, 1 ± tol, Greater/Less) on the
//     cumulative counts, with ρ the canary's share of the cumulative
//     exposure; p = min(1, 1/E). The closed form is exact when the canary's
//     share of traffic is constant over the run (a one-box, a fixed
//     weight); any common rate over time (a traffic dip with errors shared
//     by both cohorts) cancels in the conditional test. When the share
//     changes during the run (a weight ramp), SeqRate, fed one Add per
//     interval with both cohorts' counts and exposures over that interval,
//     is the exact alternative (its P and CS); it needs per-interval state
//     that the judge does not keep yet.
//   - Mean metrics: SeqMean(canary, baseline, 1 ± tol, Greater/Less, α',
//     n0) on the running Moments, with n0 the metric's min_samples, judged
//     only once both cohorts reach n0. The judge uses the current e-value,
//     which is valid (Ville's inequality holds at every look); the running
//     maximum would be slightly more powerful but needs state across looks.
//   - Distribution metrics: two anytime-valid tests, Bonferroni-combined
//     (2·min p): SeqMean on the Moments of the log values (the canary's
//     mean lowered by log(1 ± tol), c = 1: a geometric-mean ratio, the
//     powerful test of a multiplicative shift), and SeqQuantileTest at
//     p = 0.5 and 0.9 (MinN = min_samples, RelErr = DistBinRelErr once
//     either Dist is binned), robust and sensitive to a tail that moves
//     alone. The quantile band alone is conservative: in simulation
//     (sequential_sim_test.go) a 1.2× shift against the null 1.1× of a
//     lognormal latency with σ = 0.5 needs about 9,000 observations per
//     cohort, where SeqMean on the log values needs about 1,000.
//   - Instances: every test runs on effective sample sizes (counts and
//     exposures, Moments, bin counts divided by DesignEffect's φ), see
//     Instances below.
//   - Windows (Config.Window): the p-value of each metric is combined with
//     those of the same tests on the samples since the start of each recent
//     epoch, by weighted Bonferroni (Judge's withWindows).
//   - Proportions (conversions/visits): a rate with the trials as
//     exposure while events are rare (≲ a few %, where binomial counts are
//     nearly Poisson); otherwise SeqMean on BernoulliMoments.
//
// Across metrics, Holm's procedure on anytime p-values keeps the
// family-wise error under continuous monitoring: the first time a true null
// is rejected, its p-value is at most α/m₀ (m₀ true nulls), so
// Pr(ever) ≤ Σ_{true nulls} Pr(∃t: p_t ≤ α/m₀) ≤ α. Benjamini–Hochberg and
// Simes are not safe with data-dependent stopping. The gate (min_samples,
// min_total) still applies: SeqMean's validity is asymptotic, and
// SeqQuantileTest's band, whose MinN is best set to the gate, answers
// P = 1 below it.
//
// # Instances
//
// Every method here assumes that, given the past, the observations of a
// batch are independent draws (requests for SeqMean and SeqQuantileTest,
// Poisson events for SeqRate). Requests of one instance are not: a slow
// host, a noisy neighbour or a warm cache moves all of them together.
// Two kinds of instance effect must be told apart.
//
//   - Shared effects (a traffic dip or a downstream incident that hits both
//     cohorts) need nothing: SeqRate conditions on each interval's events,
//     whatever the common rate, and a shift shared by both cohorts cancels
//     in every contrast.
//   - Transient effects (a noisy neighbour for a few minutes, a GC storm)
//     are handled by changing the unit of analysis: aggregate per instance
//     and interval, and feed the aggregates as the observations — the mean
//     latency of each instance-minute into the Moments of SeqMean — so
//     that independence is needed across intervals, not within them.
//     SeqRate is fed per interval already.
//   - Persistent effects (one instance is 8% slower, or fails twice as
//     often, for the whole run) are not averaged away by time. With k
//     instances per cohort, the cohort difference carries an instance term
//     of standard deviation σ_inst·√(1/k_C + 1/k_B) that no amount of data
//     shrinks, while every test that accumulates evidence over time (all
//     the e-processes here) eventually rejects whenever that term pushes
//     the canary beyond the tolerance. In simulation (σ_inst = 0.08 on
//     latency or 0.3 on error rates, tolerance 10%, α = 0.05), SeqMean on
//     pooled requests and SeqRate on cohort totals roll back 31–34% of A/A
//     runs. SeqMeanInstances, on one Moments per instance (BernoulliMoments
//     for error counts), floors the variance of the contrast with the
//     between-instance variance estimated from both cohorts' instances (a
//     cluster-robust variance) and rolls back 2–3% of the same runs, with
//     5+5 instances or a one-box beside 9. The judge keeps one Moments
//     per instance, metric and cohort (Instances, in Data) and turns the
//     same clustered variance into a design effect φ (DesignEffect) by
//     which it divides every test's sample sizes; it needs at least three
//     instances in all. With one instance per cohort an instance effect
//     cannot be told from a regression by any method, and the tolerance
//     must cover it.

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
