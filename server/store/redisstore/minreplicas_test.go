package redisstore

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/testcluster"
	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// TestMinReplicasWithoutReplica: with min_replicas=1 on a Redis that has no
// replica, a write fails with store.ErrUnavailable naming the replicas it
// reached; the batch is on the primary, so its retry is a duplicate (and
// fails the same way until a replica confirms it). Reads do not wait.
func TestMinReplicasWithoutReplica(t *testing.T) {
	t.Parallel()
	srv := testredis.StartWith(t, testredis.Options{Private: true})
	p := srv.Prefix(t)
	plain := openStore(t, srv, Options{Prefix: p})
	ctx := t.Context()
	if _, _, err := plain.CreateRun(ctx, &canaryv1.Run{Id: "r", Service: "s", Stage: "t", ConfigName: "c"}, nil); err != nil {
		t.Fatal(err)
	}
	s := openStoreURL(t, srv.URL()+"?min_replicas=1&replica_timeout=50ms", Options{Prefix: p})
	_, err := s.AppendBatch(ctx, "r", "b1", []byte("delta"))
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "reached 0 of 1 replicas") {
		t.Fatalf("AppendBatch with no replica = %v, want ErrUnavailable: reached 0 of 1 replicas", err)
	}
	if dup, err := plain.AppendBatch(ctx, "r", "b1", []byte("delta")); err != nil || !dup {
		t.Errorf("the batch on the primary: AppendBatch again = %v, %v; want a duplicate", dup, err)
	}
	if _, err := s.AppendBatch(ctx, "r", "b1", []byte("delta")); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("retry of the duplicate with no replica = %v, want ErrUnavailable", err)
	}
	if _, err := s.GetRun(ctx, "r"); err != nil {
		t.Errorf("GetRun with min_replicas and no replica = %v, want it served", err)
	}
	n := 0
	if err := s.ReadBatches(ctx, "r", func(snap bool, _ []byte) error {
		if !snap {
			n++
		}
		return nil
	}); err != nil || n != 1 {
		t.Errorf("ReadBatches = %d deltas, %v; want 1", n, err)
	}
}

// TestReadAfterLostDelta: a reader whose position is a delta that is no
// longer in the run's stream nor folded into its snapshot (what a
// failover to a replica that lacked it leaves) gets ErrSnapshotMoved, so
// that it reads the run again instead of going on from a position that
// does not exist.
func TestReadAfterLostDelta(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openStore(t, srv, Options{})
	ctx := t.Context()
	if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r", Service: "s", Stage: "t", ConfigName: "c"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"b1", "b2"} {
		if _, err := s.AppendBatch(ctx, "r", b, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	pos, err := s.ReadBatchesFrom(ctx, "r", nil, func(bool, []byte) error { return nil })
	if err != nil || pos.N != 2 {
		t.Fatalf("ReadBatchesFrom = %+v, %v", pos, err)
	}
	// Still there: reading on is fine.
	if _, err := s.ReadBatchesFrom(ctx, "r", &pos, func(bool, []byte) error { return nil }); err != nil {
		t.Fatalf("ReadBatchesFrom(pos) = %v", err)
	}
	// The failover: the last delta is gone, another batch comes.
	if err := srv.Client(t).XDel(ctx, s.k.runDeltas("r"), pos.ID).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendBatch(ctx, "r", "b3", []byte("b3")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadBatchesFrom(ctx, "r", &pos, func(bool, []byte) error { return nil }); !errors.Is(err, store.ErrSnapshotMoved) {
		t.Errorf("ReadBatchesFrom(a lost position) = %v, want ErrSnapshotMoved", err)
	}
}

// TestFailoverSentinel appends batches to one run from 4 writers through
// two Stores on a Sentinel setup (a primary, 2 replicas) with
// min_replicas=1, kills the primary in the middle, and checks after the
// Sentinels' failover that every acknowledged batch is there once: sent
// again, each is a duplicate, and the run's stream holds exactly the
// batches stored. Gated (testcluster.Gate).
func TestFailoverSentinel(t *testing.T) {
	testcluster.Gate(t)
	st := testcluster.StartSentinel(t, testcluster.Options{})
	ctx := t.Context()
	url := st.URL() + "?min_replicas=1&replica_timeout=1s&dial_timeout=500ms&read_timeout=2s"
	p := newPrefix()
	a := openStoreURL(t, url, Options{Prefix: p})
	b := openStoreURL(t, url, Options{Prefix: p})
	if _, _, err := a.CreateRun(ctx, &canaryv1.Run{Id: "r", Service: "s", Stage: "t", ConfigName: "c"}, nil); err != nil {
		t.Fatal(err)
	}
	victim := st.Primary(ctx)
	var (
		mu      sync.Mutex
		acked   = map[string]bool{}
		killed  atomic.Bool
		after   atomic.Int64 // batches acknowledged after the kill
		wg      sync.WaitGroup
		started = time.Now()
	)
	for w := range 4 {
		s := []*Store{a, b}[w%2]
		wg.Go(func() {
			for i := 0; ; i++ {
				if after.Load() >= 200 || time.Since(started) > 2*time.Minute {
					return
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				for {
					_, err := s.AppendBatch(ctx, "r", id, []byte(id))
					if err == nil {
						break
					}
					if !errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil {
						t.Errorf("AppendBatch %s: %v", id, err)
						return
					}
					time.Sleep(50 * time.Millisecond) // a failover: retry the same batch
				}
				mu.Lock()
				acked[id] = true
				n := len(acked)
				mu.Unlock()
				if killed.Load() {
					after.Add(1)
				} else if n >= 300 && killed.CompareAndSwap(false, true) {
					victim.Kill()
				}
			}
		})
	}
	wg.Wait()
	if !killed.Load() || after.Load() < 200 {
		t.Fatalf("killed %v, %d batches acknowledged after the kill; want the failover in the middle of 200 more", killed.Load(), after.Load())
	}
	if now := st.Primary(ctx); now == victim {
		t.Fatalf("the Sentinels still name the killed node")
	}
	for id := range acked {
		if dup, err := b.AppendBatch(ctx, "r", id, []byte(id)); err != nil || !dup {
			t.Errorf("acknowledged batch %s sent again after the failover: dup %v, %v; want a duplicate (it was lost)", id, dup, err)
		}
	}
	seen := map[string]int{}
	if err := a.ReadBatches(ctx, "r", func(snap bool, d []byte) error {
		if !snap {
			seen[string(d)]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("batch %s stored %d times", id, n)
		}
	}
	if len(seen) != len(acked) {
		t.Errorf("%d batches in the stream, %d acknowledged (a stored, unacknowledged batch is retried until acknowledged)", len(seen), len(acked))
	}
	t.Logf("%d batches acknowledged, %d after the kill of %s; the stream holds each once", len(acked), after.Load(), victim.Addr)
}
