package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestFaults drives the real canaryd through the faults of issue 10: a
// SIGTERM while ingest streams and a watcher are open, a malformed store
// URL holding a password, and a second daemon on a locked store file.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault tests skipped with -short: they build canaryd and run it as processes")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("fault tests skipped: no go command in PATH to build the binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	dir := t.TempDir()
	canaryd, _ := e2eBuild(ctx, t, goBin, dir)

	t.Run("Drain", func(t *testing.T) { testDrain(ctx, t, canaryd) })
	t.Run("MalformedStoreURL", func(t *testing.T) { testMalformedStoreURL(ctx, t, canaryd) })
	t.Run("LockedStore", func(t *testing.T) { testLockedStore(ctx, t, canaryd) })
}

// drainTimeout is the --drain-timeout of testDrain (through its
// environment variable): far longer than a drain should take, so that a
// daemon that waits for it instead of ending its streams is caught.
const drainTimeout = 20 * time.Second

// testDrain: SIGTERM while 4 ingest streams send batches and a watcher
// follows the run. The streams and the watcher end with UNAVAILABLE
// "server shutting down", the daemon exits 0 well within the drain timeout
// (without cutting calls), and after a restart on the same store every
// batch a stream acknowledged is stored (sent again, it is a duplicate).
func testDrain(ctx context.Context, t *testing.T, bin string) {
	t.Setenv("CANARYD_DRAIN_TIMEOUT", drainTimeout.String())
	store := filepath.Join(t.TempDir(), "canaryd.db")
	d := e2eStart(ctx, t, bin, store)
	c, closeConn := dialCanary(t, d.grpcAddr)
	defer closeConn()
	cr, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{RequestId: "drain", Service: "checkout", Stage: "s",
		Config: &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: "name: drain\nmetrics:\n- {name: latency_ms, category: performance, type: distribution}\n"}})
	if err != nil {
		t.Fatal(err)
	}
	runID := cr.GetRun().GetId()
	batch := func(id string) *canaryv1.Batch {
		b := &canaryv1.Batch{RunId: runID, BatchId: id}
		for i := range 200 {
			b.Samples = append(b.Samples, &canaryv1.Sample{Metric: "latency_ms", Cohort: canaryv1.Cohort(1 + i%2),
				Observation: &canaryv1.Sample_Value{Value: float64(50 + i%37)}})
		}
		return b
	}

	watch, err := c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatalf("watch: %v", err)
	}
	watchEnd := make(chan error, 1)
	go func() {
		for {
			if _, err := watch.Recv(); err != nil {
				watchEnd <- err
				return
			}
		}
	}()

	var (
		mu       sync.Mutex
		acked    []string
		wg       sync.WaitGroup
		streamOK = make(chan struct{}, 4) // one token per stream once it got an ack
	)
	streamEnds := make([]error, 4)
	for s := range 4 {
		stream, err := c.IngestStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// A sender that keeps the stream busy until the stream breaks.
		go func() {
			for i := 0; ; i++ {
				if err := stream.Send(&canaryv1.IngestStreamRequest{Batch: batch(fmt.Sprintf("s%d-%05d", s, i))}); err != nil {
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		wg.Go(func() {
			first := true
			for {
				resp, err := stream.Recv()
				if err != nil {
					streamEnds[s] = err
					return
				}
				mu.Lock()
				acked = append(acked, resp.GetAck().GetBatchId())
				mu.Unlock()
				if first {
					streamOK <- struct{}{}
					first = false
				}
			}
		})
	}
	for range 4 {
		select {
		case <-streamOK:
		case <-time.After(e2eStep):
			t.Fatal("a stream got no acknowledgement")
		}
	}
	time.Sleep(300 * time.Millisecond) // batches in flight on every stream

	sent := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(drainTimeout + 10*time.Second):
		t.Fatalf("canaryd did not exit after SIGTERM\n%s", d.logs.String())
	}
	took := time.Since(sent)
	wg.Wait()
	t.Logf("exit %v after SIGTERM (drain timeout %v); %d batches acknowledged", took.Round(time.Millisecond), drainTimeout, len(acked))
	if d.err != nil {
		t.Errorf("canaryd exited with %v after SIGTERM, want 0\n%s", d.err, d.logs.String())
	}
	if took >= drainTimeout || strings.Contains(d.logs.String(), "graceful stop timed out") {
		t.Errorf("canaryd waited for the drain timeout instead of ending its streams (exit after %v)", took)
	}
	for s, err := range streamEnds {
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "server shutting down" {
			t.Errorf("stream %d ended with %v, want UNAVAILABLE server shutting down", s, err)
		}
	}
	select {
	case err := <-watchEnd:
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "server shutting down" {
			t.Errorf("watcher ended with %v, want UNAVAILABLE server shutting down", err)
		}
	case <-time.After(e2eStep):
		t.Error("the watcher did not end")
	}

	// Restart: every acknowledged batch is stored.
	d = e2eStart(ctx, t, bin, store)
	c2, closeConn2 := dialCanary(t, d.grpcAddr)
	defer closeConn2()
	for _, id := range acked {
		resp, err := c2.Ingest(ctx, &canaryv1.IngestRequest{Batch: batch(id)})
		if err != nil || !resp.GetAck().GetDuplicate() {
			t.Fatalf("batch %s, acknowledged before SIGTERM, sent again after the restart: %v, %v; want a duplicate", id, resp.GetAck(), err)
		}
	}
	run, err := c2.GetRun(ctx, &canaryv1.GetRunRequest{RunId: runID})
	if err != nil || run.GetRun().GetCounters().GetBatches() < uint64(len(acked)) {
		t.Errorf("run after restart: %v, %v; want at least %d batches", run.GetRun().GetCounters(), err, len(acked))
	}
}

// testMalformedStoreURL: a store URL that does not parse is an error at
// start (exit 1, at once), never a file, and the password appears in no
// output.
func testMalformedStoreURL(ctx context.Context, t *testing.T, bin string) {
	const secret = "s3cretPW"
	dir := t.TempDir()
	for _, spec := range []string{
		"redis://:" + secret + "@127.0.0.1:26390x/0",
		"redis://:" + secret + "@127.0.0.1:1/notadb",
		"postgres://u:" + secret + "@127.0.0.1/db",
	} {
		cmd := exec.CommandContext(ctx, bin, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--store", spec, "--log-level", "debug", "--store-wait", "0s")
		cmd.Dir = dir
		cmd.Env = append(e2eEnv(), "CANARYD_STORE=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("--store %s: %v, want exit 1\n%s", spec, err, out.String())
		}
		if strings.Contains(out.String(), secret) {
			t.Errorf("--store %s: the password is in the output:\n%s", spec, out.String())
		}
		if !strings.Contains(out.String(), "xxxxx") {
			t.Errorf("--store %s: the error does not name the (redacted) store:\n%s", spec, out.String())
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) > 0 {
		t.Errorf("files created: %v", m)
	}
}

// testLockedStore: a second canaryd on the store file of a running one
// says that another canaryd holds it and exits 1 within seconds; the
// first keeps serving.
func testLockedStore(ctx context.Context, t *testing.T, bin string) {
	store := filepath.Join(t.TempDir(), "canaryd.db")
	first := e2eStart(ctx, t, bin, store)
	cmd := exec.CommandContext(ctx, bin, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--store", store)
	cmd.Env = append(e2eEnv(), "CANARYD_STORE=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("second canaryd exited after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out.String()))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("second canaryd: %v, want exit 1", err)
	}
	if want := "store " + store + " is locked by another process (another canaryd?)"; !strings.Contains(out.String(), want) {
		t.Errorf("second canaryd said %q, want %q", out.String(), want)
	}
	c, closeConn := dialCanary(t, first.grpcAddr)
	defer closeConn()
	if _, err := c.ListRuns(ctx, &canaryv1.ListRunsRequest{}); err != nil {
		t.Errorf("first canaryd after the second one tried: %v", err)
	}
}

func dialCanary(t *testing.T, addr string) (canaryv1.CanaryServiceClient, func()) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return canaryv1.NewCanaryServiceClient(conn), func() { conn.Close() }
}
