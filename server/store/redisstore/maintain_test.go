package redisstore

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func finished(id string, state canaryv1.RunState, d canaryv1.Decision, at time.Time) *canaryv1.Run {
	return &canaryv1.Run{
		Id: id, State: state, FinishTime: timestamppb.New(at), FinishReason: "done",
		Verdict:  &canaryv1.Verdict{Decision: d, Time: timestamppb.New(at), Final: true},
		Counters: &canaryv1.RunCounters{Batches: 2},
	}
}

func ids[M interface{ GetId() string }](ms []M) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.GetId()
	}
	return strings.Join(s, " ")
}

func verdictIDs(vs []*canaryv1.Verdict) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.GetRunId()
	}
	return strings.Join(s, " ")
}

// TestRetention checks that the raw data of a finished run get
// Options.Retention as their TTL (checked, not slept through) and the
// record and verdict none, that a snapshot written after the finish
// expires with them, and that data with a short retention do disappear.
func TestRetention(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	rc := srv.Client(t)
	s := openStore(t, srv, Options{Retention: time.Hour})
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, id := range []string{"done", "running"} {
		if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: id, RequestId: "req-" + id, Service: "checkout", CreateTime: timestamppb.New(at)}, nil); err != nil {
			t.Fatal(err)
		}
		for _, b := range []string{"1", "2"} {
			if _, err := s.AppendBatch(ctx, id, b, []byte("d"+b)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Snapshot(ctx, "done", 1, []byte("s1")); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, finished("done", canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, at)); err != nil {
		t.Fatal(err)
	}
	// A snapshot written after the finish keeps the deadline.
	if err := s.Snapshot(ctx, "done", 0, []byte("s1'")); err != nil {
		t.Fatal(err)
	}
	ttl := func(key string) time.Duration {
		t.Helper()
		d, err := rc.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, key := range []string{s.k.runIDs("done"), s.k.runDeltas("done"), s.k.runSnap("done")} {
		if d := ttl(key); d <= 59*time.Minute || d > time.Hour {
			t.Errorf("TTL of %s = %v, want about 1h", key, d)
		}
	}
	for _, key := range append(s.k.runKeys("running")[:3], s.k.runMeta("done"), s.k.verdicts(shardOf("done"))) {
		if d := ttl(key); d != -1 {
			t.Errorf("TTL of %s = %v, want none (-1)", key, d)
		}
	}

	// A short retention expires for real.
	short := openStore(t, srv, Options{Retention: 100 * time.Millisecond})
	if _, _, err := short.CreateRun(ctx, &canaryv1.Run{Id: "r", Service: "checkout"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := short.AppendBatch(ctx, "r", "1", []byte("d1")); err != nil {
		t.Fatal(err)
	}
	done := finished("r", canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_ROLLBACK, at)
	if err := short.FinishRun(ctx, done); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the raw data to expire", func() bool { return rc.Exists(ctx, short.k.runKeys("r")[1:]...).Val() == 0 })
	var got []string
	if err := short.ReadBatches(ctx, "r", func(snap bool, d []byte) error { got = append(got, string(d)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "" {
		t.Errorf("ReadBatches after expiry = %q, want only an empty snapshot", got)
	}
	if run, err := short.GetRun(ctx, "r"); err != nil || run.GetState() != canaryv1.RunState_RUN_STATE_ABORTED {
		t.Errorf("GetRun after expiry = %v, %v; want the aborted run", run, err)
	}
	if vs, _, err := short.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{}); err != nil || verdictIDs(vs) != "r" {
		t.Errorf("ListVerdicts after expiry = %s, %v; want r", verdictIDs(vs), err)
	}
	if _, err := short.AppendBatch(ctx, "r", "2", []byte("d2")); !errors.Is(err, store.ErrFinished) {
		t.Errorf("AppendBatch after expiry = %v, want ErrFinished", err)
	}
}

// TestVerdictRetention checks that Maintain deletes the verdicts older than
// Options.VerdictRetention with everything of their runs, and nothing else.
func TestVerdictRetention(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	s := openStore(t, srv, Options{VerdictRetention: 30 * 24 * time.Hour, Now: clk.Now})
	ctx := t.Context()
	// old-* finish at t0, new at t0+20d, live keeps running.
	for i, id := range []string{"old-1", "old-2", "new", "live"} {
		if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: id, RequestId: "req-" + id, Service: "checkout", Stage: "wave-1", CreateTime: timestamppb.New(t0.Add(time.Duration(i) * time.Second))}, []byte("fp")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendBatch(ctx, id, "1", []byte("d")); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []*canaryv1.Run{
		finished("old-1", canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0),
		finished("old-2", canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_ROLLBACK, t0.Add(time.Minute)),
		finished("new", canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0.Add(20*24*time.Hour)),
	} {
		if err := s.FinishRun(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := s.Maintain(ctx); err != nil || m.Swept != 0 {
		t.Fatalf("Maintain at t0 = %+v, %v; want nothing swept", m, err)
	}
	clk.Advance(31 * 24 * time.Hour)
	if m, err := s.Maintain(ctx); err != nil || m.Swept != 2 {
		t.Fatalf("Maintain at t0+31d = %+v, %v; want 2 swept", m, err)
	}
	for _, id := range []string{"old-1", "old-2"} {
		if _, err := s.GetRun(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRun(%s) after the sweep = %v, want ErrNotFound", id, err)
		}
	}
	for _, f := range []store.VerdictFilter{{}, {Service: "checkout"}, {Decision: canaryv1.Decision_DECISION_PROMOTE}, {Service: "checkout", Stage: "wave-1", Decision: canaryv1.Decision_DECISION_PROMOTE}} {
		if vs, _, err := s.ListVerdicts(ctx, f, store.Page{}); err != nil || verdictIDs(vs) != "new" {
			t.Errorf("ListVerdicts(%+v) after the sweep = %s, %v; want new", f, verdictIDs(vs), err)
		}
	}
	for _, f := range []store.RunFilter{{}, {Service: "checkout", Stage: "wave-1"}, {State: canaryv1.RunState_RUN_STATE_COMPLETED}, {State: canaryv1.RunState_RUN_STATE_ABORTED}} {
		runs, _, err := s.ListRuns(ctx, f, store.Page{})
		want := map[canaryv1.RunState]string{0: "live new", canaryv1.RunState_RUN_STATE_COMPLETED: "new", canaryv1.RunState_RUN_STATE_ABORTED: ""}[f.State]
		if err != nil || ids(runs) != want {
			t.Errorf("ListRuns(%+v) after the sweep = %s, %v; want %q", f, ids(runs), err, want)
		}
	}
	// No key of the swept runs is left: the index entries are checked
	// above, the records here.
	rc := srv.Client(t)
	for _, id := range []string{"old-1", "old-2"} {
		if n := rc.Exists(ctx, s.k.runKeys(id)...).Val(); n != 0 {
			t.Errorf("%d keys of %s left", n, id)
		}
		if rc.HExists(ctx, s.k.requests(shardOf("req-"+id)), "req-"+id).Val() || rc.HExists(ctx, s.k.verdicts(shardOf(id)), id).Val() {
			t.Errorf("request id or verdict of %s left", id)
		}
	}
	// Its request id is free again.
	if _, created, err := s.CreateRun(ctx, &canaryv1.Run{Id: "old-1b", RequestId: "req-old-1"}, []byte("other")); err != nil || !created {
		t.Errorf("CreateRun(req-old-1 again) = created %v, %v; want created", created, err)
	}
	if m, err := s.Maintain(ctx); err != nil || m.Swept != 0 {
		t.Errorf("Maintain again = %+v, %v; want nothing swept", m, err)
	}
}

// TestInterruptedFinishIsRepaired commits a finish without its index step,
// as a replica dying right after the commit would leave it, and checks
// that Maintain completes it, and that it drops the pending marks of
// finishes that never committed.
func TestInterruptedFinishIsRepaired(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	s := openStore(t, srv, Options{Now: clk.Now})
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: id, Service: "checkout", CreateTime: timestamppb.New(t0)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// a: pending mark and commit, then the replica dies.
	f := finished("a", canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0)
	f.Verdict.RunId, f.Verdict.Service = "a", "checkout"
	fin, err := proto.Marshal(&canaryv1.Run{State: f.State, FinishTime: f.FinishTime, FinishReason: f.FinishReason, Verdict: f.Verdict, Counters: f.Counters})
	if err != nil {
		t.Fatal(err)
	}
	rc := srv.Client(t)
	rc.HSet(ctx, s.k.pending(shardOf("a")), "a", t0.UnixMilli())
	if code, err := s.runCode(ctx, finishScript, s.k.runKeys("a"), int(f.State), fin, time.Hour.Milliseconds()); err != nil || code != 0 {
		t.Fatalf("finish script = %d, %v", code, err)
	}
	// b: pending mark, then the replica dies before the commit.
	rc.HSet(ctx, s.k.pending(shardOf("b")), "b", t0.UnixMilli())

	if vs, _, err := s.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{}); err != nil || len(vs) != 0 {
		t.Fatalf("ListVerdicts before repair = %s, %v", verdictIDs(vs), err)
	}
	if m, err := s.Maintain(ctx); err != nil || m.Indexed != 1 {
		t.Fatalf("Maintain = %+v, %v; want 1 indexed", m, err)
	}
	vs, _, err := s.ListVerdicts(ctx, store.VerdictFilter{Service: "checkout", Decision: canaryv1.Decision_DECISION_PROMOTE}, store.Page{})
	if err != nil || len(vs) != 1 || !proto.Equal(vs[0], f.Verdict) {
		t.Errorf("ListVerdicts after repair = %v, %v; want a's verdict", vs, err)
	}
	runs, _, err := s.ListRuns(ctx, store.RunFilter{State: canaryv1.RunState_RUN_STATE_COMPLETED}, store.Page{})
	if err != nil || ids(runs) != "a" {
		t.Errorf("ListRuns(COMPLETED) after repair = %s, %v; want a", ids(runs), err)
	}
	if got := rc.HKeys(ctx, s.k.pending(shardOf("b"))).Val(); strings.Join(got, " ") != "b" {
		t.Errorf("pending after repair = %q, want [b] (too recent to drop)", got)
	}
	clk.Advance(abandonedAfter + time.Minute)
	if m, err := s.Maintain(ctx); err != nil || m.Indexed != 0 {
		t.Errorf("Maintain later = %+v, %v; want nothing indexed", m, err)
	}
	if n := rc.HLen(ctx, s.k.pending(shardOf("b"))).Val() + rc.HLen(ctx, s.k.pending(shardOf("a"))).Val(); n != 0 {
		t.Errorf("%d pending marks left, want the abandoned one dropped", n)
	}
	// b finishes normally afterwards.
	if err := s.FinishRun(ctx, finished("b", canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_HOLD, t0.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	if vs, _, err := s.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{}); err != nil || verdictIDs(vs) != "b a" {
		t.Errorf("ListVerdicts = %s, %v; want b a", verdictIDs(vs), err)
	}
}

// TestInterruptedCreateIsCompleted claims a request id without writing the
// run, as a replica dying in between would leave it, and checks that a
// retry of the request writes the run with the claimed id and create time.
func TestInterruptedCreateIsCompleted(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openStore(t, srv, Options{})
	ctx := t.Context()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	first := &canaryv1.Run{Id: "run-1", RequestId: "req-1", Service: "checkout", Stage: "wave-1",
		State: canaryv1.RunState_RUN_STATE_RUNNING, CreateTime: timestamppb.New(t0)}
	idx, mem := s.runIndexKeys(first, canaryv1.RunState_RUN_STATE_RUNNING)
	value := requestValue("run-1", t0, []byte("fp"))
	if code, _, err := s.runSlice(ctx, reserveScript, append([]string{s.k.requests(shardOf("req-1"))}, idx...), "req-1", value, mem); err != nil || code != 1 {
		t.Fatalf("reserve = %d, %v", code, err)
	}
	if runs, _, err := s.ListRuns(ctx, store.RunFilter{}, store.Page{}); err != nil || len(runs) != 0 {
		t.Errorf("ListRuns with the run claimed, not written = %s, %v; want none", ids(runs), err)
	}
	if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "run-2", RequestId: "req-1", Service: "checkout", Stage: "wave-1"}, []byte("other")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateRun(req-1, other fingerprint) = %v, want ErrConflict", err)
	}
	retry := proto.Clone(first).(*canaryv1.Run)
	retry.Id, retry.CreateTime = "run-3", timestamppb.New(t0.Add(time.Minute))
	got, created, err := s.CreateRun(ctx, retry, []byte("fp"))
	if err != nil || !created || !proto.Equal(got, first) {
		t.Fatalf("CreateRun(retry of req-1) = created %v, %v\n%v\nwant created\n%v", created, err, got, first)
	}
	if runs, _, err := s.ListRuns(ctx, store.RunFilter{State: canaryv1.RunState_RUN_STATE_RUNNING}, store.Page{}); err != nil || ids(runs) != "run-1" {
		t.Errorf("ListRuns = %s, %v; want run-1", ids(runs), err)
	}
	if _, err := s.GetRun(ctx, "run-3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRun(run-3) = %v, want ErrNotFound", err)
	}
}
