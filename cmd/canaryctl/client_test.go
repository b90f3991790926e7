package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// testRun is a running run whose config has a distribution metric and a
// rate metric.
func testRun() *canaryv1.Run {
	return &canaryv1.Run{
		Id:    "run-1",
		State: canaryv1.RunState_RUN_STATE_RUNNING,
		Config: &canaryv1.CanaryConfig{
			Name: "checkout-api",
			Metrics: []*canaryv1.MetricConfig{
				{Name: "latency_ms", Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE, Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION},
				{Name: "errors", Category: canaryv1.MetricCategory_METRIC_CATEGORY_STABILITY, Type: canaryv1.MetricType_METRIC_TYPE_RATE},
			},
		},
	}
}

// writeSamples writes n records to a file: latency values spread over 5
// seconds and both cohorts, every tenth record an error count.
func writeSamples(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		cohort := []string{"baseline", "canary"}[i%2]
		ts := time.Date(2026, 11, 22, 10, 0, i%5, 0, time.UTC).Format(time.RFC3339)
		if i%10 == 9 {
			fmt.Fprintf(&b, `{"metric":"errors","cohort":%q,"count":%d,"total":1000,"time":%q}`+"\n", cohort, i%7, ts)
			continue
		}
		fmt.Fprintf(&b, `{"metric":"latency_ms","cohort":%q,"value":%d.5,"time":%q}`+"\n", cohort, 50+i%40, ts)
	}
	path := filepath.Join(t.TempDir(), "samples.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func ingestJSON(t *testing.T, stdout string) ingestSummary {
	t.Helper()
	var s ingestSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("ingest -o json: %v\n%s", err, stdout)
	}
	return s
}

func TestIngestIdempotent(t *testing.T) {
	t.Parallel()
	f := &fakeService{run: testRun(), ackDelay: time.Millisecond}
	addr := startFake(t, f)
	path := writeSamples(t, 2500)

	code, out, errOut := ctl(t, "", "ingest", "--addr", addr, "run-1", path, "--batch-size", "1000", "-o", "json")
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errOut)
	}
	if got, want := ingestJSON(t, out), (ingestSummary{RunID: "run-1", Records: 2500, Sent: 3, Batches: 3, Samples: 2500}); got != want {
		t.Errorf("first ingest: got %+v, want %+v", got, want)
	}
	ids := storedIDs(f)

	// The same file again: the same ids, every batch a duplicate.
	code, out, errOut = ctl(t, "", "ingest", "--addr", addr, "run-1", path, "--batch-size", "1000", "-o", "json")
	if code != 0 {
		t.Fatalf("second ingest: exit %d: %s", code, errOut)
	}
	if got, want := ingestJSON(t, out), (ingestSummary{RunID: "run-1", Records: 2500, Sent: 3, Duplicates: 3}); got != want {
		t.Errorf("second ingest: got %+v, want %+v", got, want)
	}
	// From stdin, with more records appended: the first two batches keep
	// their ids, the third (now full) and fourth are new.
	longer := writeSamples(t, 3200)
	src, err := os.ReadFile(longer)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut = ctl(t, string(src), "ingest", "--addr", addr, "run-1", "-", "--batch-size", "1000", "-o", "json")
	if code != 0 {
		t.Fatalf("ingest from stdin: exit %d: %s", code, errOut)
	}
	if got, want := ingestJSON(t, out), (ingestSummary{RunID: "run-1", Records: 3200, Sent: 4, Batches: 2, Duplicates: 2, Samples: 1200}); got != want {
		t.Errorf("ingest of a longer file: got %+v, want %+v", got, want)
	}
	if n := len(storedIDs(f)); n != len(ids)+2 {
		t.Errorf("stored %d batches, want %d", n, len(ids)+2)
	}
	for _, id := range ids {
		if !regexp.MustCompile(`^[0-9a-f]{24}-[0-9]+$`).MatchString(id) {
			t.Errorf("batch id %q: want <hash>-<n>", id)
		}
	}
}

