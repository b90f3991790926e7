package main_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/canaryd/canaryd/internal/testprom"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// benchPullInterval is the interval of the benchmark's source: shorter
// than a production 30 s so that a measurement takes seconds; the cost of
// one interval does not depend on its length.
const benchPullInterval = 10 * time.Second

// BenchmarkPull measures what pulling costs: one real canaryd (embedded
// store) pulls N running runs of the shop config (errors and a latency
// histogram with its sum: 4 query templates, 8 queries per run and
// interval, both cohorts) from a real Prometheus scraping 40 exporters (10
// services, 2 pods per cohort; N/10 runs per service). Each iteration is
// one interval; it reports canaryd's CPU per interval (process_cpu_seconds
// of its /metrics), that CPU as a share of one core at a 30 s interval,
// Prometheus' own CPU per interval (its query cost), the queries per
// interval and canaryd's open file descriptors (connections included).
// Each iteration measures 3 intervals, after a setup of a minute or more:
// run it once per size.
//
//	go test ./cmd/canaryd/ -run '^$' -bench BenchmarkPull -benchtime 1x
func BenchmarkPull(b *testing.B) {
	for _, runs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("runs=%d", runs), func(b *testing.B) { benchPull(b, runs) })
	}
}

// benchPullEnv is what one size of BenchmarkPull sets up.
type benchPullEnv struct {
	d    *e2eDaemon
	prom string // Prometheus' base URL
}

func benchPull(b *testing.B, runs int) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		b.Skip("no go command in PATH to build canaryd")
	}
	env := setupBenchPull(b, goBin, runs)
	// Align to the grid: measure whole intervals, from just after one is
	// due (lag 2 s) until just after the next ones are.
	next := time.Now().Truncate(benchPullInterval).Add(benchPullInterval + 2*time.Second + 500*time.Millisecond)
	time.Sleep(time.Until(next))
	cpu0 := scrape(b, "http://"+env.d.httpAddr, "process_cpu_seconds_total")
	prom0 := scrape(b, env.prom, "process_cpu_seconds_total")
	q0 := scrape(b, "http://"+env.d.httpAddr, "canaryd_prometheus_queries_total")
	b.ResetTimer()
	intervals := 3 * b.N
	time.Sleep(time.Until(next.Add(time.Duration(intervals) * benchPullInterval)))
	b.StopTimer()
	cpu := scrape(b, "http://"+env.d.httpAddr, "process_cpu_seconds_total") - cpu0
	prom := scrape(b, env.prom, "process_cpu_seconds_total") - prom0
	q := scrape(b, "http://"+env.d.httpAddr, "canaryd_prometheus_queries_total") - q0
	n := float64(intervals)
	b.ReportMetric(1000*cpu/n, "canaryd-cpu-ms/interval")
	b.ReportMetric(100*cpu/n/30, "core-%-at-30s")
	b.ReportMetric(1000*prom/n, "prom-cpu-ms/interval")
	b.ReportMetric(q/n, "queries/interval")
	b.ReportMetric(scrape(b, "http://"+env.d.httpAddr, "process_open_fds"), "open-fds")
	b.ReportMetric(scrape(b, "http://"+env.d.httpAddr, "canaryd_pull_runs_held"), "runs-held")
	if failed := scrape(b, "http://"+env.d.httpAddr, "canaryd_prometheus_query_failures_total"); failed > 0 {
		b.Errorf("%v failed reads", failed)
	}
}

func setupBenchPull(b *testing.B, goBin string, runs int) *benchPullEnv {
	var targets []testprom.Target
	for s := range 10 {
		for _, version := range []string{"v1", "v2"} {
			for range 2 {
				w := testprom.Workload{RPS: 20, ErrorRate: 0.01, Seed: uint64(len(targets) + 1)}
				targets = append(targets, testprom.StartPod(b, w).Target(map[string]string{"service": fmt.Sprintf("s%d", s), "version": version}))
			}
		}
	}
	srv := testprom.Start(b, testprom.Options{Targets: targets, ScrapeInterval: 2 * time.Second})
	srv.WaitFor(b, `http_requests_total`, len(targets))
	ctx := context.Background()
	dir := b.TempDir()
	canaryd := filepath.Join(dir, "canaryd")
	if out, err := exec.CommandContext(ctx, goBin, "build", "-o", canaryd, "github.com/canaryd/canaryd/cmd/canaryd").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	d := e2eStartWith(ctx, b, canaryd, filepath.Join(dir, "canaryd.db"), e2eSecurity{})
	c := pullClient(b, d)
	cfg := fmt.Sprintf(pullConfig, srv.URL())
	cfg = regexp.MustCompile(`interval: 3s`).ReplaceAllString(cfg, "interval: "+benchPullInterval.String())
	if _, err := c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: cfg}}); err != nil {
		b.Fatal(err)
	}
	for i := range runs {
		s := fmt.Sprintf("s%d", i%10)
		_, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{
			RequestId: fmt.Sprintf("bench-%d", i), Service: s, Stage: "onebox",
			Config:         &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "shop"}},
			BaselineLabels: map[string]string{"service": s, "version": "v1"}, CanaryLabels: map[string]string{"service": s, "version": "v2"},
			BakeTime: durationpb.New(time.Hour),
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// Warm up: every run held and read once.
	deadline := time.Now().Add(2 * time.Minute)
	for scrape(b, "http://"+d.httpAddr, "canaryd_pull_runs_held") < float64(runs) ||
		scrape(b, "http://"+d.httpAddr, `canaryd_pull_intervals_total`) < float64(2*runs) {
		if time.Now().After(deadline) {
			b.Fatalf("not every run pulled within 2 minutes: %v held", scrape(b, "http://"+d.httpAddr, "canaryd_pull_runs_held"))
		}
		time.Sleep(time.Second)
	}
	return &benchPullEnv{d: d, prom: srv.URL()}
}

// scrape returns the sum of the samples of a metric family at base/metrics.
func scrape(b testing.TB, base, name string) float64 {
	b.Helper()
	return metricAt(b, base, name, "")
}
