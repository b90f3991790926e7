package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func testConfig(t testing.TB, src string) *Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const judgeConfig = `
name: test
confidence: 0.99
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 200}
  - {name: errors, category: stability, type: rate, tolerance: 0.2, critical: true, min_total: 2000}
  - {name: revenue, category: business, type: mean, tolerance: 0.1, min_samples: 200}
`

// scenario fills a Data with synthetic cohorts: n latency observations
// per cohort (lognormal, median 80 ms), request counts with an error rate,
// and revenue per order.
type scenario struct {
	nb, nc           int     // latency and revenue observations per cohort
	latFactor        float64 // canary latency multiplier
	reqB, reqC       int     // requests per cohort
	errRate, errMult float64
	revMult          float64
	skipCanary       string // metric with no canary data
}

func (s scenario) data(t testing.TB, cfg *Config, seed uint64) *Data {
	rng := rand.New(rand.NewPCG(seed, 99))
	d := NewData(cfg)
	add := func(r Record) {
		if r.Cohort == Canary && r.Metric == s.skipCanary {
			return
		}
		if err := d.Add(&r); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []Cohort{Baseline, Canary} {
		n := s.nb
		if c == Canary {
			n = s.nc
		}
		lat, rev, errRate, req := 1.0, 1.0, s.errRate, s.reqB
		if c == Canary {
			lat, rev, errRate, req = s.latFactor, s.revMult, s.errRate*s.errMult, s.reqC
		}
		for range n {
			add(Record{Metric: "latency", Cohort: c, Value: 80 * lat * math.Exp(0.4*rng.NormFloat64())})
			add(Record{Metric: "revenue", Cohort: c, Value: 50 * rev * math.Exp(0.5*rng.NormFloat64())})
		}
		// Requests in chunks of 1,000, errors drawn per chunk.
		for done := 0; done < req; done += 1000 {
			k := 0
			for range 1000 {
				if rng.Float64() < errRate {
					k++
				}
			}
			add(Record{Metric: "errors", Cohort: c, IsCount: true, Count: float64(k), Total: 1000})
		}
	}
	return d
}

var healthy = scenario{nb: 3000, nc: 3000, latFactor: 1, reqB: 200000, reqC: 200000, errRate: 0.01, errMult: 1, revMult: 1}

func TestJudgeBranches(t *testing.T) {
	cfg := testConfig(t, judgeConfig)
	mod := func(f func(*scenario)) scenario { s := healthy; f(&s); return s }
	for _, tc := range []struct {
		name     string
		s        scenario
		bake     bool
		want     Decision
		deciding []string
		reason   string
	}{
		{"A/A promotes", healthy, true, Promote, []string{"latency", "errors", "revenue"}, "all 3 metrics passed"},
		{"A/A before bake end holds", healthy, false, Hold, []string{}, "waiting for the bake time"},
		{"critical latency regression rolls back", mod(func(s *scenario) { s.latFactor = 1.5 }), false, Rollback, []string{"latency"}, "latency (critical)"},
		{"critical error regression on a one-box", mod(func(s *scenario) { s.reqC = 20000; s.errMult = 4 }), false, Rollback, []string{"errors"}, "errors (critical)"},
		{"non-critical regression holds during bake", mod(func(s *scenario) { s.revMult = 0.7 }), false, Hold, []string{"revenue"}, "rolls back when the bake time ends"},
		{"non-critical regression rolls back after bake", mod(func(s *scenario) { s.revMult = 0.7 }), true, Rollback, []string{"revenue"}, "revenue: canary 0.7"},
		{"improvement never rolls back", mod(func(s *scenario) { s.latFactor = 0.6; s.errMult = 0.2; s.revMult = 1.5 }), true, Promote, []string{"latency", "errors", "revenue"}, "passed"},
		{"too little data holds", mod(func(s *scenario) { s.nb, s.nc, s.reqB, s.reqC = 50, 50, 1000, 1000 }), true, Hold, []string{"latency", "errors", "revenue"}, "more canary"},
		{"no canary data never passes", mod(func(s *scenario) { s.skipCanary = "errors" }), true, Hold, []string{"errors"}, "errors: no canary data"},
		{"regression below the floor holds", mod(func(s *scenario) { s.nb, s.nc, s.latFactor = 150, 150, 2 }), true, Hold, []string{"latency", "revenue"}, "latency: about 50 more canary observations"},
		{"within tolerance passes", mod(func(s *scenario) { s.latFactor = 1.03 }), true, Promote, []string{"latency", "errors", "revenue"}, "passed"},
	} {
		for _, seq := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/sequential=%v", tc.name, seq), func(t *testing.T) {
				v := Judge(tc.s.data(t, cfg, 1), Options{BakeComplete: tc.bake, Sequential: seq})
				if v.Decision != tc.want || !slices.Equal(v.Deciding, tc.deciding) || !strings.Contains(v.Reason, tc.reason) {
					t.Errorf("got %s %v %q\nwant %s %v containing %q", v.Decision, v.Deciding, v.Reason, tc.want, tc.deciding, tc.reason)
					for _, m := range v.Metrics {
						t.Logf("  %s: %s p=%g adj=%g effect=%v gate=%+v: %s", m.Name, m.Outcome, m.P, m.AdjustedP, m.Effect, m.Gate, m.Reason)
					}
				}
			})
		}
	}
}