func storedIDs(f *fakeService) []string {
	_, _, _, stored := f.snapshot()
	var ids []string
	for id := range stored {
		ids = append(ids, id)
	}
	return ids
}

// TestIngestResumes breaks the first stream after the fourth batch, whose
// ack is lost: the client sends the unacknowledged batches again on a new
// stream, and every observation is stored once.
func TestIngestResumes(t *testing.T) {
	t.Parallel()
	f := &fakeService{run: testRun(), breakAfter: 4, ackDelay: time.Millisecond}
	addr := startFake(t, f)
	path := writeSamples(t, 1000)
	code, out, errOut := ctl(t, "", "ingest", "--addr", addr, "run-1", path, "--batch-size", "100", "--window", "3", "-o", "json")
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errOut)
	}
	got := ingestJSON(t, out)
	if got.Retries != 1 || got.Sent != 10 || got.Batches+got.Duplicates != 10 || got.Duplicates < 1 {
		t.Errorf("summary %+v: want 10 batches acknowledged, at least one duplicate (the lost ack), one retry", got)
	}
	streams, _, _, stored := f.snapshot()
	var total uint64
	for _, n := range stored {
		total += n
	}
	if total != 1000 || len(stored) != 10 {
		t.Errorf("stored %d observations in %d batches, want 1000 in 10", total, len(stored))
	}
	if !strings.Contains(errOut, "UNAVAILABLE") || !strings.Contains(errOut, "again on a new stream") {
		t.Errorf("stderr %q: want a note about the retry", errOut)
	}
	if streams != 2 {
		t.Errorf("%d streams, want 2", streams)
	}
}

// TestIngestWindow holds the acks until the client stops sending: the
// client never has more than --window batches unacknowledged.
func TestIngestWindow(t *testing.T) {
	t.Parallel()
	f := &fakeService{run: testRun(), ackDelay: 50 * time.Millisecond}
	addr := startFake(t, f)
	path := writeSamples(t, 2000)
	code, _, errOut := ctl(t, "", "ingest", "--addr", addr, "run-1", path, "--batch-size", "100", "--window", "4")
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, errOut)
	}
	// The window fills up (at least most of it: the fake acknowledges
	// after a pause of 50ms) and is never exceeded.
	if _, n, _, _ := f.snapshot(); n < 2 || n > 4 {
		t.Errorf("at most %d batches unacknowledged, want the window, 4", n)
	}
}

func TestIngestErrors(t *testing.T) {
	t.Parallel()
	f := &fakeService{run: testRun(), ackDelay: time.Millisecond}
	addr := startFake(t, f)
	dir := t.TempDir()
	good := writeSamples(t, 250)
	src, _ := os.ReadFile(good)
	// Line 201 is bad: the two full batches before it are stored, its
	// batch is not.
	lines := strings.SplitAfter(string(src), "\n")
	lines[200] = `{"metric":"cpu","cohort":"canary","value":1}` + "\n"
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(strings.Join(lines, "")), 0o644)

	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		stderr   []string
		batches  int
		stdinTxt string
	}{
		{"missing file", []string{"run-1"}, 2, []string{"canaryctl ingest: missing run id and samples file (RUN FILE)"}, 0, ""},
		{"deprecated flags", []string{"--run", "run-1"}, 2, []string{"--run is deprecated", "missing run id and samples file"}, 0, ""},
		{"unknown run", []string{"nope", good}, 2, []string{"NOT_FOUND", `run "nope" not found`}, 0, ""},
		{"no file", []string{"run-1", filepath.Join(dir, "none")}, 2, []string{"no such file"}, 0, ""},
		{"empty", []string{"run-1", "-"}, 2, []string{"no samples"}, 0, ""},
		{"bad line", []string{"run-1", bad, "--batch-size", "100"}, 2,
			[]string{"line 201: metric:", `"cpu" is not a metric`, "the 2 batches before it are stored"}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(storedIDs(f))
			code, _, errOut := ctl(t, tc.stdinTxt, append([]string{"ingest", "--addr", addr}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr %q: want %q", errOut, s)
				}
			}
			if n := len(storedIDs(f)) - before; n != tc.batches {
				t.Errorf("%d batches stored, want %d", n, tc.batches)
			}
		})
	}
}

