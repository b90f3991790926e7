package server

import (
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// evidence is a verdict without its time.
func evidence(v *canaryv1.Verdict) *canaryv1.Verdict {
	v = proto.Clone(v).(*canaryv1.Verdict)
	v.Time = nil
	return v
}

// TestReload: a run dropped from memory after IdleTimeout is reloaded from
// its snapshot and later deltas with identical state: same evidence, same
// counters, same verdict sequence; and it keeps ingesting.
func TestReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) {
		o.SnapshotEvery = 5
		o.IdleTimeout = time.Minute
	})
	ctx := ctxT(t)
	run := e.createRun(ctx, "reload", testConfig("checkout"), time.Hour)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, id := range seqIDs("b", 12) {
		e.ingest(ctx, makeBatch(rng, run.GetId(), id, scenario{Latency: 1.05, Errors: 1, N: 700}))
	}
	e.ingest(ctx, makeBatch(rng, run.GetId(), "b-0003", scenario{Latency: 1, Errors: 1, N: 10})) // a duplicate
	before := e.judge(ctx, run.GetId())
	beforeRun := e.getRun(ctx, run.GetId())

	// Snapshots are written in the background; wait for the last one.
	e.svc.bg.Wait()
	if snaps, deltas := e.storedDeltas(ctx, run.GetId()); snaps != 1 || deltas != 2 {
		t.Fatalf("store holds %d snapshot(s) and %d deltas, want 1 and 2", snaps, deltas)
	}

	e.clock.Advance(30 * time.Second)
	e.svc.evictIdle()
	if e.svc.liveRuns() != 1 {
		t.Fatalf("run evicted before its idle timeout")
	}
	e.clock.Advance(31 * time.Second)
	e.svc.evictIdle()
	if e.svc.liveRuns() != 0 {
		t.Fatalf("idle run not evicted")
	}
	// GetRun answers from the store while the run is out of memory.
	if got := e.getRun(ctx, run.GetId()); !proto.Equal(got.GetCounters(), beforeRun.GetCounters()) {
		t.Errorf("stored counters after eviction:\n%v\nwant\n%v", got.GetCounters(), beforeRun.GetCounters())
	}

	after := e.judge(ctx, run.GetId())
	if !proto.Equal(evidence(before), evidence(after)) {
		t.Errorf("verdict after reload differs:\nbefore %v\nafter  %v", before, after)
	}
	afterRun := e.getRun(ctx, run.GetId())
	if !proto.Equal(afterRun.GetCounters(), beforeRun.GetCounters()) {
		t.Errorf("counters after reload:\n%v\nwant\n%v", afterRun.GetCounters(), beforeRun.GetCounters())
	}

	// The reloaded run takes more data and snapshots on.
	for _, id := range seqIDs("c", 4) {
		e.ingest(ctx, makeBatch(rng, run.GetId(), id, scenario{Latency: 1.05, Errors: 1, N: 700}))
	}
	e.svc.bg.Wait()
	if snaps, deltas := e.storedDeltas(ctx, run.GetId()); snaps != 1 || deltas != 1 {
		t.Errorf("after more batches: %d snapshot(s), %d deltas, want 1 and 1", snaps, deltas)
	}
	if c := e.getRun(ctx, run.GetId()).GetCounters(); c.GetBatches() != 16 || c.GetDuplicateBatches() != 1 {
		t.Errorf("counters: %v", c)
	}
}

// TestRestart: a new Service on the same store (a restart) sees the same
// runs, data and verdicts.
func TestRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.SnapshotEvery = 4 })
	ctx := ctxT(t)
	run := e.createRun(ctx, "restart", testConfig("checkout"), time.Hour)
	done := e.createRun(ctx, "restart-done", testConfig("checkout"), time.Hour)
	rng := rand.New(rand.NewPCG(8, 8))
	for _, id := range seqIDs("b", 6) {
		e.ingest(ctx, makeBatch(rng, run.GetId(), id, scenario{Latency: 1, Errors: 1, N: 500}))
		e.ingest(ctx, makeBatch(rng, done.GetId(), id, scenario{Latency: 1.5, Errors: 1, N: 500}))
	}
	// A run with fewer deltas than SnapshotEvery has no snapshot.
	few := e.createRun(ctx, "restart-few", testConfig("checkout"), time.Hour)
	for _, id := range seqIDs("f", 2) {
		e.ingest(ctx, makeBatch(rng, few.GetId(), id, scenario{Latency: 1, Errors: 1, N: 100}))
	}
	fewBefore := e.getRun(ctx, few.GetId())
	before := e.judge(ctx, run.GetId())
	runBefore := e.getRun(ctx, run.GetId())
	fin, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: done.GetId()})
	if err != nil {
		t.Fatal(err)
	}

	svc2, err := New(Options{Store: e.store, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer svc2.Close()
	got, err := svc2.Judge(ctx, &canaryv1.JudgeRequest{RunId: run.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(evidence(before), evidence(got.GetVerdict())) {
		t.Errorf("verdict after restart differs:\nbefore %v\nafter  %v", before, got.GetVerdict())
	}
	// Counters are rebuilt from the store (the first service never wrote
	// them back: as after a crash).
	for _, want := range []*canaryv1.Run{runBefore, fewBefore} {
		got, err := svc2.GetRun(ctx, &canaryv1.GetRunRequest{RunId: want.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got.GetRun().GetCounters(), want.GetCounters()) {
			t.Errorf("counters of %s after restart:\n%v\nwant\n%v", want.GetRequestId(), got.GetRun().GetCounters(), want.GetCounters())
		}
	}
	got, err = svc2.Judge(ctx, &canaryv1.JudgeRequest{RunId: done.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.GetVerdict(), fin.GetRun().GetVerdict()) {
		t.Errorf("final verdict after restart differs")
	}
}
