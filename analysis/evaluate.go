package analysis

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"
)

// evaluate computes the evidence of one metric: summaries, effect, the
// p-value of its rollback test and its gate. Judge turns it into a
// decision after adjusting the p-values of all metrics together.
//
// The rollback test of every type is one-sided in the bad direction, with
// the tolerance as its null boundary: for bad_direction increase,
//
//	H0: canary ≤ (1 + tolerance) · baseline   vs   H1: canary > (1 + tolerance) · baseline
//
// (with 1 − tolerance and the other side for decrease, and both one-sided
// tests with twice the smaller p-value for both). A canary within its
// tolerance is therefore rolled back with probability at most α.
//
// With seq, the p-values are anytime-valid (sequential*.go): rejecting
// whenever p ≤ α at any look keeps the level under continuous judging.
//
// Requests of one instance are not independent. When the samples name
// three or more instances in all, every test (and the gate) runs on
// effective sample sizes, each cohort's divided by the metric's design
// effect φ (DesignEffect: the cluster-robust variance of the contrast over
// the variance for independent samples, with a small-sample allowance), so
// that a canary that differs from its baseline only by the hosts it runs
// on is not rolled back however long it is watched.
//
// With pOnly, only P (and the summaries) are computed: the window tests
// need nothing else.
func evaluate(m *Metric, md *MetricData, cfg *Config, seq, pOnly bool) MetricResult {
	r := MetricResult{
		Name: m.Name, Category: m.Category, Type: m.Type, BadDirection: m.BadDirection,
		Tolerance: m.Tolerance, Critical: m.Critical,
		P: 1, AdjustedP: 1,
		Effect: Effect{Estimate: Float(math.NaN()), Lower: Float(math.NaN()), Upper: Float(math.NaN()), ConfLevel: cfg.Confidence},
	}
	b, c := &md.Cohorts[Baseline], &md.Cohorts[Canary]
	r.Baseline.Warmup, r.Canary.Warmup = b.Warmup, c.Warmup
	g := gateSpec{
		alpha: cfg.Alpha() / float64(len(cfg.Metrics)), // Holm's first step
		power: cfg.Power,
		m:     m,
		seq:   seq,
		pOnly: pOnly,
	}
	g.kb, g.kc = b.Instances.Len(), c.Instances.Len()
	g.phi = 1
	if g.kb+g.kc > 2 { // fewer instances carry no between-instance variance
		zcrit := distuv.UnitNormal.Quantile(1 - g.alpha)
		if seq {
			zcrit = SeqMeanBoundary(min(0.5, 2*g.alpha))
		}
		g.phi = DesignEffect(c.Instances.moments(), b.Instances.moments(), 1, g.alpha, zcrit)
	}
	switch m.Type {
	case TypeRate:
		evalRate(&r, m, b, c, cfg, g)
	case TypeMean:
		evalMean(&r, m, b, c, cfg, g)
	default:
		evalDistribution(&r, m, b, c, cfg, g)
	}
	r.Baseline.Instances, r.Canary.Instances = g.kb, g.kc
	return r
}

// gateSpec carries what every gate computation needs.
type gateSpec struct {
	alpha float64 // one-sided level of the rollback test at its strictest
	power float64
	m     *Metric
	seq   bool    // anytime-valid tests
	phi   float64 // design effect of the instances (≥ 1)
	kb    int     // instances of the baseline
	kc    int     // instances of the canary
	pOnly bool    // skip the effect and the gate
}

// instanceNote is appended to the test's name when the instances
// inflate the variance.
func (g gateSpec) instanceNote() string {
	if g.phi <= 1 {
		return ""
	}
	return fmt.Sprintf("; effective samples ÷%.3g for %d+%d instances (cluster-robust variance)",
		g.phi, g.kb, g.kc)
}

// clusterP returns the one-sided p-value p of a test that assumed
// independent samples, corrected for the design effect φ through its
// normal score: p' = Φ(Φ⁻¹(p)/√φ). It is exact for a z-test, whose score
// scales with the square root of the effective sample size.
func clusterP(p, phi float64) float64 {
	if phi <= 1 || p <= 0 || p >= 1 {
		return p
	}
	return distuv.UnitNormal.CDF(distuv.UnitNormal.Quantile(p) / math.Sqrt(phi))
}

