package storetest

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// testPersistence writes some of everything, reopens the store and checks
// that it is all there and still behaves the same.
func (s *suite) testPersistence(t *testing.T) {
	if s.reopen == nil {
		t.Skip("no Reopen option")
	}
	ctx := testContext(t)
	st := s.open(t)

	var configs []*canaryv1.ConfigVersion
	for i, tol := range []float64{0.1, 0.2} {
		yaml := "" // v1 put as a message, v2 as YAML
		if i == 1 {
			yaml = "# checkout\nname: checkout\n"
		}
		v, _, err := st.PutConfig(ctx, testConfig("checkout", tol), yaml)
		if err != nil {
			t.Fatalf("PutConfig: %v", err)
		}
		configs = append(configs, v)
	}
	a := newRun("run-a", "req-a", "checkout", "wave-1", t0)
	b := newRun("run-b", "req-b", "checkout", "wave-2", t0.Add(time.Second))
	c := newRun("run-c", "req-c", "search", "wave-1", t0.Add(2*time.Second))
	for _, r := range []*canaryv1.Run{a, b, c} {
		mustCreate(ctx, t, st, r)
	}
	for _, id := range []string{"1", "2", "3"} {
		mustAppend(ctx, t, st, "run-a", id, []byte("d"+id), false)
	}
	if err := st.Snapshot(ctx, "run-a", 1, []byte("s1")); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	mustAppend(ctx, t, st, "run-a", "4", []byte("d4"), false)
	a.Verdict = verdictFor(a, canaryv1.Decision_DECISION_HOLD, t0.Add(time.Minute), false)
	a.Counters = &canaryv1.RunCounters{Batches: 4, BaselineSamples: 10, CanarySamples: 12, LastIngestTime: timestamppb.New(t0.Add(time.Minute))}
	if err := st.UpdateRun(ctx, a); err != nil {
		t.Fatalf("UpdateRun: %v", err)
	}
	mustAppend(ctx, t, st, "run-b", "1", []byte("b1"), false)
	bDone := finishedRun(b, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0.Add(time.Hour))
	cDone := finishedRun(c, canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_ROLLBACK, t0.Add(2*time.Hour))
	mustFinish(ctx, t, st, bDone)
	mustFinish(ctx, t, st, cDone)

	st = s.reopen(t, st)

	if got, err := st.GetConfig(ctx, "checkout", 0); err != nil || !proto.Equal(got, configs[1]) {
		t.Errorf("GetConfig(latest) = %v, %v; want %v", got, err, configs[1])
	}
	got, _, err := st.ListConfigs(ctx, "checkout", store.Page{})
	if err != nil || !equalLists(got, []*canaryv1.ConfigVersion{configs[1], configs[0]}) {
		t.Errorf("ListConfigs(checkout) = %v, %v", got, err)
	}
	if v, created, err := st.PutConfig(ctx, testConfig("checkout", 0.2), ""); err != nil || created || v.GetVersion() != 2 {
		t.Errorf("PutConfig(identical to v2) = version %d, created %v, err %v; want 2, false", v.GetVersion(), created, err)
	}
	for _, want := range []*canaryv1.Run{a, bDone, cDone} {
		got, err := st.GetRun(ctx, want.GetId())
		if err != nil || !proto.Equal(got, want) {
			t.Errorf("GetRun(%s) = %v\n%v\nwant\n%v", want.GetId(), err, got, want)
		}
	}
	runs, _, err := st.ListRuns(ctx, store.RunFilter{State: canaryv1.RunState_RUN_STATE_RUNNING}, store.Page{})
	if err != nil || runIDs(runs) != "run-a" {
		t.Errorf("ListRuns(RUNNING) = %s, %v; want run-a", runIDs(runs), err)
	}
	if got, created, err := st.CreateRun(ctx, newRun("run-a2", "req-a", "checkout", "wave-1", t0), []byte("fp-run-a")); err != nil || created || got.GetId() != "run-a" {
		t.Errorf("CreateRun(retry of req-a) = %s, created %v, err %v; want run-a, false", got.GetId(), created, err)
	}
	if got, want := readBatches(ctx, t, st, "run-a"), []string{"S:s1", "d2", "d3", "d4"}; !slices.Equal(got, want) {
		t.Errorf("ReadBatches(run-a) = %q, want %q", got, want)
	}
	if got, want := readBatches(ctx, t, st, "run-b"), []string{"S:", "b1"}; !slices.Equal(got, want) {
		t.Errorf("ReadBatches(run-b) = %q, want %q", got, want)
	}
	mustAppend(ctx, t, st, "run-a", "1", []byte("d1"), true) // folded into the snapshot, still known
	mustAppend(ctx, t, st, "run-a", "4", []byte("d4"), true)
	mustAppend(ctx, t, st, "run-a", "5", []byte("d5"), false)
	_, err = st.AppendBatch(ctx, "run-b", "2", []byte("b2"))
	checkErr(t, "AppendBatch(finished run-b)", err, store.ErrFinished)
	checkErr(t, "FinishRun(finished run-c)", st.FinishRun(ctx, cDone), store.ErrFinished)
	verdicts, _, err := st.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{})
	if want := []*canaryv1.Verdict{cDone.GetVerdict(), bDone.GetVerdict()}; err != nil || !equalLists(verdicts, want) {
		t.Errorf("ListVerdicts = %s, %v; want %s", verdictIDs(verdicts), err, verdictIDs(want))
	}
	verdicts, _, err = st.ListVerdicts(ctx, store.VerdictFilter{Service: "search", Decision: canaryv1.Decision_DECISION_ROLLBACK}, store.Page{})
	if err != nil || verdictIDs(verdicts) != "run-c" {
		t.Errorf("ListVerdicts(search, ROLLBACK) = %s, %v; want run-c", verdictIDs(verdicts), err)
	}

	// What the reopened store wrote survives another reopen.
	st = s.reopen(t, st)
	if got, want := readBatches(ctx, t, st, "run-a"), []string{"S:s1", "d2", "d3", "d4", "d5"}; !slices.Equal(got, want) {
		t.Errorf("after a second reopen, ReadBatches(run-a) = %q, want %q", got, want)
	}
}
