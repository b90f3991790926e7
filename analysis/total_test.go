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