// TestJudgeHoldReason checks that a HOLD says what is missing, in the
// metric's units.
func TestJudgeHoldReason(t *testing.T) {
	cfg := testConfig(t, `
name: x
metrics:
  - {name: errors, category: stability, type: rate, tolerance: 0.2, min_total: 2000}
`)
	d := NewData(cfg)
	for _, r := range []Record{
		{Metric: "errors", Cohort: Baseline, IsCount: true, Count: 45, Total: 9000},
		{Metric: "errors", Cohort: Canary, IsCount: true, Count: 5, Total: 1000},
	} {
		if err := d.Add(&r); err != nil {
			t.Fatal(err)
		}
	}
	v := Judge(d, Options{BakeComplete: true})
	m := v.Metrics[0]
	if v.Decision != Hold || m.Outcome != OutcomeHold || m.Gate.FloorMet {
		t.Fatalf("got %s, metric %+v", v.Decision, m)
	}
	if !strings.Contains(m.Reason, "about 1,000 more canary requests to reach the floor of 2,000") ||
		!strings.Contains(m.Reason, "within 1.400× of the baseline (tolerance 20% + detectable effect 20%) with 80% confidence") {
		t.Errorf("reason %q does not say what is missing", m.Reason)
	}
	// The promote test needs more of both cohorts at the current split
	// (5 + 45 events now: log(1.4)/√(1/5 + 1/45) = 0.71 of the 0.84 needed).
	if !(m.Gate.NeedCanary >= 1000 && m.Gate.NeedBaseline > 2000) {
		t.Errorf("need canary %v baseline %v", m.Gate.NeedCanary, m.Gate.NeedBaseline)
	}
}

func TestJudgeZeroBaselineErrors(t *testing.T) {
	cfg := testConfig(t, `
name: x
metrics:
  - {name: errors, category: stability, type: rate, tolerance: 0.2, critical: true, min_total: 1000}
`)
	for _, tc := range []struct {
		cb, cc float64
		want   Decision
	}{
		{0, 0, Promote},   // nothing happened anywhere
		{0, 12, Rollback}, // the canary fails where the baseline never did
		{0, 1, Hold},      // one event: not conclusive, and too few events to size the test
	} {
		d := NewData(cfg)
		d.Add(&Record{Metric: "errors", Cohort: Baseline, IsCount: true, Count: tc.cb, Total: 90000})
		d.Add(&Record{Metric: "errors", Cohort: Canary, IsCount: true, Count: tc.cc, Total: 10000})
		v := Judge(d, Options{BakeComplete: true})
		if v.Decision != tc.want {
			t.Errorf("baseline %v, canary %v errors: %s (%s), want %s", tc.cb, tc.cc, v.Decision, v.Reason, tc.want)
		}
	}
}

// TestJudgeAAFalseRollback checks, on many A/A runs of three metrics, that
// the family-wise rate of false rollbacks stays at or below α. With α =
// 0.05 and 400 runs, a correct judge rolls back at most 20 in expectation
// (fewer, Holm is conservative); more than 35 has probability < 1e-3.
func TestJudgeAAFalseRollback(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	// Tolerance 0: every metric's null boundary is "identical", where the
	// tests are at their full size α, so only Holm keeps the family at α.
	cfg := testConfig(t, strings.NewReplacer("confidence: 0.99", "confidence: 0.95",
		"tolerance: 0.1,", "tolerance: 0,", "tolerance: 0.2,", "tolerance: 0,").Replace(judgeConfig))
	s := scenario{nb: 300, nc: 300, latFactor: 1, reqB: 20000, reqC: 20000, errRate: 0.01, errMult: 1, revMult: 1}
	const runs = 400
	rollbacks := 0
	for seed := range uint64(runs) {
		if Judge(s.data(t, cfg, seed+1000), Options{BakeComplete: true}).Decision == Rollback {
			rollbacks++
		}
	}
	t.Logf("A/A false rollbacks: %d of %d (α = 0.05)", rollbacks, runs)
	if rollbacks > 35 {
		t.Errorf("%d false rollbacks in %d A/A runs: family-wise rate above α = 0.05", rollbacks, runs)
	}
}

