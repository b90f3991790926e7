package embedded

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// The Store is a store.Tailer: a run's deltas form a log that a reader
// follows from a position. A position's N is the sequence number of the
// last delta delivered (deltas are numbered 1, 2, ... by the bucket's
// sequence, so N counts the deltas appended up to it, folded ones
// included), and its ID is that number in decimal ("" when no delta was
// delivered after the snapshot). Only one process opens the file, so
// WaitBatches waits on the appends of this process (see tails).

var _ store.Tailer = (*Store)(nil)

// keyClosing marks a running run closed to new batches (CloseRun).
var keyClosing = []byte("closing")

// ReadBatchesFrom is ReadBatches from a position; see store.Tailer.
func (s *Store) ReadBatchesFrom(ctx context.Context, runID string, after *store.Cursor, fn func(snapshot bool, data []byte) error) (store.Cursor, error) {
	var pos store.Cursor
	first := after == nil
	if !first {
		pos = *after
	}
	for {
		if err := ctx.Err(); err != nil {
			return pos, fmt.Errorf("read batches of run %s: %w", runID, err)
		}
		var (
			snap  []byte
			chunk []delta
			more  bool
			last  = uint64(pos.N)
		)
		err := s.view(func(tx *bolt.Tx) error {
			rb, err := runData(tx, runID)
			if err != nil {
				return err
			}
			snapSeq := readU64(rb.Get(keySnapSeq))
			if first {
				if v := rb.Get(keySnapshot); len(v) > 0 {
					snap = bytes.Clone(v[1:])
				}
				last = snapSeq
			} else if snapSeq > last {
				return store.ErrSnapshotMoved
			}
			c := rb.Bucket(bucketDeltas).Cursor()
			size := 0
			for k, v := c.Seek(u64(last + 1)); k != nil; k, v = c.Next() {
				if size >= readChunkBytes {
					more = true
					break
				}
				chunk = append(chunk, delta{seq: readU64(k), data: bytes.Clone(v)})
				size += len(v)
			}
			return nil
		})
		if err != nil {
			return pos, fmt.Errorf("read batches of run %s: %w", runID, err)
		}
		if first {
			pos = store.Cursor{N: int64(last)}
			if err := fn(true, snap); err != nil {
				return pos, err
			}
			first = false
		}
		for _, d := range chunk {
			if err := fn(false, d.data); err != nil {
				return pos, err
			}
			pos.N = int64(d.seq)
			pos.ID = strconv.FormatUint(d.seq, 10)
		}
		if !more {
			return pos, nil
		}
	}
}

// delta is a delta read from the log, with its sequence number.
type delta struct {
	seq  uint64
	data []byte
}

// WaitBatches waits up to timeout for a delta after the position; see
// store.Tailer.
func (s *Store) WaitBatches(ctx context.Context, runID string, after store.Cursor, timeout time.Duration) (bool, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		// The signal is taken before looking, so that an append committed
		// after the look closes it.
		appended := s.tails.signal(runID)
		var seq uint64
		err := s.view(func(tx *bolt.Tx) error {
			rb, err := runData(tx, runID)
			if err != nil {
				return err
			}
			seq = rb.Bucket(bucketDeltas).Sequence()
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("wait for batches of run %s: %w", runID, err)
		}
		if int64(seq) > after.N {
			return true, nil
		}
		select {
		case <-appended:
		case <-t.C:
			return false, nil
		case <-ctx.Done():
			return false, fmt.Errorf("wait for batches of run %s: %w", runID, ctx.Err())
		case <-s.quit:
			return false, errClosed
		}
	}
}

