package server

import (
	"errors"
	"github.com/canaryd/canaryd/analysis"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestJudgeDecisions drives a run per scenario through ingest, Judge
// before the bake time ends, and CompleteRun, and checks the decisions.
func TestJudgeDecisions(t *testing.T) {
	t.Parallel()
	const (
		promote  = canaryv1.Decision_DECISION_PROMOTE
		hold     = canaryv1.Decision_DECISION_HOLD
		rollback = canaryv1.Decision_DECISION_ROLLBACK
	)
	for _, tc := range []struct {
		name          string
		sc            scenario
		batches       int
		during, final canaryv1.Decision // during the bake, after CompleteRun
		deciding      string            // a metric that must be among the deciding ones
	}{
		// A/A: same lognormal latency, same error rate.
		{"aa-promotes", scenario{Latency: 1, Errors: 1, N: 2500}, 4, hold, promote, ""},
		// The canary is 1.5x slower: latency is critical, so it rolls back
		// at once, before the bake time ends.
		{"slower-rolls-back", scenario{Latency: 1.5, Errors: 1, N: 2500}, 4, rollback, rollback, "latency_ms"},
		// Too few observations for the gates: HOLD, even after completion.
		{"little-data-holds", scenario{Latency: 1, Errors: 1, N: 40}, 1, hold, hold, "latency_ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			ctx := ctxT(t)
			run := e.createRun(ctx, tc.name, testConfig("checkout"), 30*time.Minute)
			rng := rand.New(rand.NewPCG(1, 2))
			for i, id := range seqIDs("b", tc.batches) {
				e.ingest(ctx, makeBatch(rng, run.GetId(), id, tc.sc))
				_ = i
			}
			v := e.judge(ctx, run.GetId())
			if v.GetDecision() != tc.during || v.GetFinal() {
				t.Fatalf("during bake: %v final=%v, want %v: %s", v.GetDecision(), v.GetFinal(), tc.during, v.GetReason())
			}
			resp, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: run.GetId(), Reason: "bake time elapsed"})
			if err != nil {
				t.Fatalf("complete: %v", err)
			}
			fv := resp.GetRun().GetVerdict()
			if fv.GetDecision() != tc.final || !fv.GetFinal() || fv.GetRunState() != canaryv1.RunState_RUN_STATE_COMPLETED {
				t.Fatalf("final: %v final=%v state=%v, want %v: %s", fv.GetDecision(), fv.GetFinal(), fv.GetRunState(), tc.final, fv.GetReason())
			}
			if tc.deciding != "" && !contains(fv.GetDecidingMetrics(), tc.deciding) {
				t.Errorf("deciding metrics %v lack %s", fv.GetDecidingMetrics(), tc.deciding)
			}
			// Three metrics and the sample-ratio check.
			if len(fv.GetMetrics()) != 4 || fv.GetMetrics()[3].GetName() != analysis.TrafficName {
				t.Fatalf("%d metric results, want 3 and %s", len(fv.GetMetrics()), analysis.TrafficName)
			}
			lat := fv.GetMetrics()[0]
			wantN := uint64(tc.batches * tc.sc.N)
			if lat.GetName() != "latency_ms" || lat.GetBaseline().GetN() != wantN || lat.GetCanary().GetN() != wantN {
				t.Errorf("latency evidence: %v", lat)
			}
			// Judge of a finished run returns the final verdict.
			if got := e.judge(ctx, run.GetId()); got.GetSequence() != fv.GetSequence() || !got.GetFinal() {
				t.Errorf("judge after completion: seq %d final %v, want seq %d final", got.GetSequence(), got.GetFinal(), fv.GetSequence())
			}
			if r := resp.GetRun(); r.GetState() != canaryv1.RunState_RUN_STATE_COMPLETED ||
				r.GetFinishReason() != "bake time elapsed" || r.GetFinishTime() == nil {
				t.Errorf("finished run: %v", r)
			}
		})
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestJudgeCache: judging unchanged data returns the same verdict (same
// sequence and time), new data a new one.
func TestJudgeCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "cache", testConfig("checkout"), time.Hour)
	rng := rand.New(rand.NewPCG(3, 4))
	e.ingest(ctx, makeBatch(rng, run.GetId(), "b1", scenario{Latency: 1, Errors: 1, N: 500}))
	v1 := e.judge(ctx, run.GetId())
	e.clock.Advance(time.Second)
	v2 := e.judge(ctx, run.GetId())
	if v1.GetSequence() != v2.GetSequence() || !v1.GetTime().AsTime().Equal(v2.GetTime().AsTime()) {
		t.Errorf("unchanged data: seq %d -> %d", v1.GetSequence(), v2.GetSequence())
	}
	e.ingest(ctx, makeBatch(rng, run.GetId(), "b2", scenario{Latency: 1, Errors: 1, N: 500}))
	v3 := e.judge(ctx, run.GetId())
	if v3.GetSequence() != v1.GetSequence()+1 {
		t.Errorf("new data: seq %d -> %d", v1.GetSequence(), v3.GetSequence())
	}
	if got := e.getRun(ctx, run.GetId()).GetVerdict(); got.GetSequence() != v3.GetSequence() {
		t.Errorf("GetRun verdict seq %d, want %d", got.GetSequence(), v3.GetSequence())
	}
}

