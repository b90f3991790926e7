package analysis

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

const windowConfig = `
name: win
confidence: 0.99
window: 10m
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 200}
  - {name: errors, category: stability, type: rate, tolerance: 0.2, critical: true, min_total: 2000}
`

// t0 is on the 10-minute grid.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// slowBurn streams 60 one-minute batches of 1,000 requests per cohort,
// whose canary latency is factor times the baseline's from minute 40 on,
// and judges after each with the sequential judge; it returns the minute of
// the first ROLLBACK, or -1, and the fixed-sample judge's decision on the
// whole data set (canaryctl analyze).
func slowBurn(t *testing.T, cfg *Config, seed uint64, factor float64) (int, Decision) {
	rng := rand.New(rand.NewPCG(seed, 7))
	d := NewData(cfg)
	first := -1
	vals := make([]float64, 1000)
	for m := range 60 {
		at := t0.Add(time.Duration(m) * time.Minute)
		for c := range 2 {
			f := 1.0
			if c == int(Canary) && m >= 40 {
				f = factor
			}
			for j := range vals {
				vals[j] = 80 * f * math.Exp(0.5*rng.NormFloat64())
			}
			if err := d.AddValues(0, Cohort(c), "", at, vals); err != nil {
				t.Fatal(err)
			}
			k := 0
			for range 1000 {
				if rng.Float64() < 0.005 {
					k++
				}
			}
			if err := d.Add(&Record{Metric: "errors", Cohort: Cohort(c), IsCount: true, Count: float64(k), Total: 1000, Time: at}); err != nil {
				t.Fatal(err)
			}
		}
		if first >= 0 {
			continue
		}
		if v := Judge(d, Options{Sequential: true}); v.Decision == Rollback {
			if !strings.Contains(v.Reason, "latency") {
				t.Errorf("seed %d: rolled back for %q", seed, v.Reason)
			}
			first = m
		}
	}
	return first, Judge(d, Options{BakeComplete: true}).Decision
}

// TestJudgeWindowSlowBurn checks what the window tests are for: a latency
// regression of +30% (3× the tolerance) from minute 40 of 60 is, averaged
// over the run, only +10%: the test on the whole run cannot see it, while
// the windows since minutes 40 and 50 do, in the sequential judge and in
// one fixed-sample look at the end (which promoted such a canary on the
// run's average). And A/A runs judged every minute with windows stay
// within the level.
func TestJudgeWindowSlowBurn(t *testing.T) {
	t.Parallel()
	win := testConfig(t, windowConfig)
	none := testConfig(t, strings.Replace(windowConfig, "window: 10m", "", 1))
	const runs = 10
	caught, caughtNone, falseAlarms, fixedCaught := 0, 0, 0, 0
	for seed := range uint64(runs) {
		m, fixed := slowBurn(t, win, seed, 1.3)
		if m >= 40 {
			caught++
		} else if m >= 0 {
			t.Errorf("seed %d: rolled back at minute %d, before the regression", seed, m)
		}
		if fixed == Rollback {
			fixedCaught++
		}
		if m, _ := slowBurn(t, none, seed, 1.3); m >= 0 {
			caughtNone++
		}
		if m, _ := slowBurn(t, win, 100+seed, 1); m >= 0 {
			falseAlarms++
		}
	}
	if fixedCaught < runs-1 {
		t.Errorf("one fixed-sample look with windows caught %d of %d slow burns", fixedCaught, runs)
	}
	t.Logf("slow burn caught in %d/%d runs with windows (one fixed-sample look: %d/%d), %d/%d without; A/A rollbacks %d/%d", caught, runs, fixedCaught, runs, caughtNone, runs, falseAlarms, runs)
	if caught < runs-1 {
		t.Errorf("windows caught %d of %d slow burns", caught, runs)
	}
	if caughtNone > runs/2 {
		t.Errorf("the whole-run test alone caught %d of %d slow burns: the scenario no longer shows dilution", caughtNone, runs)
	}
	if falseAlarms > 1 { // Pr(≥ 2 of 10) < 0.5% at α = 1%
		t.Errorf("%d of %d A/A runs rolled back with windows", falseAlarms, runs)
	}
}