// zSum returns z_{1−α'} + z_{power}, with α' halved for a two-sided metric.
func (g gateSpec) zSum() float64 {
	a := g.alpha
	if g.m.BadDirection == Both {
		a /= 2
	}
	return distuv.UnitNormal.Quantile(1-a) + distuv.UnitNormal.Quantile(g.power)
}

// thresholds returns the null boundary of the rollback test (1 ± tolerance)
// and the alternative the gate must detect (1 ± (tolerance + detectable
// effect)), for one bad direction.
func thresholds(m *Metric, dir Direction) (null, alt float64) {
	if dir == Decrease {
		return 1 - m.Tolerance, 1 - m.Tolerance - m.DetectableEffect
	}
	return 1 + m.Tolerance, 1 + m.Tolerance + m.DetectableEffect
}

// directions lists the one-sided tests a bad direction needs.
func directions(d Direction) []Direction {
	if d == Both {
		return []Direction{Increase, Decrease}
	}
	return []Direction{d}
}

// combineP combines the one-sided p-values of a metric: the p-value itself
// for one direction, twice the smaller (Bonferroni) for both.
func combineP(ps []float64) float64 {
	p := ps[0]
	if len(ps) == 2 {
		p = min(1, 2*min(ps[0], ps[1]))
	}
	return p
}

func alternativeOf(dir Direction) Alternative {
	if dir == Decrease {
		return Less
	}
	return Greater
}

// hlExactPairs is the number of pairs up to which the effect of a
// distribution metric is computed on the raw values.
const hlExactPairs = 250_000

// evalDistribution judges a distribution metric with the Mann-Whitney U
// test of the canary scaled by the tolerance against the baseline. The test
// is invariant under monotone transforms, so comparing canary/(1+tol) with
// baseline is the rank test of a multiplicative shift of (1+tol): "10%
// slower" means every quantile 10% higher. The effect is the Hodges-Lehmann
// estimate of the ratio canary/baseline.
func evalDistribution(r *MetricResult, m *Metric, b, c *CohortData, cfg *Config, g gateSpec) {
	bb, cb := b.Dist.Bins(), c.Dist.Bins()
	nb, nc := float64(b.Dist.N()), float64(c.Dist.N())
	r.Baseline = distSummary(&b.Dist, bb, b.Warmup)
	r.Canary = distSummary(&c.Dist, cb, c.Warmup)
	r.Test = "Mann-Whitney U (one-sided, scaled by the tolerance); Hodges-Lehmann ratio"
	if nb == 0 || nc == 0 {
		noData(r, m, nb, nc, "observations")
		return
	}
	ps := make([]float64, 0, 2)
	exact := b.Dist.Exact() && c.Dist.Exact()
	for _, dir := range directions(m.BadDirection) {
		null, _ := thresholds(m, dir)
		if g.seq {
			// Two anytime-valid tests of the same hypothesis, Bonferroni
			// combined: the geometric mean (powerful for a shift of the
			// whole distribution) and the p50/p90 quantiles (robust, and
			// sensitive to a tail that moves alone).
			ecb, ebb := effectiveBins(cb, g.phi), effectiveBins(bb, g.phi)
			pl := seqLogMeanP(ecb, ebb, null, dir, m, exact, g.alpha)
			pq := seqQuantileP(ecb, ebb, null, dir, m, exact)
			ps = append(ps, min(1, 2*min(pl, pq)))
			continue
		}
		res := MannWhitney(scaleBins(cb, 1/null), bb, MWUOptions{Alternative: alternativeOf(dir)})
		ps = append(ps, clusterP(res.P, g.phi))
		if res.Exact {
			r.Test = "Mann-Whitney U exact (one-sided, scaled by the tolerance); Hodges-Lehmann ratio"
		}
	}
	if g.seq {
		r.Test = "anytime-valid tests of the geometric mean (mixture SPRT on log values) and of p50, p90 (time-uniform DKW bands), Bonferroni; Hodges-Lehmann ratio (fixed-sample interval)"
	}
	r.Test += g.instanceNote()
	r.P = combineP(ps)
	if g.pOnly {
		return
	}
	// The Hodges-Lehmann estimate is an order statistic of nb·nc pairwise
	// ratios; on large raw samples it is found on the binned view of the
	// data (resolution ≤ 0.39%), which bounds its cost by the bins.
	hx, hy := cb, bb
	if nb*nc > hlExactPairs {
		hx, hy = rebin(cb), rebin(bb)
	}
	hl := HodgesLehmannRatio(hx, hy, cfg.Confidence, TwoSided)
	r.Effect.Estimate, r.Effect.Lower, r.Effect.Upper = Float(hl.Estimate), Float(hl.Lower), Float(hl.Upper)

	// Gate. Noether's sample size for the Mann-Whitney test (Noether, "Sample
	// size determination for some common nonparametric tests", JASA 82, 1987):
	//
	//	N = (z_{1−α} + z_{power})² / (12 q (1 − q) (P₁ − ½)²)
	//
	// with q the canary's share of observations and P₁ = P(X/(1+tol) > Y)
	// when the canary X is the baseline scaled by 1+tol+effect, estimated
	// from the baseline against itself.
	need := 0.0
	for _, dir := range directions(m.BadDirection) {
		null, alt := thresholds(m, dir)
		u := MannWhitney(scaleBins(bb, alt/null), bb, MWUOptions{}).U
		p1 := u / (nb * nb)
		need = max(need, g.phi*g.zSum()*g.zSum()/(12*(p1-0.5)*(p1-0.5)))
	}
	setGate(r, g, nb, nc, float64(m.MinSamples), need, "observations", "no spread in the baseline to measure a relative change")
}

