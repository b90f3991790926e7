package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/canaryd/canaryd/internal/testproc"
)

// TestPipelineRecipes runs the recipes of docs/pipelines.md against the
// real canaryd with the built canaryctl: the shell recipe
// (examples/pipelines/canary-stage.sh) on the rollback, promote and hold
// data sets; the canaryctl commands of the GitHub Actions workflow
// (examples/github-actions/canary.yml), which runs that script; and the
// Argo Rollouts job (examples/pipelines/argo-job.yaml), its container's
// command and args run as they are, without a shell. The documentation
// shows the three files verbatim.
func TestPipelineRecipes(t *testing.T) {
	if testing.Short() {
		t.Skip("pipeline test skipped with -short: it builds canaryd and canaryctl and runs them as processes")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("pipeline test skipped: no go command in PATH to build the binaries")
	}
	bash := testproc.LookPath(t, "bash", "bash", "the shell recipe of docs/pipelines.md")
	// Five runs of the script and two jobs, each several processes: twice
	// the budget of one end-to-end test (a loaded machine under -race
	// needed more than one).
	ctx, cancel := context.WithTimeout(context.Background(), 2*e2eTimeout)
	defer cancel()

	dir := t.TempDir()
	canaryd, canaryctl := e2eBuild(ctx, t, goBin, dir)
	// The Argo job's run starts now: it is fed the examples moved to now,
	// whose later samples the clock skew lets in.
	d := e2eStartWith(ctx, t, canaryd, filepath.Join(dir, "canaryd.db"), e2eSecurity{args: []string{"--clock-skew", "876000h"}})
	ctl := &e2eCtl{t: t, bin: canaryctl, addr: d.grpcAddr}
	example := func(name string) string { return filepath.Join(e2eExamples, name) }
	ctl.ok(ctx, 0, "config", "put", example("canary.yaml"))

	script, err := filepath.Abs(example("pipelines/canary-stage.sh"))
	if err != nil {
		t.Fatal(err)
	}
	doc := readFile(t, "../../docs/pipelines.md")
	for _, f := range []string{"pipelines/canary-stage.sh", "github-actions/canary.yml", "pipelines/argo-job.yaml"} {
		if !strings.Contains(doc, readFile(t, example(f))) {
			t.Errorf("docs/pipelines.md does not show examples/%s as it is", f)
		}
	}
	// The environment of the recipes: canaryctl on the PATH, canaryd's
	// address.
	environ := func(extra ...string) []string {
		env := append(e2eEnv(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "CANARY_ADDR="+d.grpcAddr,
			"CANARY_TOKEN=", "CANARY_TLS=")
		return append(env, extra...)
	}

	// The shell recipe.
	for _, tc := range []struct {
		name, samples, onHold string
		code                  int
		says                  string
	}{
		{"rollback", "rollback.jsonl", "", 1, "rolling back checkout-api in pipeline-rollback"},
		{"rollback", "rollback.jsonl", "", 1, "rolling back checkout-api in pipeline-rollback"}, // a retry: the same run
		{"promote", "promote.jsonl", "", 0, "promoting checkout-api in pipeline-promote"},
		{"hold", "hold.jsonl", "", 1, "rolling back checkout-api in pipeline-hold"},
		{"hold-promote", "hold.jsonl", "promote", 0, "promoting checkout-api in pipeline-hold-promote"},
	} {
		cmd := exec.CommandContext(ctx, bash, script)
		cmd.Env = environ("SERVICE=checkout-api", "STAGE=pipeline-"+tc.name, "CONFIG=checkout-api",
			"REQUEST_ID=test/"+tc.name, "BAKE=30m", "BAKE_SECONDS=1", "POLL=0.2", "SAMPLES="+example(tc.samples),
			"START=2026-11-22T10:00:00Z", "ON_HOLD="+tc.onHold, "CANARY_LABEL=version=1.5", "BASELINE_LABEL=version=1.4")
		out, err := cmd.CombinedOutput()
		code := exitCode(t, err)
		if code != tc.code || !strings.Contains(string(out), tc.says) || !strings.Contains(string(out), "deploying the canary") {
			t.Errorf("canary-stage.sh on %s: exit %d, want %d and %q:\n%s", tc.samples, code, tc.code, tc.says, out)
		}
	}
	var hist struct{ n int }
	for _, l := range strings.Split(ctl.ok(ctx, 0, "history", "--service", "checkout-api"), "\n") {
		if strings.Contains(l, "pipeline-") {
			hist.n++
		}
	}
	if hist.n != 4 {
		t.Errorf("history: %d final verdicts of the pipeline stages, want 4 (the retry found its run)", hist.n)
	}

	// The GitHub Actions workflow: its steps run the script with the
	// settings it reads, and its canaryctl commands work.
	var wf struct {
		Env  map[string]string `yaml:"env"`
		Jobs map[string]struct {
			Steps []struct {
				Name string            `yaml:"name"`
				Uses string            `yaml:"uses"`
				Run  string            `yaml:"run"`
				Env  map[string]string `yaml:"env"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, example("github-actions/canary.yml"))), &wf); err != nil {
		t.Fatalf("canary.yml: %v", err)
	}
	ranScript := false
	for _, step := range wf.Jobs["canary"].Steps {
		switch {
		case step.Run == "./canary-stage.sh":
			ranScript = true
			for _, k := range []string{"SERVICE", "CONFIG", "CANARY_ADDR", "CANARY_TOKEN"} {
				if wf.Env[k] == "" {
					t.Errorf("canary.yml: the workflow's env lacks %s", k)
				}
			}
			for _, k := range []string{"STAGE", "REQUEST_ID", "BAKE", "BAKE_SECONDS", "POLL", "ON_HOLD"} {
				if step.Env[k] == "" {
					t.Errorf("canary.yml: step %q lacks %s", step.Name, k)
				}
				if !strings.Contains(readFile(t, script), k) {
					t.Errorf("canary.yml sets %s, which canary-stage.sh does not read", k)
				}
			}
		case strings.Contains(step.Run, "canaryctl ") && !strings.Contains(step.Run, "go install"):
			cmd := exec.CommandContext(ctx, bash, "-e", "-c", step.Run)
			cmd.Env = environ("SERVICE=" + wf.Env["SERVICE"])
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("canary.yml step %q (%s): %v\n%s", step.Name, step.Run, err, out)
			}
		}
	}
	if !ranScript {
		t.Error("canary.yml has no step running ./canary-stage.sh")
	}

	// The Argo Rollouts job: the container's command and args, run as
	// they are (no shell), the template's arguments substituted.
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, example("pipelines/argo-job.yaml"))))
	var tmpl struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Metrics []struct {
				Provider struct {
					Job struct {
						Spec struct {
							Template struct {
								Spec struct {
									Containers []struct {
										Command []string `yaml:"command"`
										Args    []string `yaml:"args"`
									} `yaml:"containers"`
								} `yaml:"spec"`
							} `yaml:"template"`
						} `yaml:"spec"`
					} `yaml:"job"`
				} `yaml:"provider"`
			} `yaml:"metrics"`
		} `yaml:"spec"`
	}
	if err := dec.Decode(&tmpl); err != nil || tmpl.Kind != "AnalysisTemplate" || len(tmpl.Spec.Metrics) != 1 ||
		len(tmpl.Spec.Metrics[0].Provider.Job.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("argo-job.yaml: %v, %+v", err, tmpl)
	}
	var rollout map[string]any
	if err := dec.Decode(&rollout); err != nil || rollout["kind"] != "Rollout" {
		t.Errorf("argo-job.yaml: second document %v (%v), want the Rollout", rollout["kind"], err)
	}
	c := tmpl.Spec.Metrics[0].Provider.Job.Spec.Template.Spec.Containers[0]
	if len(c.Command) != 1 || c.Command[0] != "/usr/local/bin/canaryctl" {
		t.Fatalf("argo-job.yaml: command %q, want the image's canaryctl alone (no shell)", c.Command)
	}
	for _, tc := range []struct {
		hash, samples string
		code          int
	}{
		{"5f7d9c", "rollback.jsonl", 1},
		{"7c9f6b", "promote.jsonl", 0},
	} {
		sub := strings.NewReplacer("{{args.namespace}}", "shop", "{{args.service}}", "checkout-api", "{{args.stage}}", "argo",
			"{{args.canary-hash}}", tc.hash, "{{args.stable-hash}}", "5d4b8a")
		args := make([]string, len(c.Args))
		for i, a := range c.Args {
			args[i] = sub.Replace(a)
			switch {
			case i > 0 && c.Args[i-1] == "--addr":
				args[i] = d.grpcAddr
			case i > 0 && c.Args[i-1] == "--wait":
				args[i] = "3s"
			}
			if strings.Contains(args[i], "{{") {
				t.Fatalf("argo-job.yaml: argument %q not substituted", a)
			}
		}
		// The run as the job creates it (gate finds it by its request
		// id), with the data set ingested first.
		var create []string
		for i, f := range args {
			switch f {
			case "--service", "--stage", "--config", "--bake", "--request-id", "--canary-label", "--baseline-label", "--max-duration":
				create = append(create, f, args[i+1])
			case "--finish-on-decision", "--fail-closed":
				create = append(create, f)
			}
		}
		run := strings.TrimSpace(ctl.ok(ctx, 0, append([]string{"run", "create"}, create...)...))
		ctl.ok(ctx, 0, "ingest", run, shiftSamples(t, example(tc.samples), dir, time.Now()))
		cmd := exec.CommandContext(ctx, canaryctl, args...)
		cmd.Env = environ()
		out, err := cmd.CombinedOutput()
		code := exitCode(t, err)
		want := map[int]string{0: "PROMOTE → pass (exit 0)", 1: "ROLLBACK → fail (exit 1)"}[tc.code]
		if code != tc.code || !strings.Contains(string(out), "canaryctl gate: run "+run) || !strings.Contains(string(out), want) {
			t.Errorf("the Argo job on %s: exit %d, want %d, gating run %s:\n%s", tc.samples, code, tc.code, run, out)
		}
		// --finish-on-decision: the critical ROLLBACK ends the run, and
		// the job, without waiting.
		if tc.code == 1 && strings.Contains(string(out), "waited") {
			t.Errorf("the Argo job on %s waited for its --wait; want the run to end by itself:\n%s", tc.samples, out)
		}
	}
}

// shiftSamples writes a copy of a samples file (into dir) whose times are
// moved so that the earliest is at start, and returns its path.
func shiftSamples(t *testing.T, path, dir string, start time.Time) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(readFile(t, path)), "\n")
	recs := make([]map[string]any, len(lines))
	var first time.Time
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &recs[i]); err != nil {
			t.Fatalf("%s line %d: %v", path, i+1, err)
		}
		ts, err := time.Parse(time.RFC3339Nano, recs[i]["time"].(string))
		if err != nil {
			t.Fatalf("%s line %d: %v", path, i+1, err)
		}
		if first.IsZero() || ts.Before(first) {
			first = ts
		}
	}
	var b strings.Builder
	for _, r := range recs {
		ts, _ := time.Parse(time.RFC3339Nano, r["time"].(string))
		r["time"] = start.Add(ts.Sub(first)).UTC().Format(time.RFC3339Nano)
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	out := filepath.Join(dir, "shifted-"+filepath.Base(path))
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// readFile returns a file's content, or ends the test.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// exitCode returns the exit code of a command that ran (0 for no error),
// and fails the test when it could not run.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}
