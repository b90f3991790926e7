package analysis

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// orderConfig has a metric of each type, a warm-up and windows.
const orderConfig = `
name: order
warmup: 5m
window: 10m
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 100}
  - {name: errors, category: stability, type: rate, tolerance: 0.2, critical: true, min_total: 1000}
  - {name: revenue, category: business, type: mean, tolerance: 0.1, min_samples: 100}
`

// orderRecords returns 40 minutes of records of both cohorts from 4+2
// instances, the canary 60% slower from minute 20, with a share of traffic
// that steps up.
func orderRecords(rng *rand.Rand, start time.Time) []Record {
	var out []Record
	for m := range 40 {
		at := start.Add(time.Duration(m)*time.Minute + time.Duration(rng.IntN(60))*time.Second)
		for c, k := range [2]int{4, 2} {
			share := 1.0
			if Cohort(c) == Canary {
				share = 0.2 + 0.02*float64(m)
			}
			for i := range k {
				inst := string(rune('a'+i)) + Cohort(c).String()
				f := 1.0
				if Cohort(c) == Canary && m >= 20 {
					f = 1.6
				}
				for range int(30 * share) {
					out = append(out, Record{Metric: "latency", Cohort: Cohort(c), Time: at, Instance: inst,
						Value: math.Round(80*f*math.Exp(0.4*rng.NormFloat64())*100) / 100})
					out = append(out, Record{Metric: "revenue", Cohort: Cohort(c), Time: at, Instance: inst,
						Value: 50 * math.Exp(0.5*rng.NormFloat64())})
				}
				n := math.Round(500 * share)
				out = append(out, Record{Metric: "errors", Cohort: Cohort(c), Time: at, Instance: inst,
					IsCount: true, Count: float64(rng.IntN(1 + int(n)/50)), Total: n})
			}
		}
	}
	return out
}

// TestVerdictOrderIndependent is the property behind a run's verdict: it
// is a function of the set of samples only. The records are split into
// batches of random sizes, folded into deltas (records one by one, or the
// values of a batch as columns through AddValues), and merged in random
// orders, through the binary encoding; every arrangement must give the
// verdict of adding the records one by one in order.
func TestVerdictOrderIndependent(t *testing.T) {
	cfg := testConfig(t, orderConfig)
	start := time.Date(2026, 5, 1, 9, 0, 30, 0, time.UTC)
	rng := rand.New(rand.NewPCG(21, 21))
	recs := orderRecords(rng, start)
	newData := func() *Data {
		d := NewData(cfg)
		d.SetStart(Baseline, start)
		d.SetStart(Canary, start)
		return d
	}
	ref := newData()
	for i := range recs {
		if err := ref.Add(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	opts := []Options{{Sequential: true}, {BakeComplete: true}}
	want := make([]Verdict, len(opts))
	for k, o := range opts {
		want[k] = Judge(ref, o)
	}
	if want[0].Decision != Rollback {
		t.Fatalf("reference: %s (%s), want a ROLLBACK to compare", want[0].Decision, want[0].Reason)
	}
	for trial := range 12 {
		perm := rng.Perm(len(recs))
		var deltas []*Data
		for lo := 0; lo < len(perm); {
			hi := min(len(perm), lo+1+rng.IntN(2000))
			d := newData()
			columns := trial%2 == 1
			for _, j := range perm[lo:hi] {
				r := recs[j]
				if columns && !r.IsCount {
					i := cfg.Metric(r.Metric)
					if err := d.AddValues(i, r.Cohort, r.Instance, r.Time, []float64{r.Value}); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := d.Add(&r); err != nil {
					t.Fatal(err)
				}
			}
			deltas = append(deltas, roundTrip(t, cfg, d))
			lo = hi
		}
		got := NewData(cfg)
		for _, k := range rng.Perm(len(deltas)) {
			got.Merge(deltas[k])
		}
		for k, o := range opts {
			v := Judge(got, o)
			sameVerdict(t, trial, v, want[k])
		}
	}
}

// sameVerdict fails unless two verdicts have the same decision and the
// same evidence, up to the rounding of sums in another order.
func sameVerdict(t *testing.T, trial int, got, want Verdict) {
	t.Helper()
	if got.Decision != want.Decision || len(got.Metrics) != len(want.Metrics) {
		t.Fatalf("trial %d: %s (%s), want %s (%s)", trial, got.Decision, got.Reason, want.Decision, want.Reason)
	}
	near := func(a, b float64) bool {
		return a == b || math.Abs(a-b) <= 1e-6*math.Max(math.Abs(a), math.Abs(b)) || (math.IsNaN(a) && math.IsNaN(b))
	}
	for i, g := range got.Metrics {
		w := want.Metrics[i]
		if g.Outcome != w.Outcome || !near(g.P, w.P) || !near(g.PromoteP, w.PromoteP) ||
			!near(float64(g.Effect.Estimate), float64(w.Effect.Estimate)) || !near(float64(g.Effect.Upper), float64(w.Effect.Upper)) ||
			g.Baseline.N != w.Baseline.N || g.Canary.Warmup != w.Canary.Warmup || g.Canary.Total != w.Canary.Total {
			t.Errorf("trial %d: %s: %s p=%v promote=%v effect=%v n=%v warm=%v\nwant %s p=%v promote=%v effect=%v n=%v warm=%v", trial, g.Name,
				g.Outcome, g.P, g.PromoteP, g.Effect, g.Baseline.N, g.Canary.Warmup,
				w.Outcome, w.P, w.PromoteP, w.Effect, w.Baseline.N, w.Canary.Warmup)
		}
	}
}
