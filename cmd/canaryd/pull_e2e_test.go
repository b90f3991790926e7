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
	"github.com/canaryd/canaryd/internal/testredis"
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
func pullPods(t *testing.T, rb bool, aa ...string) []testprom.Target {
	base := testprom.Workload{RPS: 200, ErrorRate: 0.01, LatencyMedian: 0.08}
	worse := testprom.Workload{RPS: 200, ErrorRate: 0.03, LatencyMedian: 0.12}
	var targets []testprom.Target
	add := func(service, version string, w testprom.Workload) {
		for range 3 {
			w.Seed = uint64(len(targets) + 1)
			targets = append(targets, testprom.StartPod(t, w).Target(map[string]string{"service": service, "version": version}))
		}
	}
	if rb {
		add("rb", "v1", base)
		add("rb", "v2", worse)
	}
	for _, s := range aa {
		add(s, "v1", base)
		add(s, "v2", base)
	}
	return targets
}

// pullClient is a gRPC client of a daemon.
func pullClient(t testing.TB, d *e2eDaemon) canaryv1.CanaryServiceClient {
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
	begin := time.Now()
	deadline := begin.Add(limit)
	var last *canaryv1.Verdict
	seen := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.Judge(cctx, &canaryv1.JudgeRequest{RunId: run})
		cancel()
		if err != nil {
			t.Fatalf("judge %s: %v", run, err)
		}
		last = resp.GetVerdict()
		if r := last.GetDecision().String() + " " + last.GetReason(); r != seen {
			seen = r
			if len(r) > 200 {
				r = r[:200] + "..."
			}
			t.Logf("run %s at +%v: %s", run, time.Since(begin).Round(100*time.Millisecond), r)
		}
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
func metricValue(t testing.TB, d *e2eDaemon, name, match string) float64 {
	t.Helper()
	return metricAt(t, "http://"+d.httpAddr, name, match)
}

// metricAt returns the sum of the samples of a metric family at
// base/metrics whose labels contain match ("" for all).
func metricAt(t testing.TB, base, name, match string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", base, err)
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
	srv := testprom.Start(t, testprom.Options{Targets: pullPods(t, true, "aa")})
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
		// Caught up: the intervals of the outage are read (Prometheus has
		// nothing of them, as it scraped nothing) and the latest ones.
		if m.GetFailingSince() != nil || m.GetError() != "" || !m.GetThrough().AsTime().After(stopped) || m.GetLostIntervals() != 0 {
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

// TestPullReplicas runs two canaryd replicas on one Redis, both pulling: one
// holds the run's lease and pulls it; killed (SIGKILL, no release), the
// other takes the run over once the lease expires, goes on after the last
// interval recorded, and no interval is counted twice (the batch ids of an
// interval are the same on both; what the dead replica stored but had not
// recorded comes back as duplicates).
func TestPullReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-replica test skipped with -short: it builds canaryd and runs it as processes")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("multi-replica test skipped: no go command in PATH to build the binaries")
	}
	rs := testredis.StartWith(t, testredis.Options{Private: true})
	srv := testprom.Start(t, testprom.Options{Targets: pullPods(t, false, "aa")})
	srv.WaitFor(t, `http_requests_total{service="aa"}`, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	canaryd, canaryctl := e2eBuild(ctx, t, goBin, dir)
	args := e2eSecurity{args: []string{"--pull-scan", "200ms", "--pull-lease", "2s"}}
	ds := []*e2eDaemon{e2eStartWith(ctx, t, canaryd, rs.URL()+"/0", args), e2eStartWith(ctx, t, canaryd, rs.URL()+"/0", args)}
	ctl := &e2eCtl{t: t, bin: canaryctl, addr: ds[0].grpcAddr}
	cfg := filepath.Join(dir, "shop.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, pullConfig, srv.URL()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl.ok(ctx, 0, "config", "put", cfg)
	id := createPulled(ctx, ctl, "aa", "10m")

	held := func(d *e2eDaemon) bool { return metricValue(t, d, "canaryd_pull_runs_held", "") == 1 }
	// through returns the run's pull progress as the replica c sees it:
	// the earliest end of the intervals read over the metrics.
	through := func(c canaryv1.CanaryServiceClient) (time.Time, *canaryv1.Run) {
		resp, err := c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: id})
		if err != nil {
			t.Fatal(err)
		}
		var min time.Time
		for _, m := range resp.GetRun().GetPull().GetMetrics() {
			if m.GetFailingSince() != nil {
				t.Fatalf("metric %s failing: %s", m.GetMetric(), m.GetError())
			}
			if tm := m.GetThrough().AsTime(); m.GetThrough() == nil || min.IsZero() || tm.Before(min) {
				min = tm
			}
		}
		return min, resp.GetRun()
	}
	waitFor := func(limit time.Duration, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var holder, other int
	waitFor(30*time.Second, "a replica holds the run", func() bool {
		for i, d := range ds {
			if held(d) {
				holder, other = i, 1-i
				return true
			}
		}
		return false
	})
	if held(ds[other]) {
		t.Fatal("both replicas hold the run's lease")
	}
	c := pullClient(t, ds[other])
	waitFor(30*time.Second, "four intervals read", func() bool {
		th, run := through(c)
		return !th.IsZero() && th.Sub(run.GetStartTime().AsTime()) > 12*time.Second
	})
	ds[holder].kill(t)
	killed := time.Now()
	before, _ := through(c)
	waitFor(20*time.Second, "the other replica takes the run over", func() bool { return held(ds[other]) })
	t.Logf("replica %d took the run over %v after replica %d was killed", other, time.Since(killed).Round(time.Millisecond), holder)
	waitFor(30*time.Second, "the other replica reads new intervals", func() bool {
		th, _ := through(c)
		return th.After(killed.Add(6 * time.Second))
	})
	th, run := through(c)
	// Each metric's intervals from the first one to th, each at most once.
	const interval = 3 * time.Second
	start := run.GetStartTime().AsTime()
	first := start.Truncate(interval)
	if first.Before(start) {
		first = first.Add(interval)
	}
	first = first.Add(interval)
	intervals := int64(th.Sub(first)/interval) + 1
	cs := run.GetCounters()
	if cs.GetBatches() > uint64(2*intervals) {
		t.Errorf("%d batches stored for %d intervals of 2 metrics: an interval was counted twice", cs.GetBatches(), intervals)
	}
	t.Logf("through %v before the kill, %v now: %d intervals, %d batches, %d duplicates", before.Format(time.TimeOnly), th.Format(time.TimeOnly),
		intervals, cs.GetBatches(), cs.GetDuplicateBatches())
	v := waitVerdict(ctx, t, c, id, 10*time.Second, func(*canaryv1.Verdict) bool { return true }, nil)
	if strings.Contains(v.GetReason(), "no data from Prometheus") {
		t.Errorf("after the takeover: %s", v.GetReason())
	}
}
