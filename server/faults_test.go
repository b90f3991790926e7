package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/testfs"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// logBuffer is a slog destination safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// TestAbortUnjudgeable: a run whose judge panics (as the judge did on a
// rate exposure of 1.8e19) answers INTERNAL to Judge, WatchVerdict and
// CompleteRun without taking the daemon down, logs the panic once per data
// version, and can still be aborted: the abort is stored with a final HOLD
// that says the verdict could not be computed.
func TestAbortUnjudgeable(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	e := newEnv(t, func(o *Options) {
		o.Logger = logs.logger()
		o.Judge = func(*analysis.Data, analysis.Options) analysis.Verdict {
			panic("RateBoundaryEValue: rho must be in (0, 1)")
		}
	})
	ctx := ctxT(t)
	run := e.createRun(ctx, "poison", testConfig("checkout"), time.Hour)
	e.ingest(ctx, makeBatch(rand.New(rand.NewPCG(1, 2)), run.GetId(), "b1", scenario{latency: 1, errors: 1, n: 100}))

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
	var logs logBuffer
	st := openTestStore(t, "embedded")
	svc, err := New(Options{Store: st, Logger: logs.logger()})
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

// startRunConn serves Run with opts (startRun) and returns a client
// connection and the HTTP address.
func startRunConn(t *testing.T, opts RunOptions) (*grpc.ClientConn, string) {
	t.Helper()
	grpcAddr, httpAddr := startRun(t, opts)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, httpAddr
}

// TestRunDiskFull: on a full disk (a real tmpfs) ingest answers
// UNAVAILABLE, not INTERNAL; grpc.health.v1 turns NOT_SERVING and /healthz
// 503 at once; the logs stay short; once space is freed, health and ingest
// come back without a restart.
func TestRunDiskFull(t *testing.T) {
	dir := testfs.Tmpfs(t, "8m")
	var logs logBuffer
	conn, httpAddr := startRunConn(t, RunOptions{
		Store:          filepath.Join(dir, "canaryd.db"),
		Logger:         logs.logger(),
		HealthInterval: 3 * time.Second,
	})
	ctx := ctxT(t)
	c := canaryv1.NewCanaryServiceClient(conn)
	hc := healthpb.NewHealthClient(conn)
	health := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: canaryv1.CanaryService_ServiceDesc.ServiceName})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	healthz := func() int {
		t.Helper()
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cr, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{RequestId: "full", Service: "checkout", Stage: "s",
		Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("checkout")}})
	if err != nil {
		t.Fatal(err)
	}
	runID := cr.GetRun().GetId()
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	testfs.Fill(t, filepath.Join(dir, "filler"))

	rng := rand.New(rand.NewPCG(3, 4))
	ingest := func(id string) error {
		_, err := c.Ingest(ctx, &canaryv1.IngestRequest{Batch: makeBatch(rng, runID, id, scenario{latency: 1, errors: 1, n: 4000})})
		return err
	}
	var failed error
	for i := 0; i < 200 && failed == nil; i++ {
		failed = ingest(fmt.Sprintf("b%d", i))
	}
	wantCode(t, failed, codes.Unavailable, "")
	// The failure itself triggers the check (the interval is 3s).
	for start := time.Now(); health() != healthpb.HealthCheckResponse_NOT_SERVING; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > time.Second {
			t.Fatal("health still SERVING 1s after a failed write")
		}
	}
	if code := healthz(); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz after a failed write = %d, want 503", code)
	}
	for i := range 100 {
		wantCode(t, ingest(fmt.Sprintf("f%d", i)), codes.Unavailable, "")
	}
	if n := strings.Count(logs.String(), "level=ERROR") + strings.Count(logs.String(), "level=WARN"); n > 3 {
		t.Errorf("%d error and warning lines for 101 failed writes, want at most 3:\n%s", n, logs.String())
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if code := healthz(); code != http.StatusOK {
		t.Errorf("/healthz after space was freed = %d, want 200", code)
	}
	// grpc.health.v1 follows at the next check.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ingest("after")
		if err == nil && health() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving 10s after space was freed: ingest %v, health %v", err, health())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStoreSpecs: a --store value with "://" is a URL of a known scheme or
// an error, never a file name, and no error or log line holds its
// password.
func TestStoreSpecs(t *testing.T) {
	t.Parallel()
	const secret = "s3cretPW"
	dir := t.TempDir()
	for _, tt := range []struct {
		spec, want string
	}{
		{"redis://:" + secret + "@127.0.0.1:26390x/0", `store redis://xxxxx@127.0.0.1:26390x/0: not a valid URL: invalid port ":26390x" after host`},
		{"rediss://:" + secret + "@[::1/0", "not a valid URL"},
		{"redis://u:" + secret + "@127.0.0.1:1/x", "invalid database number"},
		{"redis://u:" + secret + "@127.0.0.1:1/0", "store unavailable"}, // nothing listens on port 1
		{"s3://:" + secret + "@bucket/x", `unknown scheme "s3"`},
		{"file://elsewhere/x", "names no host"},
		{"://" + secret + "@x", "not a valid URL"},
	} {
		var logs logBuffer
		err := Run(context.Background(), RunOptions{
			GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: tt.spec, Logger: logs.logger(),
			StoreWait: 600 * time.Millisecond,
		})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("store %q: %v, want an error with %q", tt.spec, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error()+logs.String(), secret) {
			t.Errorf("store %q: the password is in the error or the logs:\n%v\n%s", tt.spec, err, logs.String())
		}
	}
	// Nothing was created as a file named like a URL.
	if m, _ := filepath.Glob("*:*"); len(m) > 0 {
		t.Errorf("files created for URLs: %v", m)
	}
	// A file URL names the embedded store's file.
	path := filepath.Join(dir, "via-url.db")
	st, err := OpenStore(context.Background(), "file://"+path, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("file URL: %v", err)
	}
}
