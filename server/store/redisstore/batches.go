package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/canaryd/canaryd/server/store"
)

// AppendBatch stores the delta of one batch of a running run, once per
// batch id: one script checks the run's state, adds the id to the run's
// set and, only if it was new, appends the delta to the run's stream.
func (s *Store) AppendBatch(ctx context.Context, runID, batchID string, delta []byte) (bool, error) {
	dup, err := s.appendBatch(ctx, runID, batchID, delta)
	if err != nil {
		return false, fmt.Errorf("append batch %s/%s: %w", runID, batchID, err)
	}
	return dup, nil
}

// CloseRun refuses every batch appended to a running run from now on (they
// fail with store.ErrFinished), before it is finished: see store.Tailer.
func (s *Store) CloseRun(ctx context.Context, runID string) error {
	return s.setClosing(ctx, "close run", closeScript, runID)
}

// ReopenRun undoes CloseRun (the finish failed): the run takes batches
// again; see store.Tailer.
func (s *Store) ReopenRun(ctx context.Context, runID string) error {
	return s.setClosing(ctx, "reopen run", reopenScript, runID)
}

func (s *Store) setClosing(ctx context.Context, op string, sc *redis.Script, runID string) error {
	if runID == "" {
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	code, err := s.runAckedCode(ctx, sc, s.k.runKeys(runID)[:1])
	if err == nil {
		err = codeErr(code)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, runID, err)
	}
	return nil
}

func (s *Store) appendBatch(ctx context.Context, runID, batchID string, delta []byte) (bool, error) {
	if err := store.CheckID("batch id", batchID); err != nil {
		return false, err
	}
	if runID == "" {
		return false, store.ErrNotFound
	}
	ack := "0"
	if s.opts.MinReplicas > 0 {
		ack = "1"
	}
	code, err := s.runAckedCode(ctx, appendScript, s.k.runKeys(runID)[:3], batchID, delta, ack)
	if err != nil {
		return false, err
	}
	if err := codeErr(code); err != nil {
		return false, err
	}
	return code == codeDup, nil
}

// Chunks of ReadBatches: each is one script call that returns deltas until
// their size reaches readChunkBytes, reading at most a count of deltas
// that adapts to the size of the deltas seen.
const (
	readChunkBytes    = 4 << 20
	readChunkMinCount = 16
	readChunkMaxCount = 4096
)

// ErrSnapshotMoved: a Snapshot folded deltas that a reader had not
// delivered yet (ReadBatches between two chunks, ReadBatchesFrom after its
// cursor), so what it delivered cannot be completed consistently: read the
// run again from its snapshot. It is store.ErrSnapshotMoved.
var ErrSnapshotMoved = store.ErrSnapshotMoved

// Cursor is a position in the deltas of a run, for replicas that follow a
// run's data incrementally (ReadBatchesFrom, WaitBatches,
// SnapshotThrough: the Store is a store.Tailer): N counts the deltas
// appended up to the position, folded ones included, and ID is the stream
// id of the last delta delivered ("" when none was delivered after the
// snapshot).
type Cursor = store.Cursor

var _ store.Tailer = (*Store)(nil)

// ReadBatches calls fn with the run's snapshot (nil if none) and then each
// delta appended after it, in append order. The snapshot and the first
// chunk of deltas are read atomically; later chunks continue after the
// last delta delivered, and fail if a Snapshot folded deltas not delivered
// yet in between. fn gets copies it may keep.
func (s *Store) ReadBatches(ctx context.Context, runID string, fn func(snapshot bool, data []byte) error) error {
	_, err := s.ReadBatchesFrom(ctx, runID, nil, fn)
	return err
}

// ReadBatchesFrom is ReadBatches from a position: with after nil it reads
// like ReadBatches, snapshot first; otherwise it calls fn(false, delta)
// with each delta appended after the position only, and fails with
// ErrSnapshotMoved if a Snapshot folded deltas past it. It returns the
// position after the last delta delivered, for the next call.
func (s *Store) ReadBatchesFrom(ctx context.Context, runID string, after *Cursor, fn func(snapshot bool, data []byte) error) (Cursor, error) {
	c, err := s.readFrom(ctx, runID, after, fn)
	var cb callbackError
	switch {
	case errors.As(err, &cb):
		return c, cb.err
	case err != nil:
		return c, fmt.Errorf("read batches of run %s: %w", runID, err)
	}
	return c, nil
}

// callbackError carries an error of fn, which ReadBatchesFrom returns as
// it is.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

