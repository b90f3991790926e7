package report_test

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/report"
	"github.com/canaryd/canaryd/internal/report/reporttest"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

func renderer(t testing.TB) *report.Renderer {
	t.Helper()
	r, err := report.NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// attr returns a node's attribute.
func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// find returns the element nodes under n for which match is true.
func find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

func tag(name string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Data == name }
}

func chartKind(kinds ...string) func(*html.Node) bool {
	return func(n *html.Node) bool {
		if n.Data != "svg" {
			return false
		}
		for _, k := range kinds {
			if attr(n, "data-chart") == k {
				return true
			}
		}
		return false
	}
}

var svgRe = regexp.MustCompile(`(?s)<svg class="chart.*?</svg>`)

// checkPage checks what every page must be: parsed as HTML, with unique
// ids, every chart well-formed SVG (a strict XML parse) with a title and
// a description that its aria-labelledby names, and nothing loaded from
// anywhere.
func checkPage(t *testing.T, page []byte, charts bool) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, n := range find(doc, func(n *html.Node) bool { return attr(n, "id") != "" }) {
		id := attr(n, "id")
		if ids[id] {
			t.Errorf("id %q is used twice", id)
		}
		ids[id] = true
	}
	for _, svg := range find(doc, chartKind("forest", "timeline", "distribution", "values", "effect", "evidence", "gate", "instances")) {
		label := strings.Fields(attr(svg, "aria-labelledby"))
		if attr(svg, "role") != "img" || len(label) != 2 {
			t.Errorf("chart %s: role %q, aria-labelledby %q", attr(svg, "data-chart"), attr(svg, "role"), label)
			continue
		}
		for _, id := range label {
			els := find(doc, func(n *html.Node) bool { return attr(n, "id") == id })
			if len(els) != 1 || strings.TrimSpace(text(els[0])) == "" {
				t.Errorf("chart %s: its label %s is missing or empty", attr(svg, "data-chart"), id)
			}
		}
	}
	svgs := svgRe.FindAll(page, -1)
	if charts && len(svgs) == 0 {
		t.Error("no chart")
	}
	for _, s := range svgs {
		dec := xml.NewDecoder(bytes.NewReader(s))
		dec.Strict = true
		for {
			_, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("a chart is not well-formed SVG: %v\n%.300s", err, s)
			}
		}
	}
	// Self-contained: nothing fetched from anywhere.
	for _, n := range find(doc, func(n *html.Node) bool {
		return attr(n, "src") != "" || n.Data == "link" || n.Data == "iframe" || n.Data == "img"
	}) {
		t.Errorf("element <%s> loads %q", n.Data, attr(n, "src")+attr(n, "href"))
	}
	for _, a := range find(doc, tag("a")) {
		if h := attr(a, "href"); strings.Contains(h, "://") {
			t.Errorf("link to another site: %s", h)
		}
	}
	for _, bad := range []string{"@import", "url(http", "url(//", "@font-face"} {
		if bytes.Contains(page, []byte(bad)) {
			t.Errorf("the page contains %q", bad)
		}
	}
	return doc
}

func TestRenderReport(t *testing.T) {
	t.Parallel()
	r := renderer(t)
	for _, tc := range []struct {
		name, decision string
		running        bool
	}{
		{"rollback", "ROLLBACK", false},
		{"promote", "PROMOTE", false},
		{"hold", "HOLD", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rp := reporttest.Replay(t, tc.name, reporttest.Options{Running: tc.running})
			rep := rp.Report()
			before := proto.CloneOf(rep)
			var buf bytes.Buffer
			if err := r.Report(&buf, rep, report.ReportOptions{Generated: time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)}); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(rep, before) {
				t.Error("Report modified the report")
			}
			doc := checkPage(t, buf.Bytes(), true)
			if s := find(doc, tag("script")); len(s) > 0 {
				t.Error("the report has a script; it needs none")
			}
			dec := find(doc, func(n *html.Node) bool { return attr(n, "id") == "decision" })
			if len(dec) != 1 || text(dec[0]) != tc.decision {
				t.Errorf("decision element %v, want %q", dec, tc.decision)
			}
			if rs := find(doc, func(n *html.Node) bool { return attr(n, "id") == "reason" }); len(rs) != 1 || text(rs[0]) != rep.GetVerdict().GetReason() {
				t.Error("the reason is not on the page")
			}
			if n := len(find(doc, chartKind("forest"))); n != 1 {
				t.Errorf("%d forest plots, want 1", n)
			}
			if n := len(find(doc, chartKind("timeline"))); n != 1 {
				t.Errorf("%d timelines, want 1", n)
			}
			// One section per metric, with exactly one main chart (the
			// distribution or the values), an effect chart and the
			// evidence over time.
			sections := find(doc, func(n *html.Node) bool { return n.Data == "section" && attr(n, "data-metric") != "" })
			metrics := rep.GetVerdict().GetMetrics()
			if len(sections) != len(metrics) {
				t.Fatalf("%d metric sections, %d metrics", len(sections), len(metrics))
			}
			for i, s := range sections {
				m := metrics[i]
				if attr(s, "data-metric") != m.GetName() {
					t.Errorf("section %d is %q, want %q", i, attr(s, "data-metric"), m.GetName())
				}
				want := "values"
				if m.GetType() == canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION {
					want = "distribution"
				}
				if main := find(s, chartKind("distribution", "values")); len(main) != 1 || attr(main[0], "data-chart") != want {
					t.Errorf("%s: %d main charts, want one %s", m.GetName(), len(main), want)
				}
				for _, k := range []string{"effect", "evidence"} {
					if n := len(find(s, chartKind(k))); n != 1 {
						t.Errorf("%s: %d %s charts, want 1", m.GetName(), n, k)
					}
				}
				outcome := strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(m.GetOutcome().String(), "METRIC_OUTCOME_"), "_", " "))
				if !strings.Contains(text(s), outcome) {
					t.Errorf("%s: the outcome %s is not written", m.GetName(), outcome)
				}
			}
			for _, id := range []string{"windows", "alarms"} {
				if len(find(doc, func(n *html.Node) bool { return attr(n, "id") == id })) != 1 {
					t.Errorf("no %s section", id)
				}
			}
			// The timeline lists the decision changes, in words.
			if changes := find(doc, func(n *html.Node) bool { return n.Data == "ol" && attr(n, "class") == "changes" }); len(changes) != 1 || !strings.Contains(text(changes[0]), tc.decision) {
				t.Error("the list of decision changes is missing or lacks the decision")
			}
		})
	}
}

