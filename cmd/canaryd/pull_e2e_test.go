package main_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/canaryd/canaryd/internal/testprom"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// pullConfig is a config read from Prometheus by the daemon: the errors
// and latency histogram of the test pods, every 3 s, 2 s after the end of
// each interval (Prometheus scrapes every second).
const pullConfig = `name: shop
source:
  prometheus:
    url: %s
    interval: 3s
    lag: 2s
metrics:
  - name: errors
    category: stability
    type: rate
    tolerance: 0.2
    critical: true
    query:
      count: sum by (instance) (increase(http_requests_total{code=~"5..", {{.Selector}}}[{{.Range}}]))
      total: sum by (instance) (increase(http_requests_total{ {{.Selector}} }[{{.Range}}]))
  - name: latency_ms
    category: performance
    type: distribution
    tolerance: 0.1
    critical: true
    unit: ms
    query:
      buckets: sum by (le, instance) (increase(http_request_duration_seconds_bucket{ {{.Selector}} }[{{.Range}}]))
      sum: sum by (instance) (increase(http_request_duration_seconds_sum{ {{.Selector}} }[{{.Range}}]))
      scale: 1000
`

// pullPods starts three pods per cohort of the services: "rb", whose
// canary (v2) serves 3× the errors and 1.5× the latency of its baseline
// (v1), and the A/A ones, whose cohorts are alike; it returns their
// scrape targets.
func pullPods(t *testing.T, aa ...string) []testprom.Target {
	base := testprom.Workload{RPS: 200, ErrorRate: 0.01, LatencyMedian: 0.08}
	worse := testprom.Workload{RPS: 200, ErrorRate: 0.03, LatencyMedian: 0.12}
	var targets []testprom.Target
	add := func(service, version string, w testprom.Workload) {
		for range 3 {
			w.Seed = uint64(len(targets) + 1)
			targets = append(targets, testprom.StartPod(t, w).Target(map[string]string{"service": service, "version": version}))
		}
	}
	add("rb", "v1", base)
	add("rb", "v2", worse)
	for _, s := range aa {
		add(s, "v1", base)
		add(s, "v2", base)
	}
	return targets
}

// pullClient is a gRPC client of a daemon.
func pullClient(t *testing.T, d *e2eDaemon) canaryv1.CanaryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return canaryv1.NewCanaryServiceClient(conn)
}

// waitVerdict judges run every 200 ms until ok accepts the verdict, for
// up to limit; it fails the test on a verdict bad rejects, and on timeout.
func waitVerdict(ctx context.Context, t *testing.T, c canaryv1.CanaryServiceClient, run string, limit time.Duration,
	ok, bad func(*canaryv1.Verdict) bool) *canaryv1.Verdict {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last *canaryv1.Verdict
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.Judge(cctx, &canaryv1.JudgeRequest{RunId: run})
		cancel()
		if err != nil {
			t.Fatalf("judge %s: %v", run, err)
		}
		last = resp.GetVerdict()
		if bad != nil && bad(last) {
			t.Fatalf("run %s: %v: %s", run, last.GetDecision(), last.GetReason())
		}
		if ok(last) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: no wanted verdict within %v; last %v: %s", run, limit, last.GetDecision(), last.GetReason())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func decisionIs(d canaryv1.Decision) func(*canaryv1.Verdict) bool {
	return func(v *canaryv1.Verdict) bool { return v.GetDecision() == d }
}

// metricValue returns the sum of the samples of a metric family on the
// daemon's /metrics whose labels contain match ("" for all).
func metricValue(t *testing.T, d *e2eDaemon, name, match string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		if !strings.Contains(m[1], match) {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("%s: %v", m[0], err)
		}
		sum += v
	}
	return sum
}

// createPulled creates a run of the shop config for service, with a bake.
func createPulled(ctx context.Context, ctl *e2eCtl, service, bake string) string {
	return strings.TrimSpace(ctl.ok(ctx, 0, "run", "create", "--service", service, "--stage", "onebox", "--config", "shop",
		"--bake", bake, "--baseline-label", "service="+service, "--baseline-label", "version=v1",
		"--canary-label", "service="+service, "--canary-label", "version=v2"))
}

