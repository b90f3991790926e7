// Package store defines what canaryd persists and the contract every
// storage backend meets: configs (versioned), runs, the ingested batches of
// each run (as compact aggregated deltas, deduplicated by batch id), and the
// history of final verdicts with the indexes ListVerdicts needs.
//
// Backends live in sub-packages (store/embedded, store/redisstore); the
// conformance suite in store/storetest runs against each of them. Every
// backend also implements Tailer: the deltas of a run form an ordered log,
// and a run's state is the fold of that log in order, whether one process
// or several share the store.
//
// Records are the canary.v1 protobuf messages, so what is stored is what
// the API returns. A method returns only after what it wrote is durable.
package store

import (
	"context"
	"errors"
	"time"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Sentinel errors, mapped to gRPC codes at the API edge.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: a CreateRun request id reused with a different request.
	ErrConflict = errors.New("request id already used with a different request")
	// ErrFinished: the run is no longer running (ingest, or finishing it
	// again in another way).
	ErrFinished = errors.New("run is finished")
	// ErrBadPageToken: a page token the store did not issue.
	ErrBadPageToken = errors.New("bad page token")
	// ErrUnavailable: the backend cannot be reached; nothing was stored.
	ErrUnavailable = errors.New("store unavailable")
)

// Store persists canaryd's state. Implementations are safe for concurrent
// use. Every write is durable (survives kill -9) when the method returns
// nil, and a method that returns an error stored nothing.
type Store interface {
	// PutConfig stores cfg as the next version of its name, with yaml, the
	// YAML text it was put as ("" when it was not), unless cfg is identical
	// (proto.Equal) to the latest version's config, which it returns with
	// created = false (and its own YAML text). Identity is the config's
	// alone, so a config put as YAML and as a message is one version.
	PutConfig(ctx context.Context, cfg *canaryv1.CanaryConfig, yaml string) (v *canaryv1.ConfigVersion, created bool, err error)
	// GetConfig returns a version of a config; version 0 is the latest.
	GetConfig(ctx context.Context, name string, version uint32) (*canaryv1.ConfigVersion, error)
	// ListConfigs lists the latest version of every config by name, or,
	// when name is set, every version of that config, newest first.
	ListConfigs(ctx context.Context, name string, page Page) ([]*canaryv1.ConfigVersion, string, error)

	// CreateRun stores a new run (run.Id set by the caller). When a run
	// with the same RequestId exists, it returns that run and created =
	// false if fingerprint matches the one stored with it, ErrConflict
	// otherwise (stored then holds only the Id of the existing run).
	CreateRun(ctx context.Context, run *canaryv1.Run, fingerprint []byte) (stored *canaryv1.Run, created bool, err error)
	// GetRun returns a run.
	GetRun(ctx context.Context, id string) (*canaryv1.Run, error)
	// ListRuns lists runs newest first.
	ListRuns(ctx context.Context, f RunFilter, page Page) ([]*canaryv1.Run, string, error)
	// UpdateRun replaces the mutable fields of a running run (latest
	// verdict, counters). ErrFinished when the run is finished.
	UpdateRun(ctx context.Context, run *canaryv1.Run) error

	// AppendBatch stores the aggregated delta of one batch of a running
	// run, once: a batch id already stored for the run returns dup = true
	// and stores nothing. ErrFinished when the run is finished.
	// Implementations may group concurrent appends into one durable write.
	AppendBatch(ctx context.Context, runID, batchID string, delta []byte) (dup bool, err error)
	// ReadBatches calls fn with the run's snapshot (nil if none) and then
	// every delta appended after it, in append order, so that folding them
	// rebuilds the run's data.
	ReadBatches(ctx context.Context, runID string, fn func(snapshot bool, data []byte) error) error
	// Snapshot replaces the snapshot of a run with state, which folds every
	// delta appended up to and including the delta count n (the number of
	// deltas ReadBatches delivered after the previous snapshot); the
	// folded deltas may be deleted. Batch ids stay deduplicated.
	Snapshot(ctx context.Context, runID string, n int, state []byte) error

	// FinishRun atomically marks a running run finished (run.State set by
	// the caller to COMPLETED or ABORTED, run.Verdict final) and adds its
	// verdict to the history. ErrFinished if it was already finished.
	FinishRun(ctx context.Context, run *canaryv1.Run) error
	// ListVerdicts returns final verdicts newest first (by Verdict.Time,
	// then run id) matching f.
	ListVerdicts(ctx context.Context, f VerdictFilter, page Page) ([]*canaryv1.Verdict, string, error)

	// Healthy reports whether the backend can serve now.
	Healthy(ctx context.Context) error
	// Close flushes and releases the store.
	Close() error
}

// Page asks for one page of a listing.
type Page struct {
	// Size is the page size; 0 means DefaultPageSize, more than
	// MaxPageSize is capped.
	Size int
	// Token is the NextPageToken of the previous page, or "".
	Token string
}

// Page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Limit returns the effective page size.
func (p Page) Limit() int {
	switch {
	case p.Size <= 0:
		return DefaultPageSize
	case p.Size > MaxPageSize:
		return MaxPageSize
	}
	return p.Size
}