// TestIngestRejected: a batch the service rejects ends the ingest with its
// error, naming the batch's lines.
func TestIngestRejected(t *testing.T) {
	t.Parallel()
	path := writeSamples(t, 300)
	// Find the id of the second batch by ingesting into another fake.
	probe := &fakeService{run: testRun(), ackDelay: time.Millisecond}
	if code, _, errOut := ctl(t, "", "ingest", "--addr", startFake(t, probe), "run-1", path, "--batch-size", "100"); code != 0 {
		t.Fatalf("ingest: %s", errOut)
	}
	_, _, _, probed := probe.snapshot()
	var second string
	for id := range probed {
		if strings.HasSuffix(id, "-2") {
			second = id
		}
	}
	f := &fakeService{run: testRun(), ackDelay: time.Millisecond, rejectID: second}
	code, _, errOut := ctl(t, "", "ingest", "--addr", startFake(t, f), "run-1", path, "--batch-size", "100")
	if code != 2 || !strings.Contains(errOut, "lines 101-200: INVALID_ARGUMENT: batch") {
		t.Errorf("exit %d, stderr %q: want 2 and the lines of the rejected batch", code, errOut)
	}
}

func TestBuildBatch(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	recs := []analysis.Record{
		{Metric: "latency_ms", Cohort: analysis.Canary, Value: 1, Time: t0},
		{Metric: "latency_ms", Cohort: analysis.Canary, Value: 2, Time: t0},
		{Metric: "latency_ms", Cohort: analysis.Baseline, Value: 3, Time: t0},
		{Metric: "latency_ms", Cohort: analysis.Canary, Value: 4, Time: t0.Add(time.Second)},
		{Metric: "errors", Cohort: analysis.Canary, IsCount: true, Count: 1, Total: 10, Time: t0},
		{Metric: "errors", Cohort: analysis.Canary, IsCount: true, Count: 2, Total: 20, Time: t0},
		{Metric: "latency_ms", Cohort: analysis.Canary, Value: 5},
		{Metric: "latency_ms", Cohort: analysis.Canary, Value: 6, Time: t0, Instance: "pod-1"},
		{Metric: "latency_ms", Cohort: analysis.Canary, Value: 7, Time: t0},
		{Metric: "latency_ms", Cohort: analysis.Canary, Time: t0, Instance: "pod-1", Histogram: &analysis.Histogram{Bounds: []float64{1, 2}, Counts: []float64{3, 4}}},
		{Metric: "latency_ms", Cohort: analysis.Baseline, Time: t0, Instance: "pod-2", Histogram: &analysis.Histogram{Bounds: []float64{5}, Counts: []float64{6}, Sum: 7, HasSum: true}},
		{Metric: "latency_ms", Cohort: analysis.Baseline, Time: t0, Instance: "pod-2", Histogram: &analysis.Histogram{Bounds: []float64{8, math.Inf(1)}, Counts: []float64{0, 9}}},
	}
	ts := timestamppb.New(t0)
	want := &canaryv1.Batch{
		RunId: "r", BatchId: "b",
		Samples: []*canaryv1.Sample{
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Observation: &canaryv1.Sample_Value{Value: 3}, Time: ts},
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Observation: &canaryv1.Sample_Value{Value: 4}, Time: timestamppb.New(t0.Add(time.Second))},
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Observation: &canaryv1.Sample_Value{Value: 5}},
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Observation: &canaryv1.Sample_Value{Value: 6}, Time: ts, Instance: "pod-1"},
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Time: ts, Instance: "pod-1", Observation: &canaryv1.Sample_Histogram{Histogram: &canaryv1.Histogram{
				Buckets: &canaryv1.Histogram_Explicit{Explicit: &canaryv1.ExplicitBuckets{UpperBounds: []float64{1, 2}, CumulativeCounts: []float64{3, 7}}},
			}}},
		},
		Columns: []*canaryv1.MetricColumn{
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Values: []float64{1, 2, 7}, Time: ts},
			{Metric: "errors", Cohort: canaryv1.Cohort_COHORT_CANARY, Counts: []float64{1, 2}, Totals: []float64{10, 20}, Time: ts},
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Time: ts, Instance: "pod-2", Histograms: []*canaryv1.Histogram{
				{Buckets: &canaryv1.Histogram_Explicit{Explicit: &canaryv1.ExplicitBuckets{UpperBounds: []float64{5}, CumulativeCounts: []float64{6}}}, Sum: proto.Float64(7)},
				{Buckets: &canaryv1.Histogram_Explicit{Explicit: &canaryv1.ExplicitBuckets{UpperBounds: []float64{8, math.Inf(1)}, CumulativeCounts: []float64{0, 9}}}},
			}},
		},
	}
	if got := buildBatch("r", "b", recs); !proto.Equal(got, want) {
		t.Errorf("buildBatch:\n got %v\nwant %v", got, want)
	}
}

