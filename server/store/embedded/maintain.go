package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// Retention, as the Redis store does it (see its Maintain): the raw data
// of a finished run (batch ids, deltas, snapshot) are deleted
// Options.Retention after it finished; its record and final verdict are
// kept, for Options.VerdictRetention when set (then the verdicts older
// than it are deleted with everything of their runs, their request ids
// freed) or forever. Maintain does both, at Open and every
// Options.MaintenanceInterval, in transactions of at most maintainBatch
// runs so that writers are not held up. Deleted pages are reused by later
// writes; bbolt never shrinks the file itself, which compaction does (see
// compact.go).

// maintainBatch bounds the runs one maintenance transaction changes.
const maintainBatch = 256

// Defaults of the retention options.
const (
	DefaultRetention           = 7 * 24 * time.Hour
	DefaultMaintenanceInterval = time.Minute
)

// Maintenance is what one Maintain call did.
type Maintenance struct {
	// Expired counts finished runs whose raw data were deleted.
	Expired int
	// Swept counts verdicts deleted, with their runs, for being older than
	// Options.VerdictRetention.
	Swept int
}

// Maintain deletes the raw data of the runs finished longer than
// Options.Retention ago and, when Options.VerdictRetention is set, the
// verdicts older than it with their runs. It is idempotent.
func (s *Store) Maintain(ctx context.Context) (Maintenance, error) {
	var m Maintenance
	now := s.opts.Now()
	for {
		n, err := s.expire(ctx, now.Add(-s.opts.Retention))
		m.Expired += n
		if err != nil {
			return m, fmt.Errorf("maintain: expire raw data: %w", err)
		}
		if n < maintainBatch {
			break
		}
	}
	if s.opts.VerdictRetention <= 0 {
		return m, nil
	}
	for {
		n, err := s.sweep(ctx, now.Add(-s.opts.VerdictRetention))
		m.Swept += n
		if err != nil {
			return m, fmt.Errorf("maintain: sweep verdicts: %w", err)
		}
		if n < maintainBatch {
			return m, nil
		}
	}
}

// maintainLoop runs Maintain now and every MaintenanceInterval until
// Close.
func (s *Store) maintainLoop() {
	defer close(s.maintDone)
	if s.opts.MaintenanceInterval < 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(s.opts.MaintenanceInterval)
	defer t.Stop()
	for {
		m, err := s.Maintain(ctx)
		switch {
		case ctx.Err() != nil || s.closed():
			return
		case err != nil:
			s.opts.Logger.Warn("embedded store maintenance failed", "err", err)
		case m != Maintenance{}:
			s.opts.Logger.Info("embedded store maintenance", "expired", m.Expired, "swept", m.Swept)
		}
		select {
		case <-t.C:
		case <-s.quit:
			return
		}
	}
}

// finishedKey is the key of a run in bucketFinished.
func finishedKey(at time.Time, runID string) []byte {
	return append(store.AppendTime(nil, at), runID...)
}

// expire deletes the raw data of up to maintainBatch runs finished before
// cutoff.
func (s *Store) expire(ctx context.Context, cutoff time.Time) (int, error) {
	upper := store.AppendTime(nil, cutoff)
	if due, err := s.anyBefore(bucketFinished, upper); err != nil || !due {
		return 0, err
	}
	n := 0
	err := s.update(ctx, 0, func(tx *bolt.Tx) error {
		n = 0
		fin := tx.Bucket(bucketFinished)
		var keys [][]byte
		c := fin.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, upper) < 0 && len(keys) < maintainBatch; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if len(k) <= store.TimeLen {
				return reject(fmt.Errorf("bad finished-index key %x", k))
			}
			if err := expireRun(tx, k[store.TimeLen:]); err != nil {
				return err
			}
			if err := fin.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, err
}

// expireRun deletes the raw data of a finished run; its data bucket keeps
// the run's state (so that AppendBatch answers ErrFinished) and empty
// buckets of ids and deltas (so that ReadBatches reads nothing).
func expireRun(tx *bolt.Tx, id []byte) error {
	rb := tx.Bucket(bucketData).Bucket(id)
	if rb == nil {
		return nil
	}
	for _, k := range [][]byte{keySnapshot, keySnapSeq, keyFinished} {
		if err := rb.Delete(k); err != nil {
			return err
		}
	}
	for _, b := range [][]byte{bucketIDs, bucketDeltas} {
		if rb.Bucket(b) != nil {
			if err := rb.DeleteBucket(b); err != nil {
				return err
			}
		}
		if _, err := rb.CreateBucket(b); err != nil {
			return err
		}
	}
	return rb.Put(keyExpired, []byte{1})
}

// sweep deletes up to maintainBatch verdicts older than cutoff, with their
// runs.
func (s *Store) sweep(ctx context.Context, cutoff time.Time) (int, error) {
	upper := store.AppendTime(nil, cutoff)
	if due, err := s.anyBefore(verdictIndexes[0], upper); err != nil || !due {
		return 0, err
	}
	n := 0
	err := s.update(ctx, 0, func(tx *bolt.Tx) error {
		n = 0
		var ids [][]byte
		c := tx.Bucket(verdictIndexes[0]).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, upper) < 0 && len(ids) < maintainBatch; k, _ = c.Next() {
			if len(k) <= store.TimeLen {
				return reject(fmt.Errorf("bad verdict index key %x", k))
			}
			ids = append(ids, bytes.Clone(k[store.TimeLen:]))
		}
		for _, id := range ids {
			if err := forget(tx, id); err != nil {
				return fmt.Errorf("sweep run %s: %w", id, err)
			}
		}
		n = len(ids)
		return nil
	})
	return n, err
}

