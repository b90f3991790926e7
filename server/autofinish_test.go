package server

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

const (
	promote  = canaryv1.Decision_DECISION_PROMOTE
	hold     = canaryv1.Decision_DECISION_HOLD
	rollback = canaryv1.Decision_DECISION_ROLLBACK
)

// autoRun creates a run of testConfig with a 30-minute bake that finishes
// by itself as af says.
func (e *env) autoRun(ctx context.Context, reqID string, af *canaryv1.AutoFinish) *canaryv1.Run {
	e.t.Helper()
	resp, err := e.c.CreateRun(ctx, autoRunRequest(reqID, af))
	if err != nil {
		e.t.Fatalf("create run: %v", err)
	}
	return resp.GetRun()
}

func autoRunRequest(reqID string, af *canaryv1.AutoFinish) *canaryv1.CreateRunRequest {
	return &canaryv1.CreateRunRequest{
		RequestId: reqID, Service: "checkout", Stage: "wave-1",
		Config:     &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("checkout")},
		BakeTime:   durationpb.New(30 * time.Minute),
		AutoFinish: af,
	}
}

// TestAutoFinish checks the runs that finish by themselves: on a critical
// ROLLBACK at once, on a PROMOTE only after the bake time, and at
// max_duration with a HOLD kept or failed closed; the final verdict is
// stored once (the history holds it), Judge and WatchVerdict end with it,
// CompleteRun returns it unchanged and AbortRun is refused.
func TestAutoFinish(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		af      *canaryv1.AutoFinish
		sc      scenario
		batches int
		// advance is how far the clock moves before the second judge.
		advance            time.Duration
		during, final      canaryv1.Decision
		finishedDuringBake bool
		reason             string // in the run's finish_reason
		verdictReason      string // in the final verdict's reason
	}{
		{"critical-rollback-at-once", &canaryv1.AutoFinish{OnDecision: true}, scenario{Latency: 1.5, Errors: 1, N: 2500}, 4,
			0, rollback, rollback, true, "on decision ROLLBACK", ""},
		{"promote-after-bake", &canaryv1.AutoFinish{OnDecision: true}, scenario{Latency: 1, Errors: 1, N: 2500}, 4,
			31 * time.Minute, hold, promote, false, "on decision PROMOTE", ""},
		{"no-auto-finish-promote-waits", nil, scenario{Latency: 1, Errors: 1, N: 2500}, 4,
			31 * time.Minute, hold, promote, false, "", ""},
		{"max-duration-holds", &canaryv1.AutoFinish{OnDecision: true, MaxDuration: durationpb.New(time.Hour)},
			scenario{Latency: 1, Errors: 1, N: 40}, 1, 61 * time.Minute, hold, hold, false, "max_duration 1h0m0s reached", ""},
		{"max-duration-fails-closed", &canaryv1.AutoFinish{MaxDuration: durationpb.New(time.Hour), TimeoutDecision: rollback},
			scenario{Latency: 1, Errors: 1, N: 40}, 1, 61 * time.Minute, hold, rollback, false, "max_duration 1h0m0s reached", "fails closed"},
		{"max-duration-not-yet", &canaryv1.AutoFinish{MaxDuration: durationpb.New(time.Hour), TimeoutDecision: rollback},
			scenario{Latency: 1, Errors: 1, N: 40}, 1, 59 * time.Minute, hold, hold, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			ctx := ctxT(t)
			run := e.autoRun(ctx, tc.name, tc.af)
			rng := rand.New(rand.NewPCG(1, 2))
			for _, id := range seqIDs("b", tc.batches) {
				e.ingest(ctx, makeBatch(rng, run.GetId(), id, tc.sc))
			}
			v := e.judge(ctx, run.GetId())
			if v.GetDecision() != tc.during || v.GetFinal() != tc.finishedDuringBake {
				t.Fatalf("during the bake: %v final=%v, want %v final=%v: %s", v.GetDecision(), v.GetFinal(), tc.during, tc.finishedDuringBake, v.GetReason())
			}
			if !tc.finishedDuringBake {
				e.clock.Advance(tc.advance)
				v = e.judge(ctx, run.GetId())
			}
			if tc.reason == "" { // the run goes on
				if v.GetFinal() || v.GetDecision() != tc.final {
					t.Fatalf("after %v: %v final=%v, want %v still running", tc.advance, v.GetDecision(), v.GetFinal(), tc.final)
				}
				if got := e.getRun(ctx, run.GetId()); got.GetState() != canaryv1.RunState_RUN_STATE_RUNNING {
					t.Fatalf("state %v, want running", got.GetState())
				}
				return
			}
			if !v.GetFinal() || v.GetDecision() != tc.final || v.GetRunState() != canaryv1.RunState_RUN_STATE_COMPLETED {
				t.Fatalf("final: %v final=%v state=%v, want %v final COMPLETED: %s", v.GetDecision(), v.GetFinal(), v.GetRunState(), tc.final, v.GetReason())
			}
			if tc.verdictReason != "" && !strings.Contains(v.GetReason(), tc.verdictReason) {
				t.Errorf("final reason %q lacks %q", v.GetReason(), tc.verdictReason)
			}
			got := e.getRun(ctx, run.GetId())
			if got.GetState() != canaryv1.RunState_RUN_STATE_COMPLETED || !strings.Contains(got.GetFinishReason(), tc.reason) ||
				got.GetVerdict().GetSequence() != v.GetSequence() {
				t.Errorf("run: %v %q seq %d, want COMPLETED %q seq %d", got.GetState(), got.GetFinishReason(), got.GetVerdict().GetSequence(), tc.reason, v.GetSequence())
			}
			// The history holds it once.
			hist, err := e.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{Service: "checkout"})
			if err != nil || len(hist.GetVerdicts()) != 1 || hist.GetVerdicts()[0].GetDecision() != tc.final {
				t.Errorf("history: %v %v", hist.GetVerdicts(), err)
			}
			// A watcher gets the final verdict and ends.
			w, err := e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: run.GetId()})
			if err != nil {
				t.Fatal(err)
			}
			if m, err := w.Recv(); err != nil || !m.GetVerdict().GetFinal() || m.GetVerdict().GetSequence() != v.GetSequence() {
				t.Errorf("watch: %v %v", m, err)
			}
			// CompleteRun answers the run as it is; AbortRun is refused.
			done, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: run.GetId(), Reason: "deployer done"})
			if err != nil || done.GetRun().GetVerdict().GetSequence() != v.GetSequence() || done.GetRun().GetFinishReason() != got.GetFinishReason() {
				t.Errorf("complete after the auto-finish: %v %v", done.GetRun(), err)
			}
			_, err = e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: run.GetId()})
			wantCode(t, err, codes.FailedPrecondition, "")
		})
	}
}

