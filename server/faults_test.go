package server

import (
	"context"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/testlog"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestAbortUnjudgeable: a run whose judge panics (as the judge did on a
// rate exposure of 1.8e19) answers INTERNAL to Judge, WatchVerdict and
// CompleteRun without taking the daemon down, logs the panic once per data
// version, and can still be aborted: the abort is stored with a final HOLD
// that says the verdict could not be computed.
func TestAbortUnjudgeable(t *testing.T) {
	t.Parallel()
	var logs testlog.Buffer
	e := newEnv(t, func(o *Options) {
		o.Logger = logs.Logger()
		o.Judge = func(*analysis.Data, analysis.Options) analysis.Verdict {
			panic("RateBoundaryEValue: rho must be in (0, 1)")
		}
	})
	ctx := ctxT(t)
	run := e.createRun(ctx, "poison", testConfig("checkout"), time.Hour)
	e.ingest(ctx, makeBatch(rand.New(rand.NewPCG(1, 2)), run.GetId(), "b1", scenario{Latency: 1, Errors: 1, N: 100}))

	for range 2 {
		_, err := e.c.Judge(ctx, &canaryv1.JudgeRequest{RunId: run.GetId()})
		wantCode(t, err, codes.Internal, "")
		if msg := status.Convert(err).Message(); !strings.Contains(msg, "cannot be computed") {
			t.Errorf("Judge message = %q, want one saying the verdict cannot be computed", msg)
		}
	}
	if n := strings.Count(logs.String(), "judge panicked"); n != 1 {
		t.Errorf("judge panic logged %d times for two judges of the same data, want 1", n)
	}
	if !strings.Contains(logs.String(), "rho must be in (0, 1)") || !strings.Contains(logs.String(), "goroutine") {
		t.Errorf("the panic and its stack are not logged:\n%s", logs.String())
	}
	ws, err := e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: run.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ws.Recv()
	wantCode(t, err, codes.Internal, "")
	_, err = e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: run.GetId()})
	wantCode(t, err, codes.Internal, "")

	resp, err := e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: run.GetId(), Reason: "poisoned"})
	if err != nil {
		t.Fatalf("AbortRun of a run that cannot be judged: %v", err)
	}
	got := resp.GetRun()
	v := got.GetVerdict()
	if got.GetState() != canaryv1.RunState_RUN_STATE_ABORTED || !v.GetFinal() ||
		v.GetDecision() != canaryv1.Decision_DECISION_HOLD || !strings.Contains(v.GetReason(), "could not be computed") ||
		got.GetFinishReason() != "poisoned" {
		t.Fatalf("aborted run = %v", got)
	}
	// Stored: in the history and as the run's record.
	hist, err := e.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{Service: "checkout"})
	if err != nil || len(hist.GetVerdicts()) != 1 || hist.GetVerdicts()[0].GetRunId() != run.GetId() {
		t.Fatalf("history = %v, %v; want the aborted run's verdict", hist.GetVerdicts(), err)
	}
	if r := e.getRun(ctx, run.GetId()); r.GetState() != canaryv1.RunState_RUN_STATE_ABORTED {
		t.Errorf("GetRun after abort: state %v", r.GetState())
	}
	// Judge now answers the final verdict, and abort is idempotent.
	if v := e.judge(ctx, run.GetId()); !v.GetFinal() {
		t.Errorf("Judge after abort = %v, want the final verdict", v)
	}
	if _, err := e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: run.GetId()}); err != nil {
		t.Errorf("AbortRun again: %v", err)
	}
}

// panickingHealth is a test-only service whose handlers panic, registered
// beside the CanaryService on a server built with Service.ServerOptions.
type panickingHealth struct {
	healthpb.UnimplementedHealthServer
}

func (panickingHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	panic("unary boom")
}

func (panickingHealth) Watch(*healthpb.HealthCheckRequest, healthpb.Health_WatchServer) error {
	panic("stream boom")
}

// TestRecoveryInterceptor: a panic in a unary or streaming handler answers
// INTERNAL, is logged once with its stack, and the server keeps serving.
func TestRecoveryInterceptor(t *testing.T) {
	t.Parallel()
	var logs testlog.Buffer
	st := openTestStore(t, "embedded")
	svc, err := New(Options{Store: st, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(svc.ServerOptions()...)
	svc.Register(gs)
	healthpb.RegisterHealthServer(gs, panickingHealth{})
	go gs.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		svc.Close()
		st.Close()
	})
	ctx := ctxT(t)
	hc := healthpb.NewHealthClient(conn)

	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{})
	wantCode(t, err, codes.Internal, "")
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Recv()
	wantCode(t, err, codes.Internal, "")

	out := logs.String()
	for _, p := range []string{"unary boom", "stream boom"} {
		if n := strings.Count(out, "panic=\""+p); n != 1 {
			t.Errorf("panic %q logged %d times, want once:\n%s", p, n, out)
		}
	}
	if n := strings.Count(out, "handler panicked"); n != 2 || !strings.Contains(out, "panickingHealth") {
		t.Errorf("want 2 panic logs with the panicking frame in their stacks, got %d:\n%s", n, out)
	}
	// Still serving.
	c := canaryv1.NewCanaryServiceClient(conn)
	if _, err := c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("after")}}); err != nil {
		t.Fatalf("PutConfig after the panics: %v", err)
	}
}