// SnapshotThrough replaces the run's snapshot with state, which folds the
// deltas up to the position through, and deletes them, unless the
// snapshot already folds as many; see store.Tailer.
func (s *Store) SnapshotThrough(ctx context.Context, runID string, through store.Cursor, state []byte) (bool, error) {
	val := append([]byte{1}, state...)
	var wrote bool
	err := s.update(ctx, len(val), func(tx *bolt.Tx) error {
		wrote = false
		rb, err := runData(tx, runID)
		if err != nil {
			return reject(err)
		}
		if rb.Get(keyExpired) != nil {
			return nil // finished, and its raw data were deleted (retention): nothing to keep
		}
		snapSeq := readU64(rb.Get(keySnapSeq))
		if int64(snapSeq) >= through.N {
			return nil
		}
		deltas := rb.Bucket(bucketDeltas)
		if through.N < 0 || uint64(through.N) > deltas.Sequence() {
			return reject(fmt.Errorf("position %d is not a delta of the run", through.N))
		}
		var keys [][]byte
		c := deltas.Cursor()
		for k, _ := c.First(); k != nil && readU64(k) <= uint64(through.N); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := deltas.Delete(k); err != nil {
				return err
			}
		}
		if err := rb.Put(keySnapSeq, u64(uint64(through.N))); err != nil {
			return err
		}
		wrote = true
		return rb.Put(keySnapshot, val)
	})
	if err != nil {
		return false, fmt.Errorf("snapshot run %s: %w", runID, err)
	}
	return wrote, nil
}

// FinishRunThrough is FinishRun for a final verdict that folds the run's
// deltas up to the position through: store.ErrMoreBatches, storing
// nothing, if a delta was appended after it.
func (s *Store) FinishRunThrough(ctx context.Context, run *canaryv1.Run, through store.Cursor) error {
	return s.finishRun(ctx, run, func(rb *bolt.Bucket) error {
		if int64(rb.Bucket(bucketDeltas).Sequence()) != through.N {
			return store.ErrMoreBatches
		}
		return nil
	})
}

// CloseRun makes AppendBatch refuse the run's new batches (store.ErrFinished)
// while it is being finished; see store.Tailer.
func (s *Store) CloseRun(ctx context.Context, runID string) error {
	return s.setClosing(ctx, "close run", runID, true)
}

// ReopenRun undoes CloseRun; see store.Tailer.
func (s *Store) ReopenRun(ctx context.Context, runID string) error {
	return s.setClosing(ctx, "reopen run", runID, false)
}

func (s *Store) setClosing(ctx context.Context, op, runID string, closing bool) error {
	err := s.update(ctx, 0, func(tx *bolt.Tx) error {
		rb, err := runData(tx, runID)
		if err != nil {
			return reject(err)
		}
		if st := rb.Get(keyState); len(st) != 1 || canaryv1.RunState(st[0]) != canaryv1.RunState_RUN_STATE_RUNNING {
			return reject(store.ErrFinished)
		}
		if closing {
			return rb.Put(keyClosing, []byte{1})
		}
		return rb.Delete(keyClosing)
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, runID, err)
	}
	return nil
}

// acceptsBatches returns nil if the run of data bucket rb takes batches:
// it is running and not closed (CloseRun); store.ErrFinished otherwise.
func acceptsBatches(rb *bolt.Bucket) error {
	if st := rb.Get(keyState); len(st) != 1 || canaryv1.RunState(st[0]) != canaryv1.RunState_RUN_STATE_RUNNING {
		return store.ErrFinished
	}
	if rb.Get(keyClosing) != nil {
		return store.ErrFinished
	}
	return nil
}

// tails wakes the WaitBatches of a run when a delta is appended to it.
type tails struct {
	mu      sync.Mutex
	signals map[string]chan struct{} // by run id; closed by the next append
}

// signal returns a channel that the next append to the run closes.
func (t *tails) signal(runID string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.signals == nil {
		t.signals = map[string]chan struct{}{}
	}
	ch, ok := t.signals[runID]
	if !ok {
		ch = make(chan struct{})
		t.signals[runID] = ch
	}
	return ch
}

// appended wakes the waiters of the run, after a delta was appended to it.
func (t *tails) appended(runID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch, ok := t.signals[runID]; ok {
		close(ch)
		delete(t.signals, runID)
	}
}
