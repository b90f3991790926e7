package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store/redisstore"
)

// TestRedisHandlers runs a focused part of the handler suite on the Redis
// store (the whole suite runs on it with CANARYD_TEST_STORE=redis):
// ingest, duplicates, judge, complete and the history.
func TestRedisHandlers(t *testing.T) {
	t.Parallel()
	e := newEnvOn(t, openTestStore(t, "redis"), nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "req-1", testConfig("checkout"), 0)
	rng := rand.New(rand.NewPCG(1, 2))
	var want uint64
	for i, id := range seqIDs("b", 8) {
		b := makeBatch(rng, run.GetId(), id, scenario{Latency: 1.6, Errors: 1, N: 500})
		if ack := e.ingest(ctx, b); ack.GetDuplicate() || ack.GetSamples() != batchSize(b) {
			t.Fatalf("batch %d: ack %v", i, ack)
		}
		want += batchSize(b)
		if i == 3 {
			if ack := e.ingest(ctx, b); !ack.GetDuplicate() {
				t.Fatalf("retried batch: ack %v, want a duplicate", ack)
			}
		}
	}
	r := e.getRun(ctx, run.GetId())
	if c := r.GetCounters(); c.GetBatches() != 8 || c.GetBaselineSamples()+c.GetCanarySamples() != want {
		t.Fatalf("counters %v, want 8 batches and %d samples", c, want)
	}
	if v := e.judge(ctx, run.GetId()); v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		t.Fatalf("judge: %v, want ROLLBACK", v)
	}
	done, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: run.GetId(), Reason: "done"})
	if err != nil {
		t.Fatal(err)
	}
	if v := done.GetRun().GetVerdict(); !v.GetFinal() || v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		t.Fatalf("final verdict %v", v)
	}
	h, err := e.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{Service: "checkout"})
	if err != nil || len(h.GetVerdicts()) != 1 || h.GetVerdicts()[0].GetRunId() != run.GetId() {
		t.Fatalf("history %v, %v", h, err)
	}
}

