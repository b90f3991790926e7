package analysis

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestStrata checks how samples are cut into strata: on a grid fixed to
// the Unix epoch, the same state whatever the order of merges and through
// the binary encoding, groups that pool strata where a cohort lacks data,
// and windows that start on the run's grid.
func TestStrata(t *testing.T) {
	cfg := testConfig(t, windowConfig)
	// One latency value per minute per cohort for 60 minutes (value =
	// minute + 1), and 1/10 errors in the baseline only every other minute.
	deltas := make([]*Data, 60)
	all := NewData(cfg)
	all.SetStart(Baseline, t0)
	all.SetStart(Canary, t0)
	for m := range 60 {
		d := NewData(cfg)
		at := t0.Add(time.Duration(m)*time.Minute + 30*time.Second)
		for c := range 2 {
			if err := d.AddValues(0, Cohort(c), "a", at, []float64{float64(m + 1), float64(m + 2)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Add(&Record{Metric: "errors", Cohort: Canary, IsCount: true, Count: 0, Total: 5, Time: at}); err != nil {
			t.Fatal(err)
		}
		if m%2 == 0 {
			if err := d.Add(&Record{Metric: "errors", Cohort: Baseline, IsCount: true, Count: 1, Total: 10, Time: at}); err != nil {
				t.Fatal(err)
			}
		}
		deltas[m] = d
		all.Merge(d)
	}
	check := func(name string, d *Data) {
		t.Helper()
		if n := d.strata.timed(); n != 60 {
			t.Fatalf("%s: %d strata, want 60", name, n)
		}
		gs := d.strata.groups(0, &cfg.Metrics[0], time.Time{})
		if len(gs) != 60 || gs[7][Canary].raw.Mean != 8.5 || gs[7][Baseline].raw.N != 2 {
			t.Errorf("%s: %d latency groups, group 7 %+v", name, len(gs), gs[7])
		}
		// Errors: every other minute the baseline has nothing, so the
		// strata pool in pairs.
		ge := d.strata.groups(1, &cfg.Metrics[1], time.Time{})
		if len(ge) != 30 || ge[3][Canary].total != 10 || ge[3][Baseline].count != 1 {
			t.Errorf("%s: %d error groups, group 3 %+v", name, len(ge), ge[3])
		}
		ws := windowStarts(d, cfg.Window)
		if len(ws) != MaxWindows || !ws[0].Equal(t0.Add(50*time.Minute)) || !ws[3].Equal(t0.Add(20*time.Minute)) {
			t.Errorf("%s: windows %v", name, ws)
		}
		if g := d.strata.groups(0, &cfg.Metrics[0], ws[0]); len(g) != 10 {
			t.Errorf("%s: %d groups since %v", name, len(g), ws[0])
		}
	}
	check("in order", all)
	rev := NewData(cfg)
	for m := 59; m >= 0; m-- {
		rev.Merge(deltas[m])
	}
	rev.SetStart(Baseline, t0)
	rev.SetStart(Canary, t0)
	check("reversed", rev)
	check("decoded", roundTrip(t, cfg, all))
	buf, err := all.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{1, 3, 10, len(buf) / 2} {
		if _, err := UnmarshalData(cfg, buf[:len(buf)-cut]); err == nil {
			t.Errorf("truncated by %d: decoded", cut)
		}
	}
	if _, err := ParseConfig([]byte(strings.Replace(windowConfig, "window: 10m", "window: 10ms", 1))); err == nil || !strings.Contains(err.Error(), "window") {
		t.Errorf("window of 10ms: %v", err)
	}
}

// TestStrataBounded checks that a run of any length keeps at most
// MaxStrata strata, coarsening the width by doubling, and that the state
// is the same whatever the order (the width is the smallest that fits).
func TestStrataBounded(t *testing.T) {
	cfg := testConfig(t, windowConfig)
	rng := rand.New(rand.NewPCG(3, 3))
	const minutes = 3000 // 50 hours
	perm := rng.Perm(minutes)
	a, b := NewData(cfg), NewData(cfg)
	for m := range minutes {
		at := t0.Add(time.Duration(m) * time.Minute)
		a.AddValues(0, Canary, "", at, []float64{float64(m)})
		at = t0.Add(time.Duration(perm[m]) * time.Minute)
		b.AddValues(0, Canary, "", at, []float64{float64(perm[m])})
	}
	for _, d := range []*Data{a, b} {
		if n := d.strata.timed(); n > MaxStrata || n < MaxStrata/2 {
			t.Errorf("%d strata", n)
		}
		if w := d.strata.width(); w != 8*time.Minute {
			t.Errorf("width %v, want 8m for 3,000 minutes", w)
		}
	}
	if len(a.strata.s) != len(b.strata.s) {
		t.Fatalf("%d strata in order, %d shuffled", len(a.strata.s), len(b.strata.s))
	}
	for j := range a.strata.s {
		x, y := a.strata.s[j], b.strata.s[j]
		if x.key != y.key || x.cells[1].raw.N != y.cells[1].raw.N || math.Abs(x.cells[1].raw.Mean-y.cells[1].raw.Mean) > 1e-9 {
			t.Fatalf("stratum %d differs: %+v vs %+v", j, x.cells[1], y.cells[1])
		}
	}
	// Merging a delta at a finer width coarsens it.
	d := NewData(cfg)
	d.AddValues(0, Canary, "", t0.Add(5*time.Minute), []float64{1})
	a.Merge(d)
	if n := a.strata.timed(); n > MaxStrata {
		t.Errorf("after a fine merge: %d strata", n)
	}
}