func TestRPCErrors(t *testing.T) {
	t.Parallel()
	bad, _ := status.New(codes.InvalidArgument, "run_id: must not be empty (and 1 more)").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "run_id", Description: "must not be empty"},
			{Field: "page_size", Description: "must be >= 0"},
		},
	})
	for _, tc := range []struct {
		err   error
		code  int
		calls int
		want  []string
	}{
		{bad.Err(), 2, 1, []string{"INVALID_ARGUMENT: run_id: must not be empty (and 1 more)", "\n  run_id: must not be empty", "\n  page_size: must be >= 0"}},
		{status.Error(codes.NotFound, "run x not found"), 2, 1, []string{"NOT_FOUND: run x not found"}},
		{status.Error(codes.FailedPrecondition, "finished"), 2, 1, []string{"FAILED_PRECONDITION: finished"}},
		{status.Error(codes.AlreadyExists, "reused"), 2, 1, []string{"ALREADY_EXISTS: reused"}},
		{status.Error(codes.Internal, "internal error"), 1, 1, []string{"INTERNAL: internal error"}},
		{status.Error(codes.Unavailable, "down"), 1, unaryAttempts, []string{"UNAVAILABLE: down"}},
	} {
		t.Run(codeName(status.Code(tc.err)), func(t *testing.T) {
			t.Parallel()
			f := &fakeService{unaryErr: tc.err}
			code, _, errOut := ctl(t, "", "judge", "--addr", startFake(t, f), "x")
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q: want %q", errOut, w)
				}
			}
			if _, _, calls, _ := f.snapshot(); calls != tc.calls {
				t.Errorf("%d calls, want %d", calls, tc.calls)
			}
		})
	}
}

func TestCodeName(t *testing.T) {
	t.Parallel()
	for c, want := range map[codes.Code]string{
		codes.OK: "OK", codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Code(99): "Code(99)",
	} {
		if got := codeName(c); got != want {
			t.Errorf("codeName(%d) = %q, want %q", c, got, want)
		}
	}
}

// TestCallTimeoutWhileUnavailable: when the timeout ends the retries of a
// server that was unavailable, the error says unavailable (is canaryd
// running?), not the timeout; a timeout alone stays a timeout.
func TestCallTimeoutWhileUnavailable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	n := 0
	_, err := call(ctx, func(ctx context.Context) (int, error) {
		n++
		if n == 1 {
			return 0, status.Error(codes.Unavailable, "connection refused")
		}
		<-ctx.Done() // the next attempt hangs until the timeout
		return 0, status.FromContextError(ctx.Err()).Err()
	})
	if err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") || n != 2 {
		t.Errorf("after %d attempts: %v, want UNAVAILABLE", n, err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	_, err = call(ctx2, func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, status.FromContextError(ctx.Err()).Err()
	})
	if err == nil || !strings.Contains(err.Error(), "DEADLINE_EXCEEDED") {
		t.Errorf("a timeout alone: %v, want DEADLINE_EXCEEDED", err)
	}
}
