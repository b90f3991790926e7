package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/canaryd/canaryd/server"
	"github.com/canaryd/canaryd/server/store/embedded"
)

// startServer serves a real canaryd service on an embedded store in a
// temporary directory, with clock now, and returns its address.
func startServer(t *testing.T, now time.Time) string {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "canaryd.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := server.New(server.Options{Store: st, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(svc.ServerOptions()...)
	svc.Register(gs)
	go gs.Serve(lis)
	t.Cleanup(func() {
		gs.Stop()
		svc.Close()
		st.Close()
	})
	return lis.Addr().String()
}

// TestBlockersAndAlarms drives `canaryctl policy`, `alarm` and `blockers`
// against a real service: allowed (exit 0) inside the windows; blocked
// (exit 30, with the reason) while the team's alarm fires and outside the
// windows; an override (exit 0) is recorded; resolved: allowed again.
func TestBlockersAndAlarms(t *testing.T) {
	t.Parallel()
	thu := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC) // Thu 10:00 in New York
	addr := startServer(t, thu)
	policy := `service: checkout
deploy_windows:
  time_zone: America/New_York
  allow: ["Mon-Thu 09:00-16:00"]
alarms:
  - name: team
    matchers: ['severity="page"', 'team="shop"']
`
	if code, out, errOut := ctl(t, policy, "policy", "put", "-", "--addr", addr); code != 0 || !strings.Contains(out, "checkout") {
		t.Fatalf("policy put: %d %q %q", code, out, errOut)
	}
	if code, out, _ := ctl(t, "", "policy", "get", "checkout", "--addr", addr); code != 0 || out != policy {
		t.Errorf("policy get: %d %q", code, out)
	}
	blockers := []string{"blockers", "--service", "checkout", "--stage", "prod", "--addr", addr}
	if code, out, errOut := ctl(t, "", blockers...); code != 0 || out != "allowed\n" {
		t.Fatalf("blockers: %d %q %q", code, out, errOut)
	}
	code, out, errOut := ctl(t, "", "alarm", "fire", "CartDown", "--label", "severity=page", "--label", "team=shop",
		"--label", "service=cart", "--summary", "cart 5xx", "--addr", addr)
	if code != 0 || !strings.HasPrefix(out, "alarm CartDown firing") {
		t.Fatalf("alarm fire: %d %q %q", code, out, errOut)
	}
	code, out, _ = ctl(t, "", blockers...)
	if code != exitBlocked || !strings.Contains(out, "blocked\n") || !strings.Contains(out, "CartDown") || !strings.Contains(out, "cart 5xx") {
		t.Errorf("blockers while the alarm fires: %d %q", code, out)
	}
	code, out, _ = ctl(t, "", append(blockers, "--override", "INC-1: roll forward")...)
	if code != 0 || !strings.Contains(out, "allowed by override") || !strings.Contains(out, "INC-1: roll forward") {
		t.Errorf("override: %d %q", code, out)
	}
	if code, out, _ := ctl(t, "", "alarm", "list", "--state", "firing", "--addr", addr); code != 0 || !strings.Contains(out, "CartDown") {
		t.Errorf("alarm list: %d %q", code, out)
	}
	if code, out, errOut := ctl(t, "", "alarm", "resolve", "CartDown", "--label", "severity=page", "--label", "team=shop",
		"--label", "service=cart", "--addr", addr); code != 0 || !strings.Contains(out, "resolved") {
		t.Fatalf("alarm resolve: %d %q %q", code, out, errOut)
	}
	if code, out, _ := ctl(t, "", blockers...); code != 0 {
		t.Errorf("blockers after the resolution: %d %q", code, out)
	}
	if code, _, _ := ctl(t, "", "blockers", "--service", "checkout", "--addr", addr); code != exitUsage {
		t.Errorf("blockers without --stage: exit %d, want 2", code)
	}
	if code, _, _ := ctl(t, "", "alarm", "list", "--state", "loud", "--addr", addr); code != exitUsage {
		t.Errorf("alarm list --state loud: exit %d, want 2", code)
	}
}

// TestBlockersOutsideWindows: outside the windows, exit 30 with the next
// window.
func TestBlockersOutsideWindows(t *testing.T) {
	t.Parallel()
	addr := startServer(t, time.Date(2026, 12, 4, 23, 0, 0, 0, time.UTC)) // Fri 18:00 in New York
	if code, _, errOut := ctl(t, "service: \"*\"\ndeploy_windows: {time_zone: America/New_York, allow: [\"Mon-Thu 09:00-16:00\"]}\n",
		"policy", "put", "-", "--addr", addr); code != 0 {
		t.Fatal(errOut)
	}
	code, out, _ := ctl(t, "", "blockers", "--service", "payments", "--stage", "prod", "--addr", addr)
	if code != exitBlocked || !strings.Contains(out, "outside the deploy windows") || !strings.Contains(out, "next window opens") {
		t.Errorf("blockers: %d %q", code, out)
	}
}
