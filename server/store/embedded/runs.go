package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// parseRequest splits a request-id record (uvarint(len(id)) id
// fingerprint) into the run id and the request's fingerprint; ok is false
// when the record is corrupt.
func parseRequest(v []byte) (id, fingerprint []byte, ok bool) {
	n, w := binary.Uvarint(v)
	if w <= 0 || n > uint64(len(v)-w) {
		return nil, nil, false
	}
	return v[w : w+int(n)], v[w+int(n):], true
}

// CreateRun stores a new run, or returns the run an earlier call with the
// same RequestId created (ErrConflict if its fingerprint differs). A run
// with an empty RequestId is not deduplicated. The run's state is stored as
// RUNNING; run.CreateTime orders ListRuns.
func (s *Store) CreateRun(ctx context.Context, run *canaryv1.Run, fingerprint []byte) (*canaryv1.Run, bool, error) {
	id := run.GetId()
	run, err := store.NewRun(run)
	if err != nil {
		return nil, false, fmt.Errorf("create run %s: %w", id, err)
	}
	data, err := proto.Marshal(run)
	if err != nil {
		return nil, false, fmt.Errorf("create run %s: encode: %w", id, err)
	}
	var req []byte
	if rid := run.GetRequestId(); rid != "" {
		req = binary.AppendUvarint(nil, uint64(len(id)))
		req = append(append(req, id...), fingerprint...)
	}
	var (
		out     *canaryv1.Run
		created bool
	)
	err = s.update(ctx, len(data), func(tx *bolt.Tx) error {
		out, created = nil, false
		requests := tx.Bucket(bucketRequests)
		if req != nil {
			if v := requests.Get([]byte(run.GetRequestId())); v != nil {
				rid, fp, ok := parseRequest(v)
				if !ok {
					return reject(fmt.Errorf("corrupt request record %q", run.GetRequestId()))
				}
				if !bytes.Equal(fp, fingerprint) {
					out = &canaryv1.Run{Id: string(rid)}
					return reject(store.ErrConflict)
				}
				stored, err := getRun(tx, rid)
				if err != nil {
					return reject(err)
				}
				out = stored
				return nil
			}
		}
		runs := tx.Bucket(bucketRuns)
		if runs.Get([]byte(id)) != nil {
			return reject(fmt.Errorf("run id already used by another request"))
		}

		if err := runs.Put([]byte(id), data); err != nil {
			return err
		}
		if req != nil {
			if err := requests.Put([]byte(run.GetRequestId()), req); err != nil {
				return err
			}
		}
		rb, err := tx.Bucket(bucketData).CreateBucket([]byte(id))
		if err != nil {
			return err
		}
		if err := rb.Put(keyState, []byte{byte(run.GetState())}); err != nil {
			return err
		}
		if _, err := rb.CreateBucket(bucketIDs); err != nil {
			return err
		}
		if _, err := rb.CreateBucket(bucketDeltas); err != nil {
			return err
		}
		for m := range store.NumMasks {
			if err := tx.Bucket(runIndexes[m]).Put(runIndexKey(m, run, run.GetState()), nil); err != nil {
				return err
			}
		}
		out, created = run, true
		return nil
	})
	if errors.Is(err, store.ErrConflict) {
		return out, false, fmt.Errorf("create run %s: %w", id, err) // out: the id of the run the request id names
	}
	if err != nil {
		return nil, false, fmt.Errorf("create run %s: %w", id, err)
	}
	return out, created, nil
}

func runIndexKey(m int, run *canaryv1.Run, state canaryv1.RunState) []byte {
	return indexKey(m, run.GetService(), run.GetStage(), int32(state), run.GetCreateTime().AsTime(), run.GetId())
}

// getRun reads a run in tx; store.ErrNotFound if there is none.
func getRun(tx *bolt.Tx, id []byte) (*canaryv1.Run, error) {
	v := tx.Bucket(bucketRuns).Get(id)
	if v == nil {
		return nil, store.ErrNotFound
	}
	run := new(canaryv1.Run)
	if err := proto.Unmarshal(v, run); err != nil {
		return nil, fmt.Errorf("decode run %s: %w", id, err)
	}
	return run, nil
}

