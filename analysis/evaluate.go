package analysis

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/canaryd/canaryd/analysis/stat"
)

// evaluate computes the evidence of one metric: summaries, effect, the
// p-value of its rollback test, the p-value of its promote test, and its
// gate. Judge turns them into a decision after adjusting the rollback
// p-values of all metrics together.
//
// Every test compares the cohorts within time strata (strata.go) and
// combines the strata, so that a change both cohorts share cancels even
// when the canary's share of traffic changes (see contrast.go and
// ratestrat.go).
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
// The promote test is the mirror image, at the boundary of tolerance plus
// detectable effect and at level 1 − power: for increase,
//
//	H0': canary ≥ (1 + tolerance + detectable) · baseline   vs   H1': canary < (1 + tolerance + detectable) · baseline,
//
// a non-inferiority test (Schuirmann 1987; the confidence-interval
// inclusion principle). A metric passes only when H0' is rejected: a
// canary worse than its baseline by the tolerance plus the detectable
// effect is then promoted with probability at most 1 − power, per metric
// and for the run (an intersection-union test needs no split of the level;
// Berger 1982). Absence of evidence of a regression is never enough.
//
// With seq, both p-values are anytime-valid (the mixture SPRT of
// contrast.go, stat.MixtureSPRT; the mixture e-value of ratestrat.go; see
// the package notes of analysis/stat): rejecting
// whenever p ≤ α at any look keeps the level under continuous judging.
//
// Requests of one instance are not independent. When the samples name
// three or more instances in all, every test runs with the variance of its
// contrast (or its events) inflated by the metric's design effect φ
// (DesignEffect), with a small-sample allowance for few instances.
//
// With from non-zero only the strata from that time on are tested (a
// window test), and with pOnly only P is computed.
func evaluate(d *Data, i int, seq bool, alpha float64, from time.Time, pOnly bool) MetricResult {
	cfg := d.Config()
	m := &cfg.Metrics[i]
	r := MetricResult{
		Name: m.Name, Category: m.Category, Type: m.Type, BadDirection: m.BadDirection,
		Tolerance: m.Tolerance, Critical: m.Critical,
		P: 1, AdjustedP: 1, PromoteP: 1,
		Effect: Effect{Estimate: Float(math.NaN()), Lower: Float(math.NaN()), Upper: Float(math.NaN()), ConfLevel: cfg.Confidence},
	}
	md := d.Metric(i)
	b, c := &md.Cohorts[Baseline], &md.Cohorts[Canary]
	r.Baseline.Warmup, r.Canary.Warmup = b.Warmup, c.Warmup
	s := evalSpec{
		m: m, cfg: cfg, seq: seq, alpha: alpha, beta: 1 - cfg.Power, pOnly: pOnly,
		groups: d.strata.groups(i, m, from),
		n0:     max(2, float64(m.MinSamples)),
	}
	s.kb, s.kc = b.Instances.Len(), c.Instances.Len()
	if m.Type == TypeDistribution {
		s.kb, s.kc = max(s.kb, b.LogInstances.Len()), max(s.kc, c.LogInstances.Len())
	}
	switch m.Type {
	case TypeRate:
		evalRate(&r, b, c, s)
	case TypeMean:
		evalMean(&r, b, c, s)
	default:
		evalDistribution(&r, b, c, s)
	}
	r.Baseline.Instances, r.Canary.Instances = s.kb, s.kc
	return r
}

// evalSpec carries what every evaluation needs.
type evalSpec struct {
	m      *Metric
	cfg    *Config
	seq    bool
	alpha  float64 // level of the metric's rollback test at its strictest (Holm's first step, and its share beside the windows)
	beta   float64 // level of the promote test, 1 − power
	n0     float64 // observations per cohort the sequential tests are tuned for
	groups []group
	kb, kc int // instances of each cohort
	pOnly  bool
	phiMax float64 // the largest design effect used, for the reasons
}

