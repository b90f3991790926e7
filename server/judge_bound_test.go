package server

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestJudgeConcurrency: with JudgeConcurrency 1 and one judge in progress
// (held in judgeHook), no other run is judged: a Judge of another run and a
// CompleteRun wait for the slot and end with their deadline, while ingest
// and GetRun of every run answer. A waiter that gave up leaves nothing
// behind: once the slot is free, the same calls succeed.
func TestJudgeConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.JudgeConcurrency = 1 })
	ctx := ctxT(t)
	var (
		entered  atomic.Int32
		held     = make(chan struct{})
		release  = make(chan struct{})
		once     sync.Once
		unblockO sync.Once
	)
	unblock := func() { unblockO.Do(func() { close(release) }) }
	defer unblock()
	e.svc.judgeHook = func() {
		entered.Add(1)
		first := false
		once.Do(func() { first = true })
		if first {
			close(held)
			<-release
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	a := e.createRun(ctx, "a", testConfig("checkout"), time.Hour).GetId()
	b := e.createRun(ctx, "b", testConfig("checkout"), time.Hour).GetId()
	for _, id := range []string{a, b} {
		e.ingest(ctx, makeBatch(rng, id, "0", scenario{Latency: 1, Errors: 1, N: 300}))
	}

	first := make(chan error, 1)
	go func() {
		_, err := e.c.Judge(ctx, &canaryv1.JudgeRequest{RunId: a})
		first <- err
	}()
	select {
	case <-held:
	case err := <-first:
		t.Fatalf("judge returned %v without entering the hook", err)
	}

	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	_, err := e.c.Judge(short(), &canaryv1.JudgeRequest{RunId: b})
	wantCode(t, err, codes.DeadlineExceeded, "")
	_, err = e.c.CompleteRun(short(), &canaryv1.CompleteRunRequest{RunId: b})
	wantCode(t, err, codes.DeadlineExceeded, "")
	// Ingest and reads do not wait for judges.
	for _, id := range []string{a, b} {
		e.ingest(ctx, makeBatch(rng, id, "1", scenario{Latency: 1, Errors: 1, N: 300}))
		e.getRun(ctx, id)
	}
	if n := entered.Load(); n != 1 {
		t.Fatalf("%d judges entered with one slot", n)
	}

	unblock()
	if err := <-first; err != nil {
		t.Fatalf("held judge: %v", err)
	}
	if v := e.judge(ctx, b); v.GetDecision() == canaryv1.Decision_DECISION_UNSPECIFIED {
		t.Fatalf("judge of b after the slot is free: %v", v)
	}
	resp, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: b})
	if err != nil {
		t.Fatalf("complete b after the slot is free: %v", err)
	}
	if c := resp.GetRun().GetCounters(); c.GetBatches() != 2 {
		t.Fatalf("completed run b counters %v, want 2 batches", c)
	}
	if n := len(e.svc.judges); n != 0 {
		t.Fatalf("%d judge slots still taken", n)
	}
}