// seqQuantileP is the anytime p-value of H0 "Q_C(p) ≤ null·Q_B(p)" (for an
// increase; ≥ for a decrease) at the median and the 90th percentile: the
// smaller of the two is valid as is, because one time-uniform band covers
// every quantile (SeqQuantileTest).
func seqQuantileP(cb, bb []Bin, null float64, dir Direction, m *Metric, exact bool) float64 {
	opts := SeqQuantileOptions{Alternative: alternativeOf(dir), MinN: float64(m.MinSamples)}
	if !exact {
		opts.RelErr = DistBinRelErr
	}
	p := 1.0
	for _, q := range []float64{0.5, 0.9} {
		p = min(p, SeqQuantileTest(cb, bb, q, null, opts).P)
	}
	return p
}

// seqLogMeanP is the anytime p-value of H0 "the canary's geometric mean is
// at most null times the baseline's" (for an increase; at least, for a
// decrease): SeqMean on the Moments of the log values, the canary's
// shifted by −log(null), so that a multiplicative shift of the whole
// distribution, the usual form of a latency regression, is a shift of the
// mean. Values of 0 count as half the smallest positive value of either
// cohort. Binned values are within DistBinRelErr of the data, so each
// cohort's mean log is within δ = log(1 + DistBinRelErr) of the data's: the
// null is moved by 2δ against the alternative, which keeps the test valid
// for the unbinned data. Below the gate's floor (min_samples per cohort)
// the answer is 1, as SeqMean's guarantee is asymptotic.
func seqLogMeanP(cb, bb []Bin, null float64, dir Direction, m *Metric, exact bool, alpha float64) float64 {
	floor := math.Inf(1)
	for _, bins := range [2][]Bin{cb, bb} {
		for _, b := range bins {
			if b.Value > 0 {
				floor = min(floor, b.Value/2)
				break
			}
		}
	}
	if math.IsInf(floor, 1) {
		return 1 // every value is 0
	}
	logMoments := func(bins []Bin) Moments {
		var lm Moments
		for _, b := range bins {
			lm.Merge(Moments{N: b.Count, Mean: math.Log(max(b.Value, floor))})
		}
		return lm
	}
	x, y := logMoments(cb), logMoments(bb)
	n0 := max(1, float64(m.MinSamples))
	if x.N < n0 || y.N < n0 {
		return 1
	}
	shift := math.Log(null)
	if !exact {
		margin := 2 * math.Log1p(DistBinRelErr)
		if dir == Decrease {
			margin = -margin
		}
		shift += margin
	}
	x.Mean -= shift
	e, _, _ := SeqMean(x, y, 1, alternativeOf(dir), alpha, n0)
	return min(1, 1/e)
}

func distSummary(d *Dist, bins []Bin, warm uint64) Summary {
	return Summary{N: float64(d.N()), Median: quantile(bins, 0.5), P99: quantile(bins, 0.99), Mean: d.Mean(), Warmup: warm}
}

// scaleBins returns the bins with every value multiplied by s > 0.
func scaleBins(bins []Bin, s float64) []Bin {
	out := make([]Bin, len(bins))
	for i, b := range bins {
		out[i] = Bin{Value: b.Value * s, Count: b.Count}
	}
	return out
}

