package main_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/canaryd/canaryd/internal/testcerts"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestEndToEndSecurity starts the real canaryd with TLS and a tokens file,
// and drives it with the real canaryctl over TLS with tokens: an admin
// puts the config, a pipeline token scoped to checkout-* creates a run and
// reads it; a wrong token, a service out of scope and a plaintext client
// fail with a clear message and a non-zero exit; the daemon writes an
// audit line for the run it created.
func TestEndToEndSecurity(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped with -short: it builds canaryd and canaryctl and runs them as processes")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("end-to-end test skipped: no go command in PATH to build the binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	dir := t.TempDir()
	canaryd, canaryctl := e2eBuild(ctx, t, goBin, dir)

	ca := testcerts.NewCA(t, "canaryd e2e CA")
	srv := ca.Server(t)
	hash := func(tok string) string {
		s := sha256.Sum256([]byte(tok))
		return hex.EncodeToString(s[:])
	}
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf(`tokens:
  - name: platform-admin
    sha256: %s
    roles: [admin]
    services: ["*"]
  - name: checkout-pipeline
    sha256: %s
    roles: [ingest, read]
    services: ["checkout-*"]
`, hash("admin-secret"), hash("pipeline-secret"))), 0o600); err != nil {
		t.Fatal(err)
	}
	d := e2eStartWith(ctx, t, canaryd, filepath.Join(dir, "canaryd.db"), e2eSecurity{
		args: []string{"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--auth-tokens", tokens},
		tls:  &tls.Config{RootCAs: ca.Pool},
	})
	ctl := &e2eCtl{t: t, bin: canaryctl, addr: d.grpcAddr}
	as := func(tok string, args ...string) []string {
		return append(args, "--tls-ca", ca.CertFile, "--token", tok)
	}

	ctl.ok(ctx, 0, as("admin-secret", "config", "put", filepath.Join(e2eExamples, "canary.yaml"))...)
	id := strings.TrimSpace(ctl.ok(ctx, 0, as("pipeline-secret", "run", "create", "--service", "checkout-api",
		"--stage", "onebox", "--config", "checkout-api")...))
	var resp canaryv1.GetRunResponse
	out := ctl.ok(ctx, 0, as("pipeline-secret", "run", "get", id, "-o", "json")...)
	if err := protojson.Unmarshal([]byte(out), &resp); err != nil || resp.GetRun().GetId() != id || resp.GetRun().GetService() != "checkout-api" {
		t.Errorf("run get: %v (%v), want run %s of checkout-api\n%s", resp.GetRun(), err, id, out)
	}

	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"wrong token", as("not-the-secret", "run", "get", id),
			[]string{"UNAUTHENTICATED: unknown bearer token", "--token or CANARY_TOKEN"}},
		{"no token", append([]string{"run", "get", id}, "--tls-ca", ca.CertFile),
			[]string{"UNAUTHENTICATED: missing bearer token"}},
		{"service out of scope", as("pipeline-secret", "run", "create", "--service", "payments-api", "--stage", "onebox", "--config", "checkout-api"),
			[]string{"PERMISSION_DENIED: token checkout-pipeline is not allowed service payments-api"}},
		{"role missing", as("pipeline-secret", "run", "abort", id),
			[]string{"PERMISSION_DENIED: token checkout-pipeline lacks role operate"}},
		{"plaintext", []string{"run", "get", id, "--token", "pipeline-secret", "--timeout", "5s"},
			[]string{"UNAVAILABLE"}},
	} {
		stdout, stderr, code := ctl.run(ctx, nil, c.args...)
		if code == 0 {
			t.Errorf("%s: exit 0, want non-zero (stdout %q)", c.name, stdout)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr %q lacks %q", c.name, stderr, w)
			}
		}
	}

	// The audit log names who created the run.
	found := false
	for _, line := range strings.Split(d.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["component"] == "audit" && rec["rpc"] == "CreateRun" &&
			rec["who"] == "checkout-pipeline" && rec["run"] == id && rec["code"] == "OK" {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit line for the creation of run %s by checkout-pipeline:\n%s", id, d.logs.String())
	}
}
