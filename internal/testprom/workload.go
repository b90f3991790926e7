package testprom

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/canaryd/canaryd/internal/testproc"
)

// The metrics every pod exposes, as a Go HTTP service instrumented with
// client_golang would.
const (
	// RequestsMetric counts requests by code ("200", "500"); the "500"
	// series appears with the first error.
	RequestsMetric = "http_requests_total"
	// LatencyMetric is the histogram of request durations in seconds.
	LatencyMetric = "http_request_duration_seconds"
)

// Workload is the simulated traffic of one pod.
type Workload struct {
	// RPS is the requests per second; 0 means 100.
	RPS float64
	// ErrorRate is the share of requests answered 500.
	ErrorRate float64
	// Latencies are lognormal, of median LatencyMedian seconds (0 means
	// 0.08) and log standard deviation LatencySigma (0 means 0.5).
	LatencyMedian, LatencySigma float64
	// Buckets are the histogram's upper bounds; nil means client_golang's
	// DefBuckets (5 ms to 10 s).
	Buckets []float64
	// Native also keeps a native histogram (bucket factor 1.1), scraped by
	// a Prometheus started with Options.NativeHistograms.
	Native bool
	// Seed seeds the pod's random source.
	Seed uint64
}

func (w Workload) withDefaults() Workload {
	if w.RPS == 0 {
		w.RPS = 100
	}
	if w.LatencyMedian == 0 {
		w.LatencyMedian = 0.08
	}
	if w.LatencySigma == 0 {
		w.LatencySigma = 0.5
	}
	if w.Buckets == nil {
		w.Buckets = prometheus.DefBuckets
	}
	return w
}

// traffic draws the requests of a workload.
type traffic struct {
	w       Workload
	rng     *rand.Rand
	pending float64 // requests due, not yet drawn
}

func newTraffic(w Workload) *traffic {
	return &traffic{w: w.withDefaults(), rng: rand.New(rand.NewPCG(w.Seed, 0x7e57))}
}

// advance draws the requests of dt and calls fn with each one's latency
// and whether it failed.
func (tr *traffic) advance(dt time.Duration, fn func(latency float64, failed bool)) {
	tr.pending += tr.w.RPS * dt.Seconds()
	n := math.Floor(tr.pending)
	tr.pending -= n
	for i := 0; i < int(n); i++ {
		lat := tr.w.LatencyMedian * math.Exp(tr.w.LatencySigma*tr.rng.NormFloat64())
		fn(lat, tr.rng.Float64() < tr.w.ErrorRate)
	}
}

// Pod is an exporter serving one simulated pod's metrics over HTTP, its
// traffic drawn in real time.
type Pod struct {
	srv  *httptest.Server
	stop chan struct{}
	done chan struct{}
}

// StartPod starts a pod whose traffic follows w; it stops when the test
// ends.
func StartPod(t testing.TB, w Workload) *Pod {
	t.Helper()
	w = w.withDefaults()
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: RequestsMetric, Help: "Requests by code."}, []string{"code"})
	opts := prometheus.HistogramOpts{Name: LatencyMetric, Help: "Request durations.", Buckets: w.Buckets}
	if w.Native {
		opts.NativeHistogramBucketFactor = 1.1
	}
	latency := prometheus.NewHistogram(opts)
	reg.MustRegister(requests, latency)
	ok := requests.WithLabelValues("200")

	p := &Pod{
		srv:  httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	tr := newTraffic(w)
	go func() {
		defer close(p.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-p.stop:
				return
			case now := <-tick.C:
				tr.advance(now.Sub(last), func(lat float64, failed bool) {
					if failed {
						requests.WithLabelValues("500").Inc()
					} else {
						ok.Inc()
					}
					latency.Observe(lat)
				})
				last = now
			}
		}
	}()
	t.Cleanup(p.Close)
	return p
}

// Addr is the pod's host:port.
func (p *Pod) Addr() string { return p.srv.Listener.Addr().String() }

// Target returns the pod as a scrape target with labels.
func (p *Pod) Target(labels map[string]string) Target { return Target{Addr: p.Addr(), Labels: labels} }

// Close stops the pod's traffic and its server.
func (p *Pod) Close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	<-p.done
	p.srv.Close()
}

// BackfillPod is one pod of a backfilled TSDB: its series' labels (give
// job and instance, which a scrape would have added) and its workload.
type BackfillPod struct {
	Labels   map[string]string
	Workload Workload
}

// Backfill simulates pods from start to end, scraped every step, writes
// what Prometheus would have stored as OpenMetrics, and turns it into TSDB
// blocks with `promtool tsdb create-blocks-from openmetrics`. It returns
// the TSDB directory, for Options.Data. Counters start at 0 at start.
func Backfill(t testing.TB, start, end time.Time, step time.Duration, pods []BackfillPod) string {
	t.Helper()
	bin := testproc.LookPath(t, "promtool", "prometheus", "the Prometheus collector")
	var requests, latency bytes.Buffer
	for _, p := range pods {
		w := p.Workload.withDefaults()
		tr := newTraffic(w)
		var ok, failed, count, sum float64
		buckets := make([]float64, len(w.Buckets))
		seenError := false
		for at := start; !at.After(end); at = at.Add(step) {
			if at.After(start) {
				tr.advance(step, func(lat float64, f bool) {
					if f {
						failed++
					} else {
						ok++
					}
					count++
					sum += lat
					for k := sort.SearchFloat64s(w.Buckets, lat); k < len(buckets); k++ {
						buckets[k]++
					}
				})
			}
			ts := fmt.Sprintf("%d.%03d", at.Unix(), at.Nanosecond()/1e6)
			fmt.Fprintf(&requests, "%s%s %s %s\n", RequestsMetric, labels(p.Labels, "code", "200"), num(ok), ts)
			if seenError = seenError || failed > 0; seenError {
				fmt.Fprintf(&requests, "%s%s %s %s\n", RequestsMetric, labels(p.Labels, "code", "500"), num(failed), ts)
			}
			for k, ub := range w.Buckets {
				fmt.Fprintf(&latency, "%s_bucket%s %s %s\n", LatencyMetric, labels(p.Labels, "le", num(ub)), num(buckets[k]), ts)
			}
			fmt.Fprintf(&latency, "%s_bucket%s %s %s\n", LatencyMetric, labels(p.Labels, "le", "+Inf"), num(count), ts)
			fmt.Fprintf(&latency, "%s_sum%s %s %s\n", LatencyMetric, labels(p.Labels), num(sum), ts)
			fmt.Fprintf(&latency, "%s_count%s %s %s\n", LatencyMetric, labels(p.Labels), num(count), ts)
		}
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "backfill.om")
	text := "# TYPE " + strings.TrimSuffix(RequestsMetric, "_total") + " counter\n" + requests.String() +
		"# TYPE " + LatencyMetric + " histogram\n" + latency.String() + "# EOF\n"
	if err := os.WriteFile(in, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	out, err := exec.Command(bin, "tsdb", "create-blocks-from", "openmetrics", "--quiet", in, data).CombinedOutput()
	if err != nil {
		t.Fatalf("testprom: promtool tsdb create-blocks-from openmetrics: %v: %s", err, out)
	}
	return data
}

// labels formats a label set, plus extra name/value pairs, as OpenMetrics
// does.
func labels(ls map[string]string, extra ...string) string {
	keys := make([]string, 0, len(ls)+len(extra)/2)
	all := make(map[string]string, len(ls)+len(extra)/2)
	for k, v := range ls {
		keys, all[k] = append(keys, k), v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		keys, all[extra[i]] = append(keys, extra[i]), extra[i+1]
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(all[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