// phi returns the design effect of the instances summarized in x (canary)
// and y (baseline) for a test at level a of the contrast X̄ − c·Ȳ.
func (s *evalSpec) phi(x, y *Instances, a, c float64) float64 {
	if s.kb+s.kc <= 2 { // fewer instances carry no between-instance variance
		return 1
	}
	phi := DesignEffect(x.moments(), y.moments(), c, a)
	s.phiMax = max(s.phiMax, phi)
	return phi
}

// ratePhi is phi for a rate metric: the design effect of the instances'
// event rates on the log scale (RateDesignEffect).
func (s *evalSpec) ratePhi(x, y *Instances, a float64) float64 {
	if s.kb+s.kc <= 2 {
		return 1
	}
	phi := RateDesignEffect(x.moments(), y.moments(), a)
	s.phiMax = max(s.phiMax, phi)
	return phi
}

// instanceNote is appended to the test's name when the instances inflate
// the variance.
func (s *evalSpec) instanceNote() string {
	if s.phiMax <= 1 {
		return ""
	}
	return fmt.Sprintf("; variance ×%.3g for %d+%d instances (cluster-robust, small-sample allowance)",
		s.phiMax, s.kb, s.kc)
}

// level returns the one-sided level of each direction's test: halved for
// a metric bad in both directions.
func (s *evalSpec) level(a float64) float64 {
	if s.m.BadDirection == Both {
		return a / 2
	}
	return a
}

// zNeed returns the standardized statistic a test at level a must reach:
// the normal quantile, or the smallest boundary of the mixture SPRT.
func (s *evalSpec) zNeed(a float64) float64 {
	if s.seq {
		return stat.MixtureSPRTBoundary(min(0.5, 2*a))
	}
	return distuv.UnitNormal.Quantile(1 - a)
}

// thresholds returns the null boundary of the rollback test (1 ± tolerance)
// and the boundary of the promote test (1 ± (tolerance + detectable
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

func alternativeOf(dir Direction) stat.Alternative {
	if dir == Decrease {
		return stat.Less
	}
	return stat.Greater
}

// opposite returns the alternative of the promote test of a direction.
func opposite(dir Direction) stat.Alternative {
	if dir == Decrease {
		return stat.Greater
	}
	return stat.Less
}

// coarseness says why the logarithms of a distribution's values would
// bias the ratio of geometric means, or "" when they do not: values known
// only up to buckets; whole numbers with a small median (1 ms resolution
// at a 2 ms median: log(R(1.1x)) − log(R(x)) is not log 1.1); many zeros,
// which have no logarithm.
func coarseness(b, c *CohortData, median float64) string {
	if b.Censored+c.Censored > 0 {
		return "values known only up to histogram buckets"
	}
	for _, cd := range [2]*CohortData{b, c} {
		if z := zeroShare(cd); z > 0.05 {
			return fmt.Sprintf("%s zeros in a cohort", percent(math.Round(1000*z)/1000))
		}
	}
	if b.NonInteger+c.NonInteger == 0 && median < 50 {
		return fmt.Sprintf("whole numbers with a median of %s", strconv.FormatFloat(median, 'g', 4, 64))
	}
	return ""
}

// zeroShare returns the share of a distribution's observations that are 0.
func zeroShare(cd *CohortData) float64 {
	n := float64(cd.Dist.N())
	if n == 0 {
		return 0
	}
	return float64(cd.Dist.Zeros()) / n
}

// distTest is one contrast of a distribution or mean metric: on the
// values (a ratio of means) or on their logarithms (a ratio of geometric
// means), with the instances that give its design effects.
type distTest struct {
	k     contrast
	kind  string
	x, y  *Instances
	level float64 // one-sided level of each direction's rollback test
}

// phi returns the test's design effect at level a for the contrast at
// ratio c (a shift on logarithms, where the scale does not matter).
func (t *distTest) phi(s *evalSpec, a, c float64) float64 {
	if t.k.logs {
		c = 1
	}
	return s.phi(t.x, t.y, a, c)
}

