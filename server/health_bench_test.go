package server

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store/embedded"
)

// BenchmarkHealthUnderJudges measures how responsive canaryd stays while
// heavy judges run: `judges` goroutines each keep ingesting a one-value
// batch into their own heavy run (50 distribution metrics, a 1m window, 4
// windows of samples spread over 19 decades from 64 instances: the
// costliest state a config can have, about 40 MB) and judging it, so that
// every Judge is uncached. Meanwhile one op is a grpc.health.v1 Check
// followed by an Ingest of one value into a light run, on their own
// connection, 10 ms apart. It reports the p50/p99/max of both, the judges'
// p50 latency and throughput, and from runtime/metrics over the measurement the p99 of
// goroutine scheduling latency (time runnable before running) and the
// share of CPU time spent in GC. Server and clients share the machine
// (loopback TCP). slots is Options.JudgeConcurrency (0: its default).
//
//	go test -run '^$' -bench BenchmarkHealthUnderJudges -benchtime 300x ./server/
func BenchmarkHealthUnderJudges(b *testing.B) {
	for _, c := range []struct{ judges, slots int }{{0, 0}, {8, 0}, {8, runtime.NumCPU()}} {
		name := fmt.Sprintf("judges=%d", c.judges)
		if c.slots != 0 {
			name += fmt.Sprintf("/slots=%d", c.slots)
		}
		b.Run(name, func(b *testing.B) { benchHealthUnderJudges(b, c.judges, c.slots) })
	}
}

func benchHealthUnderJudges(b *testing.B, judges, slots int) {
	st, err := embedded.Open(filepath.Join(b.TempDir(), "bench.db"), embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	svc, err := New(Options{Store: st, JudgeConcurrency: slots})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer(svc.ServerOptions()...)
	svc.Register(gs)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(lis)
	defer gs.Stop()
	dial := func() *grpc.ClientConn {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		return conn
	}
	work := canaryv1.NewCanaryServiceClient(dial())
	probeConn := dial()
	probe, hc := canaryv1.NewCanaryServiceClient(probeConn), healthpb.NewHealthClient(probeConn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	heavy := make([]string, judges)
	for i := range heavy {
		heavy[i] = createHeavyRun(ctx, b, work, fmt.Sprintf("heavy-%d", i))
	}
	light, err := probe.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: "light", Service: "bench", Stage: "bench",
		Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("light")},
	})
	if err != nil {
		b.Fatal(err)
	}
	lightID := light.GetRun().GetId()

	stop := make(chan struct{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		judgeMs []float64
	)
	for i, id := range heavy {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				bt := &canaryv1.Batch{RunId: id, BatchId: fmt.Sprintf("poke-%d-%d", i, k), Columns: []*canaryv1.MetricColumn{
					{Metric: "m00", Cohort: canaryv1.Cohort_COHORT_CANARY, Values: []float64{1}},
				}}
				if _, err := work.Ingest(ctx, &canaryv1.IngestRequest{Batch: bt}); err != nil {
					b.Error(err)
					return
				}
				start := time.Now()
				if _, err := work.Judge(ctx, &canaryv1.JudgeRequest{RunId: id}); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				judgeMs = append(judgeMs, msSince(start))
				mu.Unlock()
			}
		})
	}
	if judges > 0 {
		time.Sleep(2 * time.Second) // let the judges get going
	}

	var healthMs, ingestMs []float64
	k := 0
	before := readRuntimeMetrics()
	mu.Lock()
	judgedBefore, t0 := len(judgeMs), time.Now()
	mu.Unlock()
	for b.Loop() {
		start := time.Now()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			b.Fatalf("health: %v, %v", r, err)
		}
		healthMs = append(healthMs, msSince(start))
		start = time.Now()
		bt := &canaryv1.Batch{RunId: lightID, BatchId: strconv.Itoa(k), Columns: []*canaryv1.MetricColumn{
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Values: []float64{80}},
		}}
		k++
		if _, err := probe.Ingest(ctx, &canaryv1.IngestRequest{Batch: bt}); err != nil {
			b.Fatal(err)
		}
		ingestMs = append(ingestMs, msSince(start))
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	after := readRuntimeMetrics()
	mu.Lock()
	judged, elapsed := len(judgeMs)-judgedBefore, time.Since(t0)
	mu.Unlock()
	close(stop)
	wg.Wait()
	report := func(name string, ms []float64) {
		if len(ms) == 0 {
			return
		}
		slices.Sort(ms)
		b.ReportMetric(ms[len(ms)/2], name+"-p50-ms")
		b.ReportMetric(ms[min(len(ms)-1, len(ms)*99/100)], name+"-p99-ms")
		b.ReportMetric(ms[len(ms)-1], name+"-max-ms")
	}
	report("health", healthMs)
	report("ingest", ingestMs)
	if len(judgeMs) > 0 {
		slices.Sort(judgeMs)
		b.ReportMetric(judgeMs[len(judgeMs)/2], "judge-p50-ms")
		b.ReportMetric(float64(judged)/elapsed.Seconds(), "judges/s")
	}
	b.ReportMetric(1000*histQuantile(before[0].Value.Float64Histogram(), after[0].Value.Float64Histogram(), 0.99), "sched-p99-ms")
	gc, total := after[1].Value.Float64()-before[1].Value.Float64(), after[2].Value.Float64()-before[2].Value.Float64()
	b.ReportMetric(100*gc/total, "gc-cpu-%")
}

