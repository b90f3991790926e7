package analysis

import (
	"testing"
	"time"
)

// Regression tests of inputs that fuzzing the service (server.FuzzJudge)
// found to panic or hang the judge: every one is data that ingest accepts.

// judgeRecords judges records added to a run of the YAML config src that
// started at start, fixed-sample and sequentially, with opts.
func judgeRecords(t *testing.T, src string, start time.Time, opts Options, recs ...Record) [2]Verdict {
	t.Helper()
	cfg, err := ParseConfig([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	d := NewData(cfg)
	d.SetStart(Baseline, start)
	d.SetStart(Canary, start)
	for i := range recs {
		if err := d.Add(&recs[i]); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	var out [2]Verdict
	for i, seq := range []bool{false, true} {
		o := opts
		o.Sequential = seq
		out[i] = Judge(d, o)
	}
	return out
}

const totalRateConfig = `
name: total
metrics:
  - {name: errors, category: stability, type: rate, tolerance: 0.5, min_total: 10}
`

// A baseline exposure of 0.125 requests, no canary traffic, a declared
// share: the sample-ratio check's interval was asked for 0 trials
// (ClopperPearson panicked).
func TestTrafficFractionalExposure(t *testing.T) {
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	vs := judgeRecords(t, totalRateConfig, start, Options{BakeComplete: true, ExpectedShare: 0.1},
		Record{Metric: "errors", Cohort: Baseline, IsCount: true, Count: 0, Total: 0.125, Time: start.Add(time.Minute)})
	for _, v := range vs {
		if v.Decision != Hold {
			t.Errorf("decision %s, want HOLD: %s", v.Decision, v.Reason)
		}
	}
}

const totalDistConfig = `
name: total
metrics:
  - {name: latency, category: performance, type: distribution, min_samples: 3}
`

// Values of 3.3e14 among zeros: their Σ(x − mean)² exceeds MaxValue²,
// which the decoder took for corrupt state, so the delta of an accepted
// batch did not decode and the run could not be folded.
func TestStateLargeSpread(t *testing.T) {
	cfg, err := ParseConfig([]byte(totalDistConfig))
	if err != nil {
		t.Fatal(err)
	}
	d := NewData(cfg)
	vs := make([]float64, 200)
	for i := 0; i < len(vs); i += 10 {
		vs[i] = MaxValue / 3
	}
	if err := d.AddValues(0, Baseline, "", time.Time{}, vs); err != nil {
		t.Fatal(err)
	}
	b, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnmarshalData(cfg, b); err != nil {
		t.Fatalf("accepted values do not decode: %v", err)
	}
}

// A histogram of one observation whose sum is 1e20: its mean lies beyond
// MaxValue, where no observation can be; it was accepted, and its state
// did not decode. Ingest rejects it, naming the sum.
func TestHistogramSumBound(t *testing.T) {
	cfg, err := ParseConfig([]byte(totalDistConfig))
	if err != nil {
		t.Fatal(err)
	}
	d := NewData(cfg)
	h := &Histogram{Bounds: []float64{10, 100}, Counts: []float64{1, 0}, Sum: 1e20, HasSum: true}
	err = d.Add(&Record{Metric: "latency", Cohort: Canary, Histogram: h})
	if fe, ok := err.(*FieldError); !ok || fe.Field != "histogram.sum" {
		t.Fatalf("err = %v, want a FieldError on histogram.sum", err)
	}
	h.Sum = 2 * MaxValue // one observation rounded away: still accepted
	h.Counts = []float64{2, 0}
	if err := d.Add(&Record{Metric: "latency", Cohort: Canary, Histogram: h}); err != nil {
		t.Fatalf("sum within count × MaxValue rejected: %v", err)
	}
}
