package server

import (
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestIngest: unary batches are acknowledged with their size, a retried
// batch is a duplicate counted once, and the counters add up.
func TestIngest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "ingest", testConfig("checkout"), time.Hour)
	rng := rand.New(rand.NewPCG(1, 1))
	b1 := makeBatch(rng, run.GetId(), "b1", scenario{1, 1, 300})
	b2 := makeBatch(rng, run.GetId(), "b2", scenario{1, 1, 300})

	a := e.ingest(ctx, b1)
	if a.GetDuplicate() || a.GetSamples() != batchSize(b1) || a.GetBatchId() != "b1" || a.GetRunId() != run.GetId() {
		t.Fatalf("ack: %v", a)
	}
	if a := e.ingest(ctx, b1); !a.GetDuplicate() || a.GetSamples() != 0 {
		t.Fatalf("retry ack: %v", a)
	}
	e.clock.Advance(time.Second)
	e.ingest(ctx, b2)

	c := e.getRun(ctx, run.GetId()).GetCounters()
	half := (batchSize(b1) + batchSize(b2)) / 2
	if c.GetBatches() != 2 || c.GetDuplicateBatches() != 1 || c.GetBaselineSamples() != half || c.GetCanarySamples() != half ||
		!c.GetLastIngestTime().AsTime().Equal(e.clock.Now()) {
		t.Errorf("counters: %v", c)
	}
	if _, deltas := e.storedDeltas(ctx, run.GetId()); deltas != 2 {
		t.Errorf("%d deltas stored, want 2", deltas)
	}
	if v := e.judge(ctx, run.GetId()); v.GetMetrics()[0].GetBaseline().GetN() != 600 {
		t.Errorf("judge sees %d latency observations, want 600", v.GetMetrics()[0].GetBaseline().GetN())
	}
	if got := counterValue(t, e.svc.metrics.batches.WithLabelValues("duplicate")); got != 1 {
		t.Errorf("duplicate batches metric = %v", got)
	}
	if got := counterValue(t, e.svc.metrics.samples); got != float64(2*half) {
		t.Errorf("samples metric = %v, want %d", got, 2*half)
	}
}

// TestIngestStream: acknowledgements come in order with running totals; a
// batch id sent twice on the stream is stored once.
func TestIngestStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.SnapshotEvery = 7 })
	ctx := ctxT(t)
	run := e.createRun(ctx, "stream", testConfig("checkout"), time.Hour)
	other := e.createRun(ctx, "stream-2", testConfig("checkout"), time.Hour)
	rng := rand.New(rand.NewPCG(2, 2))

	stream, err := e.c.IngestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sent []*canaryv1.Batch
	ids := seqIDs("s", 40)
	for i, id := range ids {
		runID := run.GetId()
		if i%4 == 3 {
			runID = other.GetId() // batches of several runs on one stream
		}
		sent = append(sent, makeBatch(rng, runID, id, scenario{1, 1, 200}))
	}
	sent = append(sent, sent[5], sent[6]) // retries
	go func() {
		for _, b := range sent {
			if err := stream.Send(&canaryv1.IngestStreamRequest{Batch: b}); err != nil {
				return
			}
		}
		stream.CloseSend()
	}()
	var last *canaryv1.IngestStreamResponse
	for i := 0; ; i++ {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if i != len(sent) {
				t.Fatalf("%d acks, want %d", i, len(sent))
			}
			break
		}
		if err != nil {
			t.Fatalf("recv ack %d: %v", i, err)
		}
		if got, want := resp.GetAck().GetBatchId(), sent[i].GetBatchId(); got != want {
			t.Fatalf("ack %d is for %s, want %s (in order)", i, got, want)
		}
		if dup := i >= len(ids); resp.GetAck().GetDuplicate() != dup {
			t.Errorf("ack %d duplicate = %v, want %v", i, resp.GetAck().GetDuplicate(), dup)
		}
		last = resp
	}
	var total uint64
	for _, b := range sent[:len(ids)] {
		total += batchSize(b)
	}
	if last.GetBatchesAccepted() != 40 || last.GetDuplicates() != 2 || last.GetSamples() != total {
		t.Errorf("stream totals: %v", last)
	}
	c := e.getRun(ctx, run.GetId()).GetCounters()
	if c.GetBatches() != 30 || c.GetDuplicateBatches() != 2 {
		t.Errorf("run counters: %v", c)
	}
	if c := e.getRun(ctx, other.GetId()).GetCounters(); c.GetBatches() != 10 {
		t.Errorf("other run counters: %v", c)
	}
	if v := e.judge(ctx, run.GetId()); v.GetMetrics()[0].GetCanary().GetN() != 30*200 {
		t.Errorf("judge sees %d canary latencies, want %d", v.GetMetrics()[0].GetCanary().GetN(), 30*200)
	}
}

// TestWarmup: observations in a cohort's first warm-up are excluded, from
// the run's creation for live samples and from the first observation for
// older (replayed) ones.
func TestWarmup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	cfg := testConfig("checkout")
	cfg.Warmup = durationpb.New(5 * time.Minute)
	live := e.createRun(ctx, "live", cfg, time.Hour)
	replay := e.createRun(ctx, "replay", cfg, time.Hour)
	t0 := e.clock.Now()

	col := func(runID, id string, at time.Time, n int) *canaryv1.Batch {
		vals := make([]float64, n)
		for i := range vals {
			vals[i] = 10
		}
		return &canaryv1.Batch{RunId: runID, BatchId: id, Columns: []*canaryv1.MetricColumn{
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Values: vals, Time: timestamppb.New(at)},
		}, Samples: []*canaryv1.Sample{{
			Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY,
			Observation: &canaryv1.Sample_Value{Value: 1}, Time: timestamppb.New(at),
		}}}
	}
	e.ingest(ctx, col(live.GetId(), "1", t0.Add(time.Minute), 10))   // in warm-up
	e.ingest(ctx, col(live.GetId(), "2", t0.Add(6*time.Minute), 20)) // after
	// Samples without a time get the receive time: in warm-up now...
	e.ingest(ctx, &canaryv1.Batch{RunId: live.GetId(), BatchId: "3", Samples: []*canaryv1.Sample{{
		Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Observation: &canaryv1.Sample_Value{Value: 1},
	}}})
	lat := e.judge(ctx, live.GetId()).GetMetrics()[0].GetCanary()
	if lat.GetN() != 21 || lat.GetWarmupExcluded() != 12 {
		t.Errorf("live: n=%d warmup=%d, want 21 and 12", lat.GetN(), lat.GetWarmupExcluded())
	}

	old := t0.Add(-72 * time.Hour)
	e.ingest(ctx, col(replay.GetId(), "1", old, 10))                    // the first observation: warm-up
	e.ingest(ctx, col(replay.GetId(), "2", old.Add(4*time.Minute), 5))  // warm-up
	e.ingest(ctx, col(replay.GetId(), "3", old.Add(5*time.Minute), 20)) // after
	lat = e.judge(ctx, replay.GetId()).GetMetrics()[0].GetCanary()
	if lat.GetN() != 21 || lat.GetWarmupExcluded() != 17 {
		t.Errorf("replay: n=%d warmup=%d, want 21 and 17", lat.GetN(), lat.GetWarmupExcluded())
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
