package main

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// testVerdict is a verdict of run-1 with one metric.
func testVerdict(d canaryv1.Decision, seq uint64, final bool) *canaryv1.Verdict {
	state := canaryv1.RunState_RUN_STATE_RUNNING
	if final {
		state = canaryv1.RunState_RUN_STATE_COMPLETED
	}
	median := 80.0
	return &canaryv1.Verdict{
		RunId: "run-1", Service: "checkout-api", Stage: "wave-1", Decision: d, Reason: "because",
		Time: timestamppb.New(time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC)), Final: final, RunState: state,
		ConfigName: "checkout-api", ConfigVersion: 2, Sequence: seq, Confidence: 0.99,
		Metrics: []*canaryv1.MetricResult{{
			Name: "latency_ms", Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
			Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION, BadDirection: canaryv1.BadDirection_BAD_DIRECTION_INCREASE,
			Tolerance: 0.1, Critical: true, Outcome: canaryv1.MetricOutcome_METRIC_OUTCOME_PASS,
			Baseline: &canaryv1.CohortSummary{N: 300, Median: &median}, Canary: &canaryv1.CohortSummary{N: 200},
			PValue: 0.5, AdjustedPValue: 1, Test: "mann-whitney-u", Reason: "latency_ms: fine",
			Gate: &canaryv1.Gate{Ready: true, NeedCanary: math.Inf(1), Unit: "samples"},
		}},
	}
}