// TestAutoFinishWatch: a watcher of a run that finishes itself, because
// another caller's judge saw a critical regression, receives the final
// verdict and its stream ends.
func TestAutoFinishWatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.autoRun(ctx, "w", &canaryv1.AutoFinish{OnDecision: true})
	w, err := e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: run.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.GetVerdict().GetFinal() {
		t.Fatalf("first: %v %v", m, err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, id := range seqIDs("b", 4) {
		// The watcher's judge may finish the run before the last batches:
		// they are refused.
		_, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: makeBatch(rng, run.GetId(), id, scenario{Latency: 1.5, Errors: 1, N: 2500})})
		if status.Code(err) == codes.FailedPrecondition {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for {
		m, err := w.Recv()
		if err != nil {
			t.Fatalf("watch ended without a final verdict: %v", err)
		}
		if m.GetVerdict().GetFinal() {
			if m.GetVerdict().GetDecision() != rollback {
				t.Errorf("final %v", m.GetVerdict().GetDecision())
			}
			break
		}
	}
	if _, err := w.Recv(); err == nil {
		t.Error("the watch goes on after the final verdict")
	}
}

// TestAutoFinishJanitor: a run past its max_duration that nobody asks
// about is finished by the service's own check.
func TestAutoFinishJanitor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.autoRun(ctx, "j", &canaryv1.AutoFinish{MaxDuration: durationpb.New(time.Hour), TimeoutDecision: rollback})
	e.svc.autoCheck()
	if got := e.getRun(ctx, run.GetId()); got.GetState() != canaryv1.RunState_RUN_STATE_RUNNING {
		t.Fatalf("finished before its max_duration: %v", got.GetState())
	}
	e.clock.Advance(time.Hour)
	e.svc.autoCheck()
	got, err := e.store.GetRun(ctx, run.GetId()) // as stored: no call of the API judged it
	if err != nil {
		t.Fatal(err)
	}
	if got.GetState() != canaryv1.RunState_RUN_STATE_COMPLETED || got.GetVerdict().GetDecision() != rollback {
		t.Errorf("stored run: %v %v", got.GetState(), got.GetVerdict().GetDecision())
	}
}

