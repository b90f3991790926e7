package server

import (
	"context"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// FuzzPrepareBatch feeds arbitrary batches to the ingest validation: it
// must not panic, a rejected batch must be INVALID_ARGUMENT with field
// violations, and an accepted one must fold into a delta that decodes and
// counts every observation.
func FuzzPrepareBatch(f *testing.F) {
	seed := []*canaryv1.Batch{
		{BatchId: "1", Samples: []*canaryv1.Sample{{Metric: "latency_ms", Cohort: 1, Observation: &canaryv1.Sample_Value{Value: 3}}}},
		{BatchId: "2", Columns: []*canaryv1.MetricColumn{{Metric: "errors", Cohort: 2, Counts: []float64{1, 2}, Totals: []float64{3, 4}}}},
		{BatchId: "3", Columns: []*canaryv1.MetricColumn{{Metric: "order_value", Cohort: 2, Values: []float64{-1, math.NaN()}}}},
		{BatchId: "4", Samples: []*canaryv1.Sample{{Metric: "errors", Cohort: 1, Observation: &canaryv1.Sample_Counts{Counts: &canaryv1.Counts{Count: 2, Total: 1}}}}},
	}
	for _, b := range seed {
		raw, err := proto.Marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	e := newEnv(f, func(o *Options) { o.MaxBatchSamples = 10_000 })
	cfg := testConfig("fuzz")
	cfg.Warmup = nil
	run := e.createRun(context.Background(), "fuzz", cfg, time.Hour)
	acfg, err := apiconv.ConfigFromProto(run.GetConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		pb := new(canaryv1.Batch)
		if proto.Unmarshal(raw, pb) != nil {
			return
		}
		pb.RunId = run.GetId()
		b, err := e.svc.prepare(context.Background(), pb)
		if err != nil {
			ae, ok := err.(*apiError)
			if !ok || len(ae.violations) == 0 {
				t.Fatalf("rejection without field violations: %v", err)
			}
			return
		}
		if got, want := b.total(), batchSize(pb); got != want {
			t.Fatalf("folded %d observations, batch has %d", got, want)
		}
		_, d, err := decodeDelta(acfg, b.blob)
		if err != nil {
			t.Fatalf("delta does not decode: %v", err)
		}
		bl, ca := cohortSamples(d)
		if bl+ca != b.total() {
			t.Fatalf("delta holds %d observations, want %d", bl+ca, b.total())
		}
		analysis.Judge(d, analysis.Options{BakeComplete: true}) // must not panic
	})
}
