package redisstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
	"github.com/canaryd/canaryd/server/store/storetest"
)

// BenchmarkAppendBatch measures appends of 4 KB deltas from 1, 16 and 128
// concurrent writers (spread over 16 runs) through one Store, against a
// redis-server with appendfsync always (each append returns once Redis has
// fsynced it: the durable configuration) and one without persistence.
func BenchmarkAppendBatch(b *testing.B) {
	servers := []struct {
		name string
		srv  *testredis.Server
	}{
		{"aof=always", testredis.StartWith(b, testredis.Options{AppendOnly: true})},
		{"aof=no", testredis.StartWith(b, testredis.Options{Private: true})},
	}
	for _, sv := range servers {
		b.Run(sv.name, func(b *testing.B) {
			storetest.BenchAppendBatch(b, func(b *testing.B, writers int) store.Store {
				return openStoreURL(b, sv.srv.URL()+"?pool_size="+strconv.Itoa(max(writers, 20)), Options{Prefix: sv.srv.Prefix(b)})
			})
		})
	}
}

// BenchmarkListVerdicts measures one page of history from a Redis holding
// 100k final verdicts (CANARYD_BENCH_VERDICTS overrides the count, e.g.
// 1000000) of 200 services × 10 stages × 3 decisions over a year, 10
// metrics of evidence each, the same fixture as the embedded store's
// benchmark.
func BenchmarkListVerdicts(b *testing.B) {
	n := 100_000
	if v := os.Getenv("CANARYD_BENCH_VERDICTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("CANARYD_BENCH_VERDICTS: %v", err)
		}
	}
	srv := testredis.StartWith(b, testredis.Options{Private: true})
	s := openStore(b, srv, Options{})
	start, span := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), 365*24*time.Hour
	t0 := time.Now()
	size, err := loadVerdicts(b.Context(), s, n, start, span)
	if err != nil {
		b.Fatal(err)
	}
	used := usedMemory(b, srv.Client(b))
	b.Logf("fixture: %d verdicts (%d bytes each encoded) loaded in %v; Redis used_memory %d MB, %d bytes per verdict",
		n, size/int64(n), time.Since(t0).Round(time.Second), used>>20, used/int64(n))

	storetest.BenchListVerdicts(b, s, start, span)
}

// loadVerdicts stores n final verdicts directly, pipelined, with the same
// keys and members as FinishRun, and returns their encoded size.
func loadVerdicts(ctx context.Context, s *Store, n int, start time.Time, span time.Duration) (int64, error) {
	src := storetest.NewVerdictSource(n, start, span)
	const perPipe = 5000
	var total int64
	pipe := s.c.Pipeline()
	for i := range n {
		v := src.Verdict(i)
		id, d := v.GetRunId(), v.GetDecision()
		data, err := proto.Marshal(v)
		if err != nil {
			return 0, err
		}
		total += int64(len(data))
		sh := shardOf(id)
		pipe.HSet(ctx, s.k.verdicts(sh), id, data)
		names, mem := indexEntries(v.GetService(), v.GetStage(), int32(d), v.GetTime().AsTime(), id)
		for _, name := range names {
			pipe.ZAdd(ctx, s.k.verdictIndex(sh, name), redis.Z{Member: mem})
		}
		if (i+1)%perPipe == 0 || i == n-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				return 0, fmt.Errorf("load verdicts up to %d: %w", i, err)
			}
		}
	}
	return total, nil
}

