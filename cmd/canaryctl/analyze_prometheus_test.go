package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/testprom"
)

// promConfig is a config whose metrics are read from Prometheus.
const promConfig = `name: shop
source:
  prometheus:
    url: http://prometheus.invalid:9090   # --prometheus overrides it
    interval: 1m
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
    critical: true
    unit: ms
    query:
      buckets: sum by (le, instance) (increase(http_request_duration_seconds_bucket{ {{.Selector}} }[{{.Range}}]))
      sum: sum by (instance) (increase(http_request_duration_seconds_sum{ {{.Selector}} }[{{.Range}}]))
      scale: 1000
`

// TestAnalyzePrometheus judges a past window of a backfilled Prometheus
// offline: a canary with 3× the errors and 1.5× the latency is rolled
// back, an A/A one promoted; the intervals of a window that starts before
// the data are left out and counted.
func TestAnalyzePrometheus(t *testing.T) {
	t.Parallel()
	end := time.Now().Add(-2 * time.Hour).Truncate(time.Hour)
	start := end.Add(-time.Hour)
	var pods []testprom.BackfillPod
	base := testprom.Workload{RPS: 10, ErrorRate: 0.01, LatencyMedian: 0.08}
	worse := testprom.Workload{RPS: 10, ErrorRate: 0.03, LatencyMedian: 0.12}
	for i := 0; i < 3; i++ {
		for _, p := range []struct {
			version string
			w       testprom.Workload
		}{{"v1", base}, {"v2", worse}, {"v3", base}} {
			p.w.Seed = uint64(len(pods) + 1)
			pods = append(pods, testprom.BackfillPod{
				Labels:   map[string]string{"job": "shop", "instance": fmt.Sprintf("%s-%d", p.version, i), "app": "shop", "version": p.version},
				Workload: p.w,
			})
		}
	}
	data := testprom.Backfill(t, start.Add(-time.Hour), end, 15*time.Second, pods)
	srv := testprom.Start(t, testprom.Options{Data: data})
	cfg := filepath.Join(t.TempDir(), "shop.yaml")
	if err := os.WriteFile(cfg, []byte(promConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	args := func(canary string, extra ...string) []string {
		return append([]string{"analyze", "--config", cfg, "--prometheus", srv.URL(),
			"--start", start.Format(time.RFC3339), "--end", end.Format(time.RFC3339),
			"--baseline-labels", "app=shop,version=v1", "--canary-labels", "app=shop,version=" + canary}, extra...)
	}
	code, out, errs := runCLI(t, "", args("v2")...)
	if code != 20 || !strings.Contains(out, "errors") || !strings.Contains(out, "REGRESSION") {
		t.Errorf("3x errors, 1.5x latency: exit %d, want 20 (ROLLBACK); stderr %s\n%s", code, errs, out)
	}
	code, out, errs = runCLI(t, "", args("v3")...)
	if code != 0 {
		t.Errorf("A/A: exit %d, want 0 (PROMOTE); stderr %s\n%s", code, errs, out)
	}
	t.Logf("A/A:\n%s", out)

	// A window that starts before the data: its first intervals are left
	// out and counted.
	code, _, errs = runCLI(t, "", "analyze", "--config", cfg, "--prometheus", srv.URL(),
		"--start", start.Add(-90*time.Minute).Format(time.RFC3339), "--end", end.Format(time.RFC3339),
		"--baseline-labels", "app=shop,version=v1", "--canary-labels", "app=shop,version=v2")
	if code != 20 || !strings.Contains(errs, "left out 30 of 150 intervals of errors without data") {
		t.Errorf("window before the data: exit %d, stderr %q", code, errs)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"analyze", "--config", cfg, "--prometheus", srv.URL(), "--start", "yesterday", "--end", end.Format(time.RFC3339)}, 2, "--start must be RFC 3339"},
		{args("v2")[:len(args("v2"))-2], 2, "canary_labels: no labels"},
		{args("v2", "--samples", "x.jsonl"), 2, "one of --samples or --prometheus"},
		{append(args("v2"), "--interval", "500ms"), 2, "interval 500ms"},
		{[]string{"analyze", "--config", cfg, "--prometheus", "prometheus:9090", "--start", start.Format(time.RFC3339), "--end", end.Format(time.RFC3339), "--baseline-labels", "a=b", "--canary-labels", "a=c"}, 2, "--prometheus must be an http:// or https:// URL"},
		{[]string{"analyze", "--config", cfg, "--prometheus", "http://127.0.0.1:1", "--start", start.Format(time.RFC3339), "--end", end.Format(time.RFC3339), "--baseline-labels", "a=b", "--canary-labels", "a=c"}, 1, "prometheus unreachable"},
	} {
		code, _, errs := runCLI(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args[1:], code, errs, tc.code, tc.want)
		}
	}
}

// TestAnalyzeSamplesWithPromConfig judges a samples file with a config
// that also has a source and queries (the ones the service will run).
func TestAnalyzeSamplesWithPromConfig(t *testing.T) {
	t.Parallel()
	path := writeHistogramSamples(t, 1, 1.2, true)
	cfg := filepath.Join(filepath.Dir(path), "prom.yaml")
	src := strings.Replace(promConfig, "  - name: errors\n    category: stability\n    type: rate\n    tolerance: 0.2\n    critical: true\n    query:\n      count: sum by (instance) (increase(http_requests_total{code=~\"5..\", {{.Selector}}}[{{.Range}}]))\n      total: sum by (instance) (increase(http_requests_total{ {{.Selector}} }[{{.Range}}]))\n", "", 1)
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI(t, "", "analyze", "--config", cfg, "--samples", path); code != 20 {
		t.Errorf("exit %d, want 20; stderr %s\n%s", code, errs, out)
	}
}