// RunFilter selects runs; empty fields match everything.
type RunFilter struct {
	Service string
	Stage   string
	State   canaryv1.RunState
}

// VerdictFilter selects verdicts of the history; empty fields match
// everything. Since is inclusive, Until exclusive.
type VerdictFilter struct {
	Service  string
	Stage    string
	Decision canaryv1.Decision
	Since    time.Time
	Until    time.Time
}

// ErrSnapshotMoved: a snapshot folded deltas that a reader had not
// delivered yet (see Tailer), so what it delivered cannot be completed
// consistently: read the run again from its snapshot.
var ErrSnapshotMoved = errors.New("snapshot replaced during read; read again")

// ErrMoreBatches: Tailer.FinishRunThrough found deltas appended after the
// position the final verdict folds; nothing was stored.
var ErrMoreBatches = errors.New("batches appended after the position")

// Cursor is a position in the deltas of a run, for replicas that follow a
// run's data incrementally (see Tailer): N counts the deltas appended up
// to the position, folded ones included, and ID is the backend's id of the
// last delta delivered ("" when none was delivered after the snapshot).
type Cursor struct {
	N  int64
	ID string
}

// Tailer is implemented, beyond Store, by every backend: a run's deltas
// are a log in append order, which a process follows from a position
// instead of owning the run's data, and snapshots never move back. A
// canaryd process keeps a run in memory as its snapshot plus the deltas up
// to a cursor, whether it is the only process on the store (the embedded
// store) or one of several replicas (the Redis store).
type Tailer interface {
	// ReadBatchesFrom is ReadBatches from a position: with after nil it
	// reads like ReadBatches, snapshot first; otherwise it calls
	// fn(false, delta) with each delta appended after the position only,
	// and fails with ErrSnapshotMoved if a snapshot folded deltas past it.
	// It returns the position after the last delta delivered.
	ReadBatchesFrom(ctx context.Context, runID string, after *Cursor, fn func(snapshot bool, data []byte) error) (Cursor, error)
	// WaitBatches waits up to timeout for a delta after the position and
	// reports whether there is one.
	WaitBatches(ctx context.Context, runID string, after Cursor, timeout time.Duration) (bool, error)
	// SnapshotThrough replaces the run's snapshot with state, which folds
	// every delta up to the position through, unless a snapshot already
	// folds as many (then it stores nothing and returns false). Safe when
	// several processes snapshot the same run.
	SnapshotThrough(ctx context.Context, runID string, through Cursor, state []byte) (bool, error)
	// FinishRunThrough is FinishRun for a final verdict that folds the
	// run's deltas up to the position through: it fails with
	// ErrMoreBatches, storing nothing, if a delta was appended after it.
	FinishRunThrough(ctx context.Context, run *canaryv1.Run, through Cursor) error
	// CloseRun makes the store refuse new batches of a running run
	// (AppendBatch fails with ErrFinished) while it is being finished, so
	// that FinishRunThrough after a last read cannot be overtaken by
	// other processes appending. ErrFinished if the run is finished.
	CloseRun(ctx context.Context, runID string) error
	// ReopenRun undoes CloseRun when the finish it prepared failed: the
	// run takes batches again. ErrFinished if the run is finished.
	ReopenRun(ctx context.Context, runID string) error
}

// Doc is one record of Docs.
type Doc struct {
	Key   string
	Value []byte
}

// Docs is implemented, beyond Store, by every backend: small sets of
// records of a kind ("alarm", "policy", "override"), each read whole,
// for what is neither a config nor a run (the alarms canaryd knows, the
// deploy policies, the recorded overrides). A kind holds at most a few
// thousand records; writes are durable when the method returns and last
// write wins.
type Docs interface {
	// PutDoc stores value under key in kind, replacing any value.
	PutDoc(ctx context.Context, kind, key string, value []byte) error
	// GetDoc returns the value of key in kind; ErrNotFound if none.
	GetDoc(ctx context.Context, kind, key string) ([]byte, error)
	// ListDocs returns every record of kind, ordered by key.
	ListDocs(ctx context.Context, kind string) ([]Doc, error)
	// DeleteDocs deletes keys of kind (absent keys are ignored).
	DeleteDocs(ctx context.Context, kind string, keys ...string) error
}

// Trajectories is implemented, beyond Store, by every backend: the
// verdict trajectory of a run (the compact points of its report's
// timeline, one per judgement, coarsened with age), as opaque bytes. A
// trajectory is kept as long as its run's record: the retention of raw
// data leaves it, and the sweep of the run's verdict deletes it.
type Trajectories interface {
	// PutTrajectory replaces the trajectory of a run, running or
	// finished. ErrNotFound when there is no such run.
	PutTrajectory(ctx context.Context, runID string, traj []byte) error
	// GetTrajectory returns the trajectory of a run, nil when none was
	// put. ErrNotFound when there is no such run.
	GetTrajectory(ctx context.Context, runID string) ([]byte, error)
}