// TestWatchVerdict: a watcher gets the current verdict, an update per
// change of the evidence, and the final verdict, then the stream ends.
func TestWatchVerdict(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "watch", testConfig("checkout"), time.Hour)
	stream, err := e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: run.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("first verdict: %v", err)
	}
	if d := first.GetVerdict().GetDecision(); d != canaryv1.Decision_DECISION_HOLD {
		t.Fatalf("first verdict %v, want HOLD", d)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	e.ingest(ctx, makeBatch(rng, run.GetId(), "b1", scenario{Latency: 1.5, Errors: 1, N: 2500}))
	var last *canaryv1.Verdict
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		last = resp.GetVerdict()
		if last.GetSequence() <= first.GetVerdict().GetSequence() {
			t.Fatalf("sequence went from %d to %d", first.GetVerdict().GetSequence(), last.GetSequence())
		}
		if last.GetMetrics()[0].GetCanary().GetN() == 2500 {
			break
		}
	}
	if last.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		t.Errorf("after a slow canary: %v, want ROLLBACK: %s", last.GetDecision(), last.GetReason())
	}
	if _, err := e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: run.GetId(), Reason: "rolled back"}); err != nil {
		t.Fatal(err)
	}
	var final *canaryv1.Verdict
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		final = resp.GetVerdict()
	}
	if !final.GetFinal() || final.GetRunState() != canaryv1.RunState_RUN_STATE_ABORTED ||
		final.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		t.Errorf("last message: final=%v state=%v decision=%v", final.GetFinal(), final.GetRunState(), final.GetDecision())
	}

	// Watching a finished run sends the final verdict and ends.
	stream, err = e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: run.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || !resp.GetVerdict().GetFinal() {
		t.Fatalf("watch finished run: %v %v", resp, err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("watch finished run: got %v after the final verdict, want EOF", err)
	}
}

// TestWatchVerdictEnds: the stream ends when the client cancels, and with
// UNAVAILABLE on shutdown; an unknown run is NOT_FOUND.
func TestWatchVerdictEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "watch-ends", testConfig("checkout"), time.Hour)

	stream, err := e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: "nope"})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.NotFound, "")

	stream, err = e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: run.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	e.svc.Shutdown()
	_, err = stream.Recv()
	wantCode(t, err, codes.Unavailable, "")
}

