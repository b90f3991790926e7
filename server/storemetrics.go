package server

import (
	"context"
	"errors"
	"time"

	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// storeOperations are the store calls instrumentedStore times, the values
// of the operation label.
var storeOperations = []string{
	"put_config", "get_config", "list_configs",
	"create_run", "get_run", "list_runs", "update_run",
	"append_batch", "read_batches", "snapshot", "finish_run", "list_verdicts",
	"read_batches_from", "snapshot_through", "finish_run_through", "close_run", "reopen_run",
	"put_trajectory", "get_trajectory", "put_doc", "get_doc", "list_docs", "delete_docs",
}

// instrumentedStore is the service's store with every call timed
// (canaryd_store_operation_duration_seconds) and its failures counted
// (canaryd_store_errors_total). The service reaches its store only
// through it; WaitBatches (a long poll) and Healthy (timed by the
// process's health check) are not timed.
type instrumentedStore struct {
	Store
	m *metrics
}

// observe records a call of op that began at start and ended with err.
func (s instrumentedStore) observe(op string, start time.Time, err error) {
	s.m.storeTime.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if kind := storeErrorKind(err); kind != "" {
		s.m.storeErrors.WithLabelValues(op, kind).Inc()
	}
}

// storeErrorKind classifies a store call's error: "" for none and for
// the answers the API expects (not found, conflict, finished, a bad page
// token, a moved snapshot or more batches, a cancelled call),
// "unavailable" when the backend could not be reached, "error" otherwise.
func storeErrorKind(err error) string {
	switch {
	case err == nil,
		errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrFinished),
		errors.Is(err, store.ErrBadPageToken), errors.Is(err, store.ErrSnapshotMoved), errors.Is(err, store.ErrMoreBatches),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ""
	case errors.Is(err, store.ErrUnavailable):
		return "unavailable"
	}
	return "error"
}

func (s instrumentedStore) PutConfig(ctx context.Context, cfg *canaryv1.CanaryConfig, yaml string) (v *canaryv1.ConfigVersion, created bool, err error) {
	defer func(t time.Time) { s.observe("put_config", t, err) }(time.Now())
	return s.Store.PutConfig(ctx, cfg, yaml)
}

func (s instrumentedStore) GetConfig(ctx context.Context, name string, version uint32) (v *canaryv1.ConfigVersion, err error) {
	defer func(t time.Time) { s.observe("get_config", t, err) }(time.Now())
	return s.Store.GetConfig(ctx, name, version)
}

func (s instrumentedStore) ListConfigs(ctx context.Context, name string, page store.Page) (vs []*canaryv1.ConfigVersion, next string, err error) {
	defer func(t time.Time) { s.observe("list_configs", t, err) }(time.Now())
	return s.Store.ListConfigs(ctx, name, page)
}

func (s instrumentedStore) CreateRun(ctx context.Context, run *canaryv1.Run, fingerprint []byte) (stored *canaryv1.Run, created bool, err error) {
	defer func(t time.Time) { s.observe("create_run", t, err) }(time.Now())
	return s.Store.CreateRun(ctx, run, fingerprint)
}

func (s instrumentedStore) GetRun(ctx context.Context, id string) (r *canaryv1.Run, err error) {
	defer func(t time.Time) { s.observe("get_run", t, err) }(time.Now())
	return s.Store.GetRun(ctx, id)
}

func (s instrumentedStore) ListRuns(ctx context.Context, f store.RunFilter, page store.Page) (rs []*canaryv1.Run, next string, err error) {
	defer func(t time.Time) { s.observe("list_runs", t, err) }(time.Now())
	return s.Store.ListRuns(ctx, f, page)
}

func (s instrumentedStore) UpdateRun(ctx context.Context, run *canaryv1.Run) (err error) {
	defer func(t time.Time) { s.observe("update_run", t, err) }(time.Now())
	return s.Store.UpdateRun(ctx, run)
}

func (s instrumentedStore) AppendBatch(ctx context.Context, runID, batchID string, delta []byte) (dup bool, err error) {
	defer func(t time.Time) { s.observe("append_batch", t, err) }(time.Now())
	return s.Store.AppendBatch(ctx, runID, batchID, delta)
}

func (s instrumentedStore) ReadBatches(ctx context.Context, runID string, fn func(snapshot bool, data []byte) error) (err error) {
	defer func(t time.Time) { s.observe("read_batches", t, err) }(time.Now())
	return s.Store.ReadBatches(ctx, runID, fn)
}

