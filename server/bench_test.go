package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store/embedded"
)

// BenchmarkIngestStream streams batches of lognormal latencies (half
// baseline, half canary, as two columns) into one run through canaryd on
// loopback TCP, every batch acknowledged durably by the embedded store. It
// reports observations/s; client and server share the machine.
//
//	go test -run '^$' -bench BenchmarkIngestStream -benchtime 400x ./server/
func BenchmarkIngestStream(b *testing.B) {
	for _, size := range []int{1_000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) { benchIngestStream(b, size, nil, "") })
	}
}

// serveTCP serves a Service on st (with opt's changes to its options)
// over loopback TCP, as the daemon does, and returns a client of it. The
// client, server and Service close when tb ends, before st when st's
// Close was registered with tb.Cleanup first.
func serveTCP(tb testing.TB, st Store, opt func(*Options)) canaryv1.CanaryServiceClient {
	tb.Helper()
	opts := Options{Store: st}
	if opt != nil {
		opt(&opts)
	}
	svc, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer(svc.ServerOptions()...)
	svc.Register(gs)
	go gs.Serve(lis)
	tb.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return canaryv1.NewCanaryServiceClient(conn)
}

// benchIngestStream streams batches of size; opt adjusts the service's
// options and token, when set, is sent as a bearer token.
func benchIngestStream(b *testing.B, size int, opt func(*Options), token string) {
	st, err := embedded.Open(filepath.Join(b.TempDir(), "bench.db"), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	c := serveTCP(b, st, opt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ctx = withToken(ctx, token)
	resp, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: "bench", Service: "bench", Stage: "bench",
		Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("bench")},
	})
	if err != nil {
		b.Fatal(err)
	}
	runID := resp.GetRun().GetId()

	batch := benchBatches(runID, size)

	b.ReportAllocs()
	b.SetBytes(int64(8 * size))
	b.ResetTimer()
	stream, err := c.IngestStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		for i := range b.N {
			if err := stream.Send(batch(i)); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	var last *canaryv1.IngestStreamResponse
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		last = r
	}
	if err := <-sendErr; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if got := last.GetSamples(); got != uint64(b.N*size) {
		b.Fatalf("stored %d observations, want %d", got, b.N*size)
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "obs/s")
}

// BenchmarkJudge measures the judge of a 20-metric run, uncached, as the
// service calls it on the run's data in memory (judgeData).
func BenchmarkJudge(b *testing.B) {
	e, lr := judgeBenchRun(b)
	b.ReportAllocs()
	b.ResetTimer()
	took := make([]time.Duration, 0, b.N)
	for i := range b.N {
		start := time.Now()
		judgeInPlace(e, lr, i%2 == 0)
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	reportP99(b, took)
}

// judgeInPlace judges lr's data under its lock, without a copy.
func judgeInPlace(e *env, lr *liveRun, bake bool) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if _, err := e.svc.judgeData(lr, lr.st.data, bake); err != nil {
		panic(err)
	}
}

// missCache makes the next judge of lr a cache miss.
func missCache(lr *liveRun) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.st.version++
}

// BenchmarkJudgeRPC measures the Judge call end to end over bufconn,
// uncached: with CANARYD_TEST_STORE=redis it includes the catch-up read a
// replica makes from Redis before judging.
func BenchmarkJudgeRPC(b *testing.B) {
	e, lr := judgeBenchRun(b)
	ctx := context.Background()
	req := &canaryv1.JudgeRequest{RunId: lr.id}
	b.ReportAllocs()
	b.ResetTimer()
	took := make([]time.Duration, 0, b.N)
	for range b.N {
		missCache(lr)
		start := time.Now()
		if _, err := e.c.Judge(ctx, req); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	reportP99(b, took)
}

func reportP99(b *testing.B, took []time.Duration) {
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}

// judgeBenchRun creates a run of 20 distribution metrics with 20,000
// observations per cohort each and returns it loaded in memory.
func judgeBenchRun(b *testing.B) (*env, *liveRun) {
	e := newEnv(b, nil)
	ctx := context.Background()
	cfg := &canaryv1.CanaryConfig{Name: "judge"}
	for i := range 20 {
		cfg.Metrics = append(cfg.Metrics, &canaryv1.MetricConfig{
			Name: fmt.Sprintf("m%02d", i), Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
			Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION,
		})
	}
	run := e.createRun(ctx, "judge", cfg, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	for k := range 8 {
		bt := &canaryv1.Batch{RunId: run.GetId(), BatchId: strconv.Itoa(k)}
		for _, m := range cfg.Metrics {
			for _, c := range []canaryv1.Cohort{canaryv1.Cohort_COHORT_BASELINE, canaryv1.Cohort_COHORT_CANARY} {
				vs := make([]float64, 2500)
				for j := range vs {
					vs[j] = 80 * math.Exp(0.4*rng.NormFloat64())
				}
				bt.Columns = append(bt.Columns, &canaryv1.MetricColumn{Metric: m.GetName(), Cohort: c, Values: vs})
			}
		}
		e.ingest(ctx, bt)
	}
	lr, err := e.svc.use(ctx, run.GetId())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.svc.release(lr) })
	return e, lr
}

// benchBatches returns the i-th ingest request of the ingest benchmarks:
// size latency observations (half per cohort) from a pool of 8 distinct
// column pairs, reused with fresh batch ids.
func benchBatches(runID string, size int) func(i int) *canaryv1.IngestStreamRequest {
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([][2][]float64, 8)
	for i := range pool {
		for c := range pool[i] {
			vs := make([]float64, size/2)
			for j := range vs {
				vs[j] = 80 * math.Exp(0.4*rng.NormFloat64())
			}
			pool[i][c] = vs
		}
	}
	return func(i int) *canaryv1.IngestStreamRequest {
		p := pool[i%len(pool)]
		return &canaryv1.IngestStreamRequest{Batch: &canaryv1.Batch{
			RunId: runID, BatchId: strconv.Itoa(i),
			Columns: []*canaryv1.MetricColumn{
				{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Values: p[0]},
				{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Values: p[1]},
			},
		}}
	}
}
