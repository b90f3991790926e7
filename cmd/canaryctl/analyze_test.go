package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
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
			// The JudgeResponse of the API, in protojson.
			var resp canaryv1.JudgeResponse
			if err := protojson.Unmarshal([]byte(out), &resp); err != nil {
				t.Fatalf("output is not a JudgeResponse: %v\n%s", err, out)
			}
			v := apiconv.VerdictFromProto(resp.GetVerdict())
			// Four metrics and the sample-ratio check (traffic_share).
			if string(v.Decision) != tc.decision || len(v.Metrics) != 5 || strings.Join(v.Deciding, ",") != strings.Join(tc.deciding, ",") {
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
		{"no flags", "", []string{"analyze"}, "--config and one of --samples or --prometheus are required"},
		{"bad output", "", []string{"analyze", "--config", "x", "--samples", "y", "-o", "xml"}, "-o must be table, wide, json or yaml"},
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

// histogramConfig is a config with one distribution metric, fed by
// histograms.
const histogramConfig = `name: histograms
metrics:
  - name: latency_ms
    category: performance
    type: distribution
    tolerance: 0.10
    critical: true
    unit: ms
`

// writeHistogramSamples writes 30 minutes of latency histograms, one per
// pod and 30 s, on Prometheus' default buckets (in ms): 4 baseline and 2
// canary pods of 10 requests/s each, lognormal latencies of median 80 ms,
// the canary's multiplied by slowdown. With sum, each record carries the
// sum of its observations (Prometheus' _sum).
func writeHistogramSamples(t *testing.T, seed uint64, slowdown float64, sum bool) string {
	t.Helper()
	bounds := []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}
	rng := rand.New(rand.NewPCG(seed, 12))
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var b strings.Builder
	for step := 0; step < 60; step++ {
		at := t0.Add(time.Duration(step+1) * 30 * time.Second).Format(time.RFC3339)
		for pod := 0; pod < 6; pod++ {
			cohort, f := "baseline", 1.0
			if pod >= 4 {
				cohort, f = "canary", slowdown
			}
			cum := make([]int, len(bounds)+1)
			s := 0.0
			for i := 0; i < 300; i++ {
				v := 80 * f * math.Exp(0.5*rng.NormFloat64())
				s += v
				k := sort.SearchFloat64s(bounds, v) // first bound >= v
				for j := k; j <= len(bounds); j++ {
					cum[j]++
				}
			}
			fmt.Fprintf(&b, `{"metric":"latency_ms","cohort":%q,"instance":"pod-%d","time":%q,"buckets":[`, cohort, pod, at)
			for k, ub := range bounds {
				fmt.Fprintf(&b, `{"le":%v,"count":%d},`, ub, cum[k])
			}
			fmt.Fprintf(&b, `{"le":"+Inf","count":%d}]`, cum[len(bounds)])
			if sum {
				fmt.Fprintf(&b, `,"sum":%.3f`, s)
			}
			b.WriteString("}\n")
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "samples.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "canary.yaml"), []byte(histogramConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAnalyzeHistograms judges latency known only through Prometheus'
// default buckets: an A/A canary is promoted with the sums, and without
// them held, never rolled back (without the sum, observations in the +Inf
// bucket leave the mean unbounded above, so no amount of data shows the
// canary within its tolerance); a canary twice the tolerance slower (1.2×)
// is rolled back.
func TestAnalyzeHistograms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		slowdown float64
		sum      bool
		code     int
	}{
		{"A/A with sums", 1, true, 0},
		{"A/A without sums", 1, false, 10},
		{"1.2x slower with sums", 1.2, true, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= 3; seed++ {
				path := writeHistogramSamples(t, seed, tc.slowdown, tc.sum)
				code, out, errs := runCLI(t, "", "analyze", "--config", filepath.Join(filepath.Dir(path), "canary.yaml"), "--samples", path)
				if code != tc.code {
					t.Errorf("seed %d: exit %d, want %d; stderr %s\n%s", seed, code, tc.code, errs, out)
				}
				if tc.code == 20 && !strings.Contains(out, "ratio of means") {
					t.Errorf("seed %d: the rollback is not decided on the ratio of means:\n%s", seed, out)
				}
			}
		})
	}
}
