package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func hashOf(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func TestParse(t *testing.T) {
	t.Parallel()
	src := `
tokens:
  - name: checkout-pipeline
    sha256: ` + hashOf("s3cret") + `
    roles: [ingest, read]
    services: ["checkout-*"]
  - name: deployer-mtls
    names: ["argo-rollouts.argo.svc", "spiffe://cluster/ns/argo"]
    roles: [read, operate]
    services: ["*"]
  - name: root
    sha256: ` + strings.ToUpper(hashOf("root")) + `
    roles: [admin]
    services: ["*"]
`
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(p.Grants()); got != 3 {
		t.Fatalf("%d grants, want 3", got)
	}
	g := p.token("s3cret")
	if g == nil || g.Name != "checkout-pipeline" {
		t.Fatalf("token s3cret: %+v", g)
	}
	for _, c := range []struct {
		r    Role
		want bool
	}{{RoleIngest, true}, {RoleRead, true}, {RoleOperate, false}, {RoleAdmin, false}} {
		if g.Has(c.r) != c.want {
			t.Errorf("checkout-pipeline has %v: %v, want %v", c.r, !c.want, c.want)
		}
	}
	for svc, want := range map[string]bool{"checkout-api": true, "checkout-": true, "payments-api": false, "checkout-a/b": false} {
		if g.AllowsService(svc) != want {
			t.Errorf("checkout-pipeline allows %q: %v, want %v", svc, !want, want)
		}
	}
	if p.token("s3cret ") != nil || p.token("") != nil || p.token(hashOf("s3cret")) != nil {
		t.Error("a token other than s3cret matched its entry")
	}
	if r := p.token("root"); r == nil || !r.Has(RoleOperate) || !r.AllowsService("any/thing") {
		t.Errorf("root (uppercase hex) should match, hold every role and allow every service: %+v", r)
	}
	if m := p.name("spiffe://cluster/ns/argo"); m == nil || m.Name != "deployer-mtls" || m.Has(RoleIngest) {
		t.Errorf("mTLS name: %+v", m)
	}
	if !p.HasNames() {
		t.Error("HasNames = false")
	}
}

// TestParseErrors: every mistake is an error at start that names the
// entry (by index and name) and what is wrong.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	h := hashOf("x")
	for _, c := range []struct {
		name, src string
		want      []string
	}{
		{"empty file", ``, []string{"empty file"}},
		{"no entries", `tokens: []`, []string{"no entries"}},
		{"unknown top-level field", "tokenz:\n  - name: a\n", []string{"tokenz"}},
		{"tokens twice", "tokens: []\ntokens: []\n", []string{"line 2: tokens is given twice"}},
		{"duplicate key in an entry", "tokens:\n  - name: ci\n    sha256: " + h + "\n    roles: [read]\n    roles: [admin]\n    services: ['*']\n",
			[]string{"tokens[0] (ci)", `"roles" already defined`}},
		{"unknown entry field", "tokens:\n  - name: ci\n    sha256: " + h + "\n    rolez: [read]\n    services: ['*']\n",
			[]string{"tokens[0] (ci)", `unknown field "rolez"`}},
		{"bad role", "tokens:\n  - name: ci\n    sha256: " + h + "\n    roles: [read, write]\n    services: ['*']\n",
			[]string{"tokens[0] (ci)", `unknown role "write"`}},
		{"no roles", "tokens:\n  - name: ci\n    sha256: " + h + "\n    services: ['*']\n",
			[]string{"tokens[0] (ci)", "roles is required"}},
		{"bad glob", "tokens:\n  - name: ci\n    sha256: " + h + "\n    roles: [read]\n    services: ['checkout-[']\n",
			[]string{"tokens[0] (ci)", `bad pattern "checkout-["`}},
		{"no services", "tokens:\n  - name: ci\n    sha256: " + h + "\n    roles: [read]\n",
			[]string{"tokens[0] (ci)", "services is required"}},
		{"bad hex", "tokens:\n  - name: ci\n    sha256: zz" + h[2:] + "\n    roles: [read]\n    services: ['*']\n",
			[]string{"tokens[0] (ci)", "64 hex digits"}},
		{"short hash", "tokens:\n  - name: ci\n    sha256: " + h[:40] + "\n    roles: [read]\n    services: ['*']\n",
			[]string{"tokens[0] (ci)", "64 hex digits"}},
		{"both sha256 and names", "tokens:\n  - name: ci\n    sha256: " + h + "\n    names: [a]\n    roles: [read]\n    services: ['*']\n",
			[]string{"tokens[0] (ci)", "both sha256 and names"}},
		{"neither sha256 nor names", "tokens:\n  - name: ok\n    sha256: " + h + "\n    roles: [read]\n    services: ['*']\n  - name: ci\n    roles: [read]\n    services: ['*']\n",
			[]string{"tokens[1] (ci)", "needs sha256"}},
		{"empty names", "tokens:\n  - name: ci\n    names: []\n    roles: [read]\n    services: ['*']\n",
			[]string{"tokens[0] (ci)", "names is empty"}},
		{"no name", "tokens:\n  - sha256: " + h + "\n    roles: [read]\n    services: ['*']\n",
			[]string{"tokens[0]", "name is required"}},
		{"duplicate name", "tokens:\n  - name: ci\n    sha256: " + h + "\n    roles: [read]\n    services: ['*']\n  - name: ci\n    names: [a]\n    roles: [read]\n    services: ['*']\n",
			[]string{"tokens[1] (ci)", "used by an earlier entry"}},
		{"duplicate hash", "tokens:\n  - name: a\n    sha256: " + h + "\n    roles: [read]\n    services: ['*']\n  - name: b\n    sha256: " + h + "\n    roles: [admin]\n    services: ['*']\n",
			[]string{"tokens[1] (b)", "same as entry a"}},
		{"duplicate mTLS name", "tokens:\n  - name: a\n    names: [x]\n    roles: [read]\n    services: ['*']\n  - name: b\n    names: [x]\n    roles: [admin]\n    services: ['*']\n",
			[]string{"tokens[1] (b)", `"x" is also granted by entry a`}},
		{"entry not a mapping", "tokens:\n  - just-a-string\n", []string{"tokens[0]", "want a mapping"}},
		{"wrong type", "tokens:\n  - name: ci\n    sha256: " + h + "\n    roles: read\n    services: ['*']\n",
			[]string{"tokens[0] (ci)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.src))
			if err == nil {
				t.Fatalf("no error for\n%s", c.src)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(file, []byte("tokens:\n  - name: ci\n    sha256: nothex\n    roles: [read]\n    services: ['*']\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "tokens[0] (ci)") {
		t.Errorf("Load of a bad file: %v, want an error naming the file and the entry", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestBearer(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc",
		"Bearer": "", "Bearer ": "", "Basic abc": "", "abc": "",
	} {
		got, ok := bearer(v)
		if got != want || ok != (want != "") {
			t.Errorf("bearer(%q) = %q, %v; want %q", v, got, ok, want)
		}
	}
}
