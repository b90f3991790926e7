package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// This file drives canaryd exactly as Argo Rollouts' web metric provider
// does, following argoproj/argo-rollouts at commit 9f8d111d8f8e (2026-08-17):
//   - utils/template/template.go ResolveQuotedArgs: the metric, as JSON, has
//     every {{ args.NAME }} replaced by the argument's value escaped as in a
//     Go string literal (strconv.Quote without its quotes); an unknown tag
//     is an error;
//   - metricproviders/webmetric/webmetric.go Run and parseResponse: method
//     (GET unless set), url, jsonBody marshalled as the body with
//     Content-Type: application/json, headers set with Header.Set; an
//     answer outside 2xx is a measurement Error; the body parsed as JSON,
//     the jsonPath's first result is `result` (a body that is not JSON is
//     the result as a string);
//   - utils/evaluate/evaluate.go EvaluateResult: successCondition and
//     failureCondition are expr-lang expressions over `result` (evaluated
//     here with the same library, github.com/expr-lang/expr); failure wins,
//     neither true is Inconclusive.
// The jsonPath of the recipe is a plain field path, which k8s.io/client-go's
// jsonpath (used by Argo) evaluates as walking the fields; argoJSONPath does
// that and refuses anything else, so that a template using more fails here.

// argoMetric is the part of an AnalysisTemplate metric the web provider
// reads.
type argoMetric struct {
	Name             string `json:"name"`
	SuccessCondition string `json:"successCondition"`
	FailureCondition string `json:"failureCondition"`
	Provider         struct {
		Web *struct {
			Method         string                        `json:"method"`
			URL            string                        `json:"url"`
			TimeoutSeconds int                           `json:"timeoutSeconds"`
			Headers        []struct{ Key, Value string } `json:"headers"`
			Body           string                        `json:"body"`
			JSONBody       json.RawMessage               `json:"jsonBody"`
			JSONPath       string                        `json:"jsonPath"`
		} `json:"web"`
	} `json:"provider"`
}