// At the tolerance boundary (canary exactly 10% slower), a rollback is a
// false alarm too: the test's null includes the boundary.
func TestJudgeBoundaryFalseRollback(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	cfg := testConfig(t, `
name: x
confidence: 0.95
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 100}
`)
	const runs = 400
	rollbacks := 0
	for seed := range uint64(runs) {
		rng := rand.New(rand.NewPCG(seed, 7))
		d := NewData(cfg)
		for range 500 {
			d.Add(&Record{Metric: "latency", Cohort: Baseline, Value: 80 * math.Exp(0.4*rng.NormFloat64())})
			d.Add(&Record{Metric: "latency", Cohort: Canary, Value: 88 * math.Exp(0.4*rng.NormFloat64())})
		}
		if Judge(d, Options{BakeComplete: true}).Decision == Rollback {
			rollbacks++
		}
	}
	t.Logf("boundary rollbacks: %d of %d (α = 0.05)", rollbacks, runs)
	if rollbacks > 35 {
		t.Errorf("%d rollbacks of %d at the tolerance boundary: above α = 0.05", rollbacks, runs)
	}
}

func TestDataMergeMarshal(t *testing.T) {
	cfg := testConfig(t, judgeConfig)
	all := healthy.data(t, cfg, 5)
	a, b := healthy.data(t, cfg, 6), healthy.data(t, cfg, 7)
	merged := NewData(cfg)
	merged.Merge(a)
	merged.Merge(b)
	if merged.Samples() != a.Samples()+b.Samples() {
		t.Errorf("merged %d samples, want %d", merged.Samples(), a.Samples()+b.Samples())
	}
	for _, d := range []*Data{all, merged, NewData(cfg)} {
		back := roundTrip(t, cfg, d)
		buf, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		v1, v2 := Judge(d, Options{BakeComplete: true}), Judge(back, Options{BakeComplete: true})
		if v1.Reason != v2.Reason || back.Samples() != d.Samples() {
			t.Errorf("round trip changed the verdict: %q vs %q", v1.Reason, v2.Reason)
		}
		if _, err := UnmarshalData(cfg, buf[:len(buf)-1]); err == nil && len(buf) > 1 {
			t.Error("truncated data decoded without error")
		}
	}
}

// TestJudgeContinuousAA judges A/A runs after every batch, as a live run
// is judged, at the tolerance boundary of every metric (tolerance 0: the
// least favourable null). The sequential judge must keep the family-wise
// rate of ever rolling back at α = 0.05: with 200 runs, more than 20 has
// probability < 0.5%. The fixed-sample judge, looked at as often, is
// reported beside it (the peeking problem the sequential tests solve).
func TestJudgeContinuousAA(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	cfg := testConfig(t, `
name: aa
confidence: 0.95
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0, critical: true, min_samples: 100}
  - {name: errors, category: stability, type: rate, tolerance: 0, critical: true, min_total: 2000}
  - {name: revenue, category: business, type: mean, tolerance: 0, critical: true, min_samples: 100}
`)
	const runs, looks = 200, 30
	ever := map[bool]int{}
	for seed := range uint64(runs) {
		rng := rand.New(rand.NewPCG(seed, 31))
		d := NewData(cfg)
		rolled := map[bool]bool{}
		for range looks {
			for _, c := range []Cohort{Baseline, Canary} {
				for range 40 {
					d.Add(&Record{Metric: "latency", Cohort: c, Value: 80 * math.Exp(0.5*rng.NormFloat64())})
					d.Add(&Record{Metric: "revenue", Cohort: c, Value: 50 * math.Exp(0.5*rng.NormFloat64())})
				}
				k := 0
				for range 1000 {
					if rng.Float64() < 0.01 {
						k++
					}
				}
				d.Add(&Record{Metric: "errors", Cohort: c, IsCount: true, Count: float64(k), Total: 1000})
			}
			for _, seq := range []bool{false, true} {
				if Judge(d, Options{Sequential: seq}).Decision == Rollback {
					rolled[seq] = true
				}
			}
		}
		for seq, r := range rolled {
			if r {
				ever[seq]++
			}
		}
	}
	t.Logf("A/A runs ever rolled back, judged after each of %d batches, α = 0.05: sequential %d/%d, fixed-sample %d/%d",
		looks, ever[true], runs, ever[false], runs)
	if ever[true] > 20 {
		t.Errorf("sequential judge rolled back %d of %d A/A runs under continuous judging: above α = 0.05", ever[true], runs)
	}
}
