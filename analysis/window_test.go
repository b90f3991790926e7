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

// TestWindows checks how samples are cut into epochs: on a grid fixed to
// the Unix epoch, the newest MaxEpochs kept, windows accumulated from the
// newest epoch back, and the same state whatever the order of merges,
// and through the binary encoding.
func TestWindows(t *testing.T) {
	cfg := testConfig(t, windowConfig)
	if cfg.Window != 10*time.Minute {
		t.Fatalf("window %v", cfg.Window)
	}
	// One latency value per minute for 60 minutes: value = minute + 1.
	deltas := make([]*Data, 60)
	all := NewData(cfg)
	for m := range 60 {
		d := NewData(cfg)
		at := t0.Add(time.Duration(m)*time.Minute + 30*time.Second)
		if err := d.AddValues(0, Canary, "a", at, []float64{float64(m + 1)}); err != nil {
			t.Fatal(err)
		}
		if err := d.Add(&Record{Metric: "errors", Cohort: Baseline, IsCount: true, Count: 1, Total: 10, Time: at}); err != nil {
			t.Fatal(err)
		}
		deltas[m] = d
		all.Merge(d)
	}
	check := func(name string, d *Data) {
		t.Helper()
		ws := d.Windows()
		// Epochs 0..5 seen, 2..5 kept: windows since epochs 5, 4, 3, 2.
		if len(ws) != MaxEpochs {
			t.Fatalf("%s: %d windows, want %d", name, len(ws), MaxEpochs)
		}
		for k, w := range ws {
			idx := int64(5 - k)
			if w.Index != idx || !w.Start.Equal(t0.Add(time.Duration(idx)*10*time.Minute)) {
				t.Errorf("%s: window %d is #%d from %v, want #%d", name, k, w.Index, w.Start, idx)
			}
			lat := &w.Metric(0).Cohorts[Canary].Dist
			n := 60 - 10*int(idx)
			// The mean of the values of minutes 10·idx … 59.
			if int(lat.N()) != n || lat.Mean() != float64(10*idx)+float64(n+1)/2 {
				t.Errorf("%s: window #%d has %d values of mean %v", name, idx, lat.N(), lat.Mean())
			}
			if e := w.Metric(1).Cohorts[Baseline]; e.Count != float64(n) || e.Total != float64(10*n) {
				t.Errorf("%s: window #%d errors %v/%v", name, idx, e.Count, e.Total)
			}
		}
		if d.Metric(0).Cohorts[Canary].Dist.N() != 60 {
			t.Errorf("%s: the whole run has %d values", name, d.Metric(0).Cohorts[Canary].Dist.N())
		}
	}
	check("in order", all)
	rev := NewData(cfg)
	for m := 59; m >= 0; m-- {
		rev.Merge(deltas[m])
	}
	check("reversed", rev)
	shuffled := NewData(cfg)
	for _, m := range rand.New(rand.NewPCG(1, 2)).Perm(60) {
		shuffled.Merge(deltas[m])
	}
	check("shuffled", shuffled)
	check("decoded", roundTrip(t, cfg, all))
	buf, err := all.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnmarshalData(cfg, buf[:len(buf)-3]); err == nil {
		t.Error("truncated epochs decoded")
	}

	// Without a window, or for untimed samples, no epochs are kept.
	plain := testConfig(t, strings.Replace(windowConfig, "window: 10m", "", 1))
	d := NewData(plain)
	d.AddValues(0, Canary, "", t0, []float64{1})
	u := NewData(cfg)
	u.AddValues(0, Canary, "", time.Time{}, []float64{1})
	if len(d.Windows()) != 0 || len(u.Windows()) != 0 || len(d.epochs) != 0 || len(u.epochs) != 0 {
		t.Error("epochs kept without a window or a time")
	}
	// Only one epoch: no window test yet (it would be the whole run).
	one := NewData(cfg)
	one.AddValues(0, Canary, "", t0, []float64{1})
	one.AddValues(0, Canary, "", t0.Add(9*time.Minute), []float64{1})
	if len(one.Windows()) != 0 {
		t.Errorf("%d windows within the first epoch", len(one.Windows()))
	}
	if _, err := ParseConfig([]byte(strings.Replace(windowConfig, "window: 10m", "window: 10ms", 1))); err == nil || !strings.Contains(err.Error(), "window") {
		t.Errorf("window of 10ms: %v", err)
	}
}

// slowBurn streams 60 one-minute batches of 1,000 requests per cohort,
// whose canary latency is factor times the baseline's from minute 40 on,
// and judges after each with the sequential judge; it returns the minute of
// the first ROLLBACK, or -1.
func slowBurn(t *testing.T, cfg *Config, seed uint64, factor float64) int {
	rng := rand.New(rand.NewPCG(seed, 7))
	d := NewData(cfg)
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
		if v := Judge(d, Options{Sequential: true}); v.Decision == Rollback {
			if !strings.Contains(v.Reason, "latency") {
				t.Errorf("seed %d: rolled back for %q", seed, v.Reason)
			}
			return m
		}
	}
	return -1
}

// TestJudgeWindowSlowBurn checks what the window tests are for: a latency
// regression of +30% (3× the tolerance) from minute 40 of 60 is, averaged
// over the run, only +10%: the test on the whole run cannot see it, while
// the windows since minutes 40 and 50 do. And A/A runs judged every minute
// with windows stay within the level.
func TestJudgeWindowSlowBurn(t *testing.T) {
	t.Parallel()
	win := testConfig(t, windowConfig)
	none := testConfig(t, strings.Replace(windowConfig, "window: 10m", "", 1))
	const runs = 10
	caught, caughtNone, falseAlarms := 0, 0, 0
	for seed := range uint64(runs) {
		if m := slowBurn(t, win, seed, 1.3); m >= 40 {
			caught++
		} else if m >= 0 {
			t.Errorf("seed %d: rolled back at minute %d, before the regression", seed, m)
		}
		if slowBurn(t, none, seed, 1.3) >= 0 {
			caughtNone++
		}
		if slowBurn(t, win, 100+seed, 1) >= 0 {
			falseAlarms++
		}
	}
	t.Logf("slow burn caught in %d/%d runs with windows, %d/%d without; A/A rollbacks %d/%d", caught, runs, caughtNone, runs, falseAlarms, runs)
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
