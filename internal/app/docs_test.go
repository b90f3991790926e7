package app

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDocsCommands runs every shell block of the README and of the
// deployer recipes that talks to the HTTP API ($CANARYD), in order, with
// bash (-euo pipefail), curl and jq, against a real daemon: a command of
// the docs that fails fails the test. Without bash, curl or jq the test
// skips (and fails with CI=true; .ci/run installs them).
func TestDocsCommands(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := "SKIPPING TestDocsCommands: " + tool + " is not installed (apt-get install " + tool + ")"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	block := regexp.MustCompile("(?s)```sh\n(.*?)```")
	for _, doc := range []string{"README.md", "docs/argo-rollouts.md", "docs/flagger.md"} {
		t.Run(doc, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile("../../" + doc)
			if err != nil {
				t.Fatal(err)
			}
			var script []string
			for _, m := range block.FindAllStringSubmatch(string(b), -1) {
				if strings.Contains(m[1], "$CANARYD") {
					script = append(script, m[1])
				}
			}
			if len(script) == 0 {
				t.Fatalf("%s has no shell block that uses $CANARYD", doc)
			}
			_, httpAddr := startRun(t, Options{})
			ctx := ctxT(t)
			cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", strings.Join(script, "\n"))
			cmd.Dir = "../.."
			// The blocks set CANARYD themselves: point them at this daemon.
			cmd.Env = append(os.Environ(), "TOKEN=unused-without-auth-tokens", "PATH="+os.Getenv("PATH"))
			cmd.Args[len(cmd.Args)-1] = strings.ReplaceAll(cmd.Args[len(cmd.Args)-1], "http://localhost:7071", "http://"+httpAddr)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the shell blocks of %s failed: %v\n%s", doc, err, out)
			}
			t.Logf("%s:\n%s", doc, out)
		})
	}
}
