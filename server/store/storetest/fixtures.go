package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// t0 is the base of every time in the fixtures.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// testConfig returns a valid config; tolerance varies its content.
func testConfig(name string, tolerance float64) *canaryv1.CanaryConfig {
	return &canaryv1.CanaryConfig{
		Name:       name,
		Warmup:     durationpb.New(5 * time.Minute),
		Confidence: ptr(0.99),
		Power:      ptr(0.8),
		Metrics: []*canaryv1.MetricConfig{{
			Name:         "latency_ms",
			Category:     canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
			Type:         canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION,
			BadDirection: canaryv1.BadDirection_BAD_DIRECTION_INCREASE,
			Tolerance:    ptr(tolerance),
			Critical:     ptr(true),
			MinSamples:   ptr(uint64(200)),
			Unit:         "ms",
		}, {
			Name:         "errors",
			Category:     canaryv1.MetricCategory_METRIC_CATEGORY_STABILITY,
			Type:         canaryv1.MetricType_METRIC_TYPE_RATE,
			Tolerance:    ptr(0.2),
			MinTotal:     ptr(2000.0),
			ExposureUnit: "requests",
		}},
	}
}

// newRun returns a running run as the server would create it.
func newRun(id, requestID, service, stage string, created time.Time) *canaryv1.Run {
	return &canaryv1.Run{
		Id:             id,
		RequestId:      requestID,
		Service:        service,
		Stage:          stage,
		ConfigName:     "checkout",
		ConfigVersion:  2,
		Config:         testConfig("checkout", 0.1),
		BaselineLabels: map[string]string{"version": "v41"},
		CanaryLabels:   map[string]string{"version": "v42"},
		BakeTime:       durationpb.New(30 * time.Minute),
		State:          canaryv1.RunState_RUN_STATE_RUNNING,
		CreateTime:     timestamppb.New(created),
		Counters:       &canaryv1.RunCounters{},
	}
}

// verdictFor returns a verdict of run with some evidence.
func verdictFor(run *canaryv1.Run, d canaryv1.Decision, at time.Time, final bool) *canaryv1.Verdict {
	state := run.GetState()
	if final {
		state = canaryv1.RunState_RUN_STATE_COMPLETED
	}
	return &canaryv1.Verdict{
		RunId:           run.GetId(),
		Service:         run.GetService(),
		Stage:           run.GetStage(),
		Decision:        d,
		Reason:          fmt.Sprintf("%v for %s", d, run.GetId()),
		DecidingMetrics: []string{"latency_ms"},
		Time:            timestamppb.New(at),
		Final:           final,
		ConfigName:      run.GetConfigName(),
		ConfigVersion:   run.GetConfigVersion(),
		RunState:        state,
		Sequence:        7,
		Confidence:      0.99,
		Metrics: []*canaryv1.MetricResult{{
			Name:     "latency_ms",
			Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
			Type:     canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION,
			Outcome:  canaryv1.MetricOutcome_METRIC_OUTCOME_PASS,
			Baseline: &canaryv1.CohortSummary{N: 1200, Median: ptr(81.5)},
			Canary:   &canaryv1.CohortSummary{N: 1180, Median: ptr(83.0)},
			Effect:   &canaryv1.Effect{Estimate: 1.02, Lower: 0.99, Upper: 1.05, Confidence: 0.99},
			PValue:   0.4,
			Test:     "mann-whitney-u",
			Gate:     &canaryv1.Gate{Ready: true, FloorMet: true, EvidenceMet: true, Unit: "samples"},
		}},
	}
}

// finishedRun returns run as FinishRun receives it: finished in state, with
// a final verdict of decision d at time at.
func finishedRun(run *canaryv1.Run, state canaryv1.RunState, d canaryv1.Decision, at time.Time) *canaryv1.Run {
	f := proto.Clone(run).(*canaryv1.Run)
	f.State = state
	f.FinishTime = timestamppb.New(at)
	f.FinishReason = "bake time elapsed"
	f.Verdict = verdictFor(f, d, at, true)
	f.Verdict.RunState = state
	f.Counters = &canaryv1.RunCounters{Batches: 3, BaselineSamples: 3000, CanarySamples: 2900, LastIngestTime: timestamppb.New(at)}
	return f
}

