package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// countDelta is a delta that adds n to its run's total.
func countDelta(n uint64) []byte { return binary.AppendUvarint(nil, n) }

func countOf(t *testing.T, d []byte) uint64 {
	n, w := binary.Uvarint(d)
	if w <= 0 || w != len(d) {
		t.Fatalf("bad delta %x", d)
	}
	return n
}

// TestReplicasIngestExactly drives two Stores on one Redis, as two canaryd
// replicas: many goroutines append through both, each batch is retried
// through the other replica, some batch ids are sent by every writer at
// once, and a snapshotter folds the deltas into snapshots meanwhile. Every
// batch must be acknowledged as new exactly once, and the totals read back
// (snapshot plus deltas) must equal the totals acknowledged, exactly.
func TestReplicasIngestExactly(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	prefix := srv.Prefix(t)
	replicas := []*Store{openStore(t, srv, Options{Prefix: prefix}), openStore(t, srv, Options{Prefix: prefix})}
	ctx := t.Context()
	runs := []string{"run-a", "run-b", "run-c"}
	for i, id := range runs {
		r := &canaryv1.Run{Id: id, RequestId: "req-" + id, Service: "checkout", CreateTime: timestamppb.New(time.Unix(int64(i), 0))}
		if _, created, err := replicas[i%2].CreateRun(ctx, r, nil); err != nil || !created {
			t.Fatalf("CreateRun(%s) = %v, %v", id, created, err)
		}
	}
	const (
		writers   = 16
		perWriter = 150
		shared    = 40 // ids every writer sends to run-a
	)
	var (
		acked [3]atomic.Uint64 // total of the batches acknowledged as new, per run
		news  sync.Map         // run/batch → times acknowledged as new
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		snaps atomic.Int64
	)
	// The snapshotter folds run-a's deltas while they are appended.
	snapDone := make(chan struct{})
	go func() {
		defer close(snapDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var total uint64
			n := 0
			err := replicas[1].ReadBatches(ctx, "run-a", func(snap bool, d []byte) error {
				switch {
				case snap && len(d) > 0:
					total = countOf(t, d)
				case !snap:
					total += countOf(t, d)
					n++
				}
				return nil
			})
			if err != nil {
				t.Errorf("ReadBatches: %v", err)
				return
			}
			if err := replicas[1].Snapshot(ctx, "run-a", n, countDelta(total)); err != nil {
				t.Errorf("Snapshot: %v", err)
				return
			}
			snaps.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				r := (w + i) % len(runs)
				id, n := fmt.Sprintf("w%02d-%04d", w, i), uint64(w*1000+i+1)
				for try := range 2 { // the retry goes through the other replica
					dup, err := replicas[(w+try)%2].AppendBatch(ctx, runs[r], id, countDelta(n))
					if err != nil {
						t.Errorf("AppendBatch: %v", err)
						return
					}
					if dup != (try == 1) {
						t.Errorf("AppendBatch(%s, %s) try %d: dup = %v", runs[r], id, try, dup)
					}
					if !dup {
						acked[r].Add(n)
						c, _ := news.LoadOrStore(runs[r]+"/"+id, new(atomic.Int32))
						c.(*atomic.Int32).Add(1)
					}
				}
				if i < shared {
					id, n := fmt.Sprintf("shared-%03d", i), uint64(1_000_000+i)
					dup, err := replicas[w%2].AppendBatch(ctx, "run-a", id, countDelta(n))
					if err != nil {
						t.Errorf("AppendBatch: %v", err)
						return
					}
					if !dup {
						acked[0].Add(n)
						c, _ := news.LoadOrStore("run-a/"+id, new(atomic.Int32))
						c.(*atomic.Int32).Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-snapDone
	if t.Failed() {
		return
	}
	count := 0
	news.Range(func(k, v any) bool {
		count++
		if n := v.(*atomic.Int32).Load(); n != 1 {
			t.Errorf("batch %s acknowledged as new %d times", k, n)
		}
		return true
	})
	if want := writers*perWriter + shared; count != want {
		t.Errorf("%d batches acknowledged as new, want %d", count, want)
	}
	for r, id := range runs {
		var total uint64
		err := replicas[r%2].ReadBatches(ctx, id, func(snap bool, d []byte) error {
			if len(d) > 0 || !snap {
				total += countOf(t, d)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := acked[r].Load(); total != want {
			t.Errorf("%s: total read %d, acknowledged %d", id, total, want)
		}
	}
	t.Logf("%d batches, %d snapshots of run-a meanwhile", count, snaps.Load())
}

// TestReplicasCreateAndFinish races two replicas on the same request ids
// and the same finishes: one run per request id, one finish per run.
func TestReplicasCreateAndFinish(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	prefix := srv.Prefix(t)
	replicas := []*Store{openStore(t, srv, Options{Prefix: prefix}), openStore(t, srv, Options{Prefix: prefix})}
	ctx := t.Context()
	const n = 50
	var (
		created  [n]atomic.Int32
		finished [n]atomic.Int32
		ids      [n]sync.Map
		wg       sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := range n {
				r := &canaryv1.Run{
					Id:         fmt.Sprintf("run-%02d-by-%d", i, w), // each replica call picks its own id
					RequestId:  fmt.Sprintf("req-%02d", i),
					Service:    "checkout",
					CreateTime: timestamppb.New(time.Unix(int64(i), int64(w))),
				}
				got, c, err := replicas[w%2].CreateRun(ctx, r, []byte("fp"))
				if err != nil {
					t.Errorf("CreateRun: %v", err)
					return
				}
				if c {
					created[i].Add(1)
				}
				ids[i].Store(got.GetId(), true)
				f := &canaryv1.Run{Id: got.GetId(), State: canaryv1.RunState_RUN_STATE_COMPLETED,
					Verdict: &canaryv1.Verdict{Decision: canaryv1.Decision_DECISION_PROMOTE, Time: timestamppb.New(time.Unix(int64(i), 0))}}
				switch err := replicas[(w+1)%2].FinishRun(ctx, f); {
				case err == nil:
					finished[i].Add(1)
				case !errors.Is(err, store.ErrFinished):
					t.Errorf("FinishRun: %v", err)
				}
			}
		})
	}
	wg.Wait()
	for i := range n {
		distinct := 0
		ids[i].Range(func(any, any) bool { distinct++; return true })
		if created[i].Load() != 1 || finished[i].Load() != 1 || distinct != 1 {
			t.Errorf("request %d: created %d times, finished %d times, %d run ids; want 1, 1, 1",
				i, created[i].Load(), finished[i].Load(), distinct)
		}
	}
	runs, _, err := replicas[0].ListRuns(ctx, store.RunFilter{State: canaryv1.RunState_RUN_STATE_COMPLETED}, store.Page{Size: store.MaxPageSize})
	if err != nil || len(runs) != n {
		t.Errorf("ListRuns(COMPLETED) = %d runs, %v; want %d", len(runs), err, n)
	}
	runs, _, err = replicas[1].ListRuns(ctx, store.RunFilter{State: canaryv1.RunState_RUN_STATE_RUNNING}, store.Page{})
	if err != nil || len(runs) != 0 {
		t.Errorf("ListRuns(RUNNING) = %d runs, %v; want none", len(runs), err)
	}
	vs, _, err := replicas[1].ListVerdicts(ctx, store.VerdictFilter{}, store.Page{Size: store.MaxPageSize})
	if err != nil || len(vs) != n {
		t.Errorf("ListVerdicts = %d verdicts, %v; want %d", len(vs), err, n)
	}
}

// TestReplicasTail has replica A follow a run that replica B appends to:
// WaitBatches wakes A promptly, ReadBatchesFrom hands it exactly the new
// deltas, SnapshotThrough only moves forward when both replicas snapshot,
// and a cursor a snapshot has overtaken fails with ErrSnapshotMoved.
func TestReplicasTail(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	prefix := srv.Prefix(t)
	a, b := openStore(t, srv, Options{Prefix: prefix}), openStore(t, srv, Options{Prefix: prefix})
	ctx := t.Context()
	if _, _, err := b.CreateRun(ctx, &canaryv1.Run{Id: "r"}, nil); err != nil {
		t.Fatal(err)
	}
	var total uint64 // A's fold of what it read
	fold := func(snap bool, d []byte) error {
		switch {
		case snap && len(d) > 0:
			total = countOf(t, d)
		case !snap:
			total += countOf(t, d)
		}
		return nil
	}
	pos, err := a.ReadBatchesFrom(ctx, "r", nil, fold)
	if err != nil || pos != (Cursor{}) {
		t.Fatalf("ReadBatchesFrom(empty run) = %+v, %v", pos, err)
	}
	if more, err := a.WaitBatches(ctx, "r", pos, 20*time.Millisecond); err != nil || more {
		t.Fatalf("WaitBatches(nothing new) = %v, %v; want false after the timeout", more, err)
	}
	var want uint64
	for round := range 5 {
		woke := make(chan error, 1)
		go func() {
			more, err := a.WaitBatches(ctx, "r", pos, 10*time.Second)
			if err == nil && !more {
				err = fmt.Errorf("WaitBatches returned without a delta")
			}
			woke <- err
		}()
		time.Sleep(20 * time.Millisecond) // let A block
		sent := time.Now()
		for i := range 3 {
			n := uint64(round*10 + i + 1)
			if _, err := b.AppendBatch(ctx, "r", fmt.Sprint(n), countDelta(n)); err != nil {
				t.Fatal(err)
			}
			want += n
		}
		if err := <-woke; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(sent); d > time.Second {
			t.Errorf("round %d: WaitBatches woke %v after the append", round, d)
		}
		if pos, err = a.ReadBatchesFrom(ctx, "r", &pos, fold); err != nil {
			t.Fatal(err)
		}
		if total != want || pos.N != int64(3*(round+1)) {
			t.Fatalf("round %d: A folded %d at %+v, want %d at N=%d", round, total, pos, want, 3*(round+1))
		}
		if round == 2 {
			// Both replicas snapshot: B from an older position than A's.
			var bTotal uint64
			bPos, err := b.ReadBatchesFrom(ctx, "r", nil, func(snap bool, d []byte) error {
				if !snap || len(d) > 0 {
					bTotal += countOf(t, d)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			old := Cursor{N: 3, ID: ""}
			if ok, err := a.SnapshotThrough(ctx, "r", bPos, countDelta(bTotal)); err != nil || !ok {
				t.Fatalf("SnapshotThrough(%+v) = %v, %v", bPos, ok, err)
			}
			if ok, err := b.SnapshotThrough(ctx, "r", old, countDelta(1)); err != nil || ok {
				t.Fatalf("SnapshotThrough(older position) = %v, %v; want nothing done", ok, err)
			}
		}
	}
	// A cursor the snapshot has overtaken.
	if _, err := a.ReadBatchesFrom(ctx, "r", &Cursor{N: 4, ID: "0-1"}, fold); !errors.Is(err, ErrSnapshotMoved) {
		t.Errorf("ReadBatchesFrom(overtaken cursor) = %v, want ErrSnapshotMoved", err)
	}
	// Everything, snapshot plus the deltas after it, adds up.
	total = 0
	end, err := b.ReadBatchesFrom(ctx, "r", nil, fold)
	if err != nil || total != want || end != pos {
		t.Errorf("full read = %d at %+v, %v; want %d at %+v", total, end, err, want, pos)
	}
}
