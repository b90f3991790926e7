// Package testprom gives tests a real Prometheus: Debian's `prometheus`
// (2.42), started on a free loopback port with a temporary directory and
// killed when the test ends. It scrapes the exporters a test runs (Pod:
// client_golang counters and histograms fed by a simulated workload) or
// serves a TSDB backfilled with `promtool tsdb create-blocks-from
// openmetrics` (Backfill: hours of past data in a second).
//
//	pod := testprom.StartPod(t, testprom.Workload{RPS: 200, ErrorRate: 0.01})
//	srv := testprom.Start(t, testprom.Options{Targets: []testprom.Target{pod.Target(map[string]string{"version": "v1"})}})
//	srv.WaitFor(t, `http_requests_total`, 1)
//
// Without the prometheus binary (apt-get install prometheus), Start skips
// the test with a message on stderr, or fails it when the environment has
// CI=true, so that CI cannot pass without running the Prometheus tests.
package testprom

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/testproc"
)

// Target is one scrape target: an exporter's host:port and the labels
// Prometheus attaches to its series (its instance label is the address).
type Target struct {
	Addr   string
	Labels map[string]string
}

// Options configure a Prometheus.
type Options struct {
	// ScrapeInterval is how often targets are scraped; 0 means 1s.
	ScrapeInterval time.Duration
	// Targets are scraped by one job, "test".
	Targets []Target
	// Data is a TSDB directory to serve (Backfill makes one); empty
	// means an empty one in a temporary directory. Prometheus writes to
	// it.
	Data string
	// NativeHistograms enables the native-histograms feature: scrapes
	// negotiate the protobuf format and keep native histograms.
	NativeHistograms bool
}

// Server is a Prometheus for one test.
type Server struct {
	t    testing.TB
	url  string
	proc *testproc.Process
}

// Start starts a Prometheus for t and stops it when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := testproc.LookPath(t, "prometheus", "prometheus", "the Prometheus collector")
	if o.ScrapeInterval == 0 {
		o.ScrapeInterval = time.Second
	}
	dir := t.TempDir()
	if o.Data == "" {
		o.Data = filepath.Join(dir, "data")
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config(o)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t}
	for attempt := 0; ; attempt++ {
		port, err := testproc.FreePort()
		if err != nil {
			t.Fatalf("testprom: free port: %v", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.url = "http://" + addr
		args := []string{
			"--config.file=" + cfg,
			"--storage.tsdb.path=" + o.Data,
			"--storage.tsdb.retention.time=100y", // backfilled blocks stay
			"--web.listen-address=" + addr,
			"--log.level=warn",
		}
		if o.NativeHistograms {
			args = append(args, "--enable-feature=native-histograms")
		}
		s.proc = &testproc.Process{
			Name: "prometheus", Bin: bin, Args: args, Dir: dir,
			Ready: s.url + "/-/ready", Log: filepath.Join(dir, "prometheus.log"),
		}
		err = s.proc.Start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("testprom: %v", err)
		}
		t.Logf("testprom: %v; trying another port", err)
	}
	t.Cleanup(s.proc.Kill)
	return s
}

// config returns the prometheus.yml of o.
func config(o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\nscrape_configs:\n", promDuration(o.ScrapeInterval), promDuration(o.ScrapeInterval))
	if len(o.Targets) == 0 {
		return b.String() + "  []\n"
	}
	fmt.Fprintf(&b, "  - job_name: test\n    scrape_timeout: %s\n    static_configs:\n", promDuration(o.ScrapeInterval))
	for _, tg := range o.Targets {
		fmt.Fprintf(&b, "      - targets: [%q]\n", tg.Addr)
		if len(tg.Labels) > 0 {
			b.WriteString("        labels:\n")
			keys := make([]string, 0, len(tg.Labels))
			for k := range tg.Labels {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, "          %s: %q\n", k, tg.Labels[k])
			}
		}
	}
	return b.String()
}

func promDuration(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// URL is the base URL of the server's HTTP API, http://127.0.0.1:port.
func (s *Server) URL() string { return s.url }

// Stop kills the server with SIGKILL, as a crash would, and waits until it
// has exited.
func (s *Server) Stop() { s.proc.Kill() }

// Restart starts a stopped server again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.proc.Start(); err != nil {
		s.t.Fatalf("testprom: restart: %v", err)
	}
}

// WaitFor waits until the instant query q returns at least n series, for
// at most a minute, and fails the test otherwise.
func (s *Server) WaitFor(t testing.TB, q string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last string
	for time.Now().Before(deadline) {
		got, err := s.count(q)
		if err == nil && got >= n {
			return
		}
		last = fmt.Sprintf("%d series, %v", got, err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testprom: %s did not return %d series within a minute (last: %s; log: %s)", q, n, last, s.proc.LogTail(5))
}

// count returns how many series the instant query q returns now.
func (s *Server) count(q string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", q, body.Error)
	}
	return len(body.Data.Result), nil
}
