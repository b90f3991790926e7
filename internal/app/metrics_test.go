package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/canaryd/canaryd/internal/buildinfo"
	"github.com/canaryd/canaryd/internal/testproc"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// scrapeAfterRuns serves canaryd, takes a run through config, ingest,
// judge and completion (a ROLLBACK) and a call that fails, and returns
// the /metrics text.
func scrapeAfterRuns(t *testing.T) string {
	t.Helper()
	ctx := ctxT(t)
	grpcAddr, httpAddr := startRun(t, Options{Build: buildinfo.Info{Version: "v9.9.9-test", GoVersion: "go1.99", Revision: "abc123"}})
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := canaryv1.NewCanaryServiceClient(conn)
	cr, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{RequestId: "metrics", Service: "checkout", Stage: "s",
		Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("checkout")}})
	if err != nil {
		t.Fatal(err)
	}
	id := cr.GetRun().GetId()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3 {
		if _, err := c.Ingest(ctx, &canaryv1.IngestRequest{Batch: makeBatch(rng, id, fmt.Sprint("b", i), scenario{Latency: 2, Errors: 1, N: 2000})}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Judge(ctx, &canaryv1.JudgeRequest{RunId: id}); err != nil {
		t.Fatal(err)
	}
	done, err := c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id})
	if err != nil {
		t.Fatal(err)
	}
	if d := done.GetRun().GetVerdict().GetDecision(); d != canaryv1.Decision_DECISION_ROLLBACK {
		t.Fatalf("final decision %v, want ROLLBACK (the canary is twice as slow)", d)
	}
	if _, err := c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: "no-such-run"}); err == nil {
		t.Fatal("GetRun of an unknown run succeeded")
	}
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// TestMetricsConventions: /metrics of a running canaryd passes `promtool
// check metrics` (Prometheus's own lint of names, types and help), has
// the gRPC metrics under go-grpc-middleware's names and labels, decisions
// as PROMOTE/HOLD/ROLLBACK, the store's health and the build.
func TestMetricsConventions(t *testing.T) {
	t.Parallel()
	promtool := testproc.LookPath(t, "promtool", "prometheus", "the /metrics lint")
	text := scrapeAfterRuns(t)

	lint := func(exposition string) (string, error) {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(exposition)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// The lint finds problems: a counter without _total fails it.
	if out, err := lint("# HELP bad_counter A counter.\n# TYPE bad_counter counter\nbad_counter 1\n"); err == nil {
		t.Fatalf("promtool check metrics passed a counter without _total: %s", out)
	}
	if out, err := lint(text); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	for _, want := range []string{
		`grpc_server_started_total{grpc_method="CreateRun",grpc_service="canary.v1.CanaryService",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="CompleteRun",grpc_service="canary.v1.CanaryService",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="NotFound",grpc_method="GetRun",grpc_service="canary.v1.CanaryService",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Ingest",grpc_service="canary.v1.CanaryService",grpc_type="unary"} 3`,
		`grpc_server_handling_seconds_count{grpc_method="Ingest",grpc_service="canary.v1.CanaryService",grpc_type="unary"} 3`,
		`grpc_server_msg_received_total{grpc_method="IngestStream",grpc_service="canary.v1.CanaryService",grpc_type="bidi_stream"} 0`,
		`canaryd_verdicts_total{decision="ROLLBACK",final="true"} 1`,
		`canaryd_verdicts_total{decision="PROMOTE",final="true"} 0`,
		`canaryd_ingest_batches_total{result="accepted"} 3`,
		`canaryd_runs{state="completed"} 1`,
		`canaryd_runs{state="running"} 0`,
		`canaryd_store_up 1`,
		`canaryd_store_operation_duration_seconds_count{operation="append_batch"} 3`,
		`canaryd_store_operation_duration_seconds_count{operation="finish_run`,
		`canaryd_store_errors_total{kind="error",operation="append_batch"} 0`,
		`canaryd_store_errors_total{kind="unavailable",operation="update_run"} 0`,
		`canaryd_store_health_check_duration_seconds_count`,
		`canaryd_build_info{goversion="go1.99",revision="abc123",version="v9.9.9-test"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, gone := range []string{"canaryd_grpc_", "DECISION_"} {
		if strings.Contains(text, gone) {
			t.Errorf("/metrics still has %q", gone)
		}
	}
}

// TestGrafanaDashboard: every PromQL expression of
// examples/grafana/canaryd.json parses (promtool check rules), and every
// metric it reads exists in /metrics of a running canaryd, with the labels
// its selectors and groupings name.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	promtool := testproc.LookPath(t, "promtool", "prometheus", "the Grafana dashboard")
	src, err := os.ReadFile("../../examples/grafana/canaryd.json")
	if err != nil {
		t.Fatal(err)
	}
	exprs := dashboardExprs(t, src)
	if len(exprs) < 20 {
		t.Fatalf("%d expressions in the dashboard", len(exprs))
	}
	text := scrapeAfterRuns(t)
	series := seriesLabels(text)

	// Grafana's variables, as Grafana substitutes them.
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$__range", "6h", "$instance", ".*")
	var rules bytes.Buffer
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	selector := regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)
	matcher := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	bare := regexp.MustCompile(`\b(canaryd|grpc|go|process)_[a-zA-Z0-9_:]*\b`)
	grouping := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	for i, e := range exprs {
		if strings.HasPrefix(e, "label_values(") { // Grafana's, not PromQL
			name := strings.TrimSpace(strings.Split(strings.TrimPrefix(e, "label_values("), ",")[0])
			if _, ok := series[name]; !ok {
				t.Errorf("variable query %s: no metric %s in /metrics", e, name)
			}
			continue
		}
		fmt.Fprintf(&rules, "      - record: dashboard:expr%d\n        expr: %q\n", i, grafana.Replace(e))
		// Every metric is written with a selector, so that the check
		// below sees it (label names inside selectors and groupings left
		// out).
		stripped := grouping.ReplaceAllString(selector.ReplaceAllString(e, "$1{}"), "by ()")
		for _, m := range bare.FindAllStringIndex(stripped, -1) {
			if m[1] >= len(stripped) || stripped[m[1]] != '{' {
				t.Errorf("%s: metric %s without a selector", e, stripped[m[0]:m[1]])
			}
		}
		var used []string // the labels of the metrics the expression reads
		for _, sel := range selector.FindAllStringSubmatch(e, -1) {
			name := sel[1]
			labels, ok := series[name]
			if !ok {
				t.Errorf("%s: no metric %s in /metrics", e, name)
				continue
			}
			for _, lm := range matcher.FindAllStringSubmatch(sel[2], -1) {
				if l := lm[1]; l != "instance" && !labels[l] {
					t.Errorf("%s: metric %s has no label %s", e, name, l)
				}
			}
			for l := range labels {
				used = append(used, l)
			}
		}
		for _, g := range grouping.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && l != "instance" && !slices.Contains(used, l) {
					t.Errorf("%s: groups by %s, a label of none of its metrics", e, l)
				}
			}
		}
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(path, rules.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules (the dashboard's PromQL): %v\n%s", err, out)
	}
}

// dashboardExprs returns the PromQL of a Grafana dashboard: its panels'
// targets (rows' panels included) and its query variables.
func dashboardExprs(t *testing.T, src []byte) []string {
	t.Helper()
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Type    string   `json:"type"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(src, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var out []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("panel %q: a target without expr", p.Title)
				}
				out = append(out, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		switch q := v.Query.(type) {
		case string:
			out = append(out, q)
		case map[string]any:
			s, _ := q["query"].(string)
			out = append(out, s)
		}
	}
	return out
}

// seriesLabels returns, for each series name in an exposition, the label
// names it has.
func seriesLabels(text string) map[string]map[string]bool {
	line := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s`)
	label := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	out := map[string]map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if out[m[1]] == nil {
			out[m[1]] = map[string]bool{}
		}
		for _, lm := range label.FindAllStringSubmatch(m[2], -1) {
			out[m[1]][lm[1]] = true
		}
	}
	return out
}
