package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// AppendBatch stores the delta of one batch of a running run, once per
// batch id. Concurrent calls share one transaction (see the package doc).
func (s *Store) AppendBatch(ctx context.Context, runID, batchID string, delta []byte) (bool, error) {
	if err := store.CheckID("batch id", batchID); err != nil {
		return false, fmt.Errorf("append batch %s/%s: %w", runID, batchID, err)
	}
	var dup bool
	err := s.update(ctx, len(delta), func(tx *bolt.Tx) error {
		dup = false
		rb, err := runData(tx, runID)
		if err != nil {
			return reject(err)
		}
		if st := rb.Get(keyState); len(st) != 1 || canaryv1.RunState(st[0]) != canaryv1.RunState_RUN_STATE_RUNNING {
			return reject(store.ErrFinished)
		}
		ids := rb.Bucket(bucketIDs)
		if ids.Get([]byte(batchID)) != nil {
			dup = true
			return nil
		}
		deltas := rb.Bucket(bucketDeltas)
		deltas.FillPercent = 1 // sequence keys only ever grow
		seq, err := deltas.NextSequence()
		if err != nil {
			return err
		}
		if err := deltas.Put(u64(seq), delta); err != nil {
			return err
		}
		return ids.Put([]byte(batchID), u64(seq))
	})
	if err != nil {
		return false, fmt.Errorf("append batch %s/%s: %w", runID, batchID, err)
	}
	return dup, nil
}

// runData returns the data bucket of a run.
func runData(tx *bolt.Tx, runID string) (*bolt.Bucket, error) {
	if runID == "" {
		return nil, store.ErrNotFound
	}
	rb := tx.Bucket(bucketData).Bucket([]byte(runID))
	if rb == nil {
		return nil, store.ErrNotFound
	}
	return rb, nil
}

// readChunkBytes bounds the deltas ReadBatches copies in one read
// transaction. fn is called outside of any transaction, so it may call the
// store, and a long fold does not hold a read transaction open (which would
// block the file from growing).
const readChunkBytes = 4 << 20

// errSnapshotMoved: a Snapshot folded deltas that ReadBatches had not
// delivered yet, so what it delivered cannot be completed consistently.
var errSnapshotMoved = errors.New("snapshot replaced during read; read again")

// ReadBatches calls fn with the run's snapshot (nil if none) and then each
// delta appended after it, in append order. The deltas are read in chunks
// of a few MiB; fn gets copies it may keep.
func (s *Store) ReadBatches(ctx context.Context, runID string, fn func(snapshot bool, data []byte) error) error {
	var (
		after uint64 // seq of the last delta delivered (or folded)
		first = true
	)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read batches of run %s: %w", runID, err)
		}
		var (
			snap   []byte
			chunk  [][]byte
			more   bool
			cursor = after
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
				cursor = snapSeq
			} else if snapSeq > after {
				return errSnapshotMoved
			}
			c := rb.Bucket(bucketDeltas).Cursor()
			size := 0
			for k, v := c.Seek(u64(cursor + 1)); k != nil; k, v = c.Next() {
				if size >= readChunkBytes {
					more = true
					break
				}
				chunk = append(chunk, bytes.Clone(v))
				size += len(v)
				cursor = readU64(k)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read batches of run %s: %w", runID, err)
		}
		if first {
			if err := fn(true, snap); err != nil {
				return err
			}
			first = false
		}
		for _, d := range chunk {
			if err := fn(false, d); err != nil {
				return err
			}
		}
		after = cursor
		if !more {
			return nil
		}
	}
}

// Snapshot replaces the run's snapshot with state and deletes the n oldest
// deltas, which state folds. It fails, storing nothing, if fewer than n
// deltas are stored.
func (s *Store) Snapshot(ctx context.Context, runID string, n int, state []byte) error {
	if n < 0 {
		return fmt.Errorf("snapshot run %s: negative delta count %d", runID, n)
	}
	val := append([]byte{1}, state...)
	err := s.update(ctx, len(val), func(tx *bolt.Tx) error {
		rb, err := runData(tx, runID)
		if err != nil {
			return reject(err)
		}
		if rb.Get(keyExpired) != nil {
			return nil // finished, and its raw data were deleted (retention): nothing to keep
		}
		deltas := rb.Bucket(bucketDeltas)
		keys := make([][]byte, 0, n)
		c := deltas.Cursor()
		for k, _ := c.First(); k != nil && len(keys) < n; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		if len(keys) < n {
			return reject(fmt.Errorf("%d deltas to fold, only %d stored", n, len(keys)))
		}
		for _, k := range keys {
			if err := deltas.Delete(k); err != nil {
				return err
			}
		}
		if n > 0 {
			if err := rb.Put(keySnapSeq, keys[n-1]); err != nil {
				return err
			}
		}
		return rb.Put(keySnapshot, val)
	})
	if err != nil {
		return fmt.Errorf("snapshot run %s: %w", runID, err)
	}
	return nil
}
