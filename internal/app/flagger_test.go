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
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// flaggerPayload is CanaryWebhookPayload of fluxcd/flagger
// pkg/apis/flagger/v1beta1/canary.go (commit 15bd6ad555e6, 2026-07-21),
// field for field with its JSON tags.
type flaggerPayload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Phase     string            `json:"phase"`
	Checksum  string            `json:"checksum"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// callFlaggerWebhook calls a webhook as pkg/controller/webhook.go
// callWebhook does (same commit): the payload marshalled with
// encoding/json, POST with Content-Type: application/json and no other
// header; a status above 202 is a failure whose message is the body.
func callFlaggerWebhook(ctx context.Context, t *testing.T, url string, p flaggerPayload) (ok bool, status int, body string) {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode <= 202, resp.StatusCode, string(rb)
}

// TestFlaggerWebhooks runs the webhooks of examples/flagger/canary.yaml in
// the order Flagger calls them, with the payloads it sends, against a real
// daemon, for a ROLLBACK, a PROMOTE and a HOLD canary: pre-rollout creates
// the run, rollout fails its check only on ROLLBACK, rollback answers 200
// only on ROLLBACK, confirm-promotion only on PROMOTE, post-rollout
// finishes the run; the token comes from the metadata (Flagger sends no
// header) and is checked as for gRPC.
func TestFlaggerWebhooks(t *testing.T) {
	t.Parallel()
	tokens := writeFile(t, "tokens.yaml", `tokens:
  - name: flagger
    sha256: `+sha("tok-flagger")+`
    roles: [ingest, read, operate]
    services: ["checkout-api"]
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

	// The recipe's webhooks and their metadata.
	b, err := os.ReadFile("../../examples/flagger/canary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var canary struct {
		Kind     string `yaml:"kind"`
		Metadata struct{ Name, Namespace string }
		Spec     struct {
			Analysis struct {
				Webhooks []struct {
					Name, Type, URL string
					Metadata        map[string]string
				}
			}
		}
	}
	if err := yaml.Unmarshal(b, &canary); err != nil {
		t.Fatal(err)
	}
	hooks := map[string]map[string]string{}
	for _, w := range canary.Spec.Analysis.Webhooks {
		if !strings.HasSuffix(w.URL, "/flagger/"+w.Type) {
			t.Errorf("webhook %s (%s) calls %s", w.Name, w.Type, w.URL)
		}
		hooks[w.Type] = w.Metadata
	}
	if canary.Kind != "Canary" || len(hooks) != 5 || hooks["rollout"]["config"] != "checkout-api" {
		t.Fatalf("canary %s, hooks %v", canary.Kind, hooks)
	}
	url := func(hook string) string { return "http://" + httpAddr + "/flagger/" + hook }
	payload := func(hook, checksum, phase string) flaggerPayload {
		md := map[string]string{}
		for k, v := range hooks[hook] {
			md[k] = v
		}
		md["token"] = "tok-flagger"
		md["bake_time"] = "0s" // the test has no half hour to wait
		return flaggerPayload{Name: canary.Metadata.Name, Namespace: canary.Metadata.Namespace, Phase: phase, Checksum: checksum, Metadata: md}
	}

	for _, tc := range []struct {
		name    string
		sc      scenario
		batches int
		// whether Flagger proceeds at each hook
		rollout, rollback, promotion bool
		decision                     string
		phase                        string // post-rollout
		state                        canaryv1.RunState
	}{
		{"rollback", scenario{Latency: 1.5, Errors: 1, N: 2500}, 4, false, true, false, "ROLLBACK", "Failed", canaryv1.RunState_RUN_STATE_COMPLETED},
		{"promote", scenario{Latency: 1, Errors: 1, N: 2500}, 4, true, false, true, "PROMOTE", "Succeeded", canaryv1.RunState_RUN_STATE_COMPLETED},
		{"hold", scenario{Latency: 1, Errors: 1, N: 40}, 1, true, false, false, "HOLD", "Failed", canaryv1.RunState_RUN_STATE_ABORTED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checksum := "7c9f5b6d4-" + tc.name
			ok, code, body := callFlaggerWebhook(ctx, t, url("pre-rollout"), payload("pre-rollout", checksum, "Progressing"))
			if !ok {
				t.Fatalf("pre-rollout: %d %s", code, body)
			}
			var ans struct {
				RunID    string `json:"run_id"`
				Decision string `json:"decision"`
			}
			if err := json.Unmarshal([]byte(body), &ans); err != nil || ans.RunID == "" {
				t.Fatalf("pre-rollout answer %s: %v", body, err)
			}
			// A retry (Flagger's retries, another replica) finds the run.
			if _, _, again := callFlaggerWebhook(ctx, t, url("pre-rollout"), payload("pre-rollout", checksum, "Progressing")); !strings.Contains(again, ans.RunID) {
				t.Errorf("retried pre-rollout: %s, want run %s", again, ans.RunID)
			}
			var got canaryv1.GetRunResponse
			admin.call(ctx, "GET", "/v1/runs/"+ans.RunID, nil, &got)
			if r := got.GetRun(); r.GetRequestId() != "flagger/shop/checkout-api/"+checksum || r.GetCanaryLabels()["app"] != "checkout-api" ||
				r.GetBaselineLabels()["app"] != "checkout-api-primary" || r.GetAutoFinish().GetTimeoutDecision() != canaryv1.Decision_DECISION_ROLLBACK {
				t.Fatalf("run: %v", r)
			}
			rng := rand.New(rand.NewPCG(7, 8))
			for i := range tc.batches {
				var ack canaryv1.IngestResponse
				admin.call(ctx, "POST", "/v1/runs/"+ans.RunID+"/batches", makeBatch(rng, ans.RunID, fmt.Sprint(i), tc.sc), &ack)
			}
			for _, h := range []struct {
				hook string
				want bool
			}{{"rollout", tc.rollout}, {"rollback", tc.rollback}, {"confirm-promotion", tc.promotion}} {
				ok, code, body := callFlaggerWebhook(ctx, t, url(h.hook), payload(h.hook, checksum, "Progressing"))
				if ok != h.want || !strings.Contains(body, `"decision":"`+tc.decision+`"`) {
					t.Errorf("%s: proceed %v (HTTP %d %s), want %v with %s", h.hook, ok, code, body, h.want, tc.decision)
				}
			}
			if ok, code, body := callFlaggerWebhook(ctx, t, url("post-rollout"), payload("post-rollout", checksum, tc.phase)); !ok {
				t.Fatalf("post-rollout: %d %s", code, body)
			}
			admin.call(ctx, "GET", "/v1/runs/"+ans.RunID, nil, &got)
			if got.GetRun().GetState() != tc.state || "DECISION_"+tc.decision != got.GetRun().GetVerdict().GetDecision().String() {
				t.Errorf("after post-rollout: %v %v, want %v %s", got.GetRun().GetState(), got.GetRun().GetVerdict().GetDecision(), tc.state, tc.decision)
			}
		})
	}

	// Refusals halt Flagger (a status above 202): an unknown token, a
	// service out of the token's scope, a payload without a config.
	p := payload("rollout", "x", "Progressing")
	p.Metadata["token"] = "nope"
	if ok, code, _ := callFlaggerWebhook(ctx, t, url("rollout"), p); ok || code != http.StatusUnauthorized {
		t.Errorf("unknown token: %d", code)
	}
	p = payload("rollout", "x", "Progressing")
	p.Metadata["service"] = "payments-api"
	if ok, code, _ := callFlaggerWebhook(ctx, t, url("rollout"), p); ok || code != http.StatusForbidden {
		t.Errorf("out of scope: %d", code)
	}
	p = payload("rollout", "x", "Progressing")
	delete(p.Metadata, "config")
	if ok, code, body := callFlaggerWebhook(ctx, t, url("rollout"), p); ok || code != http.StatusBadRequest || !strings.Contains(body, "metadata.config") {
		t.Errorf("no config: %d %s", code, body)
	}
	if ok, code, _ := callFlaggerWebhook(ctx, t, url("event"), payload("rollout", "x", "Progressing")); ok || code != http.StatusNotFound {
		t.Errorf("unknown hook: %d", code)
	}
}
