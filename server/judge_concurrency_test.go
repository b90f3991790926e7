package server

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestJudgeDoesNotHoldRun: a judge in progress (held in judgeHook, after
// it copied the run's data) does not hold the run: ingest into it and
// GetRun complete meanwhile, and a second Judge waits for the first one
// without holding the run either. The held judge answers on the data it
// copied, the second one on the data with the new batch, with the next
// sequence. No timing is asserted: with the judge under the run's lock,
// the ingest would wait for the release that comes after it, and the test
// would fail at its deadline.
func TestJudgeDoesNotHoldRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	var (
		hookOnce, releaseOnce sync.Once
		entered               = make(chan struct{})
		release               = make(chan struct{})
	)
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock() // never leave a handler blocked behind a failure
	e.svc.judgeHook = func() {
		first := false
		hookOnce.Do(func() { first = true })
		if first {
			close(entered)
			<-release
		}
	}

	run := e.createRun(ctx, "judge-unlocked", testConfig("checkout"), time.Hour)
	id := run.GetId()
	rng := rand.New(rand.NewPCG(11, 12))
	const n = 500
	e.ingest(ctx, makeBatch(rng, id, "b0", scenario{Latency: 1, Errors: 1, N: n}))

	type result struct {
		v   *canaryv1.Verdict
		err error
	}
	judge := func() <-chan result {
		ch := make(chan result, 1)
		go func() {
			resp, err := e.c.Judge(ctx, &canaryv1.JudgeRequest{RunId: id})
			ch <- result{resp.GetVerdict(), err}
		}()
		return ch
	}
	first := judge()
	select {
	case <-entered:
	case r := <-first:
		t.Fatalf("judge returned %v, %v without entering the hook", r.v, r.err)
	case <-ctx.Done():
		t.Fatal("judge never started")
	}

	// The judge is in progress: the run takes a batch and answers GetRun.
	e.ingest(ctx, makeBatch(rng, id, "b1", scenario{Latency: 1, Errors: 1, N: n}))
	if c := e.getRun(ctx, id).GetCounters(); c.GetBatches() != 2 {
		t.Fatalf("while judging: counters %v, want 2 batches", c)
	}
	second := judge() // waits for the first judge, then judges the new data
	unblock()

	r1, r2 := <-first, <-second
	if r1.err != nil || r2.err != nil {
		t.Fatalf("judges: %v, %v", r1.err, r2.err)
	}
	if got := r1.v.GetMetrics()[0].GetCanary().GetN(); got != n {
		t.Errorf("held judge: canary latency n=%d, want %d (the data it copied)", got, n)
	}
	if got := r2.v.GetMetrics()[0].GetCanary().GetN(); got != 2*n {
		t.Errorf("second judge: canary latency n=%d, want %d", got, 2*n)
	}
	if r2.v.GetSequence() != r1.v.GetSequence()+1 {
		t.Errorf("sequences %d then %d, want consecutive", r1.v.GetSequence(), r2.v.GetSequence())
	}
	// Unchanged data: the cached verdict.
	if v := e.judge(ctx, id); !proto.Equal(v, r2.v) {
		t.Errorf("judge of unchanged data: seq %d, want the cached seq %d", v.GetSequence(), r2.v.GetSequence())
	}
	if got := e.getRun(ctx, id).GetVerdict(); got.GetSequence() != r2.v.GetSequence() {
		t.Errorf("run's latest verdict: seq %d, want %d", got.GetSequence(), r2.v.GetSequence())
	}
}