// TestRedisReplicasExact runs two Services (replicas) on one Redis: many
// concurrent writers on both, some batch ids sent through both replicas,
// snapshots every few deltas (so each replica's snapshots overtake the
// other's cursor). Both replicas count exactly the batches acknowledged as
// new and judge alike. Then the run is completed through A while writers
// on B keep ingesting: every batch acknowledged is in the final verdict's
// counters, and the ones refused are not.
func TestRedisReplicasExact(t *testing.T) {
	t.Parallel()
	a, b := redisReplicas(t, func(o *Options) { o.SnapshotEvery = 7 })
	envs := [2]*env{a, b}
	ctx := ctxT(t)
	run := a.createRun(ctx, "req-1", testConfig("checkout"), 0)
	id := run.GetId()

	rng := rand.New(rand.NewPCG(5, 6))
	shared := make([]*canaryv1.Batch, 10)
	for i := range shared {
		shared[i] = makeBatch(rng, id, fmt.Sprintf("shared-%d", i), scenario{Latency: 1.3, Errors: 1, N: 100})
	}
	var (
		batches, samples atomic.Uint64 // acknowledged as new
		wg               sync.WaitGroup
	)
	ingest := func(e *env, bt *canaryv1.Batch) error {
		resp, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: bt})
		if err == nil && !resp.GetAck().GetDuplicate() {
			batches.Add(1)
			samples.Add(resp.GetAck().GetSamples())
		}
		return err
	}
	const writers, perWriter = 4, 15
	for w := range 2 * writers {
		e := envs[w%2]
		wrng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Go(func() {
			for k := range perWriter {
				bt := makeBatch(wrng, id, fmt.Sprintf("w%d-%d", w, k), scenario{Latency: 1.3, Errors: 1, N: 100})
				if err := ingest(e, bt); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				if k < len(shared) {
					if err := ingest(e, shared[(k+w)%len(shared)]); err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if got, want := batches.Load(), uint64(2*writers*perWriter+len(shared)); got != want {
		t.Fatalf("%d batches acknowledged as new, want %d", got, want)
	}
	var verdicts [2]*canaryv1.Verdict
	for i, e := range envs {
		c := e.getRun(ctx, id).GetCounters()
		if c.GetBatches() != batches.Load() || c.GetBaselineSamples()+c.GetCanarySamples() != samples.Load() {
			t.Errorf("replica %d: counters %v, want %d batches and %d samples", i, c, batches.Load(), samples.Load())
		}
		v := proto.Clone(e.judge(ctx, id)).(*canaryv1.Verdict)
		v.Time, v.Sequence = nil, 0
		verdicts[i] = v
	}
	if !proto.Equal(verdicts[0], verdicts[1]) {
		t.Errorf("replicas judge differently:\nA %v\nB %v", verdicts[0], verdicts[1])
	}

	// Complete through A while B's writers go on.
	stop := make(chan struct{})
	for w := range writers {
		wrng := rand.New(rand.NewPCG(uint64(w), 8))
		wg.Go(func() {
			for k := 0; ; k++ {
				bt := makeBatch(wrng, id, fmt.Sprintf("late%d-%d", w, k), scenario{Latency: 1.3, Errors: 1, N: 100})
				err := ingest(b, bt)
				if status.Code(err) == codes.FailedPrecondition {
					return // finished
				}
				if err != nil {
					t.Errorf("late writer %d: %v", w, err)
					return
				}
				select { // a flood: the finish closes the run to it first
				case <-stop:
					return
				default:
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	done, err := a.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id})
	close(stop)
	if err != nil {
		t.Fatalf("complete through A while B's writers flood the run: %v", err)
	}
	wg.Wait()
	if c := done.GetRun().GetCounters(); c.GetBatches() != batches.Load() || c.GetBaselineSamples()+c.GetCanarySamples() != samples.Load() {
		t.Errorf("final counters %v, want every acknowledged batch: %d batches, %d samples", c, batches.Load(), samples.Load())
	}
	for i, e := range envs {
		r := e.getRun(ctx, id)
		if r.GetState() != canaryv1.RunState_RUN_STATE_COMPLETED || !proto.Equal(r.GetVerdict(), done.GetRun().GetVerdict()) {
			t.Errorf("replica %d after the finish: %v %v", i, r.GetState(), r.GetVerdict())
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("test timed out")
	}
}

// TestRedisManyWatchers: more watchers than maxTailWaiters (and than the
// connection pool holds) on one replica: the others poll, ingest still
// works, and every watcher sees the new data.
func TestRedisManyWatchers(t *testing.T) {
	t.Parallel()
	e := newEnvOn(t, openTestStore(t, "redis"), nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "req-1", testConfig("checkout"), time.Hour)
	rng := rand.New(rand.NewPCG(9, 9))
	e.ingest(ctx, makeBatch(rng, run.GetId(), "b-0", scenario{Latency: 1, Errors: 1, N: 100}))
	const n = 40
	streams := make([]canaryv1.CanaryService_WatchVerdictClient, n)
	for i := range streams {
		st, err := e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: run.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatalf("watcher %d: %v", i, err)
		}
		streams[i] = st
	}
	time.Sleep(100 * time.Millisecond) // let them block
	start := time.Now()
	e.ingest(ctx, makeBatch(rng, run.GetId(), "b-1", scenario{Latency: 1, Errors: 1, N: 100}))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ingest took %v with %d watchers", d, n)
	}
	var wg sync.WaitGroup
	for i, st := range streams {
		wg.Go(func() {
			r, err := st.Recv()
			if err != nil {
				t.Errorf("watcher %d: %v", i, err)
				return
			}
			if got := r.GetVerdict().GetSequence(); got < 2 {
				t.Errorf("watcher %d: verdict sequence %d, want a new verdict", i, got)
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("watchers took %v to see the new batch", d)
	}
}

// TestRedisReplicasListRuns: ListRuns on a replica reports the counters of
// the runs it holds in memory as exactly as GetRun does, though the batches
// came through another replica (it catches them up), and a run finished
// through another replica as finished, with its final verdict.
func TestRedisReplicasListRuns(t *testing.T) {
	t.Parallel()
	a, b := redisReplicas(t, nil)
	ctx := ctxT(t)
	r1 := a.createRun(ctx, "req-1", testConfig("checkout"), time.Hour)
	r2 := a.createRun(ctx, "req-2", testConfig("checkout"), time.Hour)
	rng := rand.New(rand.NewPCG(21, 22))
	ingest := func(run *canaryv1.Run, ids ...string) {
		t.Helper()
		for _, bid := range ids {
			a.ingest(ctx, makeBatch(rng, run.GetId(), bid, scenario{Latency: 1, Errors: 1, N: 100}))
		}
	}
	list := func() map[string]*canaryv1.Run {
		t.Helper()
		resp, err := b.c.ListRuns(ctx, &canaryv1.ListRunsRequest{Service: "checkout"})
		if err != nil {
			t.Fatalf("list runs on B: %v", err)
		}
		runs := map[string]*canaryv1.Run{}
		for _, r := range resp.GetRuns() {
			runs[r.GetId()] = r
		}
		return runs
	}
	// check compares B's listed counters with A's (which took every batch)
	// and with what was sent.
	check := func(step string, runs map[string]*canaryv1.Run, run *canaryv1.Run, batches uint64) {
		t.Helper()
		got, want := runs[run.GetId()].GetCounters(), a.getRun(ctx, run.GetId()).GetCounters()
		if got.GetBatches() != batches || !proto.Equal(got, want) {
			t.Errorf("%s: B lists run %s with counters %v, want %d batches: %v", step, run.GetId(), got, batches, want)
		}
	}

	ingest(r1, "a-0", "a-1")
	ingest(r2, "b-0")
	b.getRun(ctx, r1.GetId()) // B holds r1 in memory
	runs := list()            // and now r2
	check("first list", runs, r1, 2)
	check("first list", runs, r2, 1)

	// More batches through A: B's runs in memory lag behind until caught up.
	ingest(r1, "a-2", "a-3", "a-4")
	ingest(r2, "b-1")
	runs = list()
	check("after more batches through A", runs, r1, 5)
	check("after more batches through A", runs, r2, 2)
	if got, want := runs[r1.GetId()].GetCounters(), b.getRun(ctx, r1.GetId()).GetCounters(); !proto.Equal(got, want) {
		t.Errorf("B: ListRuns counters %v, GetRun counters %v", got, want)
	}

	// r2 finished through A, while B holds it in memory as running.
	done, err := a.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: r2.GetId(), Reason: "done"})
	if err != nil {
		t.Fatal(err)
	}
	runs = list()
	if got := runs[r2.GetId()]; got.GetState() != canaryv1.RunState_RUN_STATE_COMPLETED ||
		!proto.Equal(got.GetVerdict(), done.GetRun().GetVerdict()) {
		t.Errorf("B lists r2 finished through A as %v (verdict seq %d, final %v); want COMPLETED with the final verdict (seq %d)",
			got.GetState(), got.GetVerdict().GetSequence(), got.GetVerdict().GetFinal(), done.GetRun().GetVerdict().GetSequence())
	}
	check("after r2 completed", runs, r1, 5)
}

// redisReplicas starts a redis-server and two services on it, sharing one
// key prefix: two replicas.
func redisReplicas(t *testing.T, opts func(*Options)) (a, b *env) {
	t.Helper()
	srv := testredis.Start(t)
	prefix := srv.Prefix(t)
	var envs [2]*env
	for i := range envs {
		st, err := redisstore.Open(context.Background(), srv.URL(), redisstore.Options{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		envs[i] = newEnvOn(t, st, opts)
	}
	return envs[0], envs[1]
}
