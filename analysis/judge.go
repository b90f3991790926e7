package analysis

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/canaryd/canaryd/analysis/stat"
)

// Options are the circumstances of a judgement that are not in the config.
type Options struct {
	// BakeComplete says the run has baked long enough (or, offline, that
	// the data set is final). Before it, a non-critical regression holds
	// and nothing is promoted; a critical regression rolls back at once.
	BakeComplete bool
	// Sequential selects the anytime-valid tests (see evaluate), whose
	// level holds however often a run is judged: the mode of live runs.
	// Without it the fixed-sample tests are used, valid for one look at a
	// finished data set (canaryctl analyze).
	Sequential bool
	// ExpectedShare, when in (0, 1), is the canary's planned share of the
	// traffic (the run's canary_traffic_share): the sample-ratio check
	// tests the canary's share of requests against it. Zero means the
	// check uses the canary's own share early in the run.
	ExpectedShare float64
}

// Judge decides PROMOTE, HOLD or ROLLBACK for the data of one run. This
// function is the one place where a verdict is decided:
//
//  1. every metric is evaluated (evaluate.go) within time strata: the
//     one-sided p-value of its rollback test, H0 "the canary is not worse
//     than the baseline beyond the tolerance", and of its promote test,
//     H0' "the canary is worse by the tolerance plus the detectable effect
//     or more" — fixed-sample p-values, or with Options.Sequential
//     anytime-valid ones; with a config Window, the rollback p-value also
//     covers the recent windows (withWindows); and the sample-ratio check
//     of the canary's share of traffic (traffic.go) is one more test;
//  2. the rollback p-values are adjusted with Holm's step-down procedure
//     over all metrics, at 99% of the level, the sample-ratio check taking
//     the last 1%, so that the probability of rolling back a canary
//     identical to its baseline is at most 1 − confidence across all its
//     metrics together (Holm 1979; Bonferroni between the two); a metric
//     whose adjusted p-value is ≤ 1 − confidence regressed, once both
//     cohorts reached its floor (min_samples / min_total);
//  3. a metric passes when its floor is met, its promote test rejects at
//     level 1 − power, and its reported interval does not lie beyond the
//     tolerance: the data show the canary is not worse than the tolerance
//     plus the detectable effect. Each metric must pass on its own
//     (an intersection-union test: no split of 1 − power is needed), so a
//     canary worse than that in any metric is promoted with probability at
//     most 1 − power;
//  4. ROLLBACK if a critical metric regressed, or any metric regressed and
//     the bake is complete; PROMOTE if the bake is complete and every
//     metric passed; HOLD otherwise. Improvements never roll back, and a
//     metric without data never passes.
func Judge(d *Data, opts Options) Verdict {
	cfg := d.Config()
	alpha := cfg.Alpha()
	traffic, hasTraffic := trafficMetric(cfg)
	// The sample-ratio check gets a small share of the level (a collapse
	// of the traffic is overwhelming evidence within minutes), the metrics
	// the rest, adjusted with Holm's procedure; by Bonferroni's inequality
	// the family-wise level is their sum.
	metricsLevel := alpha
	if hasTraffic {
		metricsLevel *= 1 - trafficLevelShare
	}
	// Holm's first step: each metric's share of the level.
	share := metricsLevel / float64(len(cfg.Metrics))
	results := make([]MetricResult, 0, len(cfg.Metrics)+1)
	var windows []time.Time
	if cfg.Window > 0 {
		windows = windowStarts(d, cfg.Window)
	}
	for i := range cfg.Metrics {
		// Beside windows, the whole run has half of the metric's level.
		level := share
		if len(windows) > 0 {
			level /= 2
		}
		r := evaluate(d, i, opts.Sequential, level, time.Time{}, false)
		if len(windows) > 0 {
			withWindows(&r, d, i, windows, share, opts.Sequential)
		}
		results = append(results, r)
	}
	ps := make([]float64, len(results))
	for i := range results {
		ps[i] = results[i].P
	}
	// Adjusted p-values on the scale of alpha: a test regressed when its
	// adjusted p-value is at most alpha.
	adjusted := stat.Holm(ps)
	for i := range adjusted {
		adjusted[i] = min(1, adjusted[i]*alpha/metricsLevel)
	}
	if hasTraffic {
		r := evalTraffic(d, traffic, opts, alpha*trafficLevelShare)
		results = append(results, r)
		adjusted = append(adjusted, min(1, r.P/trafficLevelShare))
	}
	for i, q := range adjusted {
		r := &results[i]
		r.AdjustedP = q
		null, _ := thresholds(&Metric{Tolerance: r.Tolerance}, Increase)
		if r.BadDirection == Decrease {
			null, _ = thresholds(&Metric{Tolerance: r.Tolerance}, Decrease)
		}
		// Below its floor a metric holds even when it looks worse: deciding
		// on too small a sample is the classic mistake the floor prevents.
		switch {
		case r.Outcome == OutcomeNoData:
		case q <= alpha && r.Gate.FloorMet:
			r.Outcome = OutcomeRegression
			r.Reason = regressionReason(r)
		case q <= alpha:
			r.Outcome = OutcomeHold
			r.Reason += fmt.Sprintf("; already looks worse (canary %s baseline, Holm-adjusted p=%s): rolls back once the floor is reached",
				ratio(float64(r.Effect.Estimate)), pval(q))
		case r.Outcome == OutcomePass && beyond(r, null):
			// Never promote while the reported interval lies beyond the
			// tolerance, even when Holm's adjustment spared the metric.
			r.Outcome = OutcomeHold
			r.Gate.Ready = false
			r.Reason = fmt.Sprintf("%s: canary %s baseline %s: the interval lies beyond the %s tolerance (not yet a family-wise regression, Holm-adjusted p=%s)",
				r.Name, ratio(float64(r.Effect.Estimate)), interval(r.Effect), percent(r.Tolerance), pval(q))
		}
	}

	v := Verdict{Config: cfg.Name, Confidence: cfg.Confidence, Metrics: results}
	var critical, regressed, waiting []string
	var why []string
	for _, r := range results {
		switch r.Outcome {
		case OutcomeRegression:
			regressed = append(regressed, r.Name)
			if r.Critical {
				critical = append(critical, r.Name)
			}
			why = append(why, r.Reason)
		case OutcomeHold, OutcomeNoData:
			waiting = append(waiting, r.Name)
		}
	}
	switch {
	case len(critical) > 0:
		v.Decision, v.Deciding = Rollback, critical
		v.Reason = "critical regression: " + strings.Join(reasonsOf(results, critical), "; ")
	case len(regressed) > 0 && opts.BakeComplete:
		v.Decision, v.Deciding = Rollback, regressed
		v.Reason = "regression: " + strings.Join(why, "; ")
	case len(regressed) > 0:
		v.Decision, v.Deciding = Hold, regressed
		v.Reason = "regression of non-critical metrics, rolls back when the bake time ends: " + strings.Join(why, "; ")
	case len(waiting) > 0:
		v.Decision, v.Deciding = Hold, waiting
		v.Reason = "not enough evidence: " + strings.Join(reasonsOf(results, waiting), "; ")
	case !opts.BakeComplete:
		v.Decision = Hold
		v.Deciding = []string{}
		v.Reason = "every metric passed; waiting for the bake time to end"
	default:
		v.Decision = Promote
		v.Deciding = make([]string, len(cfg.Metrics))
		for i := range cfg.Metrics {
			v.Deciding[i] = results[i].Name
		}
		v.Reason = fmt.Sprintf("all %d metrics passed: each shown within its tolerance + detectable effect at %s confidence, none regressed at %s family-wise confidence",
			len(cfg.Metrics), percent(cfg.Power), percent(cfg.Confidence))
	}
	return v
}

