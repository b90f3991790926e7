package report_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/internal/report"
	"github.com/canaryd/canaryd/internal/report/reporttest"
	"github.com/canaryd/canaryd/internal/testbrowser"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// source answers the pages' RPCs from replayed runs, in place of the
// service, whose GetRunReport the daemon implements with report.Build.
type source struct {
	mu      sync.Mutex
	reports map[string]*canaryv1.RunReport
	runs    []*canaryv1.Run // running
	history []*canaryv1.Verdict
}

func (s *source) GetRunReport(_ context.Context, req *canaryv1.GetRunReportRequest) (*canaryv1.GetRunReportResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep, ok := s.reports[req.GetRunId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "run %s not found", req.GetRunId())
	}
	return &canaryv1.GetRunReportResponse{Report: rep}, nil
}

func (s *source) ListRuns(context.Context, *canaryv1.ListRunsRequest) (*canaryv1.ListRunsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*canaryv1.Run, len(s.runs))
	for i, r := range s.runs {
		out[i] = proto.CloneOf(r)
	}
	return &canaryv1.ListRunsResponse{Runs: out}, nil
}

func (s *source) ListVerdicts(context.Context, *canaryv1.ListVerdictsRequest) (*canaryv1.ListVerdictsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &canaryv1.ListVerdictsResponse{Verdicts: s.history}, nil
}

// replays returns the three example runs and a source serving them.
func replays(t *testing.T) (*source, map[string]*reporttest.Replayed) {
	t.Helper()
	s := &source{reports: map[string]*canaryv1.RunReport{}}
	rps := map[string]*reporttest.Replayed{}
	for _, name := range []string{"rollback", "promote", "hold"} {
		shift := map[string]time.Duration{"rollback": -2 * time.Hour, "promote": -5 * time.Hour}[name]
		rp := reporttest.Replay(t, name, reporttest.Options{Running: name == "hold", Shift: shift})
		rps[name] = rp
		s.reports[rp.Run.GetId()] = rp.Report()
		if name == "hold" {
			s.runs = append(s.runs, rp.Run)
		} else {
			s.history = append(s.history, rp.Verdict)
		}
	}
	return s, rps
}

