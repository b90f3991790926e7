package analysis

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Options are the circumstances of a judgement that are not in the config.
type Options struct {
	// BakeComplete says the run has baked long enough (or, offline, that
	// the data set is final). Before it, a non-critical regression holds
	// and nothing is promoted; a critical regression rolls back at once.
	BakeComplete bool
	// Sequential selects the anytime-valid tests (sequential*.go), whose
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
//  1. every metric is evaluated (evaluate.go): its gate (floor and power),
//     and the one-sided p-value of H0 "the canary is not worse than the
//     baseline beyond the tolerance" — a fixed-sample p-value, or with
//     Options.Sequential an anytime-valid one;
//     With a config Window, the sequential p-value also covers the recent
//     windows (withWindows);
//  2. the p-values are adjusted with Holm's step-down procedure over all
//     metrics of the config, so that the probability of rolling back a
//     canary identical to its baseline is at most 1 − confidence across
//     all metrics together (Holm 1979); a metric whose adjusted p-value is
//     ≤ 1 − confidence regressed, once both cohorts reached its floor
//     (min_samples / min_total); the power part of the gate only delays a
//     PROMOTE, never a ROLLBACK;
//  3. ROLLBACK if a critical metric regressed, or any metric regressed and
//     the bake is complete; PROMOTE if the bake is complete and every
//     metric passed its gate without regressing; HOLD otherwise. Improvements
//     never roll back, and a metric without data never passes.
func Judge(d *Data, opts Options) Verdict {
	cfg := d.Config()
	alpha := cfg.Alpha()
	results := make([]MetricResult, len(cfg.Metrics))
	ps := make([]float64, len(cfg.Metrics))
	var windows []Window
	if opts.Sequential && cfg.Window > 0 {
		windows = d.Windows()
	}
	for i := range cfg.Metrics {
		results[i] = evaluate(&cfg.Metrics[i], d.Metric(i), cfg, opts.Sequential, false)
		if opts.Sequential && cfg.Window > 0 {
			withWindows(&results[i], i, windows, cfg)
		}
		ps[i] = results[i].P
	}
	for i, q := range Holm(ps) {
		r := &results[i]
		r.AdjustedP = q
		// Below its floor a metric holds even when it looks worse: deciding
		// on too small a sample is the classic mistake the floor prevents.
		switch {
		case q > alpha || r.Outcome == OutcomeNoData:
		case r.Gate.FloorMet:
			r.Outcome = OutcomeRegression
			r.Reason = regressionReason(r, cfg)
		default:
			r.Reason += fmt.Sprintf("; already looks worse (canary %s baseline, Holm-adjusted p=%s): rolls back once the floor is reached",
				ratio(float64(r.Effect.Estimate)), pval(q))
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
		v.Reason = "not enough data: " + strings.Join(reasonsOf(results, waiting), "; ")
	case !opts.BakeComplete:
		v.Decision = Hold
		v.Deciding = []string{}
		v.Reason = "every metric passed; waiting for the bake time to end"
	default:
		v.Decision = Promote
		v.Deciding = make([]string, len(results))
		for i, r := range results {
			v.Deciding[i] = r.Name
		}
		v.Reason = fmt.Sprintf("all %d metrics passed their gates with no regression at %s family-wise confidence",
			len(results), percent(cfg.Confidence))
	}
	return v
}

// withWindows combines the anytime p-value of metric i on the whole run
// with those of the window tests, each on the samples since the start of
// one of the last epochs (Data.Windows), by the weighted Bonferroni
// inequality: the whole run gets half of the level and the window starting
// j epochs after the run's first gets 1/(2 j (j + 1)) of it, weights that
// sum to 1 over every window the run can ever have. Each window's test is
// anytime-valid on its own samples (a fresh sequential test that starts
// with its epoch), so that
//
//	p = min(1, 2 p_run, min_j 2 j (j + 1) p_j)
//
// is an anytime-valid p-value of the metric's null whatever the number of
// looks. A regression that starts mid-run is judged on the windows after
// it starts, undiluted by the samples before. When a window gives the
// smallest p, the effect reported is that window's.
func withWindows(r *MetricResult, i int, windows []Window, cfg *Config) {
	m := &cfg.Metrics[i]
	best, bestK := min(1, 2*r.P), -1
	for k := range windows {
		w := &windows[k]
		j := float64(w.Index)
		p := min(1, 2*j*(j+1)*evaluate(m, w.Metric(i), cfg, true, true).P)
		if p < best {
			best, bestK = p, k
		}
	}
	r.P = best
	if bestK < 0 {
		return
	}
	w := &windows[bestK]
	wr := evaluate(m, w.Metric(i), cfg, true, false)
	r.Effect = wr.Effect
	r.Test += fmt.Sprintf("; smallest p on the window since %s (effect of that window)", w.Start.Format(time.RFC3339))
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

// Holm returns the p-values adjusted by Holm's step-down procedure, which
// controls the family-wise error rate under any dependence between the
// tests (Holm, "A simple sequentially rejective multiple test procedure",
// Scand. J. Statist. 6, 1979; R's p.adjust(p, "holm")):
//
//	p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j))
//
// where p_(1) ≤ … ≤ p_(m) are the sorted p-values. The result is in the
// order of ps.
func Holm(ps []float64) []float64 {
	m := len(ps)
	order := make([]int, m)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case ps[a] < ps[b]:
			return -1
		case ps[a] > ps[b]:
			return 1
		}
		return 0
	})
	out := make([]float64, m)
	running := 0.0
	for j, i := range order {
		q := min(1, float64(m-j)*ps[i])
		running = max(running, q)
		out[i] = running
	}
	return out
}
