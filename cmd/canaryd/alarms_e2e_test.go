package main_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/canaryd/canaryd/internal/testalertmanager"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestAlarmsEndToEnd: a real Alertmanager (Debian's 0.25) delivers an
// alert posted to its API to a real canaryd's webhook, with a bearer
// token: the matching run is ROLLBACK after that one delivery (the reason
// names the alert, its summary and start), the deploy is blocked while it
// fires; the resolution is delivered, recorded with the run, and unblocks
// the deploy.
func TestAlarmsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	dir := t.TempDir()
	goBin := "go"
	canaryd, _ := e2eBuild(ctx, t, goBin, dir)
	tokens := filepath.Join(dir, "tokens.yaml")
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	if err := os.WriteFile(tokens, []byte("tokens:\n"+
		"  - {name: root, sha256: "+hash("root-token")+", roles: [admin], services: [\"*\"]}\n"+
		"  - {name: alertmanager, sha256: "+hash("am-token")+", roles: [ingest], services: [\"*\"]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := e2eStartWith(ctx, t, canaryd, filepath.Join(dir, "canaryd.db"), e2eSecurity{args: []string{"--auth-tokens", tokens}})
	am := testalertmanager.Start(t, testalertmanager.Options{WebhookURL: "http://" + d.httpAddr + "/v1/alertmanager", BearerToken: "am-token"})
	c, closeConn := dialCanary(t, d.grpcAddr)
	defer closeConn()
	root := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer root-token")

	cfg := "name: checkout\nalarms:\n  - matchers: ['severity=\"page\"', 'service=\"{{.Service}}\"']\n" +
		"metrics:\n  - {name: errors, category: stability, type: rate}\n"
	if _, err := c.PutConfig(root, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: cfg}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutDeployPolicy(root, &canaryv1.PutDeployPolicyRequest{Source: &canaryv1.PutDeployPolicyRequest_Yaml{
		Yaml: "service: checkout\nalarms:\n  - matchers: ['severity=\"page\"', 'team=\"shop\"']\n"}}); err != nil {
		t.Fatal(err)
	}
	cr, err := c.CreateRun(root, &canaryv1.CreateRunRequest{RequestId: "deploy-1", Service: "checkout", Stage: "onebox",
		Config: &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "checkout"}}})
	if err != nil {
		t.Fatal(err)
	}
	run := cr.GetRun().GetId()
	watch, err := c.WatchVerdict(root, &canaryv1.WatchVerdictRequest{RunId: run})
	if err != nil {
		t.Fatal(err)
	}
	first, err := watch.Recv()
	if err != nil || first.GetVerdict().GetDecision() != canaryv1.Decision_DECISION_HOLD {
		t.Fatalf("first verdict: %v, %v", first.GetVerdict(), err)
	}

	labels := map[string]string{"alertname": "CheckoutErrors", "severity": "page", "service": "checkout", "team": "shop"}
	started := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
	posted := time.Now()
	am.Post(t, testalertmanager.Alert{Labels: labels, StartsAt: started,
		Annotations: map[string]string{"summary": "checkout 5xx above 5%"}})
	var v *canaryv1.Verdict
	for {
		r, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if v = r.GetVerdict(); v.GetDecision() == canaryv1.Decision_DECISION_ROLLBACK {
			break
		}
	}
	t.Logf("ROLLBACK %v after the alert was posted to Alertmanager (group_wait 100ms)", time.Since(posted).Round(time.Millisecond))
	if deliveries := strings.Count(d.logs.String(), `"rpc":"AlertmanagerWebhook"`); deliveries != 1 {
		t.Errorf("%d webhook deliveries before the ROLLBACK, want 1", deliveries)
	}
	for _, want := range []string{"CheckoutErrors", "checkout 5xx above 5%", started.Format(time.RFC3339)} {
		if !strings.Contains(v.GetReason(), want) {
			t.Errorf("reason %q does not name %q", v.GetReason(), want)
		}
	}
	cd, err := c.CheckDeploy(root, &canaryv1.CheckDeployRequest{Service: "checkout", Stage: "prod"})
	if err != nil || cd.GetAllowed() || len(cd.GetAlarms()) != 1 {
		t.Errorf("CheckDeploy while the alert fires: %v, %v", cd, err)
	}

	// Resolved: Alertmanager delivers it (send_resolved), canaryd records
	// it with the run; the run stays ROLLBACK; the deploy is unblocked.
	am.Post(t, testalertmanager.Alert{Labels: labels, StartsAt: started, EndsAt: time.Now().Add(-time.Second)})
	deadline := time.Now().Add(30 * time.Second)
	for {
		la, err := c.ListAlarms(root, &canaryv1.ListAlarmsRequest{RunId: run})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(la.GetAlarms()); n == 2 && la.GetAlarms()[1].GetState() == canaryv1.AlarmState_ALARM_STATE_RESOLVED {
			if la.GetAlarms()[0].GetReportedBy() != "alertmanager" || la.GetAlarms()[0].GetSource() != "alertmanager" {
				t.Errorf("recorded: %v", la.GetAlarms()[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resolution was not recorded with the run: %v", la.GetAlarms())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if j, err := c.Judge(root, &canaryv1.JudgeRequest{RunId: run}); err != nil || j.GetVerdict().GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		t.Errorf("after the resolution: %v, %v", j.GetVerdict(), err)
	}
	if cd, err := c.CheckDeploy(root, &canaryv1.CheckDeployRequest{Service: "checkout", Stage: "prod"}); err != nil || !cd.GetAllowed() {
		t.Errorf("CheckDeploy after the resolution: %v, %v", cd, err)
	}
}
