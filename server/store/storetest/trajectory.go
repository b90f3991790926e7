package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// trajectories returns the store's store.Trajectories, which every backend
// implements.
func trajectories(t *testing.T, st store.Store) store.Trajectories {
	t.Helper()
	tr, ok := st.(store.Trajectories)
	if !ok {
		t.Fatalf("%T does not implement store.Trajectories", st)
	}
	return tr
}

func putTrajectory(ctx context.Context, t *testing.T, st store.Store, runID string, traj []byte) {
	t.Helper()
	if err := trajectories(t, st).PutTrajectory(ctx, runID, traj); err != nil {
		t.Fatalf("PutTrajectory(%s): %v", runID, err)
	}
}

func wantTrajectory(ctx context.Context, t *testing.T, st store.Store, runID string, want []byte) {
	t.Helper()
	got, err := trajectories(t, st).GetTrajectory(ctx, runID)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("GetTrajectory(%s) = %q, %v; want %q", runID, got, err, want)
	}
}

// testTrajectory: a run's trajectory is replaced by each put, while the
// run runs and once it is finished; unknown runs have none.
func (s *suite) testTrajectory(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	tr := trajectories(t, st)
	if err := tr.PutTrajectory(ctx, "nope", []byte("x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutTrajectory(unknown run) = %v, want ErrNotFound", err)
	}
	if _, err := tr.GetTrajectory(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTrajectory(unknown run) = %v, want ErrNotFound", err)
	}
	if _, err := tr.GetTrajectory(ctx, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTrajectory(\"\") = %v, want ErrNotFound", err)
	}
	run := newRun("run-t", "req-t", "checkout", "wave-1", t0)
	mustCreate(ctx, t, st, run)
	wantTrajectory(ctx, t, st, "run-t", nil)
	putTrajectory(ctx, t, st, "run-t", []byte("first"))
	wantTrajectory(ctx, t, st, "run-t", []byte("first"))
	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 64<<10) // binary, 256 KiB
	putTrajectory(ctx, t, st, "run-t", big)
	wantTrajectory(ctx, t, st, "run-t", big)
	// The record's other writes leave it.
	run.Verdict = verdictFor(run, canaryv1.Decision_DECISION_HOLD, t0.Add(time.Minute), false)
	if err := st.UpdateRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	wantTrajectory(ctx, t, st, "run-t", big)
	mustFinish(ctx, t, st, finishedRun(run, canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_ROLLBACK, t0.Add(time.Hour)))
	wantTrajectory(ctx, t, st, "run-t", big)
	putTrajectory(ctx, t, st, "run-t", []byte("final"))
	wantTrajectory(ctx, t, st, "run-t", []byte("final"))
	if got, err := st.GetRun(ctx, "run-t"); err != nil || got.GetState() != canaryv1.RunState_RUN_STATE_ABORTED {
		t.Errorf("GetRun after PutTrajectory = %v, %v; want the aborted run", got, err)
	}
}

// testTrajectoryPersistence: trajectories survive reopening the store.
func (s *suite) testTrajectoryPersistence(t *testing.T) {
	if s.reopen == nil {
		t.Skip("no Reopen option")
	}
	ctx := testContext(t)
	st := s.open(t)
	for _, id := range []string{"run-a", "run-b"} {
		mustCreate(ctx, t, st, newRun(id, "req-"+id, "checkout", "wave-1", t0))
		putTrajectory(ctx, t, st, id, []byte("trajectory of "+id))
	}
	mustFinish(ctx, t, st, finishedRun(newRun("run-b", "req-run-b", "checkout", "wave-1", t0),
		canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0.Add(time.Hour)))
	st = s.reopen(t, st)
	for _, id := range []string{"run-a", "run-b"} {
		wantTrajectory(ctx, t, st, id, []byte("trajectory of "+id))
	}
}