func mustCreate(ctx context.Context, t *testing.T, st store.Store, run *canaryv1.Run) {
	t.Helper()
	got, created, err := st.CreateRun(ctx, run, []byte("fp-"+run.GetId()))
	if err != nil || !created {
		t.Fatalf("CreateRun(%s) = created %v, err %v; want created", run.GetId(), created, err)
	}
	if !proto.Equal(got, run) {
		t.Fatalf("CreateRun(%s) returned\n%v\nwant\n%v", run.GetId(), got, run)
	}
}

func mustFinish(ctx context.Context, t *testing.T, st store.Store, run *canaryv1.Run) {
	t.Helper()
	if err := st.FinishRun(ctx, run); err != nil {
		t.Fatalf("FinishRun(%s) = %v", run.GetId(), err)
	}
}

func mustAppend(ctx context.Context, t *testing.T, st store.Store, runID, batchID string, delta []byte, wantDup bool) {
	t.Helper()
	dup, err := st.AppendBatch(ctx, runID, batchID, delta)
	if err != nil || dup != wantDup {
		t.Fatalf("AppendBatch(%s, %s) = dup %v, err %v; want dup %v", runID, batchID, dup, err, wantDup)
	}
}

// checkErr fails unless errors.Is(err, want) (or err is nil for want nil).
func checkErr(t *testing.T, call string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s = %v, want nil", call, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s = %v, want %v", call, err, want)
	}
}

// batchLog is what ReadBatches delivered, as "S:<snapshot>" then the deltas.
func readBatches(ctx context.Context, t *testing.T, st store.Store, runID string) []string {
	t.Helper()
	var out []string
	calls := 0
	err := st.ReadBatches(ctx, runID, func(snapshot bool, data []byte) error {
		calls++
		switch {
		case calls == 1 && !snapshot:
			t.Errorf("ReadBatches(%s): first call has snapshot = false, want true", runID)
		case calls > 1 && snapshot:
			t.Errorf("ReadBatches(%s): call %d has snapshot = true, want false", runID, calls)
		}
		if snapshot {
			out = append(out, "S:"+string(data))
		} else {
			out = append(out, string(data))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ReadBatches(%s) = %v", runID, err)
	}
	return out
}

// listAll pages through a listing with page size size, checking each page
// against the size, and returns the concatenation.
func listAll[T any](t *testing.T, size int, list func(page store.Page) ([]T, string, error)) []T {
	t.Helper()
	var all []T
	page := store.Page{Size: size}
	for pages := 0; ; pages++ {
		if pages > 10_000 {
			t.Fatalf("listing did not end after %d pages", pages)
		}
		items, next, err := list(page)
		if err != nil {
			t.Fatalf("page %d (token %q): %v", pages, page.Token, err)
		}
		if len(items) > page.Limit() {
			t.Fatalf("page %d has %d items, more than its size %d", pages, len(items), page.Limit())
		}
		all = append(all, items...)
		if next == "" {
			return all
		}
		if len(items) == 0 && pages > 0 && page.Token == next {
			t.Fatalf("page %d: empty page returned its own token", pages)
		}
		page.Token = next
	}
}

func verdictIDs(vs []*canaryv1.Verdict) string {
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.GetRunId()
	}
	return strings.Join(ids, " ")
}

func runIDs(rs []*canaryv1.Run) string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.GetId()
	}
	return strings.Join(ids, " ")
}

// newestFirst orders by time descending, then id descending.
func newestFirst(ta, tb time.Time, ida, idb string) int {
	if c := tb.Compare(ta); c != 0 {
		return c
	}
	return strings.Compare(idb, ida)
}

// equalLists reports whether two lists of messages are equal, element by
// element.
func equalLists[M proto.Message](a, b []M) bool {
	return slices.EqualFunc(a, b, func(x, y M) bool { return proto.Equal(x, y) })
}
