package puller

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/testprom"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server"
	"github.com/canaryd/canaryd/server/store/embedded"
)

// config has a rate metric whose queries work and a distribution metric
// whose buckets query Prometheus rejects (a PromQL syntax error).
const config = `name: shop
source:
  prometheus:
    url: %s
    interval: 1s
    lag: 1s
metrics:
  - name: errors
    category: stability
    type: rate
    query:
      count: sum by (instance) (increase(http_requests_total{code=~"5..", {{.Selector}}}[{{.Range}}]))
      total: sum by (instance) (increase(http_requests_total{ {{.Selector}} }[{{.Range}}]))
  - name: latency_ms
    category: performance
    type: distribution
    query:
      buckets: sum by (le, instance) (increase(http_request_duration_seconds_bucket{ {{.Selector}} }[{{.Range}}])) +
`

type fixture struct {
	svc *server.Service
	st  *embedded.Store
	reg *prometheus.Registry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "canaryd.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := server.New(server.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		svc.Close()
		st.Close()
	})
	return &fixture{svc: svc, st: st, reg: prometheus.NewRegistry()}
}

// start runs a puller until the test ends.
func (f *fixture) start(t *testing.T, o Options) *Puller {
	t.Helper()
	o.Service, o.Runs, o.Leases, o.Registerer = f.svc, f.st, f.st, f.reg
	if o.ScanInterval == 0 {
		o.ScanInterval = 100 * time.Millisecond
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return p
}

func (f *fixture) createRun(t *testing.T, url string, start time.Time) string {
	t.Helper()
	return f.createRunID(t, "r", url, start)
}

func (f *fixture) createRunID(t *testing.T, reqID, url string, start time.Time) string {
	t.Helper()
	ctx := t.Context()
	resp, err := f.svc.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: reqID, Service: "shop", Stage: "onebox",
		Config:         &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: fmt.Sprintf(config, url)},
		BaselineLabels: map[string]string{"version": "v1"}, CanaryLabels: map[string]string{"version": "v2"},
		BakeTime: durationpb.New(time.Hour), StartTime: timestamppb.New(start),
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetRun().GetId()
}

// pullOf waits until cond accepts the run's pull status, for up to 30 s.
func (f *fixture) pullOf(t *testing.T, id string, cond func(map[string]*canaryv1.MetricPull) bool) map[string]*canaryv1.MetricPull {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := f.svc.GetRun(t.Context(), &canaryv1.GetRunRequest{RunId: id})
		if err != nil {
			t.Fatal(err)
		}
		ms := map[string]*canaryv1.MetricPull{}
		for _, m := range resp.GetRun().GetPull().GetMetrics() {
			ms[m.GetMetric()] = m
		}
		if cond(ms) {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("pull status not as wanted within 30s: %v", resp.GetRun().GetPull())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPullMetricsApart: a metric whose query Prometheus rejects fails
// with the reason and is retried, while the other metric is read; the
// failure is counted by kind.
func TestPullMetricsApart(t *testing.T) {
	t.Parallel()
	var targets []testprom.Target
	for _, v := range []string{"v1", "v2"} {
		targets = append(targets, testprom.StartPod(t, testprom.Workload{RPS: 50}).Target(map[string]string{"version": v}))
	}
	srv := testprom.Start(t, testprom.Options{Targets: targets})
	srv.WaitFor(t, "http_requests_total", 2)
	f := newFixture(t)
	id := f.createRun(t, srv.URL(), time.Now())
	p := f.start(t, Options{})
	ms := f.pullOf(t, id, func(ms map[string]*canaryv1.MetricPull) bool {
		return ms["errors"].GetThrough() != nil && ms["latency_ms"].GetFailingSince() != nil
	})
	if e := ms["latency_ms"].GetError(); !strings.Contains(e, "bad query") || !strings.Contains(e, "buckets query") {
		t.Errorf("latency_ms error %q, want the bad buckets query", e)
	}
	if ms["errors"].GetFailingSince() != nil {
		t.Errorf("errors failing: %v", ms["errors"])
	}
	first := ms["errors"].GetThrough().AsTime()
	f.pullOf(t, id, func(ms map[string]*canaryv1.MetricPull) bool {
		return ms["errors"].GetThrough().AsTime().After(first.Add(2 * time.Second))
	})
	if n := testutil.ToFloat64(p.metrics.failures.WithLabelValues("bad_query")); n < 2 {
		t.Errorf("bad_query failures %v, want one per interval tried (>= 2)", n)
	}
	v, err := f.svc.Judge(t.Context(), &canaryv1.JudgeRequest{RunId: id})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v.GetVerdict().GetReason(), "latency_ms: no data from Prometheus since") {
		t.Errorf("verdict reason %q does not name the failing metric", v.GetVerdict().GetReason())
	}
}

// TestPullBacklog: a run that starts long before its first read (a
// replica down for longer than the backlog) catches up on the backlog
// only; the intervals before it are counted as lost.
func TestPullBacklog(t *testing.T) {
	t.Parallel()
	srv := testprom.Start(t, testprom.Options{})
	f := newFixture(t)
	id := f.createRun(t, srv.URL(), time.Now().Add(-time.Minute))
	f.start(t, Options{Backlog: 10 * time.Second})
	ms := f.pullOf(t, id, func(ms map[string]*canaryv1.MetricPull) bool {
		return ms["errors"].GetThrough() != nil && ms["errors"].GetLostIntervals() > 0
	})
	lost := ms["errors"].GetLostIntervals()
	if lost < 40 || lost > 60 {
		t.Errorf("lost %d intervals of 1 s of a run that started a minute ago with a backlog of 10 s, want about 50", lost)
	}
	if th := ms["errors"].GetThrough().AsTime(); time.Since(th) > 10*time.Second {
		t.Errorf("through %v: not caught up", th)
	}
}

// TestPullHangingSource: a Prometheus that accepts connections and never
// answers costs one query timeout per few seconds, not one per run: once
// a read found it unreachable, the other runs of that source fail at once
// with the same error, and every run holds with the reason.
func TestPullHangingSource(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		var conns []net.Conn // held open, never answered
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	f := newFixture(t)
	url := "http://" + lis.Addr().String()
	var ids []string
	for i := range 8 {
		ids = append(ids, f.createRunID(t, fmt.Sprintf("r%d", i), url, time.Now()))
	}
	p := f.start(t, Options{QueryTimeout: time.Second, Workers: 2})
	for _, id := range ids {
		ms := f.pullOf(t, id, func(ms map[string]*canaryv1.MetricPull) bool {
			return ms["errors"].GetFailingSince() != nil && ms["latency_ms"].GetFailingSince() != nil
		})
		if e := ms["errors"].GetError(); !strings.Contains(e, "prometheus unreachable") {
			t.Errorf("run %s: error %q", id, e)
		}
	}
	// 8 runs, 2 workers, 1 s timeouts: without the breaker, each round of
	// the runs costs 8 timeouts (4 s of both workers).
	if n := testutil.ToFloat64(p.metrics.failures.WithLabelValues("unreachable")); n > 4 {
		t.Errorf("%v timed-out reads for 8 runs failing within one breaker window, want a few", n)
	}
}
