package prometheus

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/collectors/prometheus/promconfig"
	"github.com/canaryd/canaryd/internal/testprom"
)

// shopConfig judges the errors and latency of the test pods, read from
// Prometheus with the queries of the issue.
const shopConfig = `name: shop
source:
  prometheus:
    url: http://placeholder:9090
    interval: %s
    lag: %s
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

// shop returns the analysis config and the Prometheus part of shopConfig.
func shop(t testing.TB, interval, lag time.Duration) (*analysis.Config, *Config) {
	t.Helper()
	pc, rest, err := ParseConfig(fmt.Appendf(nil, shopConfig, interval, lag))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := analysis.ParseConfig(rest)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, pc
}

// collector returns a collector of the shop metrics for the cohorts.
func collector(t testing.TB, url string, pc *Config, baseline, canary map[string]string) *Collector {
	t.Helper()
	src := *pc.Source
	src.URL = url
	client, err := NewClient(&src, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	c, err := NewCollector(client, Target{
		RunID: "run-" + t.Name(), Interval: src.Interval, Lag: src.Lag, Metrics: pc.Metrics,
		Baseline: baseline, Canary: canary,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// judge folds the records of results, none of which may have failed, and
// judges them as a finished data set.
func judge(t testing.TB, cfg *analysis.Config, results []Result) analysis.Verdict {
	t.Helper()
	if len(results) == 0 {
		t.Fatal("no results")
	}
	d := analysis.NewData(cfg)
	d.SetStart(analysis.Baseline, results[0].Start)
	d.SetStart(analysis.Canary, results[0].Start)
	for _, r := range results {
		if r.Err != nil {
			t.Fatalf("interval ending %v: %v", r.End, r.Err)
		}
		for i := range r.Records {
			if err := d.Add(&r.Records[i]); err != nil {
				t.Fatalf("interval ending %v: %v", r.End, err)
			}
		}
	}
	return analysis.Judge(d, analysis.Options{BakeComplete: true})
}

// shopPods are the pods of two canaries of a shop: "rb", whose canary
// serves 3× the errors and 1.5× the latency of its baseline, and "aa",
// whose canary is its baseline's twin. Three pods per cohort.
func shopPods(rps float64) map[string][]testprom.Workload {
	base := testprom.Workload{RPS: rps, ErrorRate: 0.01, LatencyMedian: 0.08}
	worse := testprom.Workload{RPS: rps, ErrorRate: 0.03, LatencyMedian: 0.12}
	return map[string][]testprom.Workload{
		"rb/v1": {base, base, base}, "rb/v2": {worse, worse, worse},
		"aa/v1": {base, base, base}, "aa/v2": {base, base, base},
	}
}

func cohort(service, version string) map[string]string {
	return map[string]string{"service": service, "version": version}
}

// backfilled starts a Prometheus serving 30 minutes of the shop pods,
// scraped every 15 s, ending an hour ago; it returns it with the window.
func backfilled(t testing.TB) (srv *testprom.Server, start, end time.Time) {
	t.Helper()
	end = time.Now().Add(-time.Hour).Truncate(time.Minute)
	start = end.Add(-30 * time.Minute)
	var pods []testprom.BackfillPod
	seed := uint64(0)
	for key, ws := range shopPods(20) {
		service, version, _ := strings.Cut(key, "/")
		for i, w := range ws {
			seed++
			w.Seed = seed
			pods = append(pods, testprom.BackfillPod{
				Labels:   map[string]string{"job": "shop", "instance": fmt.Sprintf("%s-%s-%d:8080", service, version, i), "service": service, "version": version},
				Workload: w,
			})
		}
	}
	// Five more minutes before the window: the counters exist before it
	// starts, as they would for a baseline that has run for days.
	data := testprom.Backfill(t, start.Add(-5*time.Minute), end, 15*time.Second, pods)
	return testprom.Start(t, testprom.Options{Data: data}), start, end
}

// TestCollectBackfilled reads 30 past minutes of the shop pods with
// CollectRange and judges them: the canary with 3× the errors and 1.5×
// the latency is rolled back on both, its twin promoted.
func TestCollectBackfilled(t *testing.T) {
	t.Parallel()
	srv, start, end := backfilled(t)
	cfg, pc := shop(t, 30*time.Second, 30*time.Second)

	rb := collector(t, srv.URL(), pc, cohort("rb", "v1"), cohort("rb", "v2"))
	results := rb.CollectRange(t.Context(), start, end)
	if len(results) != 60*2 {
		t.Fatalf("%d results, want 60 intervals × 2 metrics", len(results))
	}
	v := judge(t, cfg, results)
	if v.Decision != analysis.Rollback || strings.Join(v.Deciding, ",") != "errors,latency_ms" {
		t.Errorf("rb: %s deciding %v, want ROLLBACK on errors and latency_ms: %s", v.Decision, v.Deciding, v.Reason)
	}
	for _, m := range v.Metrics {
		t.Logf("rb %s: %s %.3f× [%.3f, %.3f]", m.Name, m.Outcome, m.Effect.Estimate, m.Effect.Lower, m.Effect.Upper)
		switch m.Name {
		case "errors":
			if m.Effect.Lower > 3 || m.Effect.Upper < 3 {
				t.Errorf("errors: rate ratio %v, whose interval misses the true 3×", m.Effect)
			}
		case "latency_ms":
			// Lognormal, sigma 0.5: the ratio of means is the ratio of medians.
			if m.Effect.Lower > 1.5 || m.Effect.Upper < 1.5 {
				t.Errorf("latency: ratio %v, whose interval misses the true 1.5×", m.Effect)
			}
		}
	}
	// Every request counted once: 20/s for 30 minutes per pod, 3 pods.
	if m := v.Metrics[0]; m.Baseline.Total < 0.97*108000 || m.Baseline.Total > 1.03*108000 {
		t.Errorf("baseline requests %v, want about 108,000", m.Baseline.Total)
	}

	aa := collector(t, srv.URL(), pc, cohort("aa", "v1"), cohort("aa", "v2"))
	v = judge(t, cfg, aa.CollectRange(t.Context(), start, end))
	if v.Decision != analysis.Promote {
		t.Errorf("aa: %s, want PROMOTE: %s", v.Decision, v.Reason)
	}
}

// TestCollectMatchesRange checks that the instant queries of Collect
// give the intervals CollectRange gives: the same records, the same batch
// ids.
func TestCollectMatchesRange(t *testing.T) {
	t.Parallel()
	srv, start, _ := backfilled(t)
	_, pc := shop(t, time.Minute, 0)
	c := collector(t, srv.URL(), pc, cohort("rb", "v1"), cohort("rb", "v2"))
	ranged := c.CollectRange(t.Context(), start, start.Add(3*time.Minute))
	if len(ranged) != 3*2 {
		t.Fatalf("%d results", len(ranged))
	}
	for k := 0; k < 3; k++ {
		end := c.FirstEnd(start).Add(time.Duration(k) * time.Minute)
		got := c.Collect(t.Context(), end)
		want := ranged[2*k : 2*k+2]
		for i := range got {
			if got[i].Err != nil || got[i].BatchID != want[i].BatchID || !got[i].End.Equal(want[i].End) || !reflect.DeepEqual(got[i].Records, want[i].Records) {
				t.Errorf("interval %v, %s: Collect %+v\nCollectRange %+v", end, got[i].Metric, got[i], want[i])
			}
		}
	}
}

// TestCollectLive scrapes the shop pods in real time (every second) and
// reads 5-second intervals as a running run would: the worse canary is
// rolled back, its twin is not.
func TestCollectLive(t *testing.T) {
	t.Parallel()
	var targets []testprom.Target
	for key, ws := range shopPods(300) {
		service, version, _ := strings.Cut(key, "/")
		for i, w := range ws {
			w.Seed = uint64(len(targets) + 1)
			_ = i
			targets = append(targets, testprom.StartPod(t, w).Target(cohort(service, version)))
		}
	}
	srv := testprom.Start(t, testprom.Options{Targets: targets})
	srv.WaitFor(t, `http_requests_total{code="500",service="rb"}`, 6)
	runStart := time.Now()
	cfg, pc := shop(t, 5*time.Second, 2*time.Second)
	rb := collector(t, srv.URL(), pc, cohort("rb", "v1"), cohort("rb", "v2"))
	aa := collector(t, srv.URL(), pc, cohort("aa", "v1"), cohort("aa", "v2"))

	// Read four intervals, each once it is due, as the service will.
	var rbResults, aaResults []Result
	for end := rb.FirstEnd(runStart); len(rbResults) < 4*2; end = end.Add(rb.Interval()) {
		rbResults = append(rbResults, collectDue(t, rb, end)...)
		aaResults = append(aaResults, collectDue(t, aa, end)...)
	}
	v := judge(t, cfg, rbResults)
	if v.Decision != analysis.Rollback {
		t.Errorf("rb: %s, want ROLLBACK: %s", v.Decision, v.Reason)
	}
	for _, m := range v.Metrics {
		t.Logf("rb %s: %s %.3f× [%.3f, %.3f] (baseline %+v)", m.Name, m.Outcome, m.Effect.Estimate, m.Effect.Lower, m.Effect.Upper, m.Baseline)
	}
	v = judge(t, cfg, aaResults)
	if v.Decision == analysis.Rollback {
		t.Errorf("aa: ROLLBACK of a canary identical to its baseline: %s", v.Reason)
	}
	t.Logf("aa: %s: %s", v.Decision, v.Reason)
	b := rbResults[0].Batch()
	if b == nil || b.GetBatchId() != rbResults[0].BatchID || len(b.GetSamples()) != len(rbResults[0].Records) || b.GetSamples()[0].GetCounts() == nil {
		t.Errorf("batch %v of %+v", b, rbResults[0])
	}
}

// collectDue reads the interval ending at end once it is due, and again
// while a cohort has no data yet (a scrape delayed on a loaded machine),
// for up to 20 s, as the service retries an interval before it gives up.
func collectDue(t *testing.T, c *Collector, end time.Time) []Result {
	t.Helper()
	for c.LatestEnd(time.Now()).Before(end) {
		time.Sleep(100 * time.Millisecond)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rs := c.Collect(t.Context(), end)
		retry := false
		for _, r := range rs {
			retry = retry || errors.Is(r.Err, ErrNoData)
		}
		if !retry || time.Now().After(deadline) {
			return rs
		}
		t.Logf("interval ending %v: %v; reading it again", end.Format(time.TimeOnly), rs[0].Err)
		time.Sleep(500 * time.Millisecond)
	}
}

// TestPrometheusDown stops Prometheus between two reads: the read fails
// with ErrUnreachable for every metric and gives no batch; once it is
// back, the same interval reads as before, under the same batch ids.
func TestPrometheusDown(t *testing.T) {
	t.Parallel()
	srv, start, _ := backfilled(t)
	_, pc := shop(t, time.Minute, 0)
	c := collector(t, srv.URL(), pc, cohort("rb", "v1"), cohort("rb", "v2"))
	end := c.FirstEnd(start)
	before := c.Collect(t.Context(), end)
	for _, r := range before {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	srv.Stop()
	down := c.Collect(t.Context(), end)
	for _, r := range down {
		var e *Error
		if !errors.Is(r.Err, ErrUnreachable) || !errors.As(r.Err, &e) || e.Metric != r.Metric || r.Batch() != nil || len(r.Records) > 0 {
			t.Errorf("%s with Prometheus down: %v, %d records", r.Metric, r.Err, len(r.Records))
		}
	}
	t.Logf("the reason: %v", down[0].Err)
	srv.Restart()
	after := c.Collect(t.Context(), end)
	if !reflect.DeepEqual(after, before) {
		t.Errorf("after the restart:\n%+v\nbefore the stop:\n%+v", after, before)
	}
}

// TestQueryErrors checks the kinds of errors of queries that Prometheus
// rejects, that return the wrong type, and that select nothing.
func TestQueryErrors(t *testing.T) {
	t.Parallel()
	srv, start, _ := backfilled(t)
	_, pc := shop(t, time.Minute, 0)
	client, err := NewClient(&promconfig.Prometheus{URL: srv.URL()}, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	total := pc.Metrics[0].Query.Total
	for _, tc := range []struct {
		name           string
		count, total   string
		canary         map[string]string
		kind           error
		query, message string
	}{
		{"syntax", `sum by (instance) (increase(x{ {{.Selector}} }[{{.Range}}])`, total, cohort("rb", "v2"), ErrBadQuery, "count", "bad_data"},
		{"range vector", `http_requests_total{ {{.Selector}} }[{{.Range}}]`, total, cohort("rb", "v2"), ErrBadQuery, "count", "returned a matrix"},
		{"no instance total", pc.Metrics[0].Query.Count, `sum(increase(http_requests_total{ {{.Selector}} }[{{.Range}}]))`, cohort("rb", "v2"), ErrBadQuery, "count", "which the total query lacks"},
		{"no series", pc.Metrics[0].Query.Count, total, cohort("rb", "v9"), ErrNoData, "total", `no series for sum by (instance) (increase(http_requests_total{ service="rb", version="v9" }[1m]))`},
	} {
		c, err := NewCollector(client, Target{
			RunID: "r", Interval: time.Minute, Baseline: cohort("rb", "v1"), Canary: tc.canary,
			Metrics: []Metric{{Name: "errors", Type: analysis.TypeRate, Query: promconfig.Query{Count: tc.count, Total: tc.total}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		r := c.Collect(t.Context(), c.FirstEnd(start))[0]
		var e *Error
		if !errors.Is(r.Err, tc.kind) || !errors.As(r.Err, &e) || e.Query != tc.query || !strings.Contains(r.Err.Error(), tc.message) {
			t.Errorf("%s: %v, want %v in the %s query: …%s…", tc.name, r.Err, tc.kind, tc.query, tc.message)
		}
		if tc.name == "no series" && e != nil && e.Cohort != "canary" {
			t.Errorf("no series: cohort %q, want canary", e.Cohort)
		}
	}
}

// TestSelectorEscaping reads the series of a label value with quotes, a
// backslash, a newline and a non-ASCII letter from a real Prometheus.
func TestSelectorEscaping(t *testing.T) {
	t.Parallel()
	weird := `a"b\c` + "\n" + `d é})`
	end := time.Now().Add(-time.Hour).Truncate(time.Minute)
	start := end.Add(-10 * time.Minute)
	data := testprom.Backfill(t, start, end, 15*time.Second, []testprom.BackfillPod{
		{Labels: map[string]string{"job": "shop", "instance": "pod-1", "track": "plain"}, Workload: testprom.Workload{RPS: 10, Seed: 1}},
		{Labels: map[string]string{"job": "shop", "instance": "pod-2", "track": weird}, Workload: testprom.Workload{RPS: 10, Seed: 2}},
		{Labels: map[string]string{"job": "shop", "instance": "pod-3", "track": `a"b\c`}, Workload: testprom.Workload{RPS: 10, Seed: 3}},
	})
	srv := testprom.Start(t, testprom.Options{Data: data})
	_, pc := shop(t, time.Minute, 0)
	c := collector(t, srv.URL(), pc, map[string]string{"track": "plain"}, map[string]string{"track": weird})
	rs := c.Collect(t.Context(), c.FirstEnd(start))
	for _, r := range rs {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if len(r.Records) != 2 || r.Records[1].Cohort != analysis.Canary || r.Records[1].Instance != "pod-2" {
			t.Errorf("%s: records %+v, want pod-1's and pod-2's", r.Metric, r.Records)
		}
	}
}