// GetRun returns a run.
func (s *Store) GetRun(ctx context.Context, id string) (*canaryv1.Run, error) {
	var run *canaryv1.Run
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		run, err = getRun(tx, []byte(id))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	return run, nil
}

// ListRuns lists runs newest first (by create time, then id descending).
func (s *Store) ListRuns(ctx context.Context, f store.RunFilter, page store.Page) ([]*canaryv1.Run, string, error) {
	var (
		out  []*canaryv1.Run
		next string
	)
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		next, err = scanIndex(tx.Bucket(bucketRuns), runIndexes[:], kindRuns,
			f.Service, f.Stage, int32(f.State), time.Time{}, time.Time{}, page,
			func(v []byte) error {
				run := new(canaryv1.Run)
				if err := proto.Unmarshal(v, run); err != nil {
					return fmt.Errorf("decode run: %w", err)
				}
				out = append(out, run)
				return nil
			})
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list runs: %w", err)
	}
	return out, next, nil
}

// scanIndex lists one page of records of the index that serves the filter:
// for each entry, newest first, it calls fn with the record of the entry's
// run id in records. It returns the next page token.
func scanIndex(records *bolt.Bucket, indexes [][]byte, kind byte, service, stage string, enum int32,
	since, until time.Time, page store.Page, fn func(v []byte) error,
) (string, error) {
	tx := records.Tx()
	m := store.FilterMask(service, stage, enum)
	prefix := filterPrefix(m, service, stage, enum)
	after, err := decodeToken(page.Token, kind, m, prefix, len(prefix)+store.TimeLen+1)
	if err != nil {
		return "", err
	}
	upper := successor(prefix)
	if !until.IsZero() {
		upper = store.AppendTime(bytes.Clone(prefix), until)
	}
	if after != nil && (upper == nil || bytes.Compare(after, upper) < 0) {
		upper = after
	}
	lower := prefix
	if !since.IsZero() {
		lower = store.AppendTime(bytes.Clone(prefix), since)
	}
	limit := page.Limit()
	c := tx.Bucket(indexes[m]).Cursor()
	n := 0
	var last []byte
	for k, _ := seekBefore(c, upper); k != nil && bytes.Compare(k, lower) >= 0; k, _ = c.Prev() {
		if n == limit {
			return encodeToken(kind, m, last), nil
		}
		id := k[len(prefix)+store.TimeLen:]
		v := records.Get(id)
		if v == nil {
			return "", fmt.Errorf("index %s entry %x: no record %q", indexes[m], k, id)
		}
		if err := fn(v); err != nil {
			return "", err
		}
		last = k
		n++
	}
	return "", nil
}

// UpdateRun replaces the latest verdict and the counters of a running run;
// its other fields are kept as stored.
func (s *Store) UpdateRun(ctx context.Context, run *canaryv1.Run) error {
	id := run.GetId()
	verdict, counters := run.GetVerdict(), run.GetCounters()
	err := s.update(ctx, 0, func(tx *bolt.Tx) error {
		stored, err := runningRun(tx, id)
		if err != nil {
			return reject(err)
		}
		stored.Verdict, stored.Counters = verdict, counters
		data, err := proto.Marshal(stored)
		if err != nil {
			return reject(fmt.Errorf("encode: %w", err))
		}
		return tx.Bucket(bucketRuns).Put([]byte(id), data)
	})
	if err != nil {
		return fmt.Errorf("update run %s: %w", id, err)
	}
	return nil
}