// evalRate judges a rate metric with the exact conditional test of the
// rate ratio (RateTest), which accounts for each cohort's exposure, so a
// one-box serving 10% of the traffic is judged fairly.
func evalRate(r *MetricResult, m *Metric, b, c *CohortData, cfg *Config, g gateSpec) {
	r.Baseline = Summary{Count: b.Count, Total: b.Total, Rate: safeDiv(b.Count, b.Total), Warmup: b.Warmup}
	r.Canary = Summary{Count: c.Count, Total: c.Total, Rate: safeDiv(c.Count, c.Total), Warmup: c.Warmup}
	r.Test = "exact conditional binomial test of the rate ratio (Poisson; R poisson.test)"
	if b.Total == 0 || c.Total == 0 {
		noData(r, m, b.Total, c.Total, m.ExposureUnit)
		return
	}
	// ρ, the canary's share of exposure, from the cumulative exposures.
	rho := c.Total / (b.Total + c.Total)
	// Effective counts: the events and exposures divided by the design
	// effect (a quasi-Poisson dispersion), the same rates with less
	// information.
	bk, ck := b.Count/g.phi, c.Count/g.phi
	ps := make([]float64, 0, 2)
	for _, dir := range directions(m.BadDirection) {
		null, _ := thresholds(m, dir)
		if g.seq {
			e := RateBoundaryEValue(bk, ck, rho, RateBoundaryK, null, alternativeOf(dir))
			ps = append(ps, min(1, 1/e))
			continue
		}
		ps = append(ps, RateTest(bk, b.Total/g.phi, ck, c.Total/g.phi, null, alternativeOf(dir), cfg.Confidence).P)
	}
	r.Test += g.instanceNote()
	r.P = combineP(ps)
	if g.pOnly {
		return
	}
	est := RateTest(b.Count, b.Total, c.Count, c.Total, 1, TwoSided, cfg.Confidence)
	r.Effect.Estimate, r.Effect.Lower, r.Effect.Upper = Float(est.Ratio), Float(est.Lower), Float(est.Upper)
	if g.seq {
		r.Test = "anytime-valid beta-mixture e-value of the rate ratio, prior centred at the tolerance boundary (after Lindon & Malek 2022); confidence sequence"
		r.Test += g.instanceNote()
		lo, hi := RateMixtureCS(bk, ck, rho, DefaultSeqRateK, cfg.Alpha())
		r.Effect.Lower, r.Effect.Upper = Float(lo), Float(hi)
	}

	// Gate. Given N events, the canary's N_C ~ Binomial(N, θ); the test of
	// θ₀ against θ₁ needs (normal approximation to the binomial)
	//
	//	N = ((z_{1−α} √(θ₀(1−θ₀)) + z_{power} √(θ₁(1−θ₁))) / (θ₁ − θ₀))²
	//
	// events, with θ = ρr/(1 − ρ + ρr) and ρ the canary's share of
	// exposure. The pooled event rate converts events into exposure.
	events := b.Count + c.Count
	need := 0.0
	a := g.alpha
	if m.BadDirection == Both {
		a /= 2
	}
	za, zb := distuv.UnitNormal.Quantile(1-a), distuv.UnitNormal.Quantile(g.power)
	for _, dir := range directions(m.BadDirection) {
		null, alt := thresholds(m, dir)
		t0, t1 := rho*null/(1-rho+rho*null), rho*alt/(1-rho+rho*alt)
		n := (za*math.Sqrt(t0*(1-t0)) + zb*math.Sqrt(t1*(1-t1))) / (t1 - t0)
		need = max(need, n*n)
	}
	total := b.Total + c.Total
	var needExposure float64
	switch {
	case events == 0:
		// No events in either cohort: nothing to compare a relative change
		// with. Once both floors are met, the absence of events passes.
		needExposure = total
	default:
		needExposure = g.phi * need / (events / total)
	}
	setGateExposure(r, g, b.Total, c.Total, needExposure, events == 0)
}