// TestPullEndToEnd runs the real canaryd against a real Prometheus
// scraping exporters the test runs, and samples only through the
// collector: a canary with 3× the errors and 1.5× the latency (histograms)
// is rolled back; an A/A canary is promoted after its bake, and never
// rolled back; Prometheus stopped mid-run makes the A/A run HOLD with the
// reason, shown in its status, counted by the self-metric; once Prometheus
// is back the run catches up by itself and is promoted again.
func TestPullEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped with -short: it builds canaryd and runs it as a process")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("end-to-end test skipped: no go command in PATH to build the binaries")
	}
	srv := testprom.Start(t, testprom.Options{Targets: pullPods(t, "aa")})
	srv.WaitFor(t, `http_requests_total{code="500",service="rb"}`, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	canaryd, canaryctl := e2eBuild(ctx, t, goBin, dir)
	d := e2eStartWith(ctx, t, canaryd, filepath.Join(dir, "canaryd.db"), e2eSecurity{args: []string{"--pull-scan", "200ms"}})
	ctl := &e2eCtl{t: t, bin: canaryctl, addr: d.grpcAddr}
	c := pullClient(t, d)
	cfg := filepath.Join(dir, "shop.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, pullConfig, srv.URL()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl.ok(ctx, 0, "config", "put", cfg)
	rb := createPulled(ctx, ctl, "rb", "0s")
	aa := createPulled(ctx, ctl, "aa", "20s")
	start := time.Now()

	v := waitVerdict(ctx, t, c, rb, 90*time.Second, decisionIs(canaryv1.Decision_DECISION_ROLLBACK), nil)
	t.Logf("rb: ROLLBACK after %v: %s", time.Since(start).Round(time.Second), v.GetReason())
	rollback := decisionIs(canaryv1.Decision_DECISION_ROLLBACK)
	v = waitVerdict(ctx, t, c, aa, 150*time.Second, decisionIs(canaryv1.Decision_DECISION_PROMOTE), rollback)
	t.Logf("aa: PROMOTE after %v", time.Since(start).Round(time.Second))

	// Prometheus stops mid-run: the A/A run holds, with the reason.
	srv.Stop()
	stopped := time.Now()
	v = waitVerdict(ctx, t, c, aa, 30*time.Second, func(v *canaryv1.Verdict) bool {
		return v.GetDecision() == canaryv1.Decision_DECISION_HOLD && strings.Contains(v.GetReason(), "no data from Prometheus since")
	}, rollback)
	t.Logf("aa: HOLD %v after Prometheus stopped: %s", time.Since(stopped).Round(time.Millisecond), v.GetReason())
	if !strings.Contains(v.GetReason(), "prometheus unreachable") {
		t.Errorf("reason %q does not say Prometheus is unreachable", v.GetReason())
	}
	run, err := c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: aa})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range run.GetRun().GetPull().GetMetrics() {
		if m.GetFailingSince() == nil || !strings.Contains(m.GetError(), "unreachable") {
			t.Errorf("Run.pull of %s while Prometheus is down: %v", m.GetMetric(), m)
		}
	}
	if n := metricValue(t, d, "canaryd_prometheus_query_failures_total", `kind="unreachable"`); n < 1 {
		t.Errorf("canaryd_prometheus_query_failures_total{kind=\"unreachable\"} = %v, want > 0", n)
	}
	// Never promoted while Prometheus is down.
	downFor := 8 * time.Second
	waitVerdict(ctx, t, c, aa, time.Minute, func(*canaryv1.Verdict) bool { return time.Since(stopped) > downFor },
		func(v *canaryv1.Verdict) bool { return v.GetDecision() != canaryv1.Decision_DECISION_HOLD })

	// Prometheus is back: the run catches up on the intervals it missed,
	// and is promoted again.
	srv.Restart()
	restarted := time.Now()
	waitVerdict(ctx, t, c, aa, 90*time.Second, decisionIs(canaryv1.Decision_DECISION_PROMOTE), rollback)
	t.Logf("aa: PROMOTE again %v after Prometheus restarted", time.Since(restarted).Round(time.Millisecond))
	run, err = c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: aa})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range run.GetRun().GetPull().GetMetrics() {
		if m.GetFailingSince() != nil || m.GetError() != "" || !m.GetThrough().AsTime().After(restarted.Add(-3*time.Second)) || m.GetLostIntervals() != 0 {
			t.Errorf("Run.pull of %s after the recovery: %v", m.GetMetric(), m)
		}
	}
	// Completed: the final verdict, and the puller lets the run go.
	out := ctl.ok(ctx, 0, "run", "complete", aa)
	if !strings.Contains(out, "PROMOTE") {
		t.Errorf("run complete: %s", out)
	}
	ctl.ok(ctx, 20, "run", "complete", rb)
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, d, "canaryd_pull_runs", "") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("canaryd_pull_runs = %v after both runs completed, want 0", metricValue(t, d, "canaryd_pull_runs", ""))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