// forget deletes a finished run and its verdict: records, index entries,
// request id, data.
func forget(tx *bolt.Tx, id []byte) error {
	if data := tx.Bucket(bucketVerdicts).Get(id); data != nil {
		v := new(canaryv1.Verdict)
		if err := proto.Unmarshal(data, v); err != nil {
			return reject(fmt.Errorf("decode verdict: %w", err))
		}
		for m := range store.NumMasks {
			if err := tx.Bucket(verdictIndexes[m]).Delete(verdictIndexKey(m, v, id)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketVerdicts).Delete(id); err != nil {
			return err
		}
	}
	run, err := getRun(tx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return reject(err)
	}
	for m := range store.NumMasks {
		if err := tx.Bucket(runIndexes[m]).Delete(runIndexKey(m, run, run.GetState())); err != nil {
			return err
		}
	}
	if rid := run.GetRequestId(); rid != "" {
		requests := tx.Bucket(bucketRequests)
		if v := requests.Get([]byte(rid)); v != nil {
			if runID, _, ok := parseRequest(v); ok && bytes.Equal(runID, id) {
				if err := requests.Delete([]byte(rid)); err != nil {
					return err
				}
			}
		}
	}
	if rb := tx.Bucket(bucketData).Bucket(id); rb != nil {
		if at := rb.Get(keyFinished); len(at) == store.TimeLen {
			if err := tx.Bucket(bucketFinished).Delete(append(bytes.Clone(at), id...)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketData).DeleteBucket(id); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketRuns).Delete(id)
}

// indexFinished adds the runs finished before this version of the store
// to bucketFinished, once (meta "finidx"), dated by their FinishTime.
func indexFinished(tx *bolt.Tx, now time.Time) error {
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keyFinIndexed) != nil {
		return nil
	}
	fin := tx.Bucket(bucketFinished)
	data := tx.Bucket(bucketData)
	err := data.ForEachBucket(func(id []byte) error {
		rb := data.Bucket(id)
		st := rb.Get(keyState)
		if len(st) != 1 || canaryv1.RunState(st[0]) == canaryv1.RunState_RUN_STATE_RUNNING || rb.Get(keyFinished) != nil {
			return nil
		}
		at := now
		if run, err := getRun(tx, id); err == nil && run.GetFinishTime() != nil {
			at = run.GetFinishTime().AsTime()
		}
		k := finishedKey(at, string(id))
		if err := rb.Put(keyFinished, k[:store.TimeLen]); err != nil {
			return err
		}
		return fin.Put(k, nil)
	})
	if err != nil {
		return err
	}
	return meta.Put(keyFinIndexed, []byte{1})
}

// anyBefore reports whether the bucket has a key before upper: a read, so
// that maintenance with nothing to do writes nothing.
func (s *Store) anyBefore(bucket, upper []byte) (bool, error) {
	var due bool
	err := s.view(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucket).Cursor().First()
		due = k != nil && bytes.Compare(k, upper) < 0
		return nil
	})
	return due, err
}
