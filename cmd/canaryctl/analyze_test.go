package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestAnalyzeExamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		samples  string
		decision string
		code     int
		deciding []string
	}{
		{"promote", "PROMOTE", 0, []string{"latency_ms", "errors", "conversions", "order_value"}},
		{"rollback", "ROLLBACK", 20, []string{"latency_ms", "errors"}},
		// Eight minutes: errors are already shown within tolerance + effect
		// (an upper bound below 1.4× at 80%), the others lack their floor.
		{"hold", "HOLD", 10, []string{"latency_ms", "conversions", "order_value"}},
	} {
		t.Run(tc.samples, func(t *testing.T) {
			t.Parallel()
			code, out, errs := runCLI(t, "", "analyze", "--config", "../../examples/canary.yaml",
				"--samples", "../../examples/"+tc.samples+".jsonl", "-o", "json")
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errs)
			}
			var v struct {
				Decision string   `json:"decision"`
				Reason   string   `json:"reason"`
				Deciding []string `json:"deciding_metrics"`
				Metrics  []struct {
					Name    string `json:"name"`
					Outcome string `json:"outcome"`
				} `json:"metrics"`
			}
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			// Four metrics and the sample-ratio check (traffic_share).
			if v.Decision != tc.decision || len(v.Metrics) != 5 || strings.Join(v.Deciding, ",") != strings.Join(tc.deciding, ",") {
				t.Errorf("decision %s deciding %v with %d metrics; want %s %v", v.Decision, v.Deciding, len(v.Metrics), tc.decision, tc.deciding)
			}
			if tc.decision == "HOLD" && !strings.Contains(v.Reason, "more canary") {
				t.Errorf("HOLD reason does not say what is missing: %s", v.Reason)
			}
		})
	}
}

func TestAnalyzeTable(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, "", "analyze", "--config", "../../examples/canary.yaml", "--samples", "../../examples/rollback.jsonl")
	if code != 20 || !strings.HasPrefix(out, "decision: ROLLBACK") || !regexp.MustCompile(`latency_ms +distribution +REGRESSION`).MatchString(out) {
		t.Errorf("exit %d, table:\n%s", code, out)
	}
}

func TestAnalyzeErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"no flags", "", []string{"analyze"}, "--config and --samples are required"},
		{"bad output", "", []string{"analyze", "--config", "x", "--samples", "y", "-o", "xml"}, "-o must be table or json"},
		{"missing config", "", []string{"analyze", "--config", "nope.yaml", "--samples", "-"}, "read config"},
		{"unknown metric", `{"metric":"cpu","cohort":"canary","value":1}`, []string{"analyze", "--config", "../../examples/canary.yaml", "--samples", "-"}, `line 1: metric: "cpu" is not a metric`},
		{"count > total", `{"metric":"errors","cohort":"canary","count":5,"total":2}`, []string{"analyze", "--config", "../../examples/canary.yaml", "--samples", "-"}, "line 1: count: count 5 exceeds total 2"},
		{"value for a rate", `{"metric":"errors","cohort":"canary","value":2}`, []string{"analyze", "--config", "../../examples/canary.yaml", "--samples", "-"}, "send count and total"},
		{"negative latency", `{"metric":"latency_ms","cohort":"canary","value":-2}`, []string{"analyze", "--config", "../../examples/canary.yaml", "--samples", "-"}, "non-negative"},
		{"empty", "", []string{"analyze", "--config", "../../examples/canary.yaml", "--samples", "-"}, "no samples"},
		{"unknown command", "", []string{"analyse"}, `unknown command "analyse"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, tc.stdin, tc.args...)
			if code != exitUsage || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, errs, tc.want)
			}
		})
	}
}

// TestAnalyzeSkewedClock: samples dated far from all the others (1970,
// 9999: a skewed clock) are excluded and counted on stderr, and the verdict
// is the one without them. One such sample used to start a cohort's
// warm-up in 1970 (the spike counted) or move the window tests.
func TestAnalyzeSkewedClock(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../../examples/rollback.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	skewed := string(src) +
		`{"metric":"latency_ms","cohort":"canary","value":80,"time":"1970-01-01T00:00:00Z"}` + "\n" +
		`{"metric":"latency_ms","cohort":"baseline","value":500,"time":"9999-12-31T00:00:00Z"}` + "\n"
	for _, seq := range []string{"--sequential=false", "--sequential"} {
		_, want, _ := runCLI(t, string(src), "analyze", "--config", "../../examples/canary.yaml", "--samples", "-", "-o", "json", seq)
		code, got, errs := runCLI(t, skewed, "analyze", "--config", "../../examples/canary.yaml", "--samples", "-", "-o", "json", seq)
		if code != 20 || got != want {
			t.Errorf("%s: exit %d, verdict differs from the one without the skewed samples:\n%s\nwant\n%s", seq, code, got, want)
		}
		if !strings.Contains(errs, "excluded 2 samples timed outside 2026-11-22T10:00:00Z – 2026-11-22T10:29:50Z") ||
			!strings.Contains(errs, "(1970-01-01T00:00:00Z)") || !strings.Contains(errs, "(9999-12-31T00:00:00Z)") {
			t.Errorf("%s: stderr %q does not report the skewed samples", seq, errs)
		}
	}
}