func TestConfigPut(t *testing.T) {
	t.Parallel()
	f := &fakeService{}
	addr := startFake(t, f)
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "name: checkout-api\n# a comment the service keeps\nmetrics: []\n"
	os.WriteFile(path, []byte(yaml), 0o644)
	// Flags after the positional argument work too.
	code, out, errOut := ctl(t, "", "config", "put", path, "--addr", addr, "--name", "checkout-api")
	if code != 0 || out != "checkout-api@3 (stored)\n" {
		t.Errorf("config put: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	want := &canaryv1.PutConfigRequest{Name: "checkout-api", Source: &canaryv1.PutConfigRequest_Yaml{Yaml: yaml}}
	if reqs := f.requests(); len(reqs) != 1 || !proto.Equal(reqs[0], want) {
		t.Errorf("requests %v, want %v", reqs, want)
	}
	for _, args := range [][]string{
		{"config", "put"},
		{"config", "put", "a", "b"},
		{"config", "get", "x@0"},
		{"config", "get", "@1"},
		{"config", "nope"},
		{"config", "list", "-o", "xml"},
		{"config"},
	} {
		if code, _, _ := ctl(t, "", append(args, "--addr", addr)...); code != 2 {
			t.Errorf("canaryctl %s: exit %d, want 2", strings.Join(args, " "), code)
		}
	}
}

func TestRunCreate(t *testing.T) {
	t.Parallel()
	f := &fakeService{}
	addr := startFake(t, f)
	code, out, errOut := ctl(t, "", "run", "create", "--addr", addr, "--service", "checkout-api", "--stage", "wave-1",
		"--config", "checkout-api@2", "--bake", "30m", "--baseline-label", "version=1.4", "--canary-label", "version=1.5",
		"--canary-label", "zone=a", "--canary-share", "0.1")
	if code != 0 || out != "run-1\n" {
		t.Fatalf("run create: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	req := f.requests()[0].(*canaryv1.CreateRunRequest)
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(req.GetRequestId()) {
		t.Errorf("default request id %q: want a random UUID", req.GetRequestId())
	}
	want := &canaryv1.CreateRunRequest{
		RequestId: req.GetRequestId(), Service: "checkout-api", Stage: "wave-1",
		Config:             &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "checkout-api", Version: 2}},
		BaselineLabels:     map[string]string{"version": "1.4"},
		CanaryLabels:       map[string]string{"version": "1.5", "zone": "a"},
		BakeTime:           durationpb.New(30 * time.Minute),
		CanaryTrafficShare: proto.Float64(0.1),
	}
	if !proto.Equal(req, want) {
		t.Errorf("request\n got %v\nwant %v", req, want)
	}

	// Inline YAML from stdin, an explicit request id.
	code, _, errOut = ctl(t, "name: x\n", "run", "create", "--addr", addr, "--service", "s", "--stage", "st",
		"--config-file", "-", "--request-id", "deploy-7")
	if code != 0 {
		t.Fatalf("run create --config-file -: exit %d: %s", code, errOut)
	}
	req = f.requests()[1].(*canaryv1.CreateRunRequest)
	if req.GetInlineYaml() != "name: x\n" || req.GetRequestId() != "deploy-7" || req.CanaryTrafficShare != nil {
		t.Errorf("request %v: want the inline YAML, request id deploy-7, no traffic share", req)
	}

	for _, args := range [][]string{
		{"--stage", "st", "--config", "c"},
		{"--service", "s", "--stage", "st"},
		{"--service", "s", "--stage", "st", "--config", "c", "--config-file", "f"},
		{"--service", "s", "--stage", "st", "--config", "c", "--canary-label", "novalue"},
		{"--service", "s", "--stage", "st", "--config", "c", "--canary-label", "a=1", "--canary-label", "a=2"},
		{"--service", "s", "--stage", "st", "--config", "c", "--bake", "-1m"},
	} {
		if code, _, _ := ctl(t, "", append([]string{"run", "create", "--addr", addr}, args...)...); code != 2 {
			t.Errorf("run create %s: exit %d, want 2", strings.Join(args, " "), code)
		}
	}
}

func TestJudgeAndComplete(t *testing.T) {
	t.Parallel()
	f := &fakeService{verdict: testVerdict(canaryv1.Decision_DECISION_ROLLBACK, 4, true)}
	addr := startFake(t, f)

	code, out, _ := ctl(t, "", "judge", "--addr", addr, "run-1")
	if code != 20 {
		t.Errorf("judge of a ROLLBACK: exit %d, want 20", code)
	}
	for _, s := range []string{"run:      run-1", "decision: ROLLBACK   (config checkout-api@2, 99% family-wise confidence)", "latency_ms", "n=300 p50=80"} {
		if !strings.Contains(out, s) {
			t.Errorf("judge table %q: want %q", out, s)
		}
	}

	code, out, _ = ctl(t, "", "run", "complete", "run-1", "--addr", addr, "--reason", "done", "-o", "json")
	if code != 20 {
		t.Errorf("run complete: exit %d, want 20", code)
	}
	// The API's message in protojson: the CompleteRunResponse as sent.
	var resp canaryv1.CompleteRunResponse
	if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("run complete -o json: %v\n%s", err, out)
	}
	if want := (&canaryv1.CompleteRunResponse{Run: &canaryv1.Run{Id: "run-1", Verdict: f.verdict}}); !proto.Equal(&resp, want) {
		t.Errorf("run complete -o json:\n got %v\nwant %v", &resp, want)
	}
	for _, s := range []string{`"decision": "DECISION_ROLLBACK"`, `"runId": "run-1"`, `"needCanary": "Infinity"`, `"configVersion": 2`} {
		if !strings.Contains(out, s) {
			t.Errorf("run complete -o json lacks %s:\n%s", s, out)
		}
	}
	if req := f.requests()[1].(*canaryv1.CompleteRunRequest); req.GetRunId() != "run-1" || req.GetReason() != "done" {
		t.Errorf("complete request %v", req)
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	hold := testVerdict(canaryv1.Decision_DECISION_HOLD, 1, false)
	f := &fakeService{watches: [][]*canaryv1.Verdict{
		// The first stream breaks (the service restarts)...
		{hold},
		// ...the second sends the same verdict again, then two updates.
		{hold, testVerdict(canaryv1.Decision_DECISION_HOLD, 2, false), testVerdict(canaryv1.Decision_DECISION_PROMOTE, 3, true)},
	}}
	addr := startFake(t, f)
	code, out, errOut := ctl(t, "", "watch", "--addr", addr, "run-1")
	if code != 0 {
		t.Fatalf("watch: exit %d, want 0 (PROMOTE): %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"HOLD seq=1 provisional: because", "HOLD seq=2 provisional: because", "PROMOTE seq=3 final: because"}
	if len(lines) != len(want) {
		t.Fatalf("watch printed %q, want %d lines", lines, len(want))
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d: %q, want ...%q", i, lines[i], w)
		}
	}
	if !strings.Contains(errOut, "reconnecting") {
		t.Errorf("stderr %q: want a note about reconnecting", errOut)
	}

	// -o json: one verdict per line; the exit code is the final verdict's.
	f = &fakeService{watches: [][]*canaryv1.Verdict{{hold, testVerdict(canaryv1.Decision_DECISION_ROLLBACK, 2, true)}}}
	code, out, _ = ctl(t, "", "watch", "--addr", startFake(t, f), "run-1", "-o", "json")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	var last canaryv1.WatchVerdictResponse
	if err := protojson.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || code != 20 || len(lines) != 2 ||
		last.GetVerdict().GetDecision() != canaryv1.Decision_DECISION_ROLLBACK || !last.GetVerdict().GetFinal() {
		t.Errorf("watch -o json: exit %d, lines %q (%v); want 2 lines ending with a final ROLLBACK, exit 20", code, lines, err)
	}

	// Unknown run.
	code, _, errOut = ctl(t, "", "watch", "--addr", startFake(t, &fakeService{}), "x")
	if code != 2 || !strings.Contains(errOut, "NOT_FOUND") {
		t.Errorf("watch of an unknown run: exit %d, stderr %q", code, errOut)
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	f := &fakeService{pageSize: 2}
	for i := range 5 {
		v := testVerdict(canaryv1.Decision_DECISION_ROLLBACK, uint64(i), true)
		v.RunId = "run-" + string(rune('a'+i))
		f.history = append(f.history, v)
	}
	addr := startFake(t, f)
	before := time.Now()
	code, out, errOut := ctl(t, "", "history", "--addr", addr, "--service", "checkout-api", "--stage", "wave-1",
		"--decision", "rollback", "--since", "24h", "--until", "2026-11-23T00:00:00Z", "--limit", "3")
	if code != 0 {
		t.Fatalf("history: exit %d: %s", code, errOut)
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d ListVerdicts calls, want 2 (pages of 2 for a limit of 3)", len(reqs))
	}
	req := reqs[0].(*canaryv1.ListVerdictsRequest)
	since := req.GetSince().AsTime()
	if req.GetService() != "checkout-api" || req.GetStage() != "wave-1" || req.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK ||
		since.Before(before.Add(-24*time.Hour-time.Second)) || since.After(before.Add(-24*time.Hour+time.Minute)) ||
		!req.GetUntil().AsTime().Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("request %v", req)
	}
	if p := reqs[1].(*canaryv1.ListVerdictsRequest); p.GetPageToken() != "2" || p.GetPageSize() != 1 {
		t.Errorf("second page request %v: want token 2, size 1", p)
	}
	for _, s := range []string{"TIME", "run-a", "run-b", "run-c", "ROLLBACK", "more: --page-token 3"} {
		if !strings.Contains(out, s) {
			t.Errorf("history %q: want %q", out, s)
		}
	}
	if strings.Contains(out, "run-d") {
		t.Errorf("history %q: want at most 3 verdicts", out)
	}

	code, out, _ = ctl(t, "", "history", "--addr", addr, "--page-token", "3", "-o", "json")
	var got canaryv1.ListVerdictsResponse
	if err := protojson.Unmarshal([]byte(out), &got); err != nil || code != 0 || len(got.Verdicts) != 2 || got.Verdicts[0].GetRunId() != "run-d" || got.NextPageToken != "" {
		t.Errorf("history --page-token 3 -o json: exit %d, %+v (%v)", code, &got, err)
	}

	for _, args := range [][]string{{"--decision", "maybe"}, {"--since", "yesterday"}, {"--since", "-1h"}, {"--limit", "0"}} {
		if code, _, _ := ctl(t, "", append([]string{"history", "--addr", addr}, args...)...); code != 2 {
			t.Errorf("history %s: exit %d, want 2", strings.Join(args, " "), code)
		}
	}
}

func TestRunGetAndList(t *testing.T) {
	t.Parallel()
	r := testRun()
	r.Service, r.Stage, r.ConfigName, r.ConfigVersion = "checkout-api", "wave-1", "checkout-api", 2
	r.Counters = &canaryv1.RunCounters{Batches: 3, BaselineSamples: 10, CanarySamples: 5}
	r.Verdict = testVerdict(canaryv1.Decision_DECISION_HOLD, 1, false)
	f := &fakeService{run: r}
	addr := startFake(t, f)
	code, out, errOut := ctl(t, "", "run", "get", "run-1", "--addr", addr)
	if code != 0 {
		t.Fatalf("run get: exit %d: %s", code, errOut)
	}
	for _, s := range []string{"id:", "run-1", "checkout-api@2", "running", "baseline 10, canary 5", "HOLD"} {
		if !strings.Contains(out, s) {
			t.Errorf("run get %q: want %q", out, s)
		}
	}
	code, out, _ = ctl(t, "", "run", "list", "--addr", addr, "--state", "running", "-o", "json")
	var got canaryv1.ListRunsResponse
	if err := protojson.Unmarshal([]byte(out), &got); err != nil || code != 0 || len(got.Runs) != 1 || got.Runs[0].GetCounters().GetCanarySamples() != 5 ||
		got.Runs[0].GetVerdict().GetDecision() != canaryv1.Decision_DECISION_HOLD {
		t.Errorf("run list -o json: exit %d, %+v (%v)", code, &got, err)
	}
	if req := f.requests()[1].(*canaryv1.ListRunsRequest); req.GetState() != canaryv1.RunState_RUN_STATE_RUNNING {
		t.Errorf("list request %v", req)
	}
	if code, _, _ := ctl(t, "", "run", "list", "--addr", addr, "--state", "done"); code != 2 {
		t.Errorf("run list --state done: exit %d, want 2", code)
	}
}
