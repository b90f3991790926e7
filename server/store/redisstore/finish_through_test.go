package redisstore

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// TestFinishRunThrough: a final verdict that folds the deltas up to a
// position is stored only while no delta was appended after it (through
// any replica, snapshots included in the count); otherwise ErrMoreBatches
// and nothing is stored, and the run keeps taking batches.
func TestFinishRunThrough(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	prefix := srv.Prefix(t)
	a, b := openStore(t, srv, Options{Prefix: prefix}), openStore(t, srv, Options{Prefix: prefix})
	ctx := t.Context()
	r := &canaryv1.Run{Id: "r", RequestId: "req-r", Service: "checkout", Stage: "s",
		State: canaryv1.RunState_RUN_STATE_RUNNING, CreateTime: timestamppb.New(time.Unix(1, 0))}
	if _, _, err := a.CreateRun(ctx, r, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"b1", "b2", "b3"} {
		if _, err := a.AppendBatch(ctx, "r", id, countDelta(1)); err != nil {
			t.Fatal(err)
		}
	}
	noop := func(bool, []byte) error { return nil }
	cur, err := a.ReadBatchesFrom(ctx, "r", nil, noop)
	if err != nil || cur.N != 3 {
		t.Fatalf("ReadBatchesFrom = %+v, %v", cur, err)
	}
	// B folds all three into a snapshot: the count still matches.
	if _, err := b.SnapshotThrough(ctx, "r", cur, []byte("state")); err != nil {
		t.Fatal(err)
	}
	// B appends one more: A's verdict through cur is stale.
	if _, err := b.AppendBatch(ctx, "r", "b4", countDelta(1)); err != nil {
		t.Fatal(err)
	}
	fin := &canaryv1.Run{Id: "r", State: canaryv1.RunState_RUN_STATE_COMPLETED,
		Verdict: &canaryv1.Verdict{Decision: canaryv1.Decision_DECISION_PROMOTE, Final: true, Time: timestamppb.New(time.Unix(2, 0))}}
	if err := a.FinishRunThrough(ctx, fin, cur); !errors.Is(err, store.ErrMoreBatches) {
		t.Fatalf("FinishRunThrough(stale position) = %v, want ErrMoreBatches", err)
	}
	if got, err := a.GetRun(ctx, "r"); err != nil || got.GetState() != canaryv1.RunState_RUN_STATE_RUNNING {
		t.Fatalf("after a refused finish: %v, %v; want the run running", got.GetState(), err)
	}
	if _, err := a.AppendBatch(ctx, "r", "b5", countDelta(1)); err != nil {
		t.Fatalf("append after a refused finish: %v", err)
	}
	cur, err = a.ReadBatchesFrom(ctx, "r", &cur, noop)
	if err != nil || cur.N != 5 {
		t.Fatalf("catch up = %+v, %v; want 5 deltas", cur, err)
	}
	if err := a.FinishRunThrough(ctx, fin, cur); err != nil {
		t.Fatalf("FinishRunThrough(current position) = %v", err)
	}
	if _, err := b.AppendBatch(ctx, "r", "b6", countDelta(1)); !errors.Is(err, store.ErrFinished) {
		t.Fatalf("append after the finish = %v, want ErrFinished", err)
	}
	vs, _, err := b.ListVerdicts(ctx, store.VerdictFilter{Service: "checkout"}, store.Page{})
	if err != nil || len(vs) != 1 || vs[0].GetRunId() != "r" {
		t.Fatalf("history = %v, %v", vs, err)
	}
}

// TestCloseRun: once a run is closing, no replica can append to it (even
// a batch id it already stored), the last read sees every delta, and the
// finish through that position succeeds.
func TestCloseRun(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	prefix := srv.Prefix(t)
	a, b := openStore(t, srv, Options{Prefix: prefix}), openStore(t, srv, Options{Prefix: prefix})
	ctx := t.Context()
	if err := a.CloseRun(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CloseRun(unknown run) = %v, want ErrNotFound", err)
	}
	r := &canaryv1.Run{Id: "c", RequestId: "req-c", Service: "checkout", Stage: "s",
		State: canaryv1.RunState_RUN_STATE_RUNNING, CreateTime: timestamppb.New(time.Unix(1, 0))}
	if _, _, err := a.CreateRun(ctx, r, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AppendBatch(ctx, "c", "b1", countDelta(1)); err != nil {
		t.Fatal(err)
	}
	for range 2 { // closing twice is a no-op
		if err := a.CloseRun(ctx, "c"); err != nil {
			t.Fatalf("CloseRun: %v", err)
		}
	}
	for _, id := range []string{"b1", "b2"} {
		if _, err := b.AppendBatch(ctx, "c", id, countDelta(1)); !errors.Is(err, store.ErrFinished) {
			t.Fatalf("AppendBatch(%s) on a closing run = %v, want ErrFinished", id, err)
		}
	}
	cur, err := a.ReadBatchesFrom(ctx, "c", nil, func(bool, []byte) error { return nil })
	if err != nil || cur.N != 1 {
		t.Fatalf("ReadBatchesFrom = %+v, %v; want the one delta", cur, err)
	}
	fin := &canaryv1.Run{Id: "c", State: canaryv1.RunState_RUN_STATE_COMPLETED,
		Verdict: &canaryv1.Verdict{Decision: canaryv1.Decision_DECISION_PROMOTE, Final: true, Time: timestamppb.New(time.Unix(2, 0))}}
	if err := a.FinishRunThrough(ctx, fin, cur); err != nil {
		t.Fatalf("FinishRunThrough after CloseRun: %v", err)
	}
	if err := b.CloseRun(ctx, "c"); !errors.Is(err, store.ErrFinished) {
		t.Fatalf("CloseRun(finished run) = %v, want ErrFinished", err)
	}
}
