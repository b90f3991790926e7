package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/canaryd/canaryd/internal/testbrowser"
	"github.com/canaryd/canaryd/internal/testlog"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// The report pages served by the real process (Run): a ROLLBACK, a
// PROMOTE and a HOLD run, made through the gRPC API and judged by the real
// judge, loaded in headless Chromium behind the API's auth.

// pagesTokens: root may do everything; reader may read the checkout-*
// services; pipeline may only ingest.
const pagesTokens = `tokens:
  - name: root
    sha256: %s
    roles: [admin]
    services: ["*"]
  - name: reader
    sha256: %s
    roles: [read]
    services: ["checkout-*"]
  - name: pipeline
    sha256: %s
    roles: [ingest]
    services: ["*"]
`

// pagesRuns are the runs of the pages' tests, by name.
type pagesRuns map[string]string

// makePagesRuns creates, feeds, judges (twice or more each, so that every
// trajectory has two points or more) and finishes the runs.
func makePagesRuns(ctx context.Context, t *testing.T, c canaryv1.CanaryServiceClient) pagesRuns {
	t.Helper()
	rng := rand.New(rand.NewPCG(14, 1))
	runs := pagesRuns{}
	create := func(name, service, stage string, bake time.Duration) string {
		resp, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{
			RequestId: name, Service: service, Stage: stage,
			Config:   &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig(service)},
			BakeTime: durationpb.New(bake),
		})
		if err != nil {
			t.Fatalf("create run %s: %v", name, err)
		}
		runs[name] = resp.GetRun().GetId()
		return runs[name]
	}
	// The rollback run's samples name their hosts, each batch spread
	// over them: web-1, web-2 and web-3 in the baseline, canary-a and
	// canary-b in the canary.
	hosts := map[canaryv1.Cohort][]string{
		canaryv1.Cohort_COHORT_BASELINE: {"web-1", "web-2", "web-3"},
		canaryv1.Cohort_COHORT_CANARY:   {"canary-a", "canary-b"},
	}
	spread := func(b *canaryv1.Batch) {
		var cols []*canaryv1.MetricColumn
		for _, col := range b.GetColumns() {
			hs := hosts[col.GetCohort()]
			for k, h := range hs {
				vs := col.GetValues()
				cols = append(cols, &canaryv1.MetricColumn{Metric: col.GetMetric(), Cohort: col.GetCohort(), Instance: h,
					Values: vs[k*len(vs)/len(hs) : (k+1)*len(vs)/len(hs)]})
			}
		}
		b.Columns = cols
		for k, smp := range b.GetSamples() {
			hs := hosts[smp.GetCohort()]
			smp.Instance = hs[k%len(hs)]
		}
	}
	feed := func(id string, scs ...scenario) *canaryv1.Verdict {
		var v *canaryv1.Verdict
		for i, sc := range scs {
			b := makeBatch(rng, id, fmt.Sprintf("b%d", i), sc)
			if id == runs["rollback"] {
				spread(b)
			}
			if _, err := c.Ingest(ctx, &canaryv1.IngestRequest{Batch: b}); err != nil {
				t.Fatalf("ingest: %v", err)
			}
			resp, err := c.Judge(ctx, &canaryv1.JudgeRequest{RunId: id})
			if err != nil {
				t.Fatalf("judge: %v", err)
			}
			v = resp.GetVerdict()
		}
		return v
	}
	few, slow, good := scenario{Latency: 1, Errors: 1, N: 40}, scenario{Latency: 1.6, Errors: 1, N: 500}, scenario{Latency: 1, Errors: 1, N: 2500}

	rb := create("rollback", "checkout-api", "wave-1", time.Hour)
	if v := feed(rb, few, slow, slow, slow, slow); v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		t.Fatalf("rollback run judged %v", v.GetDecision())
	}
	if _, err := c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: rb, Reason: "latency regression"}); err != nil {
		t.Fatal(err)
	}
	pr := create("promote", "checkout-web", "wave-1", 0)
	if v := feed(pr, few, good, good, good, good); v.GetDecision() != canaryv1.Decision_DECISION_PROMOTE {
		t.Fatalf("promote run judged %v", v.GetDecision())
	}
	if _, err := c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: pr, Reason: "baked"}); err != nil {
		t.Fatal(err)
	}
	hd := create("hold", "checkout-api", "wave-2", time.Hour)
	if v := feed(hd, few, scenario{Latency: 1, Errors: 1, N: 100}); v.GetDecision() != canaryv1.Decision_DECISION_HOLD {
		t.Fatalf("hold run judged %v", v.GetDecision())
	}
	pay := create("payments", "payments", "wave-1", time.Hour)
	feed(pay, few, few)
	return runs
}

