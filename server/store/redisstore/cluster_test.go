package redisstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/testcluster"
	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
	"github.com/canaryd/canaryd/server/store/storetest"
)

func newPrefix() string { return "test-" + strings.ToLower(rand.Text()[:12]) }

// conformanceOn runs the conformance suite on the stores of url, each in
// a namespace of its own.
func conformanceOn(t *testing.T, url string, extra Options) {
	open := func(t *testing.T, o Options) store.Store {
		if o.Prefix == "" {
			o.Prefix = newPrefix()
		}
		o.MinReplicas, o.ReplicaTimeout = extra.MinReplicas, extra.ReplicaTimeout
		return openStoreURL(t, url, o)
	}
	storetest.Run(t,
		func(t *testing.T) store.Store { return open(t, Options{}) },
		storetest.Reopen(func(t *testing.T, s store.Store) store.Store {
			prefix := s.(*Store).opts.Prefix
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, Options{Prefix: prefix})
		}),
		storetest.Retention(func(t *testing.T, o storetest.RetentionOptions) store.Store {
			return open(t, Options{Retention: o.Retention, VerdictRetention: o.VerdictRetention, Now: o.Now})
		}, func(ctx context.Context, s store.Store) error {
			_, err := s.(*Store).Maintain(ctx)
			return err
		}))
}

// TestConformanceRedisCluster runs the conformance suite through Open's
// redis+cluster:// URL on a Redis Cluster of 3 primaries and 3 replicas,
// with min_replicas=1 (every write waits for its primary's replica), and
// checks that the history of the runs the suite finished is spread over
// the 3 primaries.
func TestConformanceRedisCluster(t *testing.T) {
	t.Parallel()
	c := testcluster.StartWith(t, testcluster.Options{NodeTimeout: 10 * time.Second}) // no failover here: a busy node is not a dead one
	conformanceOn(t, c.URL()+"?min_replicas=1&replica_timeout=5s", Options{})

	// The shards of the history live on every primary.
	ctx := t.Context()
	s := openStoreURL(t, c.URL(), Options{Prefix: newPrefix()})
	for i := range 64 {
		id := "spread-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: id, Service: "svc", Stage: "s", ConfigName: "c"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishRun(ctx, finished(id, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	cc := c.Client(t)
	for _, p := range c.Primaries(ctx) {
		n := 0
		for sh := range NumShards {
			if owner := c.PrimaryOf(ctx, s.k.verdicts(sh)); owner == p {
				n += int(cc.HLen(ctx, s.k.verdicts(sh)).Val())
			}
		}
		if n == 0 {
			t.Errorf("primary %s holds no verdict of the 64: the history is not spread", p.Addr)
		}
		t.Logf("primary %s: %d of 64 verdicts", p.Addr, n)
	}
	if vs, _, err := s.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{Size: 100}); err != nil || len(vs) != 64 {
		t.Errorf("ListVerdicts = %d, %v; want 64", len(vs), err)
	}
}

// TestConformanceSentinel runs the conformance suite through Open's
// redis+sentinel:// URL (a primary, 2 replicas, 3 Sentinels), with
// min_replicas=1.
func TestConformanceSentinel(t *testing.T) {
	t.Parallel()
	st := testcluster.StartSentinel(t, testcluster.Options{NodeTimeout: 10 * time.Second})
	conformanceOn(t, st.URL()+"?min_replicas=1&replica_timeout=5s", Options{})
}

// BenchmarkFinishRuns measures finished runs per second into the history:
// 32 writers each create a run and finish it (CreateRun with a request id,
// then FinishRun: the run's slot, its index shard and its history shard),
// on one redis-server and on a Redis Cluster of 3 primaries and 3
// replicas, with min_replicas 0 and 1 on the cluster.
//
//	go test -run '^$' -bench BenchmarkFinishRuns -benchtime 20000x ./server/store/redisstore/
func BenchmarkFinishRuns(b *testing.B) {
	single := testredis.StartWith(b, testredis.Options{Private: true})
	c := testcluster.StartWith(b, testcluster.Options{NodeTimeout: 15 * time.Second})
	for _, tc := range []struct{ name, url string }{
		{"primaries=1", single.URL() + "?pool_size=40"},
		{"primaries=3", c.URL() + "?pool_size=40"},
		{"primaries=3/min_replicas=1", c.URL() + "?pool_size=40&min_replicas=1"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := openStoreURL(b, tc.url, Options{Prefix: newPrefix()})
			ctx := b.Context()
			const writers = 32
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
			b.ResetTimer()
			for range writers {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						id := fmt.Sprintf("01JD%022d", i)
						run := &canaryv1.Run{Id: id, RequestId: "req-" + id, Service: fmt.Sprintf("svc-%d", i%200),
							Stage: fmt.Sprintf("stage-%d", i%10), ConfigName: "c", CreateTime: timestamppb.New(t0.Add(time.Duration(i) * time.Millisecond))}
						if _, _, err := s.CreateRun(ctx, run, []byte("fp")); err != nil {
							errs <- err
							return
						}
						if err := s.FinishRun(ctx, finished(id, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE,
							t0.Add(time.Hour+time.Duration(i)*time.Millisecond))); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			select {
			case err := <-errs:
				b.Fatal(err)
			default:
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "runs/s")
		})
	}
}

// BenchmarkListVerdictsCluster is BenchmarkListVerdicts on a Redis Cluster
// of 3 primaries and 3 replicas: a page merges the 16 shards, spread over
// the 3 primaries. CANARYD_BENCH_VERDICTS sets the number of verdicts
// (default 100,000).
//
//	CANARYD_BENCH_VERDICTS=300000 go test -run '^$' -bench BenchmarkListVerdictsCluster -v ./server/store/redisstore/
func BenchmarkListVerdictsCluster(b *testing.B) {
	n := envInt(b, "CANARYD_BENCH_VERDICTS", 100_000)
	c := testcluster.StartWith(b, testcluster.Options{NodeTimeout: 15 * time.Second})
	s := openStoreURL(b, c.URL()+"?pool_size=20", Options{Prefix: newPrefix()})
	start, span := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), 365*24*time.Hour
	t0 := time.Now()
	if _, err := loadVerdicts(b.Context(), s, n, start, span); err != nil {
		b.Fatal(err)
	}
	b.Logf("fixture: %d verdicts loaded in %v", n, time.Since(t0).Round(time.Second))
	storetest.BenchListVerdicts(b, s, start, span)

	// The latency distribution of pages of 50, unfiltered and by service.
	ctx := b.Context()
	for _, f := range []store.VerdictFilter{{}, {Service: "service-042"}} {
		var ds []time.Duration
		for i := range 1000 {
			ff := f
			if i%2 == 1 {
				ff.Until = start.Add(time.Duration(i) * span / 1000)
			}
			t := time.Now()
			if _, _, err := s.ListVerdicts(ctx, ff, store.Page{Size: 50}); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(t))
		}
		slices.Sort(ds)
		b.Logf("pages of 50 (filter %q, half of them with until): p50 %v, p99 %v, max %v",
			f.Service, ds[500].Round(10*time.Microsecond), ds[990].Round(10*time.Microsecond), ds[999].Round(10*time.Microsecond))
	}
}