// argoTemplate reads the metric of examples/argo-rollouts/analysistemplate.yaml
// with its arguments resolved as Argo does (defaults, then args).
func argoTemplate(t *testing.T, args map[string]string) argoMetric {
	t.Helper()
	b, err := os.ReadFile("../../examples/argo-rollouts/analysistemplate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Args []struct {
				Name  string  `yaml:"name"`
				Value *string `yaml:"value"`
			} `yaml:"args"`
			Metrics []map[string]any `yaml:"metrics"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &tmpl); err != nil {
		t.Fatal(err)
	}
	if tmpl.Kind != "AnalysisTemplate" || len(tmpl.Spec.Metrics) != 1 {
		t.Fatalf("kind %s, %d metrics", tmpl.Kind, len(tmpl.Spec.Metrics))
	}
	values := map[string]string{}
	for _, a := range tmpl.Spec.Args {
		if a.Value != nil {
			values["args."+a.Name] = *a.Value
		}
	}
	for k, v := range args {
		values["args."+k] = v
	}
	mj, err := json.Marshal(tmpl.Spec.Metrics[0])
	if err != nil {
		t.Fatal(err)
	}
	var unresolved []string
	resolved := regexp.MustCompile(`\{\{(.*?)\}\}`).ReplaceAllStringFunc(string(mj), func(tag string) string {
		name := strings.TrimSpace(tag[2 : len(tag)-2])
		v, ok := values[name]
		if !ok {
			unresolved = append(unresolved, name)
			return ""
		}
		q := strconv.Quote(v)
		return q[1 : len(q)-1]
	})
	if len(unresolved) > 0 {
		t.Fatalf("failed to resolve %v", unresolved)
	}
	var m argoMetric
	if err := json.Unmarshal([]byte(resolved), &m); err != nil {
		t.Fatal(err)
	}
	if m.Provider.Web == nil {
		t.Fatal("the metric has no web provider")
	}
	return m
}

// argoPhase is an Argo measurement's phase.
type argoPhase string

const (
	argoSuccessful   argoPhase = "Successful"
	argoFailed       argoPhase = "Failed"
	argoInconclusive argoPhase = "Inconclusive"
	argoError        argoPhase = "Error"
)

// measure takes one measurement of m as the web provider does.
func (m argoMetric) measure(ctx context.Context, t *testing.T) (argoPhase, string) {
	t.Helper()
	w := m.Provider.Web
	method := w.Method
	if method == "" {
		method = "GET"
	}
	var body io.Reader
	switch {
	case w.Body != "" && len(w.JSONBody) > 0:
		return argoError, "use either Body or JSONBody"
	case (w.Body != "" || len(w.JSONBody) > 0) && method == "GET":
		return argoError, "Body/JSONBody can only be used with POST or PUT"
	case w.Body != "":
		body = strings.NewReader(w.Body)
	case len(w.JSONBody) > 0:
		body = bytes.NewReader(w.JSONBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, w.URL, body)
	if err != nil {
		return argoError, err.Error()
	}
	req.Header = make(http.Header)
	for _, h := range w.Headers {
		req.Header.Set(h.Key, h.Value)
	}
	if len(w.JSONBody) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	timeout := 10 * time.Second
	if w.TimeoutSeconds > 0 {
		timeout = time.Duration(w.TimeoutSeconds) * time.Second
	}
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		return argoError, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return argoError, err.Error()
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return argoError, fmt.Sprintf("received non 2xx response code: %v: %s", resp.StatusCode, b)
	}
	var data any
	var result any
	if json.Unmarshal(b, &data) != nil {
		result = string(b)
	} else if result, err = argoJSONPath(data, w.JSONPath); err != nil {
		return argoError, err.Error()
	}
	vb, _ := json.Marshal(result)
	return m.evaluate(t, result), string(vb)
}

// argoJSONPath evaluates a jsonPath of the form {$.a.b.c} (or {$}) and
// returns its first result.
func argoJSONPath(data any, path string) (any, error) {
	if path == "" {
		path = "{$}"
	}
	if !regexp.MustCompile(`^\{\$(\.[A-Za-z_][A-Za-z0-9_]*)*\}$`).MatchString(path) {
		return nil, fmt.Errorf("jsonPath %q: only {$.field.field} paths are replicated in this test", path)
	}
	inner := strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(path, "{"), "}"), "$")
	for _, f := range strings.Split(strings.TrimPrefix(inner, "."), ".") {
		if f == "" {
			break
		}
		obj, ok := data.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("Could not find JSONPath in body: %s is not found", f)
		}
		if data, ok = obj[f]; !ok {
			return nil, fmt.Errorf("Could not find JSONPath in body: %s is not found", f)
		}
	}
	return data, nil
}

// evaluate is Argo's EvaluateResult.
func (m argoMetric) evaluate(t *testing.T, result any) argoPhase {
	t.Helper()
	cond := func(c string) bool {
		out, err := expr.Eval(c, map[string]any{"result": result})
		if err != nil {
			t.Fatalf("condition %q: %v", c, err)
		}
		b, ok := out.(bool)
		if !ok {
			t.Fatalf("condition %q: expected bool, but got %T", c, out)
		}
		return b
	}
	var success, fail bool
	if m.SuccessCondition != "" {
		success = cond(m.SuccessCondition)
	}
	if m.FailureCondition != "" {
		fail = cond(m.FailureCondition)
	}
	switch {
	case m.SuccessCondition == "" && m.FailureCondition == "":
		return argoSuccessful
	case m.SuccessCondition != "" && m.FailureCondition == "":
		fail = !success
	case m.SuccessCondition == "" && m.FailureCondition != "":
		success = !fail
	}
	switch {
	case fail:
		return argoFailed
	case !success:
		return argoInconclusive
	}
	return argoSuccessful
}

// TestArgoRolloutsWebMetric runs the recipe's AnalysisTemplate against a
// real daemon through its HTTP API, for a ROLLBACK (Failed), a PROMOTE
// (Successful) and a HOLD (Inconclusive: measuring goes on) run: the first
// measurement creates the run, later ones find it (the deployer's ingest
// finds it the same way), and the run finishes itself. It also checks the
// Rollout of the recipe.
func TestArgoRolloutsWebMetric(t *testing.T) {
	t.Parallel()
	tokens := writeFile(t, "tokens.yaml", `tokens:
  - name: argo-rollouts
    sha256: `+sha("tok-argo")+`
    roles: [ingest, read]
    services: ["checkout-*"]
  - name: admin
    sha256: `+sha("tok-admin")+`
    roles: [admin]
    services: ["*"]
`)
	_, httpAddr := startRun(t, Options{AuthTokens: tokens})
	ctx := ctxT(t)
	admin := httpAPI{t: t, base: "http://" + httpAddr, token: "tok-admin"}
	var put canaryv1.PutConfigResponse
	admin.call(ctx, "POST", "/v1/configs", &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("checkout-api")}}, &put)

	for _, tc := range []struct {
		name     string
		bake     string
		sc       scenario
		batches  int
		want     argoPhase
		decision string
	}{
		{"rollback", "1800s", scenario{Latency: 1.5, Errors: 1, N: 2500}, 4, argoFailed, `"DECISION_ROLLBACK"`},
		{"promote", "0s", scenario{Latency: 1, Errors: 1, N: 2500}, 4, argoSuccessful, `"DECISION_PROMOTE"`},
		{"hold", "1800s", scenario{Latency: 1, Errors: 1, N: 40}, 1, argoInconclusive, `"DECISION_HOLD"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := argoTemplate(t, map[string]string{
				"namespace": "shop", "rollout": "checkout-api", "revision": tc.name,
				"stable-hash": "6d4f8c7b9", "canary-hash": "5b7c9d8f6",
				"service": "checkout-api", "config": "checkout-api",
				"bake-time": tc.bake, "canaryd-url": "http://" + httpAddr, "canaryd-token": "tok-argo",
			})
			// The first measurement creates the run: no data yet, HOLD.
			if phase, v := m.measure(ctx, t); phase != argoInconclusive || v != `"DECISION_HOLD"` {
				t.Fatalf("first measurement: %s %s", phase, v)
			}
			// The deployer's pipeline finds the run with the same request
			// and ingests the cohorts' data.
			var found canaryv1.CreateRunResponse
			if err := protojson.Unmarshal(m.Provider.Web.JSONBody, &canaryv1.CreateRunRequest{}); err != nil {
				t.Fatalf("the template's jsonBody is not a CreateRunRequest: %v", err)
			}
			pipe := httpAPI{t: t, base: admin.base, token: "tok-argo"}
			pipe.call(ctx, "POST", "/v1/runs", []byte(m.Provider.Web.JSONBody), &found)
			run := found.GetRun()
			if run.GetRequestId() != "argo/shop/checkout-api/"+tc.name || run.GetCanaryLabels()["rollouts-pod-template-hash"] != "5b7c9d8f6" ||
				!run.GetAutoFinish().GetOnDecision() {
				t.Fatalf("run as created by the template: %v", run)
			}
			rng := rand.New(rand.NewPCG(5, 6))
			for i := range tc.batches {
				var ack canaryv1.IngestResponse
				pipe.call(ctx, "POST", "/v1/runs/"+run.GetId()+"/batches", makeBatch(rng, run.GetId(), fmt.Sprint(i), tc.sc), &ack)
			}
			for range 2 { // the verdict, then again once the run has finished
				phase, v := m.measure(ctx, t)
				if phase != tc.want || v != tc.decision {
					t.Fatalf("measurement: %s %s, want %s %s", phase, v, tc.want, tc.decision)
				}
			}
			var got canaryv1.GetRunResponse
			pipe.call(ctx, "GET", "/v1/runs/"+run.GetId(), nil, &got)
			wantState := canaryv1.RunState_RUN_STATE_COMPLETED
			if tc.want == argoInconclusive {
				wantState = canaryv1.RunState_RUN_STATE_RUNNING
			}
			if got.GetRun().GetState() != wantState {
				t.Errorf("run state %v, want %v", got.GetRun().GetState(), wantState)
			}
		})
	}

	// A service out of the token's scope: 403, a measurement Error.
	t.Run("out-of-scope", func(t *testing.T) {
		m := argoTemplate(t, map[string]string{
			"namespace": "shop", "rollout": "checkout-api", "revision": "x", "stable-hash": "a", "canary-hash": "b",
			"service": "payments-api", "config": "checkout-api", "canaryd-url": "http://" + httpAddr, "canaryd-token": "tok-argo",
		})
		if phase, msg := m.measure(ctx, t); phase != argoError || !strings.Contains(msg, "403") {
			t.Errorf("out of scope: %s %s", phase, msg)
		}
	})

	// The Rollout uses the template, with setWeight steps and the cohort
	// labels from rollouts-pod-template-hash.
	b, err := os.ReadFile("../../examples/argo-rollouts/rollout.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ro struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Strategy struct {
				Canary struct {
					Analysis struct {
						Templates []struct {
							TemplateName string `yaml:"templateName"`
						} `yaml:"templates"`
						Args []map[string]any `yaml:"args"`
					} `yaml:"analysis"`
					Steps []map[string]any `yaml:"steps"`
				} `yaml:"canary"`
			} `yaml:"strategy"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &ro); err != nil {
		t.Fatal(err)
	}
	c := ro.Spec.Strategy.Canary
	if ro.Kind != "Rollout" || len(c.Analysis.Templates) != 1 || c.Analysis.Templates[0].TemplateName != "canaryd" {
		t.Fatalf("rollout: %+v", ro)
	}
	var weights, analyses int
	for _, s := range c.Steps {
		if _, ok := s["setWeight"]; ok {
			weights++
		}
		if _, ok := s["analysis"]; ok {
			analyses++
		}
	}
	if weights < 3 || analyses != 1 {
		t.Errorf("steps: %d setWeight, %d analysis", weights, analyses)
	}
	hashes := 0
	for _, a := range c.Analysis.Args {
		if vf, ok := a["valueFrom"].(map[string]any); ok && vf["podTemplateHashValue"] != nil {
			hashes++
		}
	}
	if hashes != 2 {
		t.Errorf("%d args from podTemplateHashValue, want 2 (Stable and Latest)", hashes)
	}
}