// startPages serves Run with the tokens of pagesTokens and makes the runs.
func startPages(t *testing.T) (base string, runs pagesRuns) {
	t.Helper()
	tokens := writeFile(t, "tokens.yaml", fmt.Sprintf(pagesTokens, sha("tok-root"), sha("tok-reader"), sha("tok-pipeline")))
	var logs testlog.Buffer
	grpcAddr, httpAddr := startRun(t, Options{AuthTokens: tokens, Logger: logs.Logger()})
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer tok-root")
	return "http://" + httpAddr, makePagesRuns(ctx, t, canaryv1.NewCanaryServiceClient(conn))
}

// get fetches a page with an Authorization header (none if auth is "").
func get(t *testing.T, url, auth string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func basic(tok string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("anyone:"+tok))
}

// TestPagesAuth: the pages need a token with the role read (401 without
// one, with the challenge a browser answers; 403 without the role), and
// show only the services of the caller's scope.
func TestPagesAuth(t *testing.T) {
	t.Parallel()
	base, runs := startPages(t)
	for _, tt := range []struct {
		name, path, auth string
		code             int
	}{
		{"no token: history", "/", "", http.StatusUnauthorized},
		{"no token: report", "/runs/" + runs["rollback"], "", http.StatusUnauthorized},
		{"unknown token", "/", "Bearer nope", http.StatusUnauthorized},
		{"malformed header", "/", "Token tok-root", http.StatusUnauthorized},
		{"no read role", "/runs/" + runs["rollback"], "Bearer tok-pipeline", http.StatusForbidden},
		{"no read role: history", "/", "Bearer tok-pipeline", http.StatusForbidden},
		{"out of scope: report", "/runs/" + runs["payments"], "Bearer tok-reader", http.StatusForbidden},
		{"out of scope: history filter", "/?service=payments", "Bearer tok-reader", http.StatusForbidden},
		{"in scope", "/runs/" + runs["rollback"], "Bearer tok-reader", http.StatusOK},
		{"in scope, Basic", "/runs/" + runs["promote"], basic("tok-reader"), http.StatusOK},
		{"Basic, wrong token", "/", basic("tok-nope"), http.StatusUnauthorized},
		{"root: other service", "/runs/" + runs["payments"], "Bearer tok-root", http.StatusOK},
		{"unknown run", "/runs/nope", "Bearer tok-root", http.StatusNotFound},
		{"token in the URL is not read", "/?token=tok-root", "", http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := get(t, base+tt.path, tt.auth)
			if code != tt.code {
				t.Fatalf("GET %s: %d %q, want %d", tt.path, code, body, tt.code)
			}
			if code == http.StatusUnauthorized && !strings.HasPrefix(strings.Join(h.Values("WWW-Authenticate"), ", "), `Basic realm="canaryd"`) {
				t.Errorf("401 without a Basic challenge: %q", h.Values("WWW-Authenticate"))
			}
		})
	}
	// The reader's history lists the checkout runs, not the payments one.
	_, _, body := get(t, base+"/", "Bearer tok-reader")
	for _, name := range []string{"rollback", "promote", "hold"} {
		if !strings.Contains(body, `href="/runs/`+runs[name]+`"`) {
			t.Errorf("the reader's history has no link to the %s run", name)
		}
	}
	if strings.Contains(body, runs["payments"]) {
		t.Errorf("the reader's history shows the payments run, out of its scope")
	}
	if _, _, body := get(t, base+"/", "Bearer tok-root"); !strings.Contains(body, runs["payments"]) {
		t.Errorf("root's history does not show the payments run")
	}
}

