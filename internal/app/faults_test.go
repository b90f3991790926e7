package app

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/canaryd/canaryd/internal/testfs"
	"github.com/canaryd/canaryd/internal/testlog"
	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// startRunConn serves Run with opts (startRun) and returns a client
// connection and the HTTP address.
func startRunConn(t *testing.T, opts Options) (*grpc.ClientConn, string) {
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
	var logs testlog.Buffer
	conn, httpAddr := startRunConn(t, Options{
		Store:          filepath.Join(dir, "canaryd.db"),
		Logger:         logs.Logger(),
		HealthInterval: 8 * time.Second, // longer than the bound on "at once" below
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
		_, err := c.Ingest(ctx, &canaryv1.IngestRequest{Batch: makeBatch(rng, runID, id, scenario{Latency: 1, Errors: 1, N: 4000})})
		return err
	}
	var failed error
	for i := 0; i < 200 && failed == nil; i++ {
		failed = ingest(fmt.Sprintf("b%d", i))
	}
	wantCode(t, failed, codes.Unavailable, "")
	// The failure itself triggers the check (the interval is 8s; 5s
	// leaves room for a loaded machine).
	for start := time.Now(); health() != healthpb.HealthCheckResponse_NOT_SERVING; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("health still SERVING 5s after a failed write")
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
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ingest("after")
		if err == nil && health() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving 20s after space was freed: ingest %v, health %v", err, health())
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
		{"redis://:" + secret + "@127.0.0.1:26390x/0", `store redis://xxxxx@127.0.0.1:26390x/0: open redis store: host "127.0.0.1:26390x": bad port`},
		{"rediss://:" + secret + "@[::1/0", `host "[::1": not host[:port]`},
		{"redis://u:" + secret + "@127.0.0.1:1/x", "invalid database number"},
		{"redis://u:" + secret + "@127.0.0.1:1/0", "store unavailable"}, // nothing listens on port 1
		{"redis+cluster://:" + secret + "@127.0.0.1:1,127.0.0.1:x/", `host "127.0.0.1:x": bad port`},
		{"redis+cluster://:" + secret + "@127.0.0.1:1,,127.0.0.1:2/", "empty host"},
		{"redis+cluster://:" + secret + "@127.0.0.1:1/3", "a cluster has no database number"},
		{"redis+sentinel://:" + secret + "@127.0.0.1:1,127.0.0.1:2/", "want /master"},
		{"redis+sentinel://:" + secret + "@127.0.0.1:1/m?min_replicas=-1", "min_replicas"},
		{"redis://:" + secret + "@127.0.0.1:1,127.0.0.1:2/0", "a redis:// URL names one server"},
		{"redis://:" + secret + "@127.0.0.1:1/0?replica_timeout=soon", "replica_timeout"},
		{"redis+cluster://:" + secret + "@127.0.0.1:1/?no_such_option=1", "no_such_option"},
		{"redis+cluster+tls://:" + secret + "@127.0.0.1:1,127.0.0.1:2/", "store unavailable"},
		{"s3://:" + secret + "@bucket/x", `unknown scheme "s3"`},
		{"file://elsewhere/x", "names no host"},
		{"://" + secret + "@x", "not a valid URL"},
	} {
		var logs testlog.Buffer
		err := Run(context.Background(), Options{
			GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: tt.spec, Logger: logs.Logger(),
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

// TestRedisOutage stops redis-server under a running canaryd: ingest
// answers UNAVAILABLE (and stores nothing), health turns NOT_SERVING;
// after redis-server restarts (with its append-only file) the same canaryd
// serves again: health SERVING, ingest and judge work, and the batches
// acknowledged before the outage are all there.
func TestRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and restarts redis-server")
	}
	t.Parallel()
	srv := testredis.StartWith(t, testredis.Options{AppendOnly: true, Private: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(runCtx, Options{
			GRPCAddr:       "127.0.0.1:0",
			HTTPAddr:       "127.0.0.1:0",
			Store:          srv.URL() + "/0",
			HealthInterval: 100 * time.Millisecond,
			Ready:          func(g, _ string) { ready <- g },
		})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		t.Fatalf("run: %v", err)
	case <-ctx.Done():
		t.Fatal("not ready in time")
	}
	defer func() {
		stop()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("run did not stop")
		}
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := canaryv1.NewCanaryServiceClient(conn)
	hc := healthpb.NewHealthClient(conn)
	waitHealth := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "canary.v1.CanaryService"})
			if err == nil && r.GetStatus() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health %v (%v), want %v", r.GetStatus(), err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitHealth(healthpb.HealthCheckResponse_SERVING)

	cr, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: "req-1", Service: "checkout", Stage: "wave-1",
		Config:   &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("checkout")},
		BakeTime: durationpb.New(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	id := cr.GetRun().GetId()
	rng := rand.New(rand.NewPCG(3, 4))
	batches := make([]*canaryv1.Batch, 4)
	for i, bid := range seqIDs("b", len(batches)) {
		batches[i] = makeBatch(rng, id, bid, scenario{Latency: 1.6, Errors: 1, N: 500})
	}
	ingest := func(b *canaryv1.Batch) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := c.Ingest(cctx, &canaryv1.IngestRequest{Batch: b})
		return err
	}
	for _, b := range batches[:2] {
		if err := ingest(b); err != nil {
			t.Fatal(err)
		}
	}

	srv.Stop()
	if err := ingest(batches[2]); status.Code(err) != codes.Unavailable {
		t.Fatalf("ingest with Redis down: %v, want UNAVAILABLE", err)
	}
	if _, err := c.Judge(ctx, &canaryv1.JudgeRequest{RunId: id}); status.Code(err) != codes.Unavailable {
		t.Errorf("judge with Redis down: %v, want UNAVAILABLE", err)
	}
	waitHealth(healthpb.HealthCheckResponse_NOT_SERVING)

	srv.Start()
	waitHealth(healthpb.HealthCheckResponse_SERVING)
	for _, b := range batches[2:] {
		if err := ingest(b); err != nil {
			t.Fatalf("ingest after Redis returned: %v", err)
		}
	}
	r, err := c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: id})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.GetRun().GetCounters().GetBatches(); got != 4 {
		t.Errorf("batches = %d, want 4 (each counted once)", got)
	}
	if _, err := c.Judge(ctx, &canaryv1.JudgeRequest{RunId: id}); err != nil {
		t.Errorf("judge after Redis returned: %v", err)
	}
}

// TestRunWaitsForStore: canaryd started before its Redis waits for it
// (Options.StoreWait) and comes up by itself once Redis answers.
func TestRunWaitsForStore(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and restarts redis-server")
	}
	t.Parallel()
	srv := testredis.StartWith(t, testredis.Options{Private: true})
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- Run(runCtx, Options{
			GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: srv.URL(),
			StoreWait: time.Minute,
			Ready:     func(string, string) { close(ready) },
		})
	}()
	select {
	case <-ready:
		t.Fatal("ready while Redis is down")
	case err := <-errc:
		t.Fatalf("Run gave up at once: %v", err)
	case <-time.After(time.Second):
	}
	srv.Start()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	case <-ctx.Done():
		t.Fatal("not ready after Redis came back")
	}
	stop()
	if err := <-errc; err != nil {
		t.Fatalf("Run after stop: %v", err)
	}
}