// run computes the one-sided rollback and promote p-values of every
// direction, and the factor by which the sample must grow for the promote
// test to pass (etaFactor).
func (t *distTest) run(s *evalSpec) (p, pPromote, eta float64) {
	if !t.k.ok() {
		return 1, 1, math.Inf(1)
	}
	var ps []float64
	pPromote, eta = 0, 1
	for _, dir := range directions(s.m.BadDirection) {
		null, alt := thresholds(s.m, dir)
		ps = append(ps, t.k.p(null, alternativeOf(dir), t.phi(s, t.level, null), s.seq, t.level, s.n0))
		phiB := t.phi(s, s.beta, alt)
		pp := t.k.p(alt, opposite(dir), phiB, s.seq, s.beta, s.n0)
		pPromote = max(pPromote, pp)
		if pp > s.beta {
			d, v, _, _, slack := t.k.at(alt)
			if dir == Increase {
				d = -d
			}
			z := (d - slack) / math.Sqrt(v*phiB)
			eta = max(eta, etaFactor(z, s.zNeed(s.beta)))
		}
	}
	return combineP(ps), pPromote, eta
}

// effect returns the test's effect with its interval.
func (t *distTest) effect(s *evalSpec) Effect {
	a := (1 - s.cfg.Confidence) / 2
	est, lo, hi := t.k.effect(s.cfg.Confidence, t.phi(s, a, 1), s.seq, s.n0)
	return Effect{Estimate: Float(est), Lower: Float(lo), Upper: Float(hi), ConfLevel: s.cfg.Confidence, Kind: t.kind}
}

// newDistTest prepares the contrast of the groups, one of ntests the
// metric's rollback p-value combines (by Bonferroni), with the instances
// summarized in x (canary) and y (baseline).
func newDistTest(s *evalSpec, logs bool, x, y *Instances, kind string, ntests int) *distTest {
	return &distTest{k: newContrast(s.groups, logs), kind: kind, x: x, y: y,
		level: s.level(s.alpha) / float64(ntests)}
}

// Effect kinds.
const (
	KindGeoMeanRatio = "ratio of geometric means"
	KindMeanRatio    = "ratio of means"
	KindRateRatio    = "rate ratio"
	KindShareRatio   = "share ratio"
)

// evalDistribution judges a distribution metric with two stratified
// contrasts, Bonferroni-combined: of the logarithms of the values (the
// ratio of geometric means, powerful for a multiplicative shift of the
// whole distribution, the usual form of a latency regression) and of the
// values (the ratio of means, sensitive to a tail that moves alone, and
// exact for histograms that carry their sum). On coarse values (see
// coarseness) only the ratio of means is tested: rounding and bucketing
// leave the mean nearly unbiased (Sheppard) but not the mean logarithm.
func evalDistribution(r *MetricResult, b, c *CohortData, s evalSpec) {
	m := s.m
	nb, nc := float64(b.Dist.N()), float64(c.Dist.N())
	bb, cb := b.Dist.Bins(), c.Dist.Bins()
	r.Baseline = distSummary(b, bb)
	r.Canary = distSummary(c, cb)
	if nb == 0 || nc == 0 {
		noData(r, m, nb, nc, "observations")
		return
	}
	median := pooledMedian(bb, cb)
	coarse := coarseness(b, c, median)
	tests := []*distTest{newDistTest(&s, false, &c.Instances, &b.Instances, KindMeanRatio, 1)}
	if coarse == "" {
		tests = []*distTest{
			newDistTest(&s, true, &c.LogInstances, &b.LogInstances, KindGeoMeanRatio, 2),
			newDistTest(&s, false, &c.Instances, &b.Instances, KindMeanRatio, 2),
		}
	}
	ps, pps, etas := make([]float64, len(tests)), make([]float64, len(tests)), make([]float64, len(tests))
	for k, t := range tests {
		ps[k], pps[k], etas[k] = t.run(&s)
	}
	r.P = ps[0]
	best := 0
	if len(tests) == 2 {
		r.P = min(1, 2*min(ps[0], ps[1]))
		if ps[1] < ps[0] {
			best = 1
		}
	}
	r.PromoteP = max(pps[0], pps[len(pps)-1])
	if s.pOnly {
		return
	}
	r.Test = "stratified contrast of the means (" + testMode(s.seq) + ")"
	if len(tests) == 2 {
		r.Test = "stratified contrasts of the mean logarithms and of the means (" + testMode(s.seq) + "), Bonferroni"
	} else {
		r.Test += "; not on logarithms: " + coarse
	}
	for _, t := range tests {
		r.Effects = append(r.Effects, t.effect(&s))
	}
	r.Effect = r.Effects[best]
	eta := max(etas[0], etas[len(etas)-1])
	if r.PromoteP > s.beta && r.P >= s.alpha {
		// Holding: show the effect whose promote test binds.
		r.Effect = r.Effects[len(tests)-1]
		if pps[0] >= pps[len(pps)-1] {
			r.Effect = r.Effects[0]
		}
	}
	r.Superiority = superiority(cb, bb)
	r.Test += s.instanceNote()
	setGate(r, &s, nb, nc, float64(m.MinSamples), eta, "observations")
}

