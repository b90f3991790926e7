package server

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	b1 := makeBatch(rng, run.GetId(), "b1", scenario{Latency: 1, Errors: 1, N: 300})
	b2 := makeBatch(rng, run.GetId(), "b2", scenario{Latency: 1, Errors: 1, N: 300})

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
		sent = append(sent, makeBatch(rng, runID, id, scenario{Latency: 1, Errors: 1, N: 200}))
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
// the run's start: its creation, or the start_time of a run that replays
// older data.
func TestWarmup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	cfg := testConfig("checkout")
	cfg.Warmup = durationpb.New(5 * time.Minute)
	live := e.createRun(ctx, "live", cfg, time.Hour)
	t0 := e.clock.Now()
	old := t0.Add(-72 * time.Hour)
	rr, err := e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: "replay", Service: "checkout", Stage: "wave-1",
		Config:    &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: cfg},
		StartTime: timestamppb.New(old),
	})
	if err != nil {
		t.Fatal(err)
	}
	replay := rr.GetRun()
	if !replay.GetStartTime().AsTime().Equal(old) || !live.GetStartTime().AsTime().Equal(live.GetCreateTime().AsTime()) {
		t.Errorf("start times %v and %v", replay.GetStartTime(), live.GetStartTime())
	}

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
	e.ingest(ctx, col(live.GetId(), "1", t0.Add(time.Minute), 10)) // in warm-up
	e.clock.Advance(6 * time.Minute)
	e.ingest(ctx, col(live.GetId(), "2", t0.Add(6*time.Minute), 20)) // after
	// Samples without a time get the receive time: after the warm-up now...
	e.ingest(ctx, &canaryv1.Batch{RunId: live.GetId(), BatchId: "3", Samples: []*canaryv1.Sample{{
		Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Observation: &canaryv1.Sample_Value{Value: 1},
	}}})
	lat := e.judge(ctx, live.GetId()).GetMetrics()[0].GetCanary()
	if lat.GetN() != 22 || lat.GetWarmupExcluded() != 11 {
		t.Errorf("live: n=%d warmup=%d, want 22 and 11", lat.GetN(), lat.GetWarmupExcluded())
	}

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

// TestIngestClockSkew: a sample timed before its run's start, or after the
// server's clock, by more than the clock-skew allowance is rejected with
// INVALID_ARGUMENT naming its time, and the batch stores nothing: one
// sample dated 1970 or 9999 would otherwise count in the warm-up or move
// the window tests.
func TestIngestClockSkew(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.ClockSkew = 5 * time.Minute })
	ctx := ctxT(t)
	run := e.createRun(ctx, "skew", testConfig("checkout"), time.Hour)
	now := e.clock.Now()
	one := func(id string, at time.Time) *canaryv1.Batch {
		return &canaryv1.Batch{RunId: run.GetId(), BatchId: id, Samples: []*canaryv1.Sample{
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Observation: &canaryv1.Sample_Value{Value: 3}},
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Observation: &canaryv1.Sample_Value{Value: 3}, Time: timestamppb.New(at)},
		}}
	}
	for _, tc := range []struct {
		at   time.Time
		want string // "" accepted, else the start of the field's description
	}{
		{time.Unix(0, 0), "is 1970-01-01T00:00:00Z, before the run's start"},
		{time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), "is 9999-12-31T00:00:00Z, later than the server's clock"},
		{now.Add(-6 * time.Minute), "is 2026-11-22T09:54:00Z, before the run's start"},
		{now.Add(6 * time.Minute), "later than the server's clock"},
		{now.Add(-4 * time.Minute), ""},
		{now.Add(4 * time.Minute), ""},
	} {
		_, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: one(tc.at.Format(time.RFC3339), tc.at)})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.at, err)
			}
			continue
		}
		st := status.Convert(err)
		vs := violationsOf(st)
		if st.Code() != codes.InvalidArgument || len(vs) != 1 || vs[0].GetField() != "batch.samples[1].time" ||
			!strings.Contains(vs[0].GetDescription(), tc.want) {
			t.Errorf("%v: %v %v, want INVALID_ARGUMENT on batch.samples[1].time %q", tc.at, st.Code(), vs, tc.want)
		}
	}
	if c := e.getRun(ctx, run.GetId()).GetCounters(); c.GetBatches() != 2 || c.GetCanarySamples() != 4 {
		t.Errorf("counters %v: the rejected batches stored something", c)
	}
}

