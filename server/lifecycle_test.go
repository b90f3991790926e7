package server

import (
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestLifecycleTransitions: exactly the transitions of the diagram in
// lifecycle.go are allowed, and setState refuses any other (a bug) with a
// panic.
func TestLifecycleTransitions(t *testing.T) {
	t.Parallel()
	allowed := map[[2]runState]bool{
		{stateLoading, stateLive}:       true,
		{stateLoading, stateFinished}:   true,
		{stateLoading, stateEvicted}:    true,
		{stateLive, stateFinishing}:     true,
		{stateLive, stateEvicted}:       true,
		{stateFinishing, stateLive}:     true,
		{stateFinishing, stateFinished}: true,
		{stateFinished, stateEvicted}:   true,
	}
	all := []runState{stateLoading, stateLive, stateFinishing, stateFinished, stateEvicted}
	for _, from := range all {
		for _, to := range all {
			want := allowed[[2]runState{from, to}]
			if got := canMove(from, to); got != want {
				t.Errorf("canMove(%v, %v) = %v, want %v", from, to, got, want)
			}
			st := liveState{state: from, changed: make(chan struct{})}
			changed := st.changed
			panicked := func() (p bool) {
				defer func() { p = recover() != nil }()
				st.setState(to)
				return false
			}()
			if panicked == want {
				t.Errorf("setState(%v → %v): panicked %v", from, to, panicked)
			}
			if want {
				select {
				case <-changed:
				default:
					t.Errorf("setState(%v → %v) did not wake the watchers", from, to)
				}
			}
		}
	}
	if canMove(runState(9), stateLive) || runState(9).String() != "runState(9)" {
		t.Error("an unknown state moves or is named")
	}
}

// inMemory returns the run id as the registry holds it, nil if it is not in
// memory.
func (s *Service) inMemory(id string) *liveRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[id]
}

// TestLifecycle drives one run through every transition of its lifecycle
// with the handlers, and checks its state at each step: created live;
// evicted when idle and loaded again on use; finishing while its final
// verdict is judged (ingest refused), live again when that fails (ingest
// taken again: the store reopened it); finished; evicted and loaded again
// finished. An unknown run fails to load and leaves nothing behind.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	var (
		failFinal atomic.Bool
		inJudge   func()
	)
	e := newEnv(t, func(o *Options) {
		o.IdleTimeout = time.Minute
		o.Judge = func(d *analysis.Data, opts analysis.Options) analysis.Verdict {
			if opts.BakeComplete && failFinal.Load() {
				panic("final judge fails")
			}
			return analysis.Judge(d, opts)
		}
	})
	e.svc.judgeHook = func() {
		if inJudge != nil {
			inJudge()
		}
	}
	ctx := ctxT(t)
	rng := rand.New(rand.NewPCG(4, 4))
	id := e.createRun(ctx, "lifecycle", testConfig("checkout"), time.Hour).GetId()
	state := func() runState {
		t.Helper()
		lr := e.svc.inMemory(id)
		if lr == nil {
			return stateEvicted
		}
		return lr.state()
	}
	if got := state(); got != stateLive {
		t.Fatalf("created: %v, want live", got)
	}
	e.ingest(ctx, makeBatch(rng, id, "b0", scenario{Latency: 1, Errors: 1, N: 300}))

	// Idle: evicted, then loaded again (loading → live) on use.
	first := e.svc.inMemory(id)
	e.clock.Advance(2 * time.Minute)
	e.svc.evictIdle()
	if first.state() != stateEvicted || e.svc.inMemory(id) != nil {
		t.Fatalf("idle: %v, in memory %v; want evicted and gone", first.state(), e.svc.inMemory(id) != nil)
	}
	if c := e.getRun(ctx, id).GetCounters(); c.GetBatches() != 1 || state() != stateLive || e.svc.inMemory(id) == first {
		t.Fatalf("reloaded: counters %v, state %v", c, state())
	}

	// A finish whose final judge fails: finishing while it judges, then
	// live again, taking batches.
	failFinal.Store(true)
	var during runState
	var ingestErr error
	inJudge = func() {
		during = state()
		_, ingestErr = e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: makeBatch(rng, id, "during", scenario{Latency: 1, Errors: 1, N: 10})})
	}
	_, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id})
	wantCode(t, err, codes.Internal, "")
	inJudge = nil
	if during != stateFinishing {
		t.Errorf("while the final verdict is judged: %v, want finishing", during)
	}
	wantCode(t, ingestErr, codes.FailedPrecondition, "")
	if !strings.Contains(ingestErr.Error(), "being finished") {
		t.Errorf("ingest while finishing: %v", ingestErr)
	}
	if got := state(); got != stateLive {
		t.Fatalf("after a failed finish: %v, want live", got)
	}
	e.ingest(ctx, makeBatch(rng, id, "b1", scenario{Latency: 1, Errors: 1, N: 300}))

	// Finished.
	failFinal.Store(false)
	done, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id})
	if err != nil {
		t.Fatal(err)
	}
	if got := state(); got != stateFinished || done.GetRun().GetCounters().GetBatches() != 2 {
		t.Fatalf("completed: %v, counters %v", got, done.GetRun().GetCounters())
	}
	_, err = e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: makeBatch(rng, id, "late", scenario{Latency: 1, Errors: 1, N: 10})})
	wantCode(t, err, codes.FailedPrecondition, "")

	// Evicted, loaded again finished.
	e.clock.Advance(2 * time.Minute)
	e.svc.evictIdle()
	if e.svc.inMemory(id) != nil {
		t.Fatal("idle finished run not evicted")
	}
	if v := e.judge(ctx, id); !v.GetFinal() || state() != stateFinished {
		t.Fatalf("reloaded finished run: verdict final=%v, state %v", v.GetFinal(), state())
	}

	// A run that cannot be loaded leaves nothing behind.
	_, err = e.c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: "unknown"})
	wantCode(t, err, codes.NotFound, "")
	if e.svc.inMemory("unknown") != nil {
		t.Error("a failed load stays in the registry")
	}
}