// pooledMedian returns the median of both cohorts' observations together.
func pooledMedian(bb, cb []stat.Bin) float64 {
	all := make([]stat.Bin, 0, len(bb)+len(cb))
	i, j := 0, 0
	for i < len(bb) || j < len(cb) {
		switch {
		case j == len(cb) || (i < len(bb) && bb[i].Value < cb[j].Value):
			all = append(all, bb[i])
			i++
		case i == len(bb) || cb[j].Value < bb[i].Value:
			all = append(all, cb[j])
			j++
		default:
			all = append(all, stat.Bin{Value: bb[i].Value, Count: bb[i].Count + cb[j].Count})
			i++
			j++
		}
	}
	return quantile(all, 0.5)
}

// superiority returns P(X > Y) + ½ P(X = Y) for a canary observation X
// and a baseline observation Y (the Mann-Whitney U over n_x n_y, the
// "probability of superiority"), from sorted bins.
func superiority(x, y []stat.Bin) float64 {
	var nx, ny, u, below float64
	for _, b := range y {
		ny += b.Count
	}
	j := 0
	for _, b := range x {
		nx += b.Count
		for j < len(y) && y[j].Value < b.Value {
			below += y[j].Count
			j++
		}
		tie := 0.0
		if j < len(y) && y[j].Value == b.Value {
			tie = y[j].Count
		}
		u += b.Count * (below + tie/2)
	}
	if nx == 0 || ny == 0 {
		return math.NaN()
	}
	return u / (nx * ny)
}

func testMode(seq bool) string {
	if seq {
		return "anytime-valid mixture SPRT"
	}
	return "Welch–Satterthwaite t"
}

func distSummary(cd *CohortData, bins []stat.Bin) Summary {
	s := Summary{N: float64(cd.Dist.N()), Median: quantile(bins, 0.5), P99: quantile(bins, 0.99),
		Mean: cd.Moments.Mean, SD: math.Sqrt(cd.Moments.Variance()), Warmup: cd.Warmup}
	if s.N > 0 {
		s.NonZero = Float(1 - zeroShare(cd))
	} else {
		s.NonZero = Float(math.NaN())
	}
	return s
}

// evalMean judges a mean metric with the stratified contrast of its
// means (Welch's test in each group; see contrast.go).
func evalMean(r *MetricResult, b, c *CohortData, s evalSpec) {
	m := s.m
	bm, cm := b.Moments, c.Moments
	r.Baseline = Summary{N: bm.N, Mean: bm.Mean, SD: math.Sqrt(bm.Variance()), Warmup: b.Warmup}
	r.Canary = Summary{N: cm.N, Mean: cm.Mean, SD: math.Sqrt(cm.Variance()), Warmup: c.Warmup}
	if bm.N < 2 || cm.N < 2 {
		noData(r, m, bm.N, cm.N, "observations")
		if bm.N > 0 && cm.N > 0 {
			r.Reason = fmt.Sprintf("%s: a mean needs at least 2 observations per cohort", m.Name)
		}
		return
	}
	t := newDistTest(&s, false, &c.Instances, &b.Instances, KindMeanRatio, 1)
	var eta float64
	r.P, r.PromoteP, eta = t.run(&s)
	if s.pOnly {
		return
	}
	r.Test = "stratified contrast canary − (1 ± tolerance)·baseline (" + testMode(s.seq) + ")" + s.instanceNote()
	r.Effect = t.effect(&s)
	r.Effects = []Effect{r.Effect}
	setGate(r, &s, bm.N, cm.N, float64(m.MinSamples), eta, "observations")
}