// TestIngestOrderIndependent: a run's verdict is a function of its set of
// acknowledged batches. The same samples, split into batches of other
// sizes, in another order, and sent on concurrent streams, give a second
// run (with the same start) the same final verdict; a batch of old samples
// arriving last does not move the warm-up (it did: the warm-up started at
// whichever sample folded first).
func TestIngestOrderIndependent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	cfg := testConfig("checkout")
	cfg.Warmup = durationpb.New(5 * time.Minute)
	start := e.clock.Now().Add(-40 * time.Minute)
	rng := rand.New(rand.NewPCG(7, 7))
	type sample struct {
		metric string
		cohort canaryv1.Cohort
		value  float64
		counts *canaryv1.Counts
		at     time.Time
	}
	var all []sample
	for m := range 40 {
		at := start.Add(time.Duration(m)*time.Minute + 10*time.Second)
		for _, c := range []canaryv1.Cohort{canaryv1.Cohort_COHORT_BASELINE, canaryv1.Cohort_COHORT_CANARY} {
			f := 1.0
			if c == canaryv1.Cohort_COHORT_CANARY {
				f = 1.12
			}
			for range 40 {
				all = append(all, sample{metric: "latency_ms", cohort: c, value: 80 * f * math.Exp(0.4*rng.NormFloat64()), at: at})
				all = append(all, sample{metric: "order_value", cohort: c, value: 50 + 10*rng.NormFloat64(), at: at})
			}
			all = append(all, sample{metric: "errors", cohort: c, counts: &canaryv1.Counts{Count: float64(rng.IntN(6)), Total: 500}, at: at})
		}
	}
	batches := func(runID string, order []int, size func() int) []*canaryv1.Batch {
		var out []*canaryv1.Batch
		for lo := 0; lo < len(order); {
			hi := min(len(order), lo+size())
			b := &canaryv1.Batch{RunId: runID, BatchId: fmt.Sprintf("b%d", len(out))}
			for _, k := range order[lo:hi] {
				s := all[k]
				smp := &canaryv1.Sample{Metric: s.metric, Cohort: s.cohort, Time: timestamppb.New(s.at)}
				if s.counts != nil {
					smp.Observation = &canaryv1.Sample_Counts{Counts: s.counts}
				} else {
					smp.Observation = &canaryv1.Sample_Value{Value: s.value}
				}
				b.Samples = append(b.Samples, smp)
			}
			out = append(out, b)
			lo = hi
		}
		return out
	}
	final := func(reqID string, order []int, size func() int, streams int) *canaryv1.Verdict {
		resp, err := e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{RequestId: reqID, Service: "checkout", Stage: "s",
			Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: cfg}, StartTime: timestamppb.New(start)})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetRun().GetId()
		bs := batches(id, order, size)
		var wg sync.WaitGroup
		for w := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; k < len(bs); k += streams {
					if _, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: bs[k]}); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		c, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id})
		if err != nil {
			t.Fatal(err)
		}
		return c.GetRun().GetVerdict()
	}
	inOrder := make([]int, len(all))
	for i := range inOrder {
		inOrder[i] = i
	}
	// In time order, 500 samples a batch.
	want := final("in-order", inOrder, func() int { return 500 }, 1)
	// Newest first (the warm-up's samples last), batches of 1 to 3,000
	// samples on four concurrent callers.
	rev := slices.Clone(inOrder)
	slices.Reverse(rev)
	got := final("reversed", rev, func() int { return 1 + rng.IntN(3000) }, 4)
	shuffled := final("shuffled", rng.Perm(len(all)), func() int { return 1 + rng.IntN(3000) }, 3)
	for _, v := range []*canaryv1.Verdict{got, shuffled} {
		if v.GetDecision() != want.GetDecision() || len(v.GetMetrics()) != len(want.GetMetrics()) {
			t.Fatalf("%s (%s), want %s (%s)", v.GetDecision(), v.GetReason(), want.GetDecision(), want.GetReason())
		}
		for i, m := range v.GetMetrics() {
			w := want.GetMetrics()[i]
			near := func(a, b float64) bool { return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b)) }
			if m.GetOutcome() != w.GetOutcome() || !near(m.GetPValue(), w.GetPValue()) || !near(m.GetPromotePValue(), w.GetPromotePValue()) ||
				!near(m.GetEffect().GetEstimate(), w.GetEffect().GetEstimate()) ||
				m.GetCanary().GetN() != w.GetCanary().GetN() || m.GetCanary().GetWarmupExcluded() != w.GetCanary().GetWarmupExcluded() {
				t.Errorf("%s: %v\nwant %v", m.GetName(), m, w)
			}
		}
	}
	if lat := want.GetMetrics()[0]; lat.GetCanary().GetWarmupExcluded() != 5*40 || lat.GetCanary().GetN() != 35*40 {
		t.Errorf("warm-up: canary n=%d excluded %d, want 1400 and 200", lat.GetCanary().GetN(), lat.GetCanary().GetWarmupExcluded())
	}
}