// TestNativeHistograms reads latency from native histograms: the same
// buckets query without _bucket and le returns one native histogram per
// instance, whose observations are the requests.
func TestNativeHistograms(t *testing.T) {
	t.Parallel()
	var targets []testprom.Target
	for i, version := range []string{"v1", "v2"} {
		w := testprom.Workload{RPS: 200, Native: true, Seed: uint64(i + 1)}
		targets = append(targets, testprom.StartPod(t, w).Target(cohort("nh", version)))
	}
	srv := testprom.Start(t, testprom.Options{Targets: targets, NativeHistograms: true})
	srv.WaitFor(t, `http_request_duration_seconds{service="nh"}`, 2)
	runStart := time.Now()
	client, err := NewClient(&promconfig.Prometheus{URL: srv.URL()}, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := NewCollector(client, Target{
		RunID: "r", Interval: 5 * time.Second, Lag: 2 * time.Second, Baseline: cohort("nh", "v1"), Canary: cohort("nh", "v2"),
		Metrics: []Metric{
			{Name: "latency_ms", Type: analysis.TypeDistribution, Query: promconfig.Query{
				Buckets: `sum by (instance) (increase(http_request_duration_seconds{ {{.Selector}} }[{{.Range}}]))`, Scale: 1000}},
			{Name: "requests", Type: analysis.TypeRate, Query: promconfig.Query{
				Count: `sum by (instance) (increase(http_requests_total{ {{.Selector}} }[{{.Range}}]))`,
				Total: `sum by (instance) (increase(http_requests_total{ {{.Selector}} }[{{.Range}}]))`}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The first interval whose scrapes all arrived: on a loaded machine a
	// scrape can come seconds late and leave an interval without data,
	// which the service holds and goes on from.
	var rs []Result
	for end, k := c.FirstEnd(runStart), 0; ; end, k = end.Add(5*time.Second), k+1 {
		rs = collectDue(t, c, end)
		if !slices.ContainsFunc(rs, func(r Result) bool { return errors.Is(r.Err, ErrNoData) }) || k == 3 {
			break
		}
	}
	for _, r := range rs {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	for i, rec := range rs[0].Records {
		h := rec.Histogram
		if h == nil || !h.HasSum || len(h.Bounds) < 10 {
			t.Fatalf("record %+v: want a native histogram with its sum", rec)
		}
		n := 0.0
		for _, c := range h.Counts {
			n += c
		}
		// Both histograms and counters are extrapolated alike.
		if req := rs[1].Records[i].Total; n < 0.9*req || n > 1.1*req {
			t.Errorf("%s: %v observations, %v requests", rec.Instance, n, req)
		}
		if mean := h.Sum / n; mean < 60 || mean > 120 {
			t.Errorf("%s: mean latency %v ms, want about 80·e^(0.5²/2) = 91", rec.Instance, mean)
		}
		t.Logf("%s: %v observations in %d buckets from %.3g to %.3g ms", rec.Instance, n, len(h.Bounds), h.Bounds[0], h.Bounds[len(h.Bounds)-1])
	}
}

// TestConnectionsReused reads many intervals, concurrently, through one
// client and checks that it opens at most MaxConnsPerHost connections.
func TestConnectionsReused(t *testing.T) {
	t.Parallel()
	srv, start, _ := backfilled(t)
	_, pc := shop(t, 30*time.Second, 0)
	src := *pc.Source
	src.URL = srv.URL()
	pool, err := NewPool(ClientOptions{MaxConnsPerHost: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	client, err := pool.Client(&src)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := pool.Client(&src); again != client {
		t.Error("the pool made a second client for the same Prometheus")
	}
	var opened, queries atomic.Int64
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			queries.Add(1)
			if !info.Reused {
				opened.Add(1)
			}
		},
	})
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			c, err := NewCollector(client, Target{RunID: fmt.Sprint("run-", g), Interval: 30 * time.Second, Metrics: pc.Metrics,
				Baseline: cohort("rb", "v1"), Canary: cohort("rb", "v2")})
			if err != nil {
				t.Error(err)
				return
			}
			for k := 0; k < 5; k++ {
				for _, r := range c.Collect(ctx, c.FirstEnd(start).Add(time.Duration(k)*30*time.Second)) {
					if r.Err != nil {
						t.Error(r.Err)
					}
				}
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
	if n := opened.Load(); n < 1 || n > 2 {
		t.Errorf("%d connections opened for %d queries, want 1 or 2 (MaxConnsPerHost)", n, queries.Load())
	}
	t.Logf("%d connections for %d queries", opened.Load(), queries.Load())
}

// TestBearerTokenAndCA reads through an HTTPS proxy in front of the real
// Prometheus that wants a bearer token: the client verifies the proxy
// with tls_ca_file, sends the content of bearer_token_file, and reads the
// file again when it changes (a rotated token).
func TestBearerTokenAndCA(t *testing.T) {
	t.Parallel()
	srv, start, _ := backfilled(t)
	backend, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	var want atomic.Value
	want.Store("Bearer token-1")
	proxy := httputil.NewSingleHostReverseProxy(backend)
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != want.Load().(string) {
			http.Error(w, "unauthorized: "+got, http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	front.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes this test fails on purpose
	front.StartTLS()
	defer front.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, pc := shop(t, time.Minute, 0)
	read := func(src promconfig.Prometheus) error {
		client, err := NewClient(&src, ClientOptions{})
		if err != nil {
			return err
		}
		defer client.Close()
		c, err := NewCollector(client, Target{RunID: "r", Interval: time.Minute, Metrics: pc.Metrics, Baseline: cohort("rb", "v1"), Canary: cohort("rb", "v2")})
		if err != nil {
			return err
		}
		return c.Collect(t.Context(), c.FirstEnd(start))[0].Err
	}
	src := promconfig.Prometheus{URL: front.URL, BearerTokenFile: token, TLSCAFile: ca}
	if err := read(src); err != nil {
		t.Fatalf("with the token and the CA: %v", err)
	}
	// Rotated: the client reads the new token.
	client, err := NewClient(&src, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := NewCollector(client, Target{RunID: "r", Interval: time.Minute, Metrics: pc.Metrics, Baseline: cohort("rb", "v1"), Canary: cohort("rb", "v2")})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Collect(t.Context(), c.FirstEnd(start))[0]; r.Err != nil {
		t.Fatal(r.Err)
	}
	want.Store("Bearer token-2")
	if err := os.WriteFile(token, []byte("token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := c.Collect(t.Context(), c.FirstEnd(start))[0]; r.Err != nil {
		t.Errorf("after the token changed: %v", r.Err)
	}
	// Without the CA, or with a wrong token: unreachable, with the cause.
	if err := read(promconfig.Prometheus{URL: front.URL, BearerTokenFile: token}); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: %v", err)
	}
	want.Store("Bearer token-3")
	if err := read(src); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "401") {
		t.Errorf("with a wrong token: %v", err)
	}
	if _, err := NewClient(&promconfig.Prometheus{URL: front.URL, TLSCAFile: token}, ClientOptions{}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a CA file without a certificate: %v", err)
	}
}
