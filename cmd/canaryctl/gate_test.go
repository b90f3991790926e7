package main

import (
	"strings"
	"testing"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestGate: gate answers as a job: PROMOTE passes (0), ROLLBACK fails
// (1), HOLD follows --on-hold; --wait bounds the wait, after which
// --complete takes the final verdict or the current verdict decides.
func TestGate(t *testing.T) {
	t.Parallel()
	hold := testVerdict(canaryv1.Decision_DECISION_HOLD, 1, false)
	final := func(d canaryv1.Decision) *canaryv1.Verdict { return testVerdict(d, 2, true) }
	for _, tc := range []struct {
		name    string
		f       *fakeService
		args    []string
		code    int
		stderr  string
		creates bool
	}{
		{"promote", &fakeService{watches: [][]*canaryv1.Verdict{{hold, final(canaryv1.Decision_DECISION_PROMOTE)}}},
			[]string{"run-1"}, 0, "PROMOTE → pass (exit 0)", false},
		{"rollback", &fakeService{watches: [][]*canaryv1.Verdict{{hold, final(canaryv1.Decision_DECISION_ROLLBACK)}}},
			[]string{"run-1"}, 1, "ROLLBACK → fail (exit 1)", false},
		{"final hold fails closed", &fakeService{watches: [][]*canaryv1.Verdict{{final(canaryv1.Decision_DECISION_HOLD)}}},
			[]string{"run-1"}, 1, "HOLD → fail (exit 1)", false},
		{"final hold may pass", &fakeService{watches: [][]*canaryv1.Verdict{{final(canaryv1.Decision_DECISION_HOLD)}}},
			[]string{"run-1", "--on-hold", "pass"}, 0, "HOLD → pass (exit 0)", false},
		{"wait ends: current verdict", &fakeService{watchHangs: true, verdict: hold, watches: [][]*canaryv1.Verdict{{hold}}},
			[]string{"run-1", "--wait", "300ms"}, 1, "the run goes on, its current verdict decides", false},
		{"wait ends: complete", &fakeService{watchHangs: true, verdict: final(canaryv1.Decision_DECISION_PROMOTE), watches: [][]*canaryv1.Verdict{{hold}}},
			[]string{"run-1", "--wait", "300ms", "--complete"}, 0, "completed the run", false},
		{"creates the run", &fakeService{watches: [][]*canaryv1.Verdict{{final(canaryv1.Decision_DECISION_PROMOTE)}}},
			[]string{"--service", "s", "--stage", "st", "--config", "c", "--request-id", "argo/ns/r/1"}, 0, "canaryctl gate: run run-1", true},
		{"unknown run", &fakeService{}, []string{"nope"}, 1, "NOT_FOUND", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := ctl(t, "", append([]string{"gate", "--addr", startFake(t, tc.f)}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("gate %s: exit %d, stderr %q; want %d and %q (stdout %q)", strings.Join(tc.args, " "), code, errOut, tc.code, tc.stderr, out)
			}
			if tc.creates {
				reqs := tc.f.requests()
				if len(reqs) == 0 {
					t.Fatal("no CreateRun")
				}
				if cr, ok := reqs[0].(*canaryv1.CreateRunRequest); !ok || cr.GetRequestId() != "argo/ns/r/1" {
					t.Errorf("first request %v, want CreateRun with request id argo/ns/r/1", reqs[0])
				}
			}
		})
	}
	for _, args := range [][]string{
		{},
		{"--service", "s", "--stage", "st", "--config", "c"},
		{"run-1", "--service", "s"},
		{"run-1", "--on-hold", "maybe"},
		{"run-1", "--wait", "-1s"},
	} {
		if code, _, errOut := ctl(t, "", append([]string{"gate", "--addr", "127.0.0.1:1"}, args...)...); code != exitUsage {
			t.Errorf("gate %s: exit %d (%q), want 2", strings.Join(args, " "), code, errOut)
		}
	}
}