// TestRenderEscapes: names and reasons from the API are text, never
// markup.
func TestRenderEscapes(t *testing.T) {
	t.Parallel()
	rp := reporttest.Replay(t, "hold", reporttest.Options{Running: true})
	evil := `<script>alert("x")</script>`
	rp.Run.Service = evil
	rp.Run.BaselineLabels = map[string]string{"v": `"><img src=x onerror=alert(1)>`}
	rp.Verdict.Reason = evil
	rp.Verdict.Metrics[0].Name = `lat<b>ency"'`
	for _, c := range []analysis.Cohort{analysis.Baseline, analysis.Canary} {
		if err := rp.Data.Add(&analysis.Record{Metric: "latency_ms", Cohort: c, Value: 50, Instance: evil, Time: rp.Newest}); err != nil {
			t.Fatal(err)
		}
	}
	rep := rp.Report()
	rep.Alarms = []*canaryv1.AlarmEvent{{Name: evil, Summary: evil, State: canaryv1.AlarmState_ALARM_STATE_FIRING}}
	rep.Overrides = []*canaryv1.DeployOverride{{Service: "checkout-api", Stage: "onebox", Who: evil, Reason: evil, BlockedReasons: []string{evil}}}
	var buf bytes.Buffer
	if err := renderer(t).Report(&buf, rep, report.ReportOptions{HistoryURL: "/"}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, bad := range []string{"<script>", "<img", "<b>"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	if !strings.Contains(page, "<table data-overrides>") || strings.Count(page, "&lt;script&gt;") < 4 {
		t.Errorf("the override is not shown as text")
	}
	checkPage(t, buf.Bytes(), true)
}

func TestRenderAlarmsAndEmpty(t *testing.T) {
	t.Parallel()
	r := renderer(t)
	rp := reporttest.Replay(t, "rollback", reporttest.Options{})
	rep := rp.Report()
	rep.Alarms = []*canaryv1.AlarmEvent{
		{Name: "CheckoutLatencyHigh", Summary: "p99 over 500 ms", State: canaryv1.AlarmState_ALARM_STATE_FIRING, StartTime: rep.GetRun().GetCreateTime()},
		{Name: "DiskFull", State: canaryv1.AlarmState_ALARM_STATE_RESOLVED, Labels: map[string]string{"severity": "page"}},
	}
	var buf bytes.Buffer
	if err := r.Report(&buf, rep, report.ReportOptions{Refresh: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	doc := checkPage(t, buf.Bytes(), true)
	al := find(doc, func(n *html.Node) bool { return attr(n, "id") == "alarms" })
	if len(al) != 1 || !strings.Contains(text(al[0]), "CheckoutLatencyHigh") || !strings.Contains(text(al[0]), "FIRING") ||
		!strings.Contains(text(al[0]), "RESOLVED") || !strings.Contains(text(al[0]), "severity=page") {
		t.Error("the alarms are not listed with their states")
	}
	if !strings.Contains(buf.String(), `http-equiv="refresh" content="30"`) {
		t.Error("no refresh for a running run's page")
	}
	// A run not judged yet, without data: a page all the same.
	buf.Reset()
	empty := report.Build(&canaryv1.Run{Id: "new", Service: "s", Stage: "st"}, nil, nil, nil, report.Options{})
	if err := r.Report(&buf, empty, report.ReportOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "NO VERDICT") {
		t.Error("a run without a verdict does not say so")
	}
}

func TestParseHistoryQuery(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		q         string
		decision  canaryv1.Decision
		since     time.Time
		wantField string
	}{
		{"", canaryv1.Decision_DECISION_UNSPECIFIED, time.Time{}, ""},
		{"decision=Rollback&since=24h", canaryv1.Decision_DECISION_ROLLBACK, now.Add(-24 * time.Hour), ""},
		{"decision=promote&since=7d", canaryv1.Decision_DECISION_PROMOTE, now.Add(-7 * 24 * time.Hour), ""},
		{"since=2026-11-20", canaryv1.Decision_DECISION_UNSPECIFIED, time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), ""},
		{"since=2026-11-20T08:00:00Z&decision=any", canaryv1.Decision_DECISION_UNSPECIFIED, time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC), ""},
		{"decision=maybe", 0, time.Time{}, "decision"},
		{"since=yesterday", 0, time.Time{}, "since"},
		{"since=-3h", 0, time.Time{}, "since"},
	} {
		v, _ := url.ParseQuery(tc.q)
		h, err := report.ParseHistoryQuery(v, now)
		if tc.wantField != "" {
			fe, ok := err.(*report.FieldError)
			if !ok || fe.Field != tc.wantField {
				t.Errorf("%q: error %v, want one naming %s", tc.q, err, tc.wantField)
			}
			continue
		}
		if err != nil || h.Decision != tc.decision || !h.SinceTime.Equal(tc.since) {
			t.Errorf("%q: %+v, %v; want decision %v since %v", tc.q, h, err, tc.decision, tc.since)
		}
		req := h.VerdictsRequest(50)
		if req.GetDecision() != tc.decision || (tc.since.IsZero() != (req.GetSince() == nil)) || req.GetPageSize() != 50 {
			t.Errorf("%q: ListVerdicts request %v", tc.q, req)
		}
	}
}

// historyFixture returns a history page of the three example runs: the
// HOLD one running, the others finished.
func historyFixture(t *testing.T) *report.HistoryPage {
	t.Helper()
	var p report.HistoryPage
	for _, name := range []string{"rollback", "promote", "hold"} {
		rp := reporttest.Replay(t, name, reporttest.Options{Running: name == "hold"})
		if name == "hold" {
			p.Running = append(p.Running, rp.Run)
			continue
		}
		p.Verdicts = append(p.Verdicts, rp.Verdict)
	}
	return &p
}

func TestRenderHistory(t *testing.T) {
	t.Parallel()
	r := renderer(t)
	p := historyFixture(t)
	v, _ := url.ParseQuery("service=checkout-api&decision=rollback&since=24h&page_token=abc")
	q, err := report.ParseHistoryQuery(v, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p.Query, p.NextPageToken, p.Refresh, p.BasePath = q, "next/token", 5*time.Second, "/ui"
	var buf bytes.Buffer
	if err := r.History(&buf, p); err != nil {
		t.Fatal(err)
	}
	doc := checkPage(t, buf.Bytes(), false)
	// The filters keep their values.
	inputs := map[string]string{}
	for _, in := range find(doc, tag("input")) {
		inputs[attr(in, "name")] = attr(in, "value")
	}
	if inputs["service"] != "checkout-api" || inputs["since"] != "24h" {
		t.Errorf("filter inputs %v", inputs)
	}
	sel := find(doc, func(n *html.Node) bool { return n.Data == "option" && hasAttr(n, "selected") })
	if len(sel) != 1 || attr(sel[0], "value") != "rollback" {
		t.Error("the decision filter is not kept")
	}
	// Links to the reports, and pages that keep the filters.
	links := map[string]bool{}
	for _, a := range find(doc, tag("a")) {
		links[attr(a, "href")] = true
	}
	for _, rv := range p.Verdicts {
		if !links["/ui/runs/"+rv.GetRunId()] {
			t.Errorf("no link to the report of %s", rv.GetRunId())
		}
	}
	if !links["/ui/runs/"+p.Running[0].GetId()] {
		t.Error("no link to the running run")
	}
	if !links["?decision=rollback&page_token=next%2Ftoken&service=checkout-api&since=24h"] || !links["?decision=rollback&service=checkout-api&since=24h"] {
		t.Errorf("pagination links missing: %v", links)
	}
	if s := find(doc, tag("script")); len(s) != 1 || !strings.Contains(text(s[0]), "5000") {
		t.Error("no polling script with the refresh period")
	}
	running := find(doc, func(n *html.Node) bool { return attr(n, "id") == "running" })
	if len(running) != 1 || !strings.Contains(text(running[0]), "HOLD") {
		t.Error("the running run's decision is not shown")
	}
	// Without a refresh, no script at all.
	p.Refresh = 0
	buf.Reset()
	if err := r.History(&buf, p); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<script") {
		t.Error("a script without refresh")
	}
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}