// evalMean judges a mean metric with Welch's t-test of the contrast
// mean_C − (1 ± tol)·mean_B.
func evalMean(r *MetricResult, m *Metric, b, c *CohortData, cfg *Config, g gateSpec) {
	bm, cm := b.Moments, c.Moments
	r.Baseline = Summary{N: bm.N, Mean: bm.Mean, SD: math.Sqrt(bm.Variance()), Warmup: b.Warmup}
	r.Canary = Summary{N: cm.N, Mean: cm.Mean, SD: math.Sqrt(cm.Variance()), Warmup: c.Warmup}
	r.Test = "Welch's t-test of the contrast canary − (1 ± tolerance)·baseline"
	if bm.N < 2 || cm.N < 2 {
		noData(r, m, bm.N, cm.N, "observations")
		if bm.N > 0 && cm.N > 0 {
			r.Reason = fmt.Sprintf("%s: a mean needs at least 2 observations per cohort", m.Name)
		}
		return
	}
	ps := make([]float64, 0, 2)
	ecm, ebm := effectiveMoments(cm, g.phi), effectiveMoments(bm, g.phi)
	for _, dir := range directions(m.BadDirection) {
		null, _ := thresholds(m, dir)
		if g.seq {
			e, _, _ := SeqMean(ecm, ebm, null, alternativeOf(dir), g.alpha, max(1, float64(m.MinSamples)))
			ps = append(ps, min(1, 1/e))
			continue
		}
		ps = append(ps, WelchContrastTest(ecm, ebm, null, alternativeOf(dir), cfg.Confidence).P)
	}
	if g.seq {
		r.Test = "anytime-valid mixture SPRT of the contrast canary − (1 ± tolerance)·baseline (Johari et al. 2022); Fieller ratio (fixed-sample interval)"
	}
	r.Test += g.instanceNote()
	r.P = combineP(ps)
	if g.pOnly {
		return
	}
	w := WelchTest(cm, bm, 0, TwoSided, cfg.Confidence)
	r.Effect.Estimate, r.Effect.Lower, r.Effect.Upper = Float(1+w.Rel), Float(1+w.RelLower), Float(1+w.RelUpper)

	// Gate: the contrast X̄ − cȲ has variance s_X²/n_X + c² s_Y²/n_Y; to
	// detect a true ratio a against the null c with the normal
	// approximation, N = z² (s_X²/q + c² s_Y²/(1−q)) / ((a − c) Ȳ)².
	q := cm.N / (bm.N + cm.N)
	need := 0.0
	for _, dir := range directions(m.BadDirection) {
		null, alt := thresholds(m, dir)
		delta := (alt - null) * bm.Mean
		n := g.phi * g.zSum() * g.zSum() * (cm.Variance()/q + null*null*bm.Variance()/(1-q)) / (delta * delta)
		need = max(need, n)
	}
	setGate(r, g, bm.N, cm.N, float64(m.MinSamples), need, "observations", "the baseline mean is 0: a relative change cannot be measured")
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func noData(r *MetricResult, m *Metric, nb, nc float64, unit string) {
	r.Outcome = OutcomeNoData
	r.Gate = Gate{NeedBaseline: Float(math.Inf(1)), NeedCanary: Float(math.Inf(1)), Unit: unit}
	var missing []string
	if nb == 0 {
		missing = append(missing, "baseline")
	}
	if nc == 0 {
		missing = append(missing, "canary")
	}
	r.Reason = fmt.Sprintf("%s: no %s data", m.Name, strings.Join(missing, " and no "))
	if len(missing) == 0 {
		r.Reason = fmt.Sprintf("%s: not enough data to test", m.Name)
	}
}

// setGate fills the gate of a metric counted in observations from the
// floor and the total sample size the power calculation needs at the
// current split between the cohorts.
func setGate(r *MetricResult, gs gateSpec, nb, nc, floor, needTotal float64, unit, whyInf string) {
	q := nc / (nb + nc)
	g := Gate{Unit: unit, FloorMet: nb >= floor && nc >= floor}
	powerB, powerC := math.Inf(1), math.Inf(1)
	if !math.IsInf(needTotal, 0) && !math.IsNaN(needTotal) {
		powerB, powerC = max(0, (1-q)*needTotal-nb), max(0, q*needTotal-nc)
	}
	g.PowerMet = powerB == 0 && powerC == 0
	g.NeedBaseline = Float(max(powerB, floor-nb, 0))
	g.NeedCanary = Float(max(powerC, floor-nc, 0))
	g.Ready = g.FloorMet && g.PowerMet
	r.Gate = g
	r.Outcome = OutcomeHold
	if g.Ready {
		r.Outcome = OutcomePass
		r.Reason = passReason(r)
		return
	}
	r.Reason = holdReason(r, gs, floor, whyInf)
}

// setGateExposure is setGate for rate metrics, whose gate counts exposure.
func setGateExposure(r *MetricResult, gs gateSpec, eb, ec, needTotal float64, noEvents bool) {
	m := gs.m
	setGate(r, gs, eb, ec, m.MinTotal, needTotal, m.ExposureUnit, "")
	if noEvents && r.Gate.FloorMet {
		r.Gate.PowerMet, r.Gate.Ready = true, true
		r.Gate.NeedBaseline, r.Gate.NeedCanary = 0, 0
		r.Outcome = OutcomePass
		r.Reason = fmt.Sprintf("%s: no events in either cohort (%s and %s %s)", m.Name,
			count(eb), count(ec), m.ExposureUnit)
	}
}

func holdReason(r *MetricResult, gs gateSpec, floor float64, whyInf string) string {
	m, g := gs.m, r.Gate
	nb, nc := float64(g.NeedBaseline), float64(g.NeedCanary)
	if math.IsInf(nb, 1) || math.IsInf(nc, 1) {
		if g.FloorMet && whyInf != "" {
			return fmt.Sprintf("%s: %s", m.Name, whyInf)
		}
		return fmt.Sprintf("%s: no events yet in either cohort to size the sample", m.Name)
	}
	var parts []string
	if nc > 0 {
		parts = append(parts, fmt.Sprintf("about %s more canary %s", count(nc), g.Unit))
	}
	if nb > 0 {
		parts = append(parts, fmt.Sprintf("about %s more baseline %s", count(nb), g.Unit))
	}
	what := fmt.Sprintf("to reach the floor of %s per cohort", count(floor))
	if g.FloorMet || !g.PowerMet {
		sign := "+"
		if m.BadDirection == Decrease {
			sign = "-"
		}
		what = fmt.Sprintf("to detect %s%s beyond the %s tolerance with %s power",
			sign, percent(m.DetectableEffect), percent(m.Tolerance), percent(gs.power))
		if !g.FloorMet {
			what = fmt.Sprintf("to reach the floor of %s per cohort and detect %s%s beyond the %s tolerance",
				count(floor), sign, percent(m.DetectableEffect), percent(m.Tolerance))
		}
	}
	reason := fmt.Sprintf("%s: %s %s", m.Name, strings.Join(parts, " and "), what)
	if gs.phi >= 2 {
		reason += fmt.Sprintf(" (its %d+%d instances differ: each sample counts 1/%.3g; more instances help more than more samples)",
			gs.kb, gs.kc, gs.phi)
	}
	return reason
}

func passReason(r *MetricResult) string {
	return fmt.Sprintf("%s: canary %s baseline %s, within the %s tolerance",
		r.Name, ratio(float64(r.Effect.Estimate)), interval(r.Effect), percent(r.Tolerance))
}

func regressionReason(r *MetricResult, cfg *Config) string {
	crit := ""
	if r.Critical {
		crit = " (critical)"
	}
	return fmt.Sprintf("%s%s: canary %s baseline %s, beyond the %s tolerance (p=%s, Holm-adjusted %s)",
		r.Name, crit, ratio(float64(r.Effect.Estimate)), interval(r.Effect), percent(r.Tolerance),
		pval(r.P), pval(r.AdjustedP))
}

func ratio(v float64) string {
	if math.IsInf(v, 1) {
		return "∞×"
	}
	if math.IsNaN(v) {
		return "?×"
	}
	return strconv.FormatFloat(v, 'f', 3, 64) + "×"
}

func interval(e Effect) string {
	return fmt.Sprintf("(%s CI %s–%s)", percent(e.ConfLevel), ratio(float64(e.Lower)), ratio(float64(e.Upper)))
}

func percent(v float64) string {
	return strconv.FormatFloat(v*100, 'f', -1, 64) + "%"
}

func pval(p float64) string {
	return strconv.FormatFloat(p, 'g', 2, 64)
}

// count formats a non-negative amount with thousands separators, rounding
// up to two significant figures above 1,000 ("about 1,900").
func count(v float64) string {
	v = math.Ceil(v)
	if v >= 1000 {
		mag := math.Pow(10, math.Floor(math.Log10(v))-1)
		v = math.Ceil(v/mag) * mag
	}
	s := strconv.FormatFloat(v, 'f', 0, 64)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
