package server

import (
	"context"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestInvalidInput: every kind of bad input is rejected with the right
// code, a field violation naming the field, and nothing stored: the run's
// counters, its stored deltas, its verdict and the configs and runs of the
// store are unchanged.
func TestInvalidInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.MaxBatchSamples = 1000 })
	ctx := ctxT(t)
	run := e.createRun(ctx, "valid", testConfig("checkout"), time.Hour)
	finished := e.createRun(ctx, "finished", testConfig("checkout"), time.Hour)
	if _, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: finished.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("checkout")}}); err != nil {
		t.Fatal(err)
	}
	// Some valid data, so that "nothing changed" is not trivially true.
	e.ingest(ctx, &canaryv1.Batch{RunId: run.GetId(), BatchId: "ok", Columns: []*canaryv1.MetricColumn{
		{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Values: []float64{1, 2, 3}},
	}})

	value := func(metric string, c canaryv1.Cohort, v float64) *canaryv1.Sample {
		return &canaryv1.Sample{Metric: metric, Cohort: c, Observation: &canaryv1.Sample_Value{Value: v}}
	}
	counts := func(c canaryv1.Cohort, n, total float64) *canaryv1.Sample {
		return &canaryv1.Sample{Metric: "errors", Cohort: c, Observation: &canaryv1.Sample_Counts{Counts: &canaryv1.Counts{Count: n, Total: total}}}
	}
	const base, canary = canaryv1.Cohort_COHORT_BASELINE, canaryv1.Cohort_COHORT_CANARY
	good := value("latency_ms", base, 80)
	goodValues := func(n int) []float64 {
		vs := make([]float64, n)
		for i := range vs {
			vs[i] = float64(i + 1)
		}
		return vs
	}
	withValue := func(vs []float64, i int, v float64) []float64 { vs[i] = v; return vs }
	batch := func(samples []*canaryv1.Sample, cols ...*canaryv1.MetricColumn) *canaryv1.Batch {
		return &canaryv1.Batch{RunId: run.GetId(), BatchId: "bad", Samples: samples, Columns: cols}
	}
	ingest := func(b *canaryv1.Batch) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: b})
			return err
		}
	}
	// stream sends a valid batch then b on one stream: the valid one is
	// acknowledged, b ends the stream.
	stream := func(b *canaryv1.Batch) func(context.Context) error {
		return func(ctx context.Context) error {
			s, err := e.c.IngestStream(ctx)
			if err != nil {
				return err
			}
			ok := &canaryv1.Batch{RunId: run.GetId(), BatchId: "ok", Samples: []*canaryv1.Sample{good}} // a duplicate
			if err := s.Send(&canaryv1.IngestStreamRequest{Batch: ok}); err != nil {
				return err
			}
			if err := s.Send(&canaryv1.IngestStreamRequest{Batch: b}); err != nil {
				return err
			}
			ack, err := s.Recv()
			if err != nil {
				return err
			}
			if !ack.GetAck().GetDuplicate() {
				t.Errorf("stream: first ack %v, want a duplicate", ack)
			}
			_, err = s.Recv()
			return err
		}
	}
	putConfig := func(req *canaryv1.PutConfigRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := e.c.PutConfig(ctx, req); return err }
	}
	createRun := func(mod func(*canaryv1.CreateRunRequest)) func(context.Context) error {
		req := &canaryv1.CreateRunRequest{
			RequestId: "new", Service: "checkout", Stage: "wave-1",
			Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("checkout")},
		}
		mod(req)
		return func(ctx context.Context) error { _, err := e.c.CreateRun(ctx, req); return err }
	}
	badTolerance := testConfig("checkout")
	badTolerance.Metrics[1].Tolerance = ptr(-0.1)

	for _, tc := range []struct {
		name  string
		call  func(context.Context) error
		code  codes.Code
		field string
	}{
		{"nan value", ingest(batch([]*canaryv1.Sample{good, good, good, value("latency_ms", canary, math.NaN())})),
			codes.InvalidArgument, "batch.samples[3].value"},
		{"+inf value", ingest(batch([]*canaryv1.Sample{value("order_value", base, math.Inf(1))})),
			codes.InvalidArgument, "batch.samples[0].value"},
		{"-inf value", ingest(batch([]*canaryv1.Sample{good, value("order_value", canary, math.Inf(-1))})),
			codes.InvalidArgument, "batch.samples[1].value"},
		{"inf in a column", ingest(batch(nil, &canaryv1.MetricColumn{Metric: "latency_ms", Cohort: canary,
			Values: withValue(goodValues(100), 17, math.Inf(1))})),
			codes.InvalidArgument, "batch.columns[0].values[17]"},
		{"nan in a column", ingest(batch([]*canaryv1.Sample{good}, &canaryv1.MetricColumn{Metric: "latency_ms", Cohort: canary, Values: goodValues(10)},
			&canaryv1.MetricColumn{Metric: "order_value", Cohort: canary, Values: withValue(goodValues(50), 49, math.NaN())})),
			codes.InvalidArgument, "batch.columns[1].values[49]"},
		{"negative distribution value", ingest(batch([]*canaryv1.Sample{value("latency_ms", base, -1)})),
			codes.InvalidArgument, "batch.samples[0].value"},
		{"negative in a column", ingest(batch(nil, &canaryv1.MetricColumn{Metric: "latency_ms", Cohort: base,
			Values: withValue(goodValues(20), 3, -5)})),
			codes.InvalidArgument, "batch.columns[0].values[3]"},
		{"negative count", ingest(batch([]*canaryv1.Sample{good, counts(base, -1, 10)})),
			codes.InvalidArgument, "batch.samples[1].counts.count"},
		{"count > total", ingest(batch([]*canaryv1.Sample{counts(canary, 11, 10)})),
			codes.InvalidArgument, "batch.samples[0].counts.count"},
		{"nan total", ingest(batch([]*canaryv1.Sample{counts(canary, 1, math.NaN())})),
			codes.InvalidArgument, "batch.samples[0].counts.total"},
		{"count > total in a column", ingest(batch(nil, &canaryv1.MetricColumn{Metric: "errors", Cohort: base,
			Counts: []float64{1, 2, 30}, Totals: []float64{10, 20, 20}})),
			codes.InvalidArgument, "batch.columns[0].counts[2]"},
		{"negative count in a column", ingest(batch(nil, &canaryv1.MetricColumn{Metric: "errors", Cohort: base,
			Counts: []float64{-1}, Totals: []float64{10}})),
			codes.InvalidArgument, "batch.columns[0].counts[0]"},
		{"counts and totals unpaired", ingest(batch(nil, &canaryv1.MetricColumn{Metric: "errors", Cohort: base,
			Counts: []float64{1, 2}, Totals: []float64{10}})),
			codes.InvalidArgument, "batch.columns[0].totals"},
		{"value for a rate", ingest(batch([]*canaryv1.Sample{value("errors", base, 1)})),
			codes.InvalidArgument, "batch.samples[0].value"},
		{"counts for a distribution", ingest(batch([]*canaryv1.Sample{{Metric: "latency_ms", Cohort: base,
			Observation: &canaryv1.Sample_Counts{Counts: &canaryv1.Counts{Count: 1, Total: 2}}}})),
			codes.InvalidArgument, "batch.samples[0].counts"},
		{"no observation", ingest(batch([]*canaryv1.Sample{{Metric: "latency_ms", Cohort: base}})),
			codes.InvalidArgument, "batch.samples[0].value"},
		{"unknown metric", ingest(batch([]*canaryv1.Sample{good, value("cpu", base, 1)})),
			codes.InvalidArgument, "batch.samples[1].metric"},
		{"unknown metric in a column", ingest(batch(nil, &canaryv1.MetricColumn{Metric: "cpu", Cohort: base, Values: goodValues(3)})),
			codes.InvalidArgument, "batch.columns[0].metric"},
		{"unknown cohort", ingest(batch([]*canaryv1.Sample{value("latency_ms", canaryv1.Cohort_COHORT_UNSPECIFIED, 1)})),
			codes.InvalidArgument, "batch.samples[0].cohort"},
		{"undefined cohort in a column", ingest(batch(nil, &canaryv1.MetricColumn{Metric: "latency_ms", Cohort: 7, Values: goodValues(3)})),
			codes.InvalidArgument, "batch.columns[0].cohort"},
		{"bad time", ingest(batch([]*canaryv1.Sample{{Metric: "latency_ms", Cohort: base,
			Observation: &canaryv1.Sample_Value{Value: 1}, Time: &timestamppb.Timestamp{Nanos: -1}}})),
			codes.InvalidArgument, "batch.samples[0].time"},
		{"oversize batch", ingest(batch([]*canaryv1.Sample{good}, &canaryv1.MetricColumn{Metric: "latency_ms", Cohort: base, Values: goodValues(1000)})),
			codes.InvalidArgument, "batch"},
		{"no batch id", ingest(&canaryv1.Batch{RunId: run.GetId(), Samples: []*canaryv1.Sample{good}}),
			codes.InvalidArgument, "batch.batch_id"},
		{"no run id", ingest(&canaryv1.Batch{BatchId: "x", Samples: []*canaryv1.Sample{good}}),
			codes.InvalidArgument, "batch.run_id"},
		{"no batch", func(ctx context.Context) error { _, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{}); return err },
			codes.InvalidArgument, "batch"},
		{"unknown run", ingest(&canaryv1.Batch{RunId: "0000", BatchId: "x", Samples: []*canaryv1.Sample{good}}),
			codes.NotFound, ""},
		{"finished run", ingest(&canaryv1.Batch{RunId: finished.GetId(), BatchId: "x", Samples: []*canaryv1.Sample{good}}),
			codes.FailedPrecondition, ""},
		{"stream: nan value", stream(batch([]*canaryv1.Sample{good, value("latency_ms", canary, math.NaN())})),
			codes.InvalidArgument, "batch.samples[1].value"},
		{"stream: oversize", stream(batch(nil, &canaryv1.MetricColumn{Metric: "latency_ms", Cohort: base, Values: goodValues(1001)})),
			codes.InvalidArgument, "batch"},
		{"stream: finished run", stream(&canaryv1.Batch{RunId: finished.GetId(), BatchId: "x", Samples: []*canaryv1.Sample{good}}),
			codes.FailedPrecondition, ""},
		{"stream: unknown run", stream(&canaryv1.Batch{RunId: "0000", BatchId: "x", Samples: []*canaryv1.Sample{good}}),
			codes.NotFound, ""},
		{"bad config", putConfig(&canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: badTolerance}}),
			codes.InvalidArgument, "config.metrics[1].tolerance"},
		{"bad config: zero confidence", putConfig(&canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: func() *canaryv1.CanaryConfig {
			c := testConfig("checkout")
			c.Confidence = ptr(0.0)
			return c
		}()}}), codes.InvalidArgument, "config.confidence"},
		{"bad config: no metrics", putConfig(&canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: &canaryv1.CanaryConfig{Name: "x"}}}),
			codes.InvalidArgument, "config.metrics"},
		{"bad config: name mismatch", putConfig(&canaryv1.PutConfigRequest{Name: "other", Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("checkout")}}),
			codes.InvalidArgument, "name"},
		{"bad yaml config", putConfig(&canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: "name: x\nmetrics:\n  - name: a\n    category: stability\n    type: histogram\n"}}),
			codes.InvalidArgument, "yaml.metrics[0].type"},
		{"yaml syntax", putConfig(&canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: "name: [x"}}),
			codes.InvalidArgument, "yaml"},
		{"no config", putConfig(&canaryv1.PutConfigRequest{}), codes.InvalidArgument, "source"},
		{"create run: bad inline config", createRun(func(r *canaryv1.CreateRunRequest) {
			r.Config = &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: badTolerance}
		}), codes.InvalidArgument, "inline_config.metrics[1].tolerance"},
		{"create run: bad inline yaml", createRun(func(r *canaryv1.CreateRunRequest) {
			r.Config = &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: "name: x\nconfidence: 2\nmetrics: []\n"}
		}), codes.InvalidArgument, "inline_yaml.confidence"},
		{"create run: no service", createRun(func(r *canaryv1.CreateRunRequest) { r.Service = "" }),
			codes.InvalidArgument, "service"},
		{"create run: no request id", createRun(func(r *canaryv1.CreateRunRequest) { r.RequestId = "" }),
			codes.InvalidArgument, "request_id"},
		{"create run: no config", createRun(func(r *canaryv1.CreateRunRequest) { r.Config = nil }),
			codes.InvalidArgument, "config"},
		{"create run: traffic share", createRun(func(r *canaryv1.CreateRunRequest) { r.CanaryTrafficShare = ptr(1.5) }),
			codes.InvalidArgument, "canary_traffic_share"},
		{"create run: unknown config", createRun(func(r *canaryv1.CreateRunRequest) {
			r.Config = &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "nope"}}
		}), codes.NotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: each case checks that the shared state did not
			// change.
			ctx := ctxT(t)
			before := snapshotState(t, e, ctx, run.GetId())
			wantCode(t, tc.call(ctx), tc.code, tc.field)
			after := snapshotState(t, e, ctx, run.GetId())
			if !proto.Equal(before.runs, after.runs) || !proto.Equal(before.configs, after.configs) || before.deltas != after.deltas {
				t.Errorf("state changed: %d -> %d runs, %d -> %d config versions, %d -> %d deltas, counters %v -> %v",
					len(before.runs.GetRuns()), len(after.runs.GetRuns()), len(before.configs.GetConfigs()), len(after.configs.GetConfigs()),
					before.deltas, after.deltas, before.runs.GetRuns()[0].GetCounters(), after.runs.GetRuns()[0].GetCounters())
			}
		})
	}
}

type stateSnapshot struct {
	runs    *canaryv1.ListRunsResponse    // every run, with counters and verdict
	configs *canaryv1.ListConfigsResponse // every version of "checkout"
	deltas  int                           // deltas stored for the run
}

// snapshotState captures what a rejected request must not change.
func snapshotState(t *testing.T, e *env, ctx context.Context, runID string) stateSnapshot {
	t.Helper()
	e.judge(ctx, runID) // so the run's record carries its current verdict
	runs, err := e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := e.c.ListConfigs(ctx, &canaryv1.ListConfigsRequest{Name: "checkout"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs.GetRuns() {
		// The stream cases resend a stored batch first, on purpose.
		r.GetCounters().DuplicateBatches = 0
	}
	_, deltas := e.storedDeltas(ctx, runID)
	return stateSnapshot{runs: runs, configs: cfgs, deltas: deltas}
}