func (s *Store) readFrom(ctx context.Context, runID string, after *Cursor, fn func(snapshot bool, data []byte) error) (Cursor, error) {
	if runID == "" {
		return Cursor{}, store.ErrNotFound
	}
	ks := s.k.runKeys(runID)
	keys := []string{ks[0], ks[2], ks[3]}
	var (
		pos   Cursor
		first = after == nil
		count = 256
	)
	if after != nil {
		pos = *after
	}
	for {
		if err := ctx.Err(); err != nil {
			return pos, err
		}
		start, withSnap := "-", "0"
		if pos.ID != "" {
			start = "(" + pos.ID
		}
		if first {
			withSnap = "1"
		}
		code, rest, err := s.runSliceRO(ctx, readScript, keys, start, count, readChunkBytes, withSnap, pos.ID)
		if err == nil {
			err = codeErr(code)
		}
		if err == nil && len(rest) < 4 {
			err = fmt.Errorf("read script replied %d elements", len(rest)+1)
		}
		var folded int64
		if err == nil {
			f, _ := str(rest[0])
			folded, err = strconv.ParseInt(string(f), 10, 64)
		}
		if err == nil && !first && folded > pos.N {
			err = ErrSnapshotMoved
		}
		if err == nil && !first && pos.ID != "" && rest[3] == int64(0) && folded < pos.N {
			// The delta at the position is neither in the stream nor
			// folded: lost in a failover (never acknowledged with
			// min_replicas). What was read from it must be read again.
			err = ErrSnapshotMoved
		}
		if err != nil {
			return pos, err
		}
		if first {
			pos.N = folded
			snap, _ := str(rest[1])
			if err := fn(true, snap); err != nil {
				return pos, callbackError{err}
			}
			first = false
		}
		more, _ := rest[2].(int64)
		entries := rest[4:]
		size := 0
		for i := 0; i+1 < len(entries); i += 2 {
			id, _ := str(entries[i])
			d, _ := str(entries[i+1])
			if d == nil {
				d = []byte{}
			}
			if err := fn(false, d); err != nil {
				return pos, callbackError{err}
			}
			pos.N++
			pos.ID = string(id)
			size += len(d)
		}
		if more == 0 {
			return pos, nil
		}
		if n := len(entries) / 2; n > 0 {
			avg := max(size/n, 1)
			count = min(max(readChunkBytes/avg, readChunkMinCount), readChunkMaxCount)
		}
	}
}

// WaitBatches waits up to timeout (at least 1ms) for a delta after the
// position, and reports whether there is one. It blocks one connection of
// the pool while it waits (XREAD BLOCK).
func (s *Store) WaitBatches(ctx context.Context, runID string, after Cursor, timeout time.Duration) (bool, error) {
	if s.closed() {
		return false, errClosed
	}
	id := after.ID
	if id == "" {
		id = "0-0"
	}
	_, err := s.c.XRead(ctx, &redis.XReadArgs{
		Streams: []string{s.k.runDeltas(runID), id},
		Count:   1,
		Block:   max(timeout, time.Millisecond),
	}).Result()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, redis.Nil):
		return false, nil
	}
	return false, fmt.Errorf("wait for batches of run %s: %w", runID, s.fail(ctx, err))
}

// SnapshotThrough replaces the run's snapshot with state, which folds every
// delta up to the position through, and deletes those deltas, unless a
// snapshot already folds as many (then it stores nothing and returns
// false). Unlike Snapshot, it is safe when several replicas snapshot the
// same run: the snapshot only moves forward.
func (s *Store) SnapshotThrough(ctx context.Context, runID string, through Cursor, state []byte) (bool, error) {
	if runID == "" {
		return false, fmt.Errorf("snapshot run %s: %w", runID, store.ErrNotFound)
	}
	ks := s.k.runKeys(runID)
	code, err := s.runAckedCode(ctx, snapshotThroughScript, []string{ks[0], ks[2], ks[3]}, through.N, through.ID, state)
	if err == nil && code == codeTooFew {
		err = fmt.Errorf("position %d/%q is not a delta of the run", through.N, through.ID)
	}
	if err == nil {
		err = codeErr(code)
	}
	if err != nil {
		return false, fmt.Errorf("snapshot run %s: %w", runID, err)
	}
	return code == codeOK, nil
}

// Snapshot replaces the run's snapshot with state and deletes the n oldest
// deltas, which state folds. It fails, storing nothing, if fewer than n
// deltas are stored.
func (s *Store) Snapshot(ctx context.Context, runID string, n int, state []byte) error {
	if err := s.snapshot(ctx, runID, n, state); err != nil {
		return fmt.Errorf("snapshot run %s: %w", runID, err)
	}
	return nil
}

func (s *Store) snapshot(ctx context.Context, runID string, n int, state []byte) error {
	if n < 0 {
		return fmt.Errorf("negative delta count %d", n)
	}
	if runID == "" {
		return store.ErrNotFound
	}
	ks := s.k.runKeys(runID)
	code, rest, err := s.runSlice(ctx, snapshotScript, []string{ks[0], ks[2], ks[3]}, n, state)
	if err != nil {
		return err
	}
	if code == codeTooFew {
		stored := int64(-1)
		if len(rest) > 0 {
			stored, _ = rest[0].(int64)
		}
		return fmt.Errorf("%d deltas to fold, only %d stored", n, stored)
	}
	return codeErr(code)
}