// TestCreateRunExternalID: a deployer's name of its deployment as the
// request_id finds the same run on every call (judge or not), a different
// request under that name is ALREADY_EXISTS naming the run, and bad
// auto_finish fields are INVALID_ARGUMENT naming them.
func TestCreateRunExternalID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	const id = "argo/shop/checkout/7"
	af := &canaryv1.AutoFinish{OnDecision: true, MaxDuration: durationpb.New(2 * time.Hour)}
	first := e.autoRun(ctx, id, af)
	req := autoRunRequest(id, af)
	req.Judge = true
	again, err := e.c.CreateRun(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetRun().GetId() != first.GetId() || again.GetVerdict().GetDecision() != hold || again.GetRun().GetAutoFinish().GetMaxDuration().AsDuration() != 2*time.Hour {
		t.Errorf("create with judge: run %s (want %s), verdict %v", again.GetRun().GetId(), first.GetId(), again.GetVerdict())
	}
	// Concurrent callers find one run.
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			r, err := e.c.CreateRun(ctx, autoRunRequest("flagger/shop/checkout/abc", af))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = r.GetRun().GetId()
		})
	}
	wg.Wait()
	for _, x := range ids {
		if x != ids[0] {
			t.Fatalf("concurrent creates made several runs: %v", ids)
		}
	}

	other := autoRunRequest(id, &canaryv1.AutoFinish{OnDecision: true, MaxDuration: durationpb.New(3 * time.Hour)})
	_, err = e.c.CreateRun(ctx, other)
	wantCode(t, err, codes.AlreadyExists, "")
	st, _ := status.FromError(err)
	var named bool
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.ResourceInfo); ok && ri.GetResourceName() == first.GetId() && ri.GetOwner() == id {
			named = true
		}
	}
	if !named {
		t.Errorf("ALREADY_EXISTS does not name run %s: %v", first.GetId(), st.Details())
	}

	_, err = e.c.CreateRun(ctx, autoRunRequest("bad1", &canaryv1.AutoFinish{TimeoutDecision: promote}))
	wantCode(t, err, codes.InvalidArgument, "auto_finish.timeout_decision")
	_, err = e.c.CreateRun(ctx, autoRunRequest("bad2", &canaryv1.AutoFinish{MaxDuration: durationpb.New(-time.Minute)}))
	wantCode(t, err, codes.InvalidArgument, "auto_finish.max_duration")
}

// TestAutoFinishReplicas: two replicas on one Redis judge a run past its
// max_duration at the same time: it finishes once (one verdict in the
// history) and both answer the same final verdict.
func TestAutoFinishReplicas(t *testing.T) {
	t.Parallel()
	a, b := redisReplicas(t, nil)
	ctx := ctxT(t)
	run := a.autoRun(ctx, "rep", &canaryv1.AutoFinish{MaxDuration: durationpb.New(time.Hour), TimeoutDecision: rollback})
	a.ingest(ctx, makeBatch(rand.New(rand.NewPCG(1, 2)), run.GetId(), "b0", scenario{Latency: 1, Errors: 1, N: 40}))
	a.clock.Advance(time.Hour)
	b.clock.Advance(time.Hour)
	var wg sync.WaitGroup
	got := make([]*canaryv1.Verdict, 6)
	for i := range got {
		e := []*env{a, b}[i%2]
		wg.Go(func() {
			r, err := e.c.Judge(ctx, &canaryv1.JudgeRequest{RunId: run.GetId()})
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = r.GetVerdict()
		})
	}
	wg.Wait()
	for i, v := range got {
		if !v.GetFinal() || v.GetDecision() != rollback || v.GetSequence() != got[0].GetSequence() {
			t.Errorf("judge %d: %v final=%v seq %d", i, v.GetDecision(), v.GetFinal(), v.GetSequence())
		}
	}
	hist, err := b.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{Service: "checkout"})
	if err != nil || len(hist.GetVerdicts()) != 1 {
		t.Errorf("history: %d verdicts, %v; want 1", len(hist.GetVerdicts()), err)
	}
}