// runningRun returns a stored run, store.ErrNotFound if there is none and
// store.ErrFinished if it is not running.
func runningRun(tx *bolt.Tx, id string) (*canaryv1.Run, error) {
	if id == "" {
		return nil, store.ErrNotFound
	}
	rb := tx.Bucket(bucketData).Bucket([]byte(id))
	if rb == nil {
		return nil, store.ErrNotFound
	}
	if st := rb.Get(keyState); len(st) != 1 || canaryv1.RunState(st[0]) != canaryv1.RunState_RUN_STATE_RUNNING {
		return nil, store.ErrFinished
	}
	return getRun(tx, []byte(id))
}

// FinishRun marks a running run finished and adds its verdict to the
// history, in one transaction. From run it takes State (COMPLETED or
// ABORTED), FinishTime, FinishReason, Verdict and Counters; the verdict's
// RunId, Service and Stage are filled in from the run when empty.
func (s *Store) FinishRun(ctx context.Context, run *canaryv1.Run) error {
	return s.finishRun(ctx, run, nil)
}

// finishRun is FinishRun, refused with the error of check, if any, which
// is called with the run's data bucket.
func (s *Store) finishRun(ctx context.Context, run *canaryv1.Run, check func(rb *bolt.Bucket) error) error {
	id := run.GetId()
	state := run.GetState()
	if state != canaryv1.RunState_RUN_STATE_COMPLETED && state != canaryv1.RunState_RUN_STATE_ABORTED {
		return fmt.Errorf("finish run %s: state %v, want COMPLETED or ABORTED", id, state)
	}
	if run.GetVerdict() == nil {
		return fmt.Errorf("finish run %s: no verdict", id)
	}
	finKey := finishedKey(s.opts.Now(), id)
	err := s.update(ctx, 0, func(tx *bolt.Tx) error {
		stored, err := runningRun(tx, id)
		if err != nil {
			return reject(err)
		}
		if check != nil {
			if err := check(tx.Bucket(bucketData).Bucket([]byte(id))); err != nil {
				return reject(err)
			}
		}
		verdict := proto.Clone(run.GetVerdict()).(*canaryv1.Verdict)
		if verdict.RunId == "" {
			verdict.RunId = id
		}
		if verdict.Service == "" {
			verdict.Service = stored.GetService()
		}
		if verdict.Stage == "" {
			verdict.Stage = stored.GetStage()
		}
		if len(verdict.GetService()) > store.MaxIDLen || len(verdict.GetStage()) > store.MaxIDLen {
			return reject(errors.New("verdict service or stage too long"))
		}
		oldState := stored.GetState()
		stored.State = state
		stored.FinishTime = run.GetFinishTime()
		stored.FinishReason = run.GetFinishReason()
		stored.Verdict = verdict
		stored.Counters = run.GetCounters()
		runData, err := proto.Marshal(stored)
		if err != nil {
			return reject(fmt.Errorf("encode run: %w", err))
		}
		verdictData, err := proto.Marshal(verdict)
		if err != nil {
			return reject(fmt.Errorf("encode verdict: %w", err))
		}

		if err := tx.Bucket(bucketRuns).Put([]byte(id), runData); err != nil {
			return err
		}
		rb := tx.Bucket(bucketData).Bucket([]byte(id))
		if err := rb.Put(keyState, []byte{byte(state)}); err != nil {
			return err
		}
		// Its raw data expire Retention from now (see maintain.go).
		if err := rb.Put(keyFinished, finKey[:store.TimeLen]); err != nil {
			return err
		}
		if err := tx.Bucket(bucketFinished).Put(finKey, nil); err != nil {
			return err
		}
		for m := range store.NumMasks {
			if m&store.MaskEnum == 0 {
				continue
			}
			idx := tx.Bucket(runIndexes[m])
			if err := idx.Delete(runIndexKey(m, stored, oldState)); err != nil {
				return err
			}
			if err := idx.Put(runIndexKey(m, stored, state), nil); err != nil {
				return err
			}
		}
		return putVerdict(tx, []byte(id), verdict, verdictData)
	})
	if err != nil {
		return fmt.Errorf("finish run %s: %w", id, err)
	}
	return nil
}