// TestWatchVerdictBakeEnd: when the bake time ends, a passing run's
// verdict turns from HOLD to PROMOTE without new data.
func TestWatchVerdictBakeEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "bake", testConfig("checkout"), 300*time.Millisecond)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, id := range seqIDs("b", 4) {
		e.ingest(ctx, makeBatch(rng, run.GetId(), id, scenario{Latency: 1, Errors: 1, N: 2500}))
	}
	stream, err := e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: run.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.GetVerdict().GetDecision() != canaryv1.Decision_DECISION_HOLD {
		t.Fatalf("before the bake ends: %v %v", resp.GetVerdict().GetDecision(), err)
	}
	// The watcher's timer runs on real time; the judge's clock is e.clock.
	e.clock.Advance(300 * time.Millisecond)
	resp, err = stream.Recv()
	if err != nil || resp.GetVerdict().GetDecision() != canaryv1.Decision_DECISION_PROMOTE {
		t.Fatalf("after the bake: %v %v", resp.GetVerdict().GetDecision(), err)
	}
}

// TestListVerdicts: the history is filtered and paginated, newest first.
func TestListVerdicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	type runSpec struct {
		service, stage string
		abort          bool
	}
	specs := []runSpec{
		{"checkout", "wave-1", false}, {"checkout", "wave-2", false}, {"checkout", "wave-1", true},
		{"search", "wave-1", false}, {"search", "wave-2", true}, {"checkout", "wave-2", false},
	}
	start := e.clock.Now()
	for i, sp := range specs {
		resp, err := e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{
			RequestId: seqIDs("req", len(specs))[i], Service: sp.service, Stage: sp.stage,
			Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("checkout")},
		})
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Minute)
		id := resp.GetRun().GetId()
		if sp.abort {
			_, err = e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: id})
		} else {
			_, err = e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	list := func(req *canaryv1.ListVerdictsRequest) []*canaryv1.Verdict {
		t.Helper()
		var all []*canaryv1.Verdict
		for {
			resp, err := e.c.ListVerdicts(ctx, req)
			if err != nil {
				t.Fatalf("list verdicts: %v", err)
			}
			all = append(all, resp.GetVerdicts()...)
			if resp.GetNextPageToken() == "" {
				return all
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
	all := list(&canaryv1.ListVerdictsRequest{PageSize: 2})
	if len(all) != len(specs) {
		t.Fatalf("%d verdicts, want %d", len(all), len(specs))
	}
	for i := 1; i < len(all); i++ {
		if all[i].GetTime().AsTime().After(all[i-1].GetTime().AsTime()) {
			t.Errorf("verdict %d newer than %d", i, i-1)
		}
	}
	if got := list(&canaryv1.ListVerdictsRequest{Service: "checkout", Stage: "wave-2"}); len(got) != 2 {
		t.Errorf("checkout/wave-2: %d verdicts, want 2", len(got))
	}
	// Every run has no data, so every final verdict is HOLD.
	if got := list(&canaryv1.ListVerdictsRequest{Decision: canaryv1.Decision_DECISION_HOLD, Service: "search"}); len(got) != 2 {
		t.Errorf("search HOLD: %d verdicts, want 2", len(got))
	}
	if got := list(&canaryv1.ListVerdictsRequest{Decision: canaryv1.Decision_DECISION_PROMOTE}); len(got) != 0 {
		t.Errorf("PROMOTE: %d verdicts, want 0", len(got))
	}
	since := timestamppb.New(start.Add(3 * time.Minute))
	if got := list(&canaryv1.ListVerdictsRequest{Since: since}); len(got) != 4 {
		t.Errorf("since +3m: %d verdicts, want 4", len(got))
	}
	if got := list(&canaryv1.ListVerdictsRequest{Until: since, PageSize: 1}); len(got) != 2 {
		t.Errorf("until +3m: %d verdicts, want 2", len(got))
	}

	_, err := e.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{PageSize: -1})
	wantCode(t, err, codes.InvalidArgument, "page_size")
	_, err = e.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{PageToken: "garbage"})
	wantCode(t, err, codes.InvalidArgument, "page_token")
	_, err = e.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{Since: since, Until: timestamppb.New(start)})
	wantCode(t, err, codes.InvalidArgument, "until")
}
