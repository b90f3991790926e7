package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// RetentionOptions are the retention settings a store of the retention
// tests is opened with.
type RetentionOptions struct {
	// Retention: how long the raw data of a finished run are kept.
	Retention time.Duration
	// VerdictRetention: how long a final verdict and its run are kept
	// after the verdict's time (0: forever).
	VerdictRetention time.Duration
	// Now is the store's clock for VerdictRetention (and, where the
	// backend dates finishes by it, for Retention).
	Now func() time.Time
}

// Retention enables the retention tests: open must return a new, empty
// store with o's settings, and maintain must run its maintenance once
// (the Redis store's Maintain; raw data expire on their own there).
//
// The contract, as both backends keep it: Retention after a run finished,
// its raw data are gone (ReadBatches delivers an empty snapshot only, and
// AppendBatch still answers ErrFinished), its record and verdict stay; a
// verdict older than VerdictRetention is deleted with everything of its
// run (GetRun: ErrNotFound; gone from every listing; its request id free
// again), and nothing else is.
func Retention(open func(t *testing.T, o RetentionOptions) store.Store, maintain func(ctx context.Context, s store.Store) error) Option {
	return func(c *config) {
		c.retentionOpen = open
		c.maintain = maintain
	}
}

// testRawRetention: the raw data of a finished run go after Retention
// (real time: the Redis store expires them with a TTL), the running run's
// stay.
func (s *suite) testRawRetention(t *testing.T) {
	if s.retentionOpen == nil {
		t.Skip("the backend did not enable the retention tests")
	}
	st := s.retentionOpen(t, RetentionOptions{Retention: time.Second, Now: time.Now})
	ctx := testContext(t)
	now := time.Now()
	for _, id := range []string{"done", "running"} {
		mustCreate(ctx, t, st, newRun(id, "req-"+id, "checkout", "wave-1", now))
		for _, b := range []string{"1", "2"} {
			if _, err := st.AppendBatch(ctx, id, b, []byte("d"+b)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Snapshot(ctx, "done", 1, []byte("s1")); err != nil {
		t.Fatal(err)
	}
	done := finishedRun(newRun("done", "req-done", "checkout", "wave-1", now), canaryv1.RunState_RUN_STATE_ABORTED,
		canaryv1.Decision_DECISION_ROLLBACK, now)
	putTrajectory(ctx, t, st, "done", []byte("trajectory of done"))
	mustFinish(ctx, t, st, done)

	read := func(id string) string {
		t.Helper()
		var got []string
		if err := st.ReadBatches(ctx, id, func(_ bool, d []byte) error { got = append(got, string(d)); return nil }); err != nil {
			t.Fatalf("ReadBatches(%s): %v", id, err)
		}
		return strings.Join(got, " ")
	}
	deadline := time.Now().Add(30 * time.Second)
	for read("done") != "" {
		if time.Now().After(deadline) {
			t.Fatalf("raw data of the finished run still there 30s after a retention of 1s: %q", read("done"))
		}
		time.Sleep(100 * time.Millisecond)
		if err := s.maintain(ctx, st); err != nil {
			t.Fatalf("maintain: %v", err)
		}
	}
	if got := read("running"); got != " d1 d2" {
		t.Errorf("running run's data after the finished one's expired = %q, want no snapshot and d1 d2", got)
	}
	if run, err := st.GetRun(ctx, "done"); err != nil || run.GetState() != canaryv1.RunState_RUN_STATE_ABORTED {
		t.Errorf("GetRun(done) after expiry = %v, %v; want the aborted run", run, err)
	}
	if vs, _, err := st.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{}); err != nil || len(vs) != 1 || vs[0].GetRunId() != "done" {
		t.Errorf("ListVerdicts after expiry = %v, %v; want done's verdict", vs, err)
	}
	if _, err := st.AppendBatch(ctx, "done", "3", []byte("d3")); !errors.Is(err, store.ErrFinished) {
		t.Errorf("AppendBatch(done) after expiry = %v, want ErrFinished", err)
	}
	// The trajectory stays with the record.
	if got, err := trajectories(t, st).GetTrajectory(ctx, "done"); err != nil || string(got) != "trajectory of done" {
		t.Errorf("GetTrajectory(done) after expiry = %q, %v; want it kept", got, err)
	}
	// A snapshot that comes late (a write in flight at the finish) does not
	// bring raw data back for good.
	_ = st.Snapshot(ctx, "done", 0, []byte("late"))
	for deadline := time.Now().Add(30 * time.Second); read("done") != ""; {
		if time.Now().After(deadline) {
			t.Fatalf("a late snapshot of a finished run outlived its retention: %q", read("done"))
		}
		time.Sleep(100 * time.Millisecond)
		if err := s.maintain(ctx, st); err != nil {
			t.Fatalf("maintain: %v", err)
		}
	}
}

// settableClock is a clock the verdict retention test moves.
type settableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settableClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *settableClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testVerdictRetention: maintenance deletes the verdicts older than
// VerdictRetention with everything of their runs, and nothing else.
func (s *suite) testVerdictRetention(t *testing.T) {
	if s.retentionOpen == nil {
		t.Skip("the backend did not enable the retention tests")
	}
	clk := &settableClock{t: t0}
	st := s.retentionOpen(t, RetentionOptions{Retention: time.Hour, VerdictRetention: 30 * 24 * time.Hour, Now: clk.Now})
	ctx := testContext(t)
	for i, id := range []string{"old-1", "old-2", "new", "live"} {
		mustCreate(ctx, t, st, newRun(id, "req-"+id, "checkout", "wave-1", t0.Add(time.Duration(i)*time.Second)))
		if _, err := st.AppendBatch(ctx, id, "1", []byte("d")); err != nil {
			t.Fatal(err)
		}
		putTrajectory(ctx, t, st, id, []byte("t-"+id))
	}
	for _, f := range []*canaryv1.Run{
		finishedRun(newRun("old-1", "req-old-1", "checkout", "wave-1", t0), canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0),
		finishedRun(newRun("old-2", "req-old-2", "checkout", "wave-1", t0.Add(time.Second)), canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_ROLLBACK, t0.Add(time.Minute)),
		finishedRun(newRun("new", "req-new", "checkout", "wave-1", t0.Add(2*time.Second)), canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0.Add(20*24*time.Hour)),
	} {
		mustFinish(ctx, t, st, f)
	}
	if err := s.maintain(ctx, st); err != nil {
		t.Fatal(err)
	}
	if vs, _, err := st.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{}); err != nil || len(vs) != 3 {
		t.Fatalf("ListVerdicts before the verdicts are due = %d, %v; want 3", len(vs), err)
	}
	clk.Advance(31 * 24 * time.Hour)
	if err := s.maintain(ctx, st); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"old-1", "old-2"} {
		if _, err := st.GetRun(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRun(%s) after the sweep = %v, want ErrNotFound", id, err)
		}
		if got, err := trajectories(t, st).GetTrajectory(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTrajectory(%s) after the sweep = %q, %v; want ErrNotFound", id, got, err)
		}
	}
	for _, id := range []string{"new", "live"} {
		if got, err := trajectories(t, st).GetTrajectory(ctx, id); err != nil || string(got) != "t-"+id {
			t.Errorf("GetTrajectory(%s) after the sweep = %q, %v; want it kept", id, got, err)
		}
	}
	for _, f := range []store.VerdictFilter{{}, {Service: "checkout"}, {Decision: canaryv1.Decision_DECISION_PROMOTE},
		{Service: "checkout", Stage: "wave-1", Decision: canaryv1.Decision_DECISION_PROMOTE}, {Decision: canaryv1.Decision_DECISION_ROLLBACK}} {
		vs, _, err := st.ListVerdicts(ctx, f, store.Page{})
		want := "new"
		if f.Decision == canaryv1.Decision_DECISION_ROLLBACK {
			want = ""
		}
		if err != nil || verdictIDs(vs) != want {
			t.Errorf("ListVerdicts(%+v) after the sweep = %q, %v; want %q", f, verdictIDs(vs), err, want)
		}
	}
	for _, f := range []store.RunFilter{{}, {Service: "checkout", Stage: "wave-1"},
		{State: canaryv1.RunState_RUN_STATE_COMPLETED}, {State: canaryv1.RunState_RUN_STATE_ABORTED}} {
		runs, _, err := st.ListRuns(ctx, f, store.Page{})
		want := map[canaryv1.RunState]string{0: "live new", canaryv1.RunState_RUN_STATE_COMPLETED: "new", canaryv1.RunState_RUN_STATE_ABORTED: ""}[f.State]
		if err != nil || runIDs(runs) != want {
			t.Errorf("ListRuns(%+v) after the sweep = %q, %v; want %q", f, runIDs(runs), err, want)
		}
	}
	// The request id of a swept run is free again; the others are not.
	if _, created, err := st.CreateRun(ctx, newRun("old-1b", "req-old-1", "checkout", "wave-1", clk.Now()), []byte("other")); err != nil || !created {
		t.Errorf("CreateRun(req-old-1 again) = created %v, %v; want created", created, err)
	}
	if _, _, err := st.CreateRun(ctx, newRun("new-b", "req-new", "checkout", "wave-1", clk.Now()), []byte("other")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateRun(req-new again, another request) = %v, want ErrConflict", err)
	}
	if _, err := st.AppendBatch(ctx, "live", "2", []byte("d2")); err != nil {
		t.Errorf("AppendBatch(live) after the sweep = %v", err)
	}
	if err := s.maintain(ctx, st); err != nil {
		t.Errorf("maintain again: %v", err)
	}
}