// readRuntimeMetrics reads the scheduling latencies, the GC CPU time and
// the total CPU time of the process.
func readRuntimeMetrics() []rtmetrics.Sample {
	s := []rtmetrics.Sample{
		{Name: "/sched/latencies:seconds"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
	}
	rtmetrics.Read(s)
	return s
}

// histQuantile returns the q quantile of the observations added to a
// cumulative histogram between two readings (the upper bound of its
// bucket).
func histQuantile(before, after *rtmetrics.Float64Histogram, q float64) float64 {
	var n uint64
	counts := make([]uint64, len(after.Counts))
	for i := range counts {
		counts[i] = after.Counts[i] - before.Counts[i]
		n += counts[i]
	}
	want := uint64(math.Ceil(q * float64(n)))
	var c uint64
	for i, k := range counts {
		if c += k; c >= want && k > 0 {
			return after.Buckets[i+1]
		}
	}
	return math.NaN()
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// createHeavyRun creates a run with the costliest state a config can give
// (see BenchmarkHealthUnderJudges) and returns its id.
func createHeavyRun(ctx context.Context, b *testing.B, c canaryv1.CanaryServiceClient, reqID string) string {
	b.Helper()
	cfg := &canaryv1.CanaryConfig{Name: "heavy", Window: durationpb.New(time.Minute)}
	for i := range 50 {
		cfg.Metrics = append(cfg.Metrics, &canaryv1.MetricConfig{
			Name: fmt.Sprintf("m%02d", i), Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
			Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION,
		})
	}
	resp, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: reqID, Service: "bench", Stage: "bench",
		Config:   &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: cfg},
		BakeTime: durationpb.New(time.Hour),
	})
	if err != nil {
		b.Fatal(err)
	}
	id := resp.GetRun().GetId()
	rng := rand.New(rand.NewPCG(1, 2))
	// Four windows ending now, so that the judge tests all of them.
	now := time.Now().Truncate(time.Minute)
	for ep := range 4 {
		at := timestamppb.New(now.Add(time.Duration(ep-3)*time.Minute + time.Second))
		for _, m := range cfg.Metrics {
			bt := &canaryv1.Batch{RunId: id, BatchId: fmt.Sprintf("%d-%s", ep, m.GetName())}
			for _, co := range []canaryv1.Cohort{canaryv1.Cohort_COHORT_BASELINE, canaryv1.Cohort_COHORT_CANARY} {
				for inst := range 64 {
					vs := make([]float64, 400)
					for j := range vs {
						vs[j] = math.Exp(-20 + 44*rng.Float64())
					}
					bt.Columns = append(bt.Columns, &canaryv1.MetricColumn{
						Metric: m.GetName(), Cohort: co, Values: vs, Time: at, Instance: "i" + strconv.Itoa(inst)})
				}
			}
			if _, err := c.Ingest(ctx, &canaryv1.IngestRequest{Batch: bt}); err != nil {
				b.Fatal(err)
			}
		}
	}
	return id
}
