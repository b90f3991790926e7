package server

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

const checkoutPolicy = `service: checkout
deploy_windows:
  time_zone: America/New_York
  allow: ["Mon-Thu 09:00-16:00", "Fri 09:00-12:00"]
  deny_dates: ["2026-12-24"]
alarms:
  - matchers: ['severity="page"', 'service="{{.Service}}"']
  - name: team
    matchers: ['severity="page"', 'team="shop"']
`

// TestCheckDeploy: a deployment is blocked outside its policy's windows
// (with the next window, DST-correct) and while an alarm of the policy
// fires, the team's aggregate alarm included (an alarm of another of the
// team's services); allowed otherwise; an override lets it start and is
// recorded with who, why, when and what it overrode, and needs the
// operate role; services without a policy use the default one.
func TestCheckDeploy(t *testing.T) {
	t.Parallel()
	policy := authPolicy(t, "")
	e := newEnv(t, func(o *Options) { o.Auth = policy })
	root := withToken(ctxT(t), "tok-root")
	check := func(ctx any, svc, stage, override string) (*canaryv1.CheckDeployResponse, error) {
		c := root
		if ctx != nil {
			c = withToken(ctxT(t), ctx.(string))
		}
		return e.c.CheckDeploy(c, &canaryv1.CheckDeployRequest{Service: svc, Stage: stage, OverrideReason: override})
	}
	// No policy: allowed.
	if r, err := check(nil, "checkout", "prod", ""); err != nil || !r.GetAllowed() || r.GetPolicyService() != "" {
		t.Fatalf("without a policy: %v, %v", r, err)
	}
	if _, err := e.c.PutDeployPolicy(root, &canaryv1.PutDeployPolicyRequest{Source: &canaryv1.PutDeployPolicyRequest_Yaml{Yaml: checkoutPolicy}}); err != nil {
		t.Fatal(err)
	}
	// Thu 2026-12-03 10:00 EST: inside.
	e.clock.Set(time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC))
	if r, err := check(nil, "checkout", "prod", ""); err != nil || !r.GetAllowed() || r.GetPolicyService() != "checkout" {
		t.Fatalf("inside the window: %v, %v", r, err)
	}
	// Fri 2026-03-06 17:00 EST: outside; next is Mon 09:00 EDT (13:00Z).
	e.clock.Set(time.Date(2026, 3, 6, 22, 0, 0, 0, time.UTC))
	r, err := check(nil, "checkout", "prod", "")
	if err != nil || r.GetAllowed() || len(r.GetReasons()) != 1 || !strings.Contains(r.GetReasons()[0], "outside the deploy windows") ||
		!r.GetNextWindow().AsTime().Equal(time.Date(2026, 3, 9, 13, 0, 0, 0, time.UTC)) {
		t.Fatalf("outside: %v, %v", r, err)
	}
	// Back inside; the team's alarm on another service blocks checkout.
	e.clock.Set(time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC))
	e.reportAlarm(root, &canaryv1.AlarmEvent{Name: "CartDown", Summary: "cart 5xx", State: canaryv1.AlarmState_ALARM_STATE_FIRING,
		Labels: map[string]string{"severity": "page", "service": "cart", "team": "shop"}, Fingerprint: "cart1"})
	r, err = check(nil, "checkout", "prod", "")
	if err != nil || r.GetAllowed() || len(r.GetAlarms()) != 1 || !strings.Contains(r.GetReasons()[0], "CartDown") ||
		!strings.Contains(r.GetReasons()[0], "rule team") {
		t.Fatalf("with the team's alarm firing: %v, %v", r, err)
	}
	// An override needs operate.
	_, err = check("tok-read", "checkout-api", "prod", "hotfix")
	wantCode(t, err, codes.PermissionDenied, "")
	before := e.clock.Now()
	r, err = check(nil, "checkout", "prod", "INC-42: hotfix for the outage")
	if err != nil || !r.GetAllowed() || r.GetOverride().GetWho() != "root" || r.GetOverride().GetReason() != "INC-42: hotfix for the outage" ||
		!r.GetOverride().GetTime().AsTime().Equal(before) || len(r.GetOverride().GetBlockedReasons()) != 1 {
		t.Fatalf("override: %v, %v", r, err)
	}
	for result, want := range map[string]float64{"allowed": 2, "blocked": 2, "overridden": 1} {
		if got := testutil.ToFloat64(e.svc.metrics.deployChecks.WithLabelValues(result)); got != want {
			t.Errorf("canaryd_deploy_checks_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	ov, err := e.c.ListDeployOverrides(root, &canaryv1.ListDeployOverridesRequest{Service: "checkout"})
	if err != nil || len(ov.GetOverrides()) != 1 || ov.GetOverrides()[0].GetReason() != "INC-42: hotfix for the outage" {
		t.Fatalf("overrides: %v, %v", ov, err)
	}
	// Resolved: allowed again.
	e.reportAlarm(root, &canaryv1.AlarmEvent{Name: "CartDown", State: canaryv1.AlarmState_ALARM_STATE_RESOLVED,
		Labels: map[string]string{"severity": "page", "service": "cart", "team": "shop"}, Fingerprint: "cart1"})
	if r, err := check(nil, "checkout", "prod", ""); err != nil || !r.GetAllowed() {
		t.Fatalf("after the resolution: %v, %v", r, err)
	}
	// The default policy applies to services without one; a deny date.
	if _, err := e.c.PutDeployPolicy(root, &canaryv1.PutDeployPolicyRequest{Source: &canaryv1.PutDeployPolicyRequest_Policy{
		Policy: &canaryv1.DeployPolicy{Service: "*", DeployWindows: &canaryv1.DeployWindows{DenyDates: []string{"2026-12-03"}}}}}); err != nil {
		t.Fatal(err)
	}
	r, err = check(nil, "payments", "prod", "")
	if err != nil || r.GetAllowed() || r.GetPolicyService() != "*" || !strings.Contains(r.GetReasons()[0], "deny date") {
		t.Fatalf("default policy: %v, %v", r, err)
	}
	gp, err := e.c.GetDeployPolicy(root, &canaryv1.GetDeployPolicyRequest{Service: "payments"})
	if err != nil || gp.GetPolicy().GetPolicy().GetService() != "*" || gp.GetPolicy().GetUpdatedBy() != "root" {
		t.Errorf("GetDeployPolicy(payments): %v, %v", gp, err)
	}
}

// TestDeployPolicyValidation: a bad policy is INVALID_ARGUMENT naming the
// field, and stores nothing.
func TestDeployPolicyValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	for _, tc := range []struct{ yaml, field string }{
		{"service: s\ndeploy_windows: {time_zone: Nowhere/Land}\n", "yaml.deploy_windows.time_zone"},
		{"service: s\ndeploy_windows: {allow: [\"Mon 9-5\"]}\n", "yaml.deploy_windows.allow[0]"},
		{"service: s\ndeploy_windows: {deny_dates: [\"12/24/2026\"]}\n", "yaml.deploy_windows.deny_dates[0]"},
		{"service: s\nalarms: [{matchers: ['sev=\"page']}]\n", "yaml.alarms[0].matchers[0]"},
		{"deploy_windows: {}\n", "yaml.service"},
		{"service: s\nwindows: {}\n", "yaml.windows"},
	} {
		_, err := e.c.PutDeployPolicy(ctx, &canaryv1.PutDeployPolicyRequest{Source: &canaryv1.PutDeployPolicyRequest_Yaml{Yaml: tc.yaml}})
		wantCode(t, err, codes.InvalidArgument, tc.field)
	}
	if _, err := e.c.GetDeployPolicy(ctx, &canaryv1.GetDeployPolicyRequest{Service: "s"}); err == nil {
		t.Error("a rejected policy was stored")
	}
	_, err := e.c.CheckDeploy(ctx, &canaryv1.CheckDeployRequest{Service: "", Stage: "x"})
	wantCode(t, err, codes.InvalidArgument, "service")
}