// evalRate judges a rate metric with the stratified conditional test of
// the rate ratio (ratestrat.go), which accounts for each group's exposure,
// so a one-box serving 10% of the traffic is judged fairly, and a weight
// that changes during the run does not bias it.
func evalRate(r *MetricResult, b, c *CohortData, s evalSpec) {
	m := s.m
	r.Baseline = Summary{Count: b.Count, Total: b.Total, Rate: safeDiv(b.Count, b.Total), Warmup: b.Warmup}
	r.Canary = Summary{Count: c.Count, Total: c.Total, Rate: safeDiv(c.Count, c.Total), Warmup: c.Warmup}
	if b.Total == 0 || c.Total == 0 {
		noData(r, m, b.Total, c.Total, m.ExposureUnit)
		return
	}
	// Effective events: divided by the design effect (a quasi-Poisson
	// dispersion), the same rates with less information.
	phiA := s.ratePhi(&c.Instances, &b.Instances, s.level(s.alpha))
	phiB := s.ratePhi(&c.Instances, &b.Instances, s.beta)
	ra, rb := newStratRate(s.groups, phiA), newStratRate(s.groups, phiB)
	ps := make([]float64, 0, 2)
	r.PromoteP = 0
	eta := 1.0
	for _, dir := range directions(m.BadDirection) {
		null, alt := thresholds(m, dir)
		pp := 1.0
		if s.seq {
			ps = append(ps, ra.seqP(null, alternativeOf(dir)))
			pp = rb.seqP(alt, opposite(dir))
		} else {
			ps = append(ps, ra.fixedP(null, alternativeOf(dir)))
			pp = rb.fixedP(alt, opposite(dir))
		}
		r.PromoteP = max(r.PromoteP, pp)
		if pp > s.beta {
			// z of log(alt) − log r̂ with se² ≈ 1/N_C + 1/N_B (effective events).
			u := math.Log(rb.mle())
			z := (math.Log(alt) - u) / math.Sqrt(1/rb.nc+1/rb.nb)
			if dir == Decrease {
				z = -z
			}
			eta = max(eta, etaFactor(z, s.zNeed(s.beta)))
		}
	}
	r.P = combineP(ps)
	noEvents := b.Count+c.Count == 0
	if noEvents {
		// No events in either cohort: nothing to compare a relative
		// change with. Once both floors are met, the absence of events
		// passes.
		r.PromoteP, eta = 0, 1
	}
	if s.pOnly {
		return
	}
	r.Test = "stratified conditional test of the rate ratio (" + rateMode(s.seq) + ")" + s.instanceNote()
	phiC := s.ratePhi(&c.Instances, &b.Instances, (1-s.cfg.Confidence)/2)
	rc := newStratRate(s.groups, phiC)
	lo, hi := rc.ci(s.cfg.Confidence, s.seq)
	r.Effect = Effect{Estimate: Float(rc.mle()), Lower: Float(lo), Upper: Float(hi), ConfLevel: s.cfg.Confidence, Kind: KindRateRatio}
	r.Effects = []Effect{r.Effect}
	setGate(r, &s, b.Total, c.Total, m.MinTotal, eta, m.ExposureUnit)
	if noEvents && r.Gate.FloorMet {
		r.Reason = fmt.Sprintf("%s: no events in either cohort (%s and %s %s)", m.Name,
			count(b.Total), count(c.Total), m.ExposureUnit)
	}
}