// screenshots returns where the screenshots go: docs/img with
// UPDATE_SCREENSHOTS=1 (to refresh the README's), else a temporary
// directory.
func screenshots(t *testing.T) string {
	if os.Getenv("UPDATE_SCREENSHOTS") == "" {
		return t.TempDir()
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "docs", "img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	desktop = testbrowser.Viewport{Width: 1280, Height: 900}
	phone   = testbrowser.Viewport{Width: 390, Height: 844, Mobile: true}
)

// checkReportPage checks a report loaded in the browser: no console error,
// no failed request, the decision written, one main chart per metric, the
// overview and the timeline, and nothing wider than the window.
func checkReportPage(t *testing.T, p *testbrowser.Page, decision string, metrics int) {
	t.Helper()
	if errs := p.Problems(); len(errs) > 0 {
		t.Errorf("console errors: %q", errs)
	}
	if failed := p.FailedRequests(); len(failed) > 0 {
		t.Errorf("failed requests: %q", failed)
	}
	if got := testbrowser.Eval[string](t, p, `document.getElementById("decision").textContent`); got != decision {
		t.Errorf("decision %q, want %q", got, decision)
	}
	if n := testbrowser.Eval[int](t, p, `document.querySelectorAll("section.metric").length`); n != metrics {
		t.Errorf("%d metric sections, want %d", n, metrics)
	}
	// Exactly one distribution or values chart in each metric's section.
	if bad := testbrowser.Eval[[]string](t, p, `[...document.querySelectorAll("section.metric")]
		.filter(s => s.querySelectorAll('svg[data-chart="distribution"], svg[data-chart="values"]').length !== 1)
		.map(s => s.dataset.metric)`); len(bad) > 0 {
		t.Errorf("metrics without exactly one main chart: %v", bad)
	}
	for _, kind := range []string{"forest", "timeline"} {
		if n := testbrowser.Eval[int](t, p, fmt.Sprintf(`document.querySelectorAll('svg[data-chart=%q]').length`, kind)); n != 1 {
			t.Errorf("%d %s charts, want 1", n, kind)
		}
	}
	// Every chart is drawn: it has a size on the page.
	if n := testbrowser.Eval[int](t, p, `[...document.querySelectorAll("svg.chart")].filter(s => s.getBoundingClientRect().width < 100).length`); n > 0 {
		t.Errorf("%d charts narrower than 100 px", n)
	}
	checkNoOverflow(t, p)
}

// checkNoOverflow checks that the page does not scroll sideways.
func checkNoOverflow(t *testing.T, p *testbrowser.Page) {
	t.Helper()
	w := testbrowser.Eval[[]int](t, p, `[document.documentElement.scrollWidth, window.innerWidth]`)
	if w[0] > w[1] {
		wide := testbrowser.Eval[[]string](t, p, `[...document.querySelectorAll("body *")]
			.filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".scroll"))
			.slice(0, 5).map(e => e.tagName + "." + e.className.baseVal + e.className)`)
		t.Errorf("the page is %d px wide in a %d px window: %v", w[0], w[1], wide)
	}
}

// TestReportsInBrowser loads the reports of a ROLLBACK, a PROMOTE and a
// HOLD run, judged by the real judge, from the pages' HTTP handler and as
// files with the network cut off, in headless Chromium at desktop and
// phone widths.
func TestReportsInBrowser(t *testing.T) {
	src, rps := replays(t)
	// A running run's page reloads itself: not while the test reads it.
	h, err := report.NewHandler(report.HandlerOptions{Source: src, Refresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b := testbrowser.Start(t)
	shots := screenshots(t)
	r := renderer(t)
	for _, name := range []string{"rollback", "promote", "hold"} {
		rp := rps[name]
		rep := src.reports[rp.Run.GetId()]
		decision := strings.TrimPrefix(rep.GetVerdict().GetDecision().String(), "DECISION_")
		metrics := len(rep.GetVerdict().GetMetrics())
		t.Run(name+"/served", func(t *testing.T) {
			p := b.Open(t, srv.URL+"/runs/"+rp.Run.GetId(), desktop)
			checkReportPage(t, p, decision, metrics)
			p.SaveScreenshot(t, filepath.Join(shots, "report-"+name+".png"), false)
			m := b.Open(t, srv.URL+"/runs/"+rp.Run.GetId(), phone)
			checkReportPage(t, m, decision, metrics)
			if name == "rollback" {
				m.SaveScreenshot(t, filepath.Join(shots, "report-rollback-phone.png"), false)
				// The latency section: its distributions, effect, evidence,
				// gate and instances.
				png := p.ElementScreenshot(t, `section[data-metric="latency_ms"]`)
				if err := os.WriteFile(filepath.Join(shots, "report-rollback-latency.png"), png, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
		t.Run(name+"/file offline", func(t *testing.T) {
			var buf bytes.Buffer
			if err := r.Report(&buf, rep, report.ReportOptions{}); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "report.html")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, vp := range []testbrowser.Viewport{desktop, phone} {
				vp.Offline = true
				p := b.Open(t, "file://"+path, vp)
				checkReportPage(t, p, decision, metrics)
				if online := testbrowser.Eval[bool](t, p, `navigator.onLine`); online {
					t.Error("the page is online: the offline check checks nothing")
				}
			}
		})
	}
}

// TestHistoryInBrowser loads the history page: its filters, its links to
// the reports, and its polling of the running runs.
func TestHistoryInBrowser(t *testing.T) {
	src, rps := replays(t)
	h, err := report.NewHandler(report.HandlerOptions{Source: src, Refresh: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b := testbrowser.Start(t)
	shots := screenshots(t)

	for _, vp := range []testbrowser.Viewport{desktop, phone} {
		p := b.Open(t, srv.URL+"/", vp)
		if errs := append(p.Problems(), p.FailedRequests()...); len(errs) > 0 {
			t.Errorf("%d px: %q", vp.Width, errs)
		}
		checkNoOverflow(t, p)
		if vp.Width == desktop.Width {
			p.SaveScreenshot(t, filepath.Join(shots, "history.png"), false)
		}
	}
	p := b.Open(t, srv.URL+"/", desktop)
	if n := testbrowser.Eval[int](t, p, `document.querySelectorAll("#verdicts tbody tr").length`); n != 2 {
		t.Errorf("%d verdicts listed, want 2", n)
	}
	if got := testbrowser.Eval[string](t, p, `document.querySelector("#running tbody tr .badge").textContent`); got != "HOLD" {
		t.Errorf("the running run shows %q, want HOLD", got)
	}
	// The filter form is a plain GET form: submitting it filters.
	testbrowser.Eval[int](t, p, `(document.querySelector('select[name=decision]').value = "rollback",
		document.querySelector('input[name=service]').value = "checkout-api",
		document.querySelector("form.filters").submit(), 0)`)
	p.WaitFor(t, `location.search.includes("decision=rollback")`, 10*time.Second)
	p.WaitFor(t, `document.readyState === "complete"`, 10*time.Second)
	if got := testbrowser.Eval[string](t, p, `document.querySelector('select[name=decision]').value`); got != "rollback" {
		t.Errorf("the decision filter is %q after submitting", got)
	}
	// The running HOLD run is filtered out by its decision.
	if n := testbrowser.Eval[int](t, p, `document.querySelectorAll("#running tbody tr").length`); n != 0 {
		t.Errorf("%d running runs listed under decision=rollback, want 0", n)
	}

	// Polling: the running run's new verdict shows without a reload.
	p = b.Open(t, srv.URL+"/", desktop)
	testbrowser.Eval[int](t, p, `(window.notReloaded = true, 0)`)
	src.mu.Lock()
	v := proto.CloneOf(src.runs[0].GetVerdict())
	v.Decision = canaryv1.Decision_DECISION_ROLLBACK
	src.runs[0].Verdict = v
	src.mu.Unlock()
	p.WaitFor(t, `document.querySelector("#running tbody tr .badge").textContent === "ROLLBACK"`, 10*time.Second)
	if !testbrowser.Eval[bool](t, p, `window.notReloaded === true`) {
		t.Error("the page reloaded instead of polling")
	}

	// A report link leads to the report.
	hold := rps["hold"].Run.GetId()
	testbrowser.Eval[int](t, p, fmt.Sprintf(`(document.querySelector('#running a[href="/runs/%s"]').click(), 0)`, hold))
	p.WaitFor(t, `location.pathname.startsWith("/runs/") && document.getElementById("decision") !== null`, 10*time.Second)
	if got := testbrowser.Eval[string](t, p, `document.getElementById("decision").textContent`); got != "HOLD" {
		t.Errorf("the linked report shows %q", got)
	}
	if errs := append(p.Problems(), p.FailedRequests()...); len(errs) > 0 {
		t.Errorf("%q", errs)
	}
}

func TestHandlerErrors(t *testing.T) {
	t.Parallel()
	src, rps := replays(t)
	h, err := report.NewHandler(report.HandlerOptions{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp, b.String()
	}
	if resp, body := get("/runs/nope"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "run nope not found") {
		t.Errorf("unknown run: %d %q", resp.StatusCode, body)
	}
	if resp, body := get("/?since=yesterday"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "since:") {
		t.Errorf("bad filter: %d", resp.StatusCode)
	}
	id := rps["rollback"].Run.GetId()
	resp, body := get("/runs/" + id + "?format=json")
	var got canaryv1.RunReport
	if err := protojson.Unmarshal([]byte(body), &got); err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("JSON report: %d %s %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	if !proto.Equal(&got, src.reports[id]) {
		t.Error("the JSON report is not the report")
	}
	resp, body = get("/runs/" + id)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("report CSP %q", csp)
	}
	if strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("a finished run's page reloads itself")
	}
	if _, body = get("/runs/" + rps["hold"].Run.GetId()); !strings.Contains(body, `http-equiv="refresh" content="10"`) {
		t.Error("a running run's page does not reload itself every 10 s (the default)")
	}
	if resp, _ := http.Post(srv.URL+"/", "text/plain", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", resp.StatusCode)
	}
	if _, err := report.NewHandler(report.HandlerOptions{}); err == nil {
		t.Error("a handler without a source")
	}
	if _, err := report.NewHandler(report.HandlerOptions{Source: src, BasePath: "ui/"}); err == nil {
		t.Error("a bad base path")
	}
}
