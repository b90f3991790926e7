package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// The store.Tailer part of the suite: every backend follows a run's log of
// deltas from a position.

// tailer returns st as a store.Tailer, or fails the test.
func tailer(t *testing.T, st store.Store) store.Tailer {
	t.Helper()
	tl, ok := st.(store.Tailer)
	if !ok {
		t.Fatalf("%T is not a store.Tailer", st)
	}
	return tl
}

// readFrom reads the deltas after a position ("S:" and the snapshot
// first when from is nil) and returns them with the position after them.
func readFrom(ctx context.Context, t *testing.T, tl store.Tailer, runID string, from *store.Cursor) ([]string, store.Cursor) {
	t.Helper()
	var got []string
	cur, err := tl.ReadBatchesFrom(ctx, runID, from, func(snapshot bool, d []byte) error {
		if snapshot {
			got = append(got, "S:"+string(d))
		} else {
			got = append(got, string(d))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ReadBatchesFrom(%s, %+v) = %v", runID, from, err)
	}
	return got, cur
}

func (s *suite) testReadFrom(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	tl := tailer(t, st)
	mustCreate(ctx, t, st, newRun("run-a", "req-a", "checkout", "wave-1", t0))

	got, c0 := readFrom(ctx, t, tl, "run-a", nil)
	if !slices.Equal(got, []string{"S:"}) || c0.N != 0 || c0.ID != "" {
		t.Fatalf("empty run: %q at %+v, want the empty snapshot at {0 \"\"}", got, c0)
	}
	mustAppend(ctx, t, st, "run-a", "1", []byte("d1"), false)
	mustAppend(ctx, t, st, "run-a", "2", []byte("d2"), false)
	got, c2 := readFrom(ctx, t, tl, "run-a", &c0)
	if !slices.Equal(got, []string{"d1", "d2"}) || c2.N != 2 || c2.ID == "" {
		t.Fatalf("after two appends: %q at %+v, want d1 d2 at N=2", got, c2)
	}
	mustAppend(ctx, t, st, "run-a", "2", []byte("d2 again"), true)
	mustAppend(ctx, t, st, "run-a", "3", []byte("d3"), false)
	got, c3 := readFrom(ctx, t, tl, "run-a", &c2)
	if !slices.Equal(got, []string{"d3"}) || c3.N != 3 {
		t.Fatalf("after a duplicate and d3: %q at %+v, want d3 at N=3", got, c3)
	}
	if got, c := readFrom(ctx, t, tl, "run-a", &c3); len(got) != 0 || c != c3 {
		t.Fatalf("at the end: %q at %+v, want nothing at %+v", got, c, c3)
	}
	if got, c := readFrom(ctx, t, tl, "run-a", nil); !slices.Equal(got, []string{"S:", "d1", "d2", "d3"}) || c != c3 {
		t.Fatalf("from the start: %q at %+v, want every delta at %+v", got, c, c3)
	}

	// SnapshotThrough folds up to a position, never back.
	if wrote, err := tl.SnapshotThrough(ctx, "run-a", c2, []byte("s12")); err != nil || !wrote {
		t.Fatalf("SnapshotThrough(N=2) = %v, %v; want true", wrote, err)
	}
	if got := readBatches(ctx, t, st, "run-a"); !slices.Equal(got, []string{"S:s12", "d3"}) {
		t.Fatalf("after SnapshotThrough(N=2): ReadBatches = %q", got)
	}
	if got, c := readFrom(ctx, t, tl, "run-a", nil); !slices.Equal(got, []string{"S:s12", "d3"}) || c != c3 {
		t.Fatalf("from the snapshot: %q at %+v, want s12 d3 at %+v", got, c, c3)
	}
	if got, _ := readFrom(ctx, t, tl, "run-a", &c2); !slices.Equal(got, []string{"d3"}) {
		t.Fatalf("from the snapshot's position: %q, want d3", got)
	}
	_, err := tl.ReadBatchesFrom(ctx, "run-a", &c0, func(bool, []byte) error { return nil })
	checkErr(t, "ReadBatchesFrom(a position the snapshot folded)", err, store.ErrSnapshotMoved)
	if wrote, err := tl.SnapshotThrough(ctx, "run-a", c2, []byte("stale")); err != nil || wrote {
		t.Fatalf("SnapshotThrough(N=2) again = %v, %v; want false: a snapshot folds as many", wrote, err)
	}
	if wrote, err := tl.SnapshotThrough(ctx, "run-a", c0, []byte("older")); err != nil || wrote {
		t.Fatalf("SnapshotThrough(N=0) = %v, %v; want false", wrote, err)
	}
	if got := readBatches(ctx, t, st, "run-a"); !slices.Equal(got, []string{"S:s12", "d3"}) {
		t.Fatalf("after stale snapshots: ReadBatches = %q, want them ignored", got)
	}
	if _, err := tl.SnapshotThrough(ctx, "run-a", store.Cursor{N: 10, ID: "10-0"}, []byte("future")); err == nil {
		t.Error("SnapshotThrough(a position past the last delta) succeeded")
	}
	if wrote, err := tl.SnapshotThrough(ctx, "run-a", c3, []byte("s123")); err != nil || !wrote {
		t.Fatalf("SnapshotThrough(N=3) = %v, %v; want true", wrote, err)
	}
	if got, c := readFrom(ctx, t, tl, "run-a", nil); !slices.Equal(got, []string{"S:s123"}) || c.N != 3 {
		t.Fatalf("everything folded: %q at %+v, want s123 at N=3", got, c)
	}
	mustAppend(ctx, t, st, "run-a", "4", []byte("d4"), false)
	if got, c := readFrom(ctx, t, tl, "run-a", &c3); !slices.Equal(got, []string{"d4"}) || c.N != 4 {
		t.Fatalf("after everything folded and d4: %q at %+v, want d4 at N=4", got, c)
	}

	_, err = tl.ReadBatchesFrom(ctx, "run-x", nil, func(bool, []byte) error { return nil })
	checkErr(t, "ReadBatchesFrom(run-x)", err, store.ErrNotFound)
}

func (s *suite) testFinishThrough(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	tl := tailer(t, st)
	run := newRun("run-a", "req-a", "checkout", "wave-1", t0)
	mustCreate(ctx, t, st, run)
	mustAppend(ctx, t, st, "run-a", "1", []byte("d1"), false)
	_, c1 := readFrom(ctx, t, tl, "run-a", nil)
	mustAppend(ctx, t, st, "run-a", "2", []byte("d2"), false)
	fin := finishedRun(run, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0.Add(time.Hour))

	err := tl.FinishRunThrough(ctx, fin, c1)
	checkErr(t, "FinishRunThrough(a stale position)", err, store.ErrMoreBatches)
	if got, err := st.GetRun(ctx, "run-a"); err != nil || got.GetState() != canaryv1.RunState_RUN_STATE_RUNNING {
		t.Fatalf("after a refused finish: %v, %v; want the run running", got.GetState(), err)
	}
	mustAppend(ctx, t, st, "run-a", "3", []byte("d3"), false)
	_, c3 := readFrom(ctx, t, tl, "run-a", &c1)
	// A snapshot does not change the count of the deltas.
	if _, err := tl.SnapshotThrough(ctx, "run-a", c3, []byte("s")); err != nil {
		t.Fatal(err)
	}
	if err := tl.FinishRunThrough(ctx, fin, c3); err != nil {
		t.Fatalf("FinishRunThrough(the last position) = %v", err)
	}
	if got, err := st.GetRun(ctx, "run-a"); err != nil || got.GetState() != canaryv1.RunState_RUN_STATE_COMPLETED {
		t.Fatalf("after the finish: %v, %v; want COMPLETED", got.GetState(), err)
	}
	vs, _, err := st.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{})
	if err != nil || len(vs) != 1 || vs[0].GetRunId() != "run-a" {
		t.Fatalf("history after the finish: %v, %v", vs, err)
	}
	err = tl.FinishRunThrough(ctx, fin, c3)
	checkErr(t, "FinishRunThrough(a finished run)", err, store.ErrFinished)
	_, err = st.AppendBatch(ctx, "run-a", "4", []byte("d4"))
	checkErr(t, "AppendBatch(a finished run)", err, store.ErrFinished)
}

func (s *suite) testCloseRun(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	tl := tailer(t, st)
	run := newRun("run-a", "req-a", "checkout", "wave-1", t0)
	mustCreate(ctx, t, st, run)
	mustAppend(ctx, t, st, "run-a", "1", []byte("d1"), false)

	if err := tl.CloseRun(ctx, "run-a"); err != nil {
		t.Fatalf("CloseRun = %v", err)
	}
	if err := tl.CloseRun(ctx, "run-a"); err != nil {
		t.Fatalf("CloseRun of a closed run = %v, want nil", err)
	}
	for _, id := range []string{"2", "1"} {
		_, err := st.AppendBatch(ctx, "run-a", id, []byte("d"+id))
		checkErr(t, "AppendBatch(a closed run, "+id+")", err, store.ErrFinished)
	}
	if err := tl.ReopenRun(ctx, "run-a"); err != nil {
		t.Fatalf("ReopenRun = %v", err)
	}
	mustAppend(ctx, t, st, "run-a", "2", []byte("d2"), false)
	if got := readBatches(ctx, t, st, "run-a"); !slices.Equal(got, []string{"S:", "d1", "d2"}) {
		t.Fatalf("ReadBatches = %q, want the batches refused while closed absent", got)
	}

	// A closed run can be finished.
	if err := tl.CloseRun(ctx, "run-a"); err != nil {
		t.Fatal(err)
	}
	_, cur := readFrom(ctx, t, tl, "run-a", nil)
	fin := finishedRun(run, canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_HOLD, t0.Add(time.Hour))
	if err := tl.FinishRunThrough(ctx, fin, cur); err != nil {
		t.Fatalf("FinishRunThrough(a closed run) = %v", err)
	}
	checkErr(t, "CloseRun(a finished run)", tl.CloseRun(ctx, "run-a"), store.ErrFinished)
	checkErr(t, "ReopenRun(a finished run)", tl.ReopenRun(ctx, "run-a"), store.ErrFinished)
	checkErr(t, "CloseRun(run-x)", tl.CloseRun(ctx, "run-x"), store.ErrNotFound)
	checkErr(t, "ReopenRun(run-x)", tl.ReopenRun(ctx, "run-x"), store.ErrNotFound)
}

func (s *suite) testWaitBatches(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	tl := tailer(t, st)
	mustCreate(ctx, t, st, newRun("run-a", "req-a", "checkout", "wave-1", t0))
	mustAppend(ctx, t, st, "run-a", "1", []byte("d1"), false)
	_, c1 := readFrom(ctx, t, tl, "run-a", nil)

	if ok, err := tl.WaitBatches(ctx, "run-a", store.Cursor{}, time.Minute); err != nil || !ok {
		t.Fatalf("WaitBatches(before d1) = %v, %v; want true at once", ok, err)
	}
	if ok, err := tl.WaitBatches(ctx, "run-a", c1, 50*time.Millisecond); err != nil || ok {
		t.Fatalf("WaitBatches(at the end) = %v, %v; want false after the timeout", ok, err)
	}
	type result struct {
		ok  bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		ok, err := tl.WaitBatches(ctx, "run-a", c1, time.Minute)
		done <- result{ok, err}
	}()
	time.Sleep(50 * time.Millisecond) // let it wait
	mustAppend(ctx, t, st, "run-a", "1", []byte("d1"), true)
	mustAppend(ctx, t, st, "run-a", "2", []byte("d2"), false)
	select {
	case r := <-done:
		if r.err != nil || !r.ok {
			t.Fatalf("WaitBatches woken by an append = %v, %v; want true", r.ok, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WaitBatches not woken by an append")
	}
	_, c2 := readFrom(ctx, t, tl, "run-a", &c1)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := tl.WaitBatches(cctx, "run-a", c2, time.Minute); err == nil {
		t.Error("WaitBatches with a cancelled context = nil, want an error")
	}
}
