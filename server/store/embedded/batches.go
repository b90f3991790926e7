package embedded

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

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
		if err := acceptsBatches(rb); err != nil {
			return reject(err)
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
	if !dup {
		s.tails.appended(runID)
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

// ReadBatches calls fn with the run's snapshot (nil if none) and then each
// delta appended after it, in append order. The deltas are read in chunks
// of a few MiB; fn gets copies it may keep. A Snapshot that folds deltas
// not delivered yet between two chunks fails it with
// store.ErrSnapshotMoved.
func (s *Store) ReadBatches(ctx context.Context, runID string, fn func(snapshot bool, data []byte) error) error {
	_, err := s.ReadBatchesFrom(ctx, runID, nil, fn)
	return err
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