func (s instrumentedStore) Snapshot(ctx context.Context, runID string, n int, state []byte) (err error) {
	defer func(t time.Time) { s.observe("snapshot", t, err) }(time.Now())
	return s.Store.Snapshot(ctx, runID, n, state)
}

func (s instrumentedStore) FinishRun(ctx context.Context, run *canaryv1.Run) (err error) {
	defer func(t time.Time) { s.observe("finish_run", t, err) }(time.Now())
	return s.Store.FinishRun(ctx, run)
}

func (s instrumentedStore) ListVerdicts(ctx context.Context, f store.VerdictFilter, page store.Page) (vs []*canaryv1.Verdict, next string, err error) {
	defer func(t time.Time) { s.observe("list_verdicts", t, err) }(time.Now())
	return s.Store.ListVerdicts(ctx, f, page)
}

func (s instrumentedStore) ReadBatchesFrom(ctx context.Context, runID string, after *store.Cursor, fn func(snapshot bool, data []byte) error) (c store.Cursor, err error) {
	defer func(t time.Time) { s.observe("read_batches_from", t, err) }(time.Now())
	return s.Store.ReadBatchesFrom(ctx, runID, after, fn)
}

func (s instrumentedStore) SnapshotThrough(ctx context.Context, runID string, through store.Cursor, state []byte) (stored bool, err error) {
	defer func(t time.Time) { s.observe("snapshot_through", t, err) }(time.Now())
	return s.Store.SnapshotThrough(ctx, runID, through, state)
}

func (s instrumentedStore) FinishRunThrough(ctx context.Context, run *canaryv1.Run, through store.Cursor) (err error) {
	defer func(t time.Time) { s.observe("finish_run_through", t, err) }(time.Now())
	return s.Store.FinishRunThrough(ctx, run, through)
}

func (s instrumentedStore) CloseRun(ctx context.Context, runID string) (err error) {
	defer func(t time.Time) { s.observe("close_run", t, err) }(time.Now())
	return s.Store.CloseRun(ctx, runID)
}

func (s instrumentedStore) ReopenRun(ctx context.Context, runID string) (err error) {
	defer func(t time.Time) { s.observe("reopen_run", t, err) }(time.Now())
	return s.Store.ReopenRun(ctx, runID)
}

func (s instrumentedStore) PutTrajectory(ctx context.Context, runID string, traj []byte) (err error) {
	defer func(t time.Time) { s.observe("put_trajectory", t, err) }(time.Now())
	return s.Store.PutTrajectory(ctx, runID, traj)
}

func (s instrumentedStore) GetTrajectory(ctx context.Context, runID string) (traj []byte, err error) {
	defer func(t time.Time) { s.observe("get_trajectory", t, err) }(time.Now())
	return s.Store.GetTrajectory(ctx, runID)
}

func (s instrumentedStore) PutDoc(ctx context.Context, kind, key string, value []byte) (err error) {
	defer func(t time.Time) { s.observe("put_doc", t, err) }(time.Now())
	return s.Store.PutDoc(ctx, kind, key, value)
}

func (s instrumentedStore) GetDoc(ctx context.Context, kind, key string) (value []byte, err error) {
	defer func(t time.Time) { s.observe("get_doc", t, err) }(time.Now())
	return s.Store.GetDoc(ctx, kind, key)
}

func (s instrumentedStore) ListDocs(ctx context.Context, kind string) (docs []store.Doc, err error) {
	defer func(t time.Time) { s.observe("list_docs", t, err) }(time.Now())
	return s.Store.ListDocs(ctx, kind)
}

func (s instrumentedStore) DeleteDocs(ctx context.Context, kind string, keys ...string) (err error) {
	defer func(t time.Time) { s.observe("delete_docs", t, err) }(time.Now())
	return s.Store.DeleteDocs(ctx, kind, keys...)
}

// runsByState counts the runs in memory by their record's state
// (running, completed, aborted); runs still loading are left out.
func (s *Service) runsByState() map[string]int {
	s.mu.Lock()
	runs := make([]*liveRun, 0, len(s.runs))
	for _, lr := range s.runs {
		runs = append(runs, lr)
	}
	s.mu.Unlock()
	n := map[string]int{}
	for _, lr := range runs {
		select {
		case <-lr.loaded:
		default:
			continue
		}
		if lr.err != nil {
			continue
		}
		lr.mu.Lock()
		state := lr.st.rec.GetState()
		lr.mu.Unlock()
		if name := apiconv.RunStateName(state); name != "" {
			n[name]++
		}
	}
	return n
}