// TestJudgeIngestConcurrent ingests, judges and watches one run from
// several goroutines at once (for the race detector), then completes it.
// Verdicts are consistent: one sequence is one verdict wherever it was
// seen, each caller sees sequences that never go back, a later sequence
// never holds less data, and the final verdict comes after them all and
// holds every batch.
func TestJudgeIngestConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "judge-concurrent", testConfig("checkout"), time.Hour)
	id := run.GetId()

	const (
		writers, perWriter, n = 3, 8, 200
		judges                = 3
	)
	var (
		mu    sync.Mutex
		seen  = map[uint64]*canaryv1.Verdict{} // by sequence
		maxSq uint64
	)
	// record checks v against the verdicts seen so far.
	record := func(who string, last uint64, v *canaryv1.Verdict) uint64 {
		mu.Lock()
		defer mu.Unlock()
		sq := v.GetSequence()
		if sq < last {
			t.Errorf("%s: sequence went back from %d to %d", who, last, sq)
		}
		if prev, ok := seen[sq]; ok && !proto.Equal(prev, v) {
			t.Errorf("%s: two verdicts with sequence %d:\n%v\n%v", who, sq, prev, v)
		}
		seen[sq] = v
		maxSq = max(maxSq, sq)
		return sq
	}

	stream, err := e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: id})
	if err != nil {
		t.Fatal(err)
	}
	watched := make(chan *canaryv1.Verdict, 1) // the last one: final
	go func() {
		var last uint64
		var v *canaryv1.Verdict
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				watched <- v
				return
			}
			if err != nil {
				t.Errorf("watch: %v", err)
				watched <- nil
				return
			}
			v = resp.GetVerdict()
			if !v.GetFinal() {
				last = record("watcher", last, v)
			}
		}
	}()

	var (
		ingesting sync.WaitGroup
		judging   sync.WaitGroup
		done      = make(chan struct{})
	)
	for w := range writers {
		rng := rand.New(rand.NewPCG(uint64(w), 13))
		ingesting.Go(func() {
			for k := range perWriter {
				b := makeBatch(rng, id, fmt.Sprintf("w%d-%d", w, k), scenario{Latency: 1, Errors: 1, N: n})
				if _, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: b}); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	for j := range judges {
		judging.Go(func() {
			who := fmt.Sprintf("judge %d", j)
			var last uint64
			for {
				resp, err := e.c.Judge(ctx, &canaryv1.JudgeRequest{RunId: id})
				if err != nil {
					t.Errorf("%s: %v", who, err)
					return
				}
				last = record(who, last, resp.GetVerdict())
				select {
				case <-done:
					return
				default:
				}
			}
		})
	}
	ingesting.Wait()
	close(done)
	judging.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Every batch is counted and in the verdict of the data now.
	total := uint64(writers * perWriter * n)
	if c := e.getRun(ctx, id).GetCounters(); c.GetBatches() != writers*perWriter {
		t.Errorf("counters %v, want %d batches", c, writers*perWriter)
	}
	v := e.judge(ctx, id)
	record("last judge", 0, v)
	if got := v.GetMetrics()[0].GetCanary().GetN(); got != total {
		t.Errorf("last judge: canary latency n=%d, want %d", got, total)
	}
	// A later sequence never holds less data.
	mu.Lock()
	var prevN uint64
	for sq := uint64(1); sq <= maxSq; sq++ {
		if v, ok := seen[sq]; ok {
			if got := v.GetMetrics()[0].GetCanary().GetN(); got < prevN {
				t.Errorf("sequence %d: canary latency n=%d, below an earlier sequence's %d", sq, got, prevN)
			} else {
				prevN = got
			}
		}
	}
	last := maxSq
	mu.Unlock()

	done2, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id})
	if err != nil {
		t.Fatal(err)
	}
	fv := done2.GetRun().GetVerdict()
	if !fv.GetFinal() || fv.GetSequence() <= last {
		t.Errorf("final verdict: final=%v seq %d, want after the provisional ones (up to %d)", fv.GetFinal(), fv.GetSequence(), last)
	}
	if got := fv.GetMetrics()[0].GetCanary().GetN(); got != total {
		t.Errorf("final verdict: canary latency n=%d, want %d", got, total)
	}
	select {
	case wv := <-watched:
		if !proto.Equal(wv, fv) {
			t.Errorf("watcher's last verdict %v, want the final one", wv)
		}
	case <-ctx.Done():
		t.Fatal("watcher did not end after the run completed")
	}
}
