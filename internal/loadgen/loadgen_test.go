package loadgen

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/canaryd/canaryd/internal/app"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// startDaemon runs a canaryd (internal/app, as cmd/canaryd does) on free
// loopback ports with an embedded store in a temporary directory, and
// returns its gRPC and HTTP addresses; it stops with the test.
func startDaemon(t *testing.T) (grpcAddr, httpAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{
			GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			Store: filepath.Join(t.TempDir(), "canaryd.db"),
			Ready: func(g, h string) { ready <- [2]string{g, h} },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("canaryd: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("canaryd did not stop within 30s")
		}
	})
	select {
	case a := <-ready:
		return a[0], a[1]
	case err := <-done:
		t.Fatalf("canaryd: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("canaryd not ready within 30s")
	}
	return "", ""
}

func dialer(addr string) func(context.Context) (*grpc.ClientConn, error) {
	return func(context.Context) (*grpc.ClientConn, error) {
		return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
}

// TestRunAgainstDaemon drives a small load against a real canaryd for two
// seconds: batches are acknowledged, runs judged and watched, health
// probed, the daemon's memory read, nothing fails, and every run created
// is aborted at the end.
func TestRunAgainstDaemon(t *testing.T) {
	grpcAddr, httpAddr := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{
		Dial: dialer(grpcAddr), Runs: 3, StreamsPerRun: 2, Duration: 2 * time.Second,
		BatchInterval: 20 * time.Millisecond, BatchSize: 20, JudgeInterval: 300 * time.Millisecond,
		HealthInterval: 50 * time.Millisecond, Service: "bench-test", Stage: "load",
		MetricsURL: "http://" + httpAddr + "/metrics", Seed: 1,
	})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	var out strings.Builder
	rep.Print(&out)
	t.Logf("report:\n%s", out.String())
	if n := rep.ErrorCount(); n != 0 {
		t.Errorf("%d errors: %v %v", n, rep.Errors, rep.FirstErrors)
	}
	switch {
	case rep.Batches == 0 || rep.Ack.N == 0 || rep.Observations != rep.Batches*(2*(2*20)+2):
		t.Errorf("batches %d, acks %d, observations %d", rep.Batches, rep.Ack.N, rep.Observations)
	case rep.Judge.N == 0 || rep.Health.N == 0 || rep.Create.N != 3:
		t.Errorf("judge calls %d, health checks %d, runs created %d", rep.Judge.N, rep.Health.N, rep.Create.N)
	case rep.Verdicts == 0:
		t.Errorf("no verdict reached the watchers")
	case rep.RSSBefore == 0 || rep.RSSDuring == 0:
		t.Errorf("daemon RSS %d before, %d during", rep.RSSBefore, rep.RSSDuring)
	case !(rep.Ack.P50 > 0 && rep.Ack.P50 <= rep.Ack.P99 && rep.Ack.P99 <= rep.Ack.Max):
		t.Errorf("ack latency quantiles %+v", rep.Ack)
	}
	if rep.Aborted != 3 {
		t.Errorf("aborted %d runs, want 3", rep.Aborted)
	}
	// Every run of the load ended ABORTED, with the batches it was sent.
	conn, err := dialer(grpcAddr)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := canaryv1.NewCanaryServiceClient(conn).ListRuns(ctx, &canaryv1.ListRunsRequest{Service: "bench-test"})
	if err != nil {
		t.Fatal(err)
	}
	var stored uint64
	for _, r := range resp.GetRuns() {
		if r.GetState() != canaryv1.RunState_RUN_STATE_ABORTED {
			t.Errorf("run %s is %s after the load", r.GetId(), r.GetState())
		}
		stored += r.GetCounters().GetBatches()
	}
	if len(resp.GetRuns()) != 3 || stored != rep.Batches {
		t.Errorf("%d runs holding %d batches, want 3 holding %d", len(resp.GetRuns()), stored, rep.Batches)
	}
}

// TestRunCancelled: a load cancelled before its end still aborts its runs.
func TestRunCancelled(t *testing.T) {
	grpcAddr, _ := startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lctx, stop := context.WithCancel(ctx)
	time.AfterFunc(500*time.Millisecond, stop)
	start := time.Now()
	rep, err := Run(lctx, Options{
		Dial: dialer(grpcAddr), Runs: 2, StreamsPerRun: 1, Duration: time.Hour, BatchSize: 5,
		Service: "bench-test", Stage: "cancel",
	})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if el := time.Since(start); el > time.Minute {
		t.Errorf("cancelled load took %v", el)
	}
	if rep.Aborted != 2 || rep.ErrorCount() != 0 {
		t.Errorf("aborted %d runs, errors %v, want 2 and none", rep.Aborted, rep.Errors)
	}
}

// TestOptionsBounds: loads beyond the bounds are refused before anything
// is dialled.
func TestOptionsBounds(t *testing.T) {
	ok := Options{Dial: dialer("127.0.0.1:1"), Runs: 1, StreamsPerRun: 1, Duration: time.Second, BatchSize: 1,
		Service: "s", Stage: "s"}
	for name, f := range map[string]func(*Options){
		"no dial":      func(o *Options) { o.Dial = nil },
		"no runs":      func(o *Options) { o.Runs = 0 },
		"too many":     func(o *Options) { o.Runs = MaxRuns + 1 },
		"streams":      func(o *Options) { o.StreamsPerRun = MaxStreamsPerRun + 1 },
		"forever":      func(o *Options) { o.Duration = MaxDuration + time.Second },
		"no duration":  func(o *Options) { o.Duration = 0 },
		"batch size":   func(o *Options) { o.BatchSize = 0 },
		"no service":   func(o *Options) { o.Service = "" },
		"neg interval": func(o *Options) { o.BatchInterval = -1 },
	} {
		o := ok
		f(&o)
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