// BenchmarkMemoryPerRun stores b.N runs the way the server does and
// reports Redis's used_memory (INFO memory) per run at three points: while
// running (record, batch ids and deltas not yet folded, a snapshot), once
// finished (the same plus the final verdict in the history and its index
// entries), and once the raw data have expired (what the history keeps).
// Each run has a 20-metric config, CANARYD_BENCH_DELTAS deltas (default
// 20) of CANARYD_BENCH_DELTA_BYTES bytes (default 8192, about 1000
// observations) with 36-byte batch ids, a 16 KB snapshot and a 20-metric
// final verdict. Run it with a fixed count, e.g. -benchtime=1000x.
func BenchmarkMemoryPerRun(b *testing.B) {
	deltas, deltaBytes := envInt(b, "CANARYD_BENCH_DELTAS", 20), envInt(b, "CANARYD_BENCH_DELTA_BYTES", 8192)
	srv := testredis.StartWith(b, testredis.Options{Private: true})
	rc := srv.Client(b)
	s := openStore(b, srv, Options{})
	ctx := b.Context()
	rng := rand.New(rand.NewPCG(3, 4))
	payload := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	cfg := benchConfig(20)
	verdict := func(id string, final bool) *canaryv1.Verdict {
		return &canaryv1.Verdict{RunId: id, Decision: canaryv1.Decision_DECISION_PROMOTE, Reason: "all metrics within tolerance",
			Time: timestamppb.Now(), Final: final, ConfigName: "checkout", ConfigVersion: 3, Metrics: storetest.BenchMetrics(20), Sequence: 42, Confidence: 0.99}
	}
	if b.N > 1 {
		cfgSize, vSize := proto.Size(cfg), proto.Size(verdict("01JD0000000000000000000000", true))
		b.Logf("config %d bytes, verdict %d bytes encoded", cfgSize, vSize)
	}
	before := usedMemory(b, rc)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("01JD%022d", i) // a ULID-sized run id
		run := &canaryv1.Run{
			Id: id, RequestId: "req-" + id, Service: fmt.Sprintf("service-%03d", i%200), Stage: "wave-1",
			ConfigName: "checkout", ConfigVersion: 3, Config: cfg,
			BaselineLabels: map[string]string{"version": "v41", "cluster": "us-east-1a"},
			CanaryLabels:   map[string]string{"version": "v42", "cluster": "us-east-1a"},
			BakeTime:       durationpb.New(30 * time.Minute), CreateTime: timestamppb.Now(),
		}
		if _, _, err := s.CreateRun(ctx, run, payload(32)); err != nil {
			b.Fatal(err)
		}
		for j := range deltas {
			if _, err := s.AppendBatch(ctx, id, fmt.Sprintf("%08x-0000-4000-8000-%012x", i, j), payload(deltaBytes)); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Snapshot(ctx, id, deltas/2, payload(16<<10)); err != nil {
			b.Fatal(err)
		}
		run.Verdict = verdict(id, false)
		run.Counters = &canaryv1.RunCounters{Batches: uint64(deltas), BaselineSamples: 10000, CanarySamples: 9800, LastIngestTime: timestamppb.Now()}
		if err := s.UpdateRun(ctx, run); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	live := usedMemory(b, rc)
	for i := range b.N {
		id := fmt.Sprintf("01JD%022d", i)
		f := &canaryv1.Run{Id: id, State: canaryv1.RunState_RUN_STATE_COMPLETED, FinishTime: timestamppb.Now(), FinishReason: "bake time elapsed",
			Verdict: verdict(id, true), Counters: &canaryv1.RunCounters{Batches: uint64(deltas)}}
		if err := s.FinishRun(ctx, f); err != nil {
			b.Fatal(err)
		}
	}
	finished := usedMemory(b, rc)
	for i := range b.N { // what the expiry after Retention deletes
		if err := rc.Unlink(ctx, s.k.runKeys(fmt.Sprintf("01JD%022d", i))[1:]...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	expired := usedMemory(b, rc)
	per := func(m int64) float64 { return float64(m-before) / float64(b.N) }
	b.ReportMetric(per(live), "B/run-live")
	b.ReportMetric(per(finished), "B/run-finished")
	b.ReportMetric(per(expired), "B/run-history")
	b.ReportMetric(float64((deltas-deltas/2)*deltaBytes+16<<10), "payload-B/run-live")
}

func benchConfig(metrics int) *canaryv1.CanaryConfig {
	cfg := &canaryv1.CanaryConfig{Name: "checkout", Warmup: durationpb.New(5 * time.Minute), Confidence: proto.Float64(0.99), Power: proto.Float64(0.8)}
	for i := range metrics {
		cfg.Metrics = append(cfg.Metrics, &canaryv1.MetricConfig{
			Name: fmt.Sprintf("metric_%02d", i), Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
			Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION, BadDirection: canaryv1.BadDirection_BAD_DIRECTION_INCREASE,
			Tolerance: proto.Float64(0.1), Critical: proto.Bool(i == 0), MinSamples: proto.Uint64(200), Unit: "ms",
		})
	}
	return cfg
}

// usedMemory returns INFO memory used_memory.
func usedMemory(b testing.TB, rc redis.UniversalClient) int64 {
	b.Helper()
	info, err := rc.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatalf("no used_memory in INFO memory")
	return 0
}

func envInt(b testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		b.Fatalf("%s=%q: want a count", name, v)
	}
	return n
}