// TestPagesInBrowser loads the reports of the three runs and the history
// from the real process in headless Chromium at 1280 and 390 px: the
// decision, a chart per metric, the forest plot, the timeline (two
// judgements or more), no console error, no request outside the origin.
func TestPagesInBrowser(t *testing.T) {
	t.Parallel()
	base, runs := startPages(t)
	b := testbrowser.Start(t)
	auth := map[string]string{"Authorization": "Bearer tok-root"}
	views := map[string]testbrowser.Viewport{
		"1280": {Width: 1280, Height: 900, Headers: auth},
		"390":  {Width: 390, Height: 844, Mobile: true, Headers: auth},
	}
	clean := func(t *testing.T, p *testbrowser.Page) {
		t.Helper()
		if errs := p.Problems(); len(errs) > 0 {
			t.Errorf("console errors: %q", errs)
		}
		if failed := p.FailedRequests(); len(failed) > 0 {
			t.Errorf("failed requests: %q", failed)
		}
		reqs := p.Requests()
		if len(reqs) == 0 {
			t.Error("no request recorded, not even the page's own")
		}
		for _, u := range reqs {
			if !strings.HasPrefix(u, base+"/") {
				t.Errorf("a request outside the origin %s: %s", base, u)
			}
		}
		w := testbrowser.Eval[[]int](t, p, `[document.documentElement.scrollWidth, window.innerWidth]`)
		if w[0] > w[1] {
			t.Errorf("the page is %d px wide in a %d px window", w[0], w[1])
		}
	}
	for _, name := range []string{"rollback", "promote", "hold"} {
		id := runs[name]
		// The JSON of the same report: its trajectory and metrics.
		_, _, js := get(t, base+"/runs/"+id+"?format=json", "Bearer tok-root")
		var rep struct {
			Trajectory []json.RawMessage `json:"trajectory"`
			Metrics    []json.RawMessage `json:"metrics"`
		}
		if err := json.Unmarshal([]byte(js), &rep); err != nil {
			t.Fatalf("report JSON of %s: %v", name, err)
		}
		if len(rep.Trajectory) < 2 {
			t.Errorf("%s: %d trajectory points, want the judgements' (2 or more)", name, len(rep.Trajectory))
		}
		for vname, vp := range views {
			t.Run(name+"/"+vname, func(t *testing.T) {
				p := b.Open(t, base+"/runs/"+id, vp)
				clean(t, p)
				if got := testbrowser.Eval[string](t, p, `document.getElementById("decision").textContent`); got != strings.ToUpper(name) {
					t.Errorf("decision %q, want %q", got, strings.ToUpper(name))
				}
				if n := testbrowser.Eval[int](t, p, `document.querySelectorAll("section.metric").length`); n != len(rep.Metrics) || n < 3 {
					t.Errorf("%d metric sections, want %d", n, len(rep.Metrics))
				}
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
				if name == "rollback" {
					// The hosts by name, in the latency instances chart.
					labels := testbrowser.Eval[string](t, p, `document.querySelector('section[data-metric="latency_ms"] svg[data-chart="instances"]').textContent`)
					for _, h := range []string{"web-1", "web-2", "web-3", "canary-a", "canary-b"} {
						if !strings.Contains(labels, h) {
							t.Errorf("the latency instances chart does not name %s: %q", h, labels)
						}
					}
				}
				// Rollback and promote went through HOLD first.
				want := map[string]int{"rollback": 2, "promote": 2, "hold": 1}[name]
				if n := testbrowser.Eval[int](t, p, `document.querySelectorAll('svg[data-chart="timeline"] rect.seg').length`); n < want {
					t.Errorf("%d decision segments on the timeline, want %d or more", n, want)
				}
			})
		}
	}
	for vname, vp := range views {
		t.Run("history/"+vname, func(t *testing.T) {
			p := b.Open(t, base+"/", vp)
			clean(t, p)
			if n := testbrowser.Eval[int](t, p, `document.querySelectorAll("#verdicts tbody tr").length`); n != 2 {
				t.Errorf("%d final verdicts listed, want 2", n)
			}
			if got := testbrowser.Eval[string](t, p, fmt.Sprintf(`document.querySelector('#running tr[data-run=%q] .badge').textContent`, runs["hold"])); got != "HOLD" {
				t.Errorf("the hold run is listed as %q, want HOLD", got)
			}
			// Its links open the reports, with the same credentials.
			testbrowser.Eval[int](t, p, fmt.Sprintf(`(document.querySelector('#verdicts a[href="/runs/%s"]').click(), 0)`, runs["rollback"]))
			p.WaitFor(t, `location.pathname === "/runs/`+runs["rollback"]+`" && document.getElementById("decision")`, 10*time.Second)
			if got := testbrowser.Eval[string](t, p, `document.getElementById("decision").textContent`); got != "ROLLBACK" {
				t.Errorf("the history's link opened a report of %q, want ROLLBACK", got)
			}
			clean(t, p)
		})
	}
	// A scoped reader's browser sees the checkout runs only.
	p := b.Open(t, base+"/", testbrowser.Viewport{Width: 1280, Height: 900, Headers: map[string]string{"Authorization": "Bearer tok-reader"}})
	clean(t, p)
	if n := testbrowser.Eval[int](t, p, fmt.Sprintf(`document.querySelectorAll('tr[data-run=%q]').length`, runs["payments"])); n != 0 {
		t.Errorf("the reader's history lists the payments run")
	}
}