// violationsOf returns the field violations of a status.
func violationsOf(st *status.Status) []*errdetails.BadRequest_FieldViolation {
	var out []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			out = append(out, br.GetFieldViolations()...)
		}
	}
	return out
}

// TestIngestHistograms: histograms (Prometheus classic buckets, as samples
// and as a column) are folded as their observations; malformed ones and
// histograms of a rate metric are rejected naming the field, storing
// nothing.
func TestIngestHistograms(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "hist", testConfig("checkout"), time.Hour)
	hist := func(counts ...float64) *canaryv1.Histogram {
		return &canaryv1.Histogram{Sum: ptr(1234.5), Buckets: &canaryv1.Histogram_Explicit{Explicit: &canaryv1.ExplicitBuckets{
			UpperBounds: []float64{25, 50, 100, math.Inf(1)}, CumulativeCounts: counts}}}
	}
	ok := &canaryv1.Batch{RunId: run.GetId(), BatchId: "1", Samples: []*canaryv1.Sample{
		{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Observation: &canaryv1.Sample_Histogram{Histogram: hist(10, 30, 35, 36)}},
	}, Columns: []*canaryv1.MetricColumn{
		{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Instance: "pod-a", Histograms: []*canaryv1.Histogram{hist(1, 2, 3, 4), hist(5, 5, 5, 5)}},
	}}
	if a := e.ingest(ctx, ok); a.GetSamples() != 36+4+5 {
		t.Errorf("ack counts %d observations, want 45", a.GetSamples())
	}
	v := e.judge(ctx, run.GetId())
	if lat := v.GetMetrics()[0]; lat.GetCanary().GetN() != 36 || lat.GetBaseline().GetN() != 9 {
		t.Errorf("latency n %d + %d, want 9 + 36", lat.GetBaseline().GetN(), lat.GetCanary().GetN())
	}
	for _, tc := range []struct {
		b     *canaryv1.Batch
		field string
	}{
		{&canaryv1.Batch{Samples: []*canaryv1.Sample{{Metric: "latency_ms", Cohort: 1, Observation: &canaryv1.Sample_Histogram{Histogram: hist(10, 5, 35, 36)}}}},
			"batch.samples[0].histogram.explicit.cumulative_counts[1]"},
		{&canaryv1.Batch{Samples: []*canaryv1.Sample{{Metric: "errors", Cohort: 1, Observation: &canaryv1.Sample_Histogram{Histogram: hist(1, 2, 3, 4)}}}},
			"batch.samples[0].histogram"},
		{&canaryv1.Batch{Columns: []*canaryv1.MetricColumn{{Metric: "latency_ms", Cohort: 1, Values: []float64{1}, Histograms: []*canaryv1.Histogram{hist(1, 2, 3, 4)}}}},
			"batch.columns[0].histograms"},
		{&canaryv1.Batch{Columns: []*canaryv1.MetricColumn{{Metric: "latency_ms", Cohort: 1, Histograms: []*canaryv1.Histogram{hist(1, 2, 3, 4), {}}}}},
			"batch.columns[0].histograms[1].buckets"},
	} {
		tc.b.RunId, tc.b.BatchId = run.GetId(), "bad"
		_, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: tc.b})
		wantCode(t, err, codes.InvalidArgument, tc.field)
	}
	if c := e.getRun(ctx, run.GetId()).GetCounters(); c.GetBatches() != 1 {
		t.Errorf("counters %v: a rejected batch was stored", c)
	}
}
