package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestGlobalFlagsAnywhere: the global flags work before the command,
// between a group and its subcommand, and after the positional arguments;
// the environment gives their defaults and a flag beats it.
func TestGlobalFlagsAnywhere(t *testing.T) {
	t.Parallel()
	r := testRun()
	f := &fakeService{run: r}
	addr := startFake(t, f)
	for _, args := range [][]string{
		{"--addr", addr, "run", "get", "run-1"},
		{"run", "--addr", addr, "get", "run-1"},
		{"run", "get", "run-1", "--addr", addr},
		{"--addr=" + addr, "-o", "json", "run", "get", "run-1"},
		{"run", "get", "--timeout", "5s", "run-1", "--addr", addr},
	} {
		code, out, errOut := ctl(t, "", args...)
		if code != 0 || !strings.Contains(out, "run-1") {
			t.Errorf("canaryctl %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	// An unreachable address from a flag after the command is the one used.
	code, _, errOut := ctl(t, "", "run", "get", "run-1", "--addr", "127.0.0.1:1", "--timeout", "2s")
	if code != exitError || !strings.Contains(errOut, "canaryctl run get: UNAVAILABLE") ||
		!strings.Contains(errOut, "is canaryd running at 127.0.0.1:1? set --addr or CANARY_ADDR") {
		t.Errorf("--addr 127.0.0.1:1 after the command: exit %d, stderr %q; want 1 and UNAVAILABLE", code, errOut)
	}
}

// TestGlobalFlagsFromEnv: CANARY_ADDR is the default of --addr, and the
// flag wins over it.
func TestGlobalFlagsFromEnv(t *testing.T) {
	f := &fakeService{run: testRun()}
	addr := startFake(t, f)
	t.Setenv("CANARY_ADDR", addr)
	if code, out, errOut := ctl(t, "", "run", "get", "run-1"); code != 0 || !strings.Contains(out, "run-1") {
		t.Errorf("CANARY_ADDR: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	t.Setenv("CANARY_ADDR", "127.0.0.1:1")
	if code, _, errOut := ctl(t, "", "--addr", addr, "run", "get", "run-1"); code != 0 {
		t.Errorf("--addr over CANARY_ADDR: exit %d, stderr %q", code, errOut)
	}
}

// TestPositionalRunIDs: judge, watch and ingest take the run id as their
// first argument; --run still works, with a warning on stderr.
func TestPositionalRunIDs(t *testing.T) {
	t.Parallel()
	f := &fakeService{verdict: testVerdict(canaryv1.Decision_DECISION_HOLD, 1, false)}
	addr := startFake(t, f)
	code, _, errOut := ctl(t, "", "judge", "run-1", "--addr", addr)
	if code != 10 || errOut != "" {
		t.Errorf("judge run-1: exit %d, stderr %q; want 10 (HOLD) and nothing on stderr", code, errOut)
	}
	code, _, errOut = ctl(t, "", "judge", "--run", "run-1", "--addr", addr)
	if code != 10 || !strings.Contains(errOut, "canaryctl judge: --run is deprecated: give the run id as the first argument") {
		t.Errorf("judge --run run-1: exit %d, stderr %q; want 10 and a deprecation warning", code, errOut)
	}
	for _, args := range [][]string{{"judge"}, {"judge", "a", "b"}, {"watch"}, {"ingest", "run-1"}, {"ingest", "a", "b", "c"}} {
		if code, _, errOut := ctl(t, "", append(args, "--addr", addr)...); code != exitUsage || !strings.Contains(errOut, "canaryctl "+args[0]+":") {
			t.Errorf("canaryctl %s: exit %d, stderr %q; want 2 and an error naming the command", strings.Join(args, " "), code, errOut)
		}
	}
	for _, req := range f.requests() {
		if jr, ok := req.(*canaryv1.JudgeRequest); ok && jr.GetRunId() != "run-1" {
			t.Errorf("judge request %v: want run-1", jr)
		}
	}
}

// TestUsageErrors: unknown commands and flags, a group without its
// subcommand: exit 2 with a message that names the command and says where
// the help is.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "canaryctl: missing subcommand"},
		{[]string{"bogus"}, `canaryctl: unknown command "bogus"`},
		{[]string{"run"}, "canaryctl run: missing subcommand"},
		{[]string{"run", "lst"}, `canaryctl run: unknown command "lst"; did you mean get or list?`},
		{[]string{"run", "list", "--nope"}, "canaryctl run list: unknown flag: --nope"},
		{[]string{"config", "get"}, "canaryctl config get: missing config name"},
		{[]string{"run", "get", "a", "b"}, "canaryctl run get: unexpected arguments: b"},
	} {
		code, _, errOut := ctl(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "--help' for usage") {
			t.Errorf("canaryctl %s: exit %d, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

// TestHelp: every command's help has a usage line and examples; help goes
// to stdout and exits 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	root := newRootCmd(&env{getenv: func(string) string { return "" }})
	var leaves [][]string
	for _, c := range root.Commands() {
		if len(c.Commands()) == 0 {
			leaves = append(leaves, []string{c.Name()})
		}
		for _, s := range c.Commands() {
			leaves = append(leaves, []string{c.Name(), s.Name()})
		}
	}
	if len(leaves) < 15 {
		t.Fatalf("%d leaf commands: %v", len(leaves), leaves)
	}
	for _, path := range leaves {
		if path[0] == "help" || path[0] == "completion" {
			continue
		}
		code, out, errOut := ctl(t, "", append(path, "--help")...)
		if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, "Examples:\n") ||
			!strings.Contains(out, "canaryctl "+strings.Join(path, " ")) ||
			!strings.Contains(out, "--addr") {
			t.Errorf("canaryctl %s --help: exit %d, stderr %q, stdout:\n%s", strings.Join(path, " "), code, errOut, out)
		}
	}
}

// TestCompletion: completion scripts for bash, zsh and fish, and the
// dynamic completion of subcommands and flags they call.
func TestCompletion(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{
		"bash": "# bash completion V2 for canaryctl",
		"zsh":  "#compdef canaryctl",
		"fish": "complete -c canaryctl",
	} {
		code, out, errOut := ctl(t, "", "completion", shell)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, stderr %q, stdout starts %.200q", shell, code, errOut, out)
		}
	}
	code, out, _ := ctl(t, "", "__complete", "run", "")
	for _, s := range []string{"create", "get", "list", "complete", "abort"} {
		if code != 0 || !strings.Contains(out, s+"\t") {
			t.Errorf("__complete run: exit %d, want %s in %q", code, s, out)
		}
	}
	code, out, _ = ctl(t, "", "__complete", "run", "list", "--st")
	if code != 0 || !strings.Contains(out, "--stage") || !strings.Contains(out, "--state") {
		t.Errorf("__complete run list --st: exit %d, %q", code, out)
	}
	if code, _, _ := ctl(t, "", "completion", "tcsh"); code != exitUsage {
		t.Errorf("completion tcsh: exit %d, want 2", code)
	}
}

// TestVersion: canaryctl version names the Go toolchain; -o json is the
// same as an object.
func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := ctl(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "canaryctl ") || !strings.Contains(out, "(go1.") {
		t.Errorf("version: exit %d, %q", code, out)
	}
	code, out, _ = ctl(t, "", "version", "-o", "json")
	if code != 0 || !strings.Contains(out, `"go_version": "go1.`) || !strings.Contains(out, `"version":`) {
		t.Errorf("version -o json: exit %d, %q", code, out)
	}
}

// TestOutputFormats: -o table, wide, json and yaml. json is the API's
// message in protojson (it decodes to the very message the service sent);
// yaml is the same document.
func TestOutputFormats(t *testing.T) {
	t.Parallel()
	r := testRun()
	r.Service, r.Stage, r.ConfigName, r.ConfigVersion = "checkout-api", "wave-1", "checkout-api", 2
	r.BaselineLabels, r.CanaryLabels = map[string]string{"version": "v1"}, map[string]string{"version": "v2"}
	r.Counters = &canaryv1.RunCounters{Batches: 3, BaselineSamples: 10, CanarySamples: 5}
	r.Verdict = testVerdict(canaryv1.Decision_DECISION_HOLD, 1, false)
	f := &fakeService{run: r, verdict: r.Verdict}
	addr := startFake(t, f)

	outputs := map[string]string{}
	for _, o := range []string{"table", "wide", "json", "yaml"} {
		code, out, errOut := ctl(t, "", "--addr", addr, "run", "list", "-o", o)
		if code != 0 {
			t.Fatalf("run list -o %s: exit %d, stderr %q", o, code, errOut)
		}
		outputs[o] = out
	}
	if !strings.Contains(outputs["table"], "run-1") || strings.Contains(outputs["table"], "BASELINE") {
		t.Errorf("run list -o table:\n%s", outputs["table"])
	}
	for _, s := range []string{"BASELINE", "CANARY", "BATCHES", "version=v1", "version=v2"} {
		if !strings.Contains(outputs["wide"], s) {
			t.Errorf("run list -o wide lacks %q:\n%s", s, outputs["wide"])
		}
	}
	want := &canaryv1.ListRunsResponse{Runs: []*canaryv1.Run{r}}
	var got canaryv1.ListRunsResponse
	if err := protojson.Unmarshal([]byte(outputs["json"]), &got); err != nil || !proto.Equal(&got, want) {
		t.Errorf("run list -o json (%v): got\n%s\nwant %v", err, outputs["json"], want)
	}
	if !strings.Contains(outputs["json"], `"baselineSamples": "10"`) || !strings.Contains(outputs["json"], `"decision": "DECISION_HOLD"`) {
		t.Errorf("run list -o json is not protojson (camelCase names, int64 as strings, enums by name):\n%s", outputs["json"])
	}
	var fromJSON, fromYAML any
	if err := json.Unmarshal([]byte(outputs["json"]), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(outputs["yaml"]), &fromYAML); err != nil {
		t.Fatalf("run list -o yaml: %v\n%s", err, outputs["yaml"])
	}
	// Through JSON, so that YAML's integers compare with JSON's numbers.
	b, err := json.Marshal(fromYAML)
	if err != nil {
		t.Fatal(err)
	}
	fromYAML = nil
	if err := json.Unmarshal(b, &fromYAML); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Errorf("-o yaml differs from -o json:\n%s\nvs\n%s", outputs["yaml"], outputs["json"])
	}
	if strings.Contains(outputs["yaml"], "{") {
		t.Errorf("-o yaml is not in block style:\n%s", outputs["yaml"])
	}

	// Every command that prints a message takes every format.
	for _, args := range [][]string{{"run", "get", "run-1"}, {"judge", "run-1"}} {
		for _, o := range []string{"table", "wide", "json", "yaml"} {
			code, out, errOut := ctl(t, "", append(args, "--addr", addr, "-o", o)...)
			if (code != 0 && code != 10) || out == "" {
				t.Errorf("%s -o %s: exit %d, stderr %q", strings.Join(args, " "), o, code, errOut)
			}
		}
	}
	if code, _, errOut := ctl(t, "", "run", "list", "--addr", addr, "-o", "xml"); code != exitUsage || !strings.Contains(errOut, "-o must be table, wide, json or yaml") {
		t.Errorf("-o xml: exit %d, stderr %q", code, errOut)
	}

	// An empty list says so.
	empty := startFake(t, &fakeService{})
	if code, out, _ := ctl(t, "", "run", "list", "--addr", empty); code != 0 || out != "no runs found\n" {
		t.Errorf("empty run list: exit %d, %q", code, out)
	}
	if code, out, _ := ctl(t, "", "run", "list", "--addr", empty, "-o", "json"); code != 0 || strings.TrimSpace(out) != "{}" {
		t.Errorf("empty run list -o json: exit %d, %q", code, out)
	}
}