// beyond reports whether the reported interval of a metric lies entirely
// on the bad side of its tolerance boundary null.
func beyond(r *MetricResult, null float64) bool {
	lo, hi := float64(r.Effect.Lower), float64(r.Effect.Upper)
	switch r.BadDirection {
	case Increase:
		return lo > null
	case Decrease:
		return hi < null
	}
	return lo > 1+r.Tolerance || hi < 1-r.Tolerance
}

// windowStarts returns the starts of the window tests: the starts of the
// last MaxWindows epochs of length w after the run's first, on a grid
// anchored at the run's start (Data.runStart), up to the newest stratum.
func windowStarts(d *Data, w time.Duration) []time.Time {
	start, newest := d.runStart(), d.strata.newest()
	if start.IsZero() || newest.IsZero() || !newest.After(start) {
		return nil
	}
	last := int64(newest.Sub(start) / w)
	var out []time.Time
	for j := last; j >= 1 && j > last-MaxWindows; j-- {
		out = append(out, start.Add(time.Duration(j)*w))
	}
	return out
}

// MaxWindows is the number of most recent windows tested (see
// Config.Window).
const MaxWindows = 4

// trafficLevelShare is the share of the family-wise level the
// sample-ratio check takes (see Judge).
const trafficLevelShare = 0.01

// withWindows combines the anytime p-value of metric i on the whole run
// with those of the same tests on the samples since the start of each of
// the most recent windows, by the weighted Bonferroni inequality: the
// whole run gets half of the level and the window starting j epochs after
// the run's start gets 1/(2 j (j + 1)) of it, weights that sum to 1 over
// every window the run can ever have. Each window's test is anytime-valid
// on its own samples (a fresh sequential test that starts with its
// epoch), so that
//
//	p = min(1, 2 p_run, min_j 2 j (j + 1) p_j)
//
// is an anytime-valid p-value of the metric's null whatever the number of
// looks. A regression that starts mid-run is judged on the windows after
// it starts, undiluted by the samples before. When a window gives the
// smallest p, the effect reported is that window's. The fixed-sample judge
// (one look at a finished data set) tests the same windows with its own
// tests: one look at several windows is as valid by the same inequality,
// and a canary that degrades in its last half hour is rolled back rather
// than promoted on the average of the run.
func withWindows(r *MetricResult, d *Data, i int, starts []time.Time, share float64, seq bool) {
	run := d.runStart()
	w := d.Config().Window
	best, bestAt := min(1, 2*r.P), time.Time{}
	weight := func(from time.Time) float64 {
		j := float64(from.Sub(run) / w)
		return 2 * j * (j + 1)
	}
	for _, from := range starts {
		k := weight(from)
		p := min(1, k*evaluate(d, i, seq, share/k, from, true).P)
		if p < best {
			best, bestAt = p, from
		}
	}
	r.P = best
	if bestAt.IsZero() {
		return
	}
	wr := evaluate(d, i, seq, share/weight(bestAt), bestAt, false)
	r.Effect, r.Effects = wr.Effect, wr.Effects
	r.Test += fmt.Sprintf("; smallest p on the window since %s (effect of that window)", bestAt.Format(time.RFC3339))
}

func reasonsOf(results []MetricResult, names []string) []string {
	out := make([]string, 0, len(names))
	for _, r := range results {
		if slices.Contains(names, r.Name) {
			out = append(out, r.Reason)
		}
	}
	return out
}