func rateMode(seq bool) string {
	if seq {
		return "anytime-valid mixture e-value"
	}
	return "exact conditional binomial, saddle-point for many events; R poisson.test with one stratum"
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

// setGate fills the gate of a metric from its floor and from eta, the
// factor by which both cohorts' samples must grow for the promote test to
// pass (1 when it passes, +Inf when no amount of data would make it pass
// at the current estimate), and sets the preliminary outcome: pass when
// the floor is met and the promote test passes, hold otherwise.
func setGate(r *MetricResult, s *evalSpec, nb, nc, floor, eta float64, unit string) {
	g := Gate{Unit: unit, FloorMet: nb >= floor && nc >= floor, EvidenceMet: r.PromoteP <= s.beta}
	floorB, floorC := max(floor-nb, 0), max(floor-nc, 0)
	evB, evC := 0.0, 0.0
	if !g.EvidenceMet {
		evB, evC = nb*(eta-1), nc*(eta-1)
		if math.IsNaN(evB) || math.IsNaN(evC) {
			evB, evC = math.Inf(1), math.Inf(1)
		}
	}
	g.NeedBaseline, g.NeedCanary = Float(max(floorB, evB)), Float(max(floorC, evC))
	g.Ready = g.FloorMet && g.EvidenceMet
	r.Gate = g
	r.Outcome = OutcomeHold
	if g.Ready {
		r.Outcome = OutcomePass
		r.Reason = passReason(r)
		return
	}
	var clauses []string
	if !g.FloorMet {
		clauses = append(clauses, more(floorC, floorB, unit)+fmt.Sprintf(" to reach the floor of %s per cohort", count(floor)))
	}
	if !g.EvidenceMet {
		m := s.m
		_, alt := thresholds(m, directions(m.BadDirection)[0])
		bound := fmt.Sprintf("within %s of the baseline (tolerance %s + detectable effect %s) with %s confidence",
			ratio(alt), percent(m.Tolerance), percent(m.DetectableEffect), percent(1-s.beta))
		if m.BadDirection == Both {
			bound = fmt.Sprintf("within ±%s of the baseline with %s confidence", percent(m.Tolerance+m.DetectableEffect), percent(1-s.beta))
		}
		switch {
		case math.IsInf(evC, 1) && g.FloorMet:
			clauses = append(clauses, "at this estimate no amount of data would show it "+bound)
		case math.IsInf(evC, 1):
			clauses = append(clauses, "then enough to show it "+bound)
		case evB > floorB || evC > floorC:
			clauses = append(clauses, more(evC, evB, unit)+" to show it "+bound)
		default:
			clauses = append(clauses, "which should also show it "+bound)
		}
	}
	reason := fmt.Sprintf("%s: %s (now canary %s baseline %s)", r.Name, strings.Join(clauses, "; "),
		ratio(float64(r.Effect.Estimate)), interval(r.Effect))
	if s.phiMax >= 2 {
		reason += fmt.Sprintf("; its %d+%d instances differ: each sample counts 1/%.3g, and more instances help more than more samples",
			s.kb, s.kc, s.phiMax)
	}
	r.Reason = reason
}

// more says "about N more canary U and about M more baseline U".
func more(canary, baseline float64, unit string) string {
	var parts []string
	if canary > 0 {
		parts = append(parts, fmt.Sprintf("about %s more canary %s", count(canary), unit))
	}
	if baseline > 0 {
		parts = append(parts, fmt.Sprintf("about %s more baseline %s", count(baseline), unit))
	}
	if len(parts) == 0 {
		return "a little more data"
	}
	return strings.Join(parts, " and ")
}

func estimateText(r *MetricResult) string {
	return fmt.Sprintf("canary %s baseline %s", ratio(float64(r.Effect.Estimate)), interval(r.Effect))
}

func passReason(r *MetricResult) string {
	return fmt.Sprintf("%s: canary %s baseline %s, within the %s tolerance (promote test p=%s)",
		r.Name, ratio(float64(r.Effect.Estimate)), interval(r.Effect), percent(r.Tolerance), pval(r.PromoteP))
}

func regressionReason(r *MetricResult) string {
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
	kind := ""
	if e.Kind != "" {
		kind = e.Kind + ", "
	}
	return fmt.Sprintf("(%s%s CI %s–%s)", kind, percent(e.ConfLevel), ratio(float64(e.Lower)), ratio(float64(e.Upper)))
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
	if math.IsInf(v, 1) {
		return "∞"
	}
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
