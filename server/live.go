package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// liveRun is a run in memory: its record, its data (the fold of its log
// up to a cursor, see fold.go) and its latest verdict (judge.go).
//
// Locking: mu guards st, and is the only lock of a run. The methods of
// *liveRun take it and release it with defer before they return; the
// methods of *liveState are called with it held (they are only reachable
// through st). mu is held while a catch-up reads the run's new deltas from
// the store and folds them, so that every fold sees the log in order and
// once; never while a run is judged, snapshotted or finished in the store.
// Lock order: Service.mu (the registry) is never held with mu.
type liveRun struct {
	id string

	// loaded is closed once the load has ended: err is set, or the fields
	// below it are, which never change after.
	loaded chan struct{}
	err    error
	// gone is closed once the run, evicted, has left the registry.
	gone chan struct{}

	cfg     *analysis.Config
	metrics map[string]int // metric name -> index in cfg.Metrics
	service string
	start   time.Time   // when the run's data begin (runStart)
	bakeEnd time.Time   // when its bake time ends (bakeEnd)
	share   float64     // the canary's declared share of traffic, 0 if none
	auto    *autoFinish // when the run finishes by itself; nil: never
	// pulled holds the config and start of a run whose config has a source
	// (pull.go: pullGate); nil otherwise.
	pulled *canaryv1.Run

	// catchSeq numbers the catch-ups started; read without mu by appends
	// that just completed (see batch.seen).
	catchSeq atomic.Uint64

	mu sync.Mutex
	st liveState
}

// liveState is the mutable part of a liveRun, guarded by its mu.
type liveState struct {
	state runState
	// rec is the record: as stored, plus the in-memory counters and latest
	// verdict. Handed out as clones only.
	rec  *canaryv1.Run
	data *analysis.Data // the fold of the log up to cursor; nil once finished
	// alarms are the alarms recorded in the log up to cursor, in log
	// order (alarms.go); immutable events, the slice only grows.
	alarms []*canaryv1.AlarmEvent
	// cursor is the position in the log that data folds up to.
	cursor  store.Cursor
	version uint64        // bumped by every catch-up that folded deltas
	changed chan struct{} // closed and replaced on every change (notify)
	// caughtSeq is the catchSeq of the last catch-up that succeeded.
	caughtSeq uint64

	verdictCache
	// judging is non-nil while a call judges a copy of data (judge.go),
	// and closed when it has installed its verdict or failed.
	judging chan struct{}
	// finishDone is non-nil while the run is finishing, and closed when
	// the finish has ended.
	finishDone chan struct{}

	snapshots snapshotProgress   // see fold.go
	traj      trajectoryProgress // see trajectory.go

	// users counts the leases taken by Service.use and not released, and
	// watchers the WatchVerdict streams following the run: a run in use or
	// watched is not evicted. following is set while the run's log
	// follower runs (follow.go).
	users     int
	watchers  int
	following bool
	lastUsed  time.Time

	gen, flushedGen uint64 // changes to rec, and the last one stored

	// pullMissing names the metrics pullGate held at the last look
	// (refreshPull), so that a change with time alone is judged again.
	pullMissing string
}

// setState moves the run along its lifecycle (lifecycle.go) and wakes its
// watchers. An illegal move is a bug: it panics.
func (st *liveState) setState(to runState) {
	if !canMove(st.state, to) {
		panic(fmt.Sprintf("server: run state %v cannot move to %v", st.state, to))
	}
	st.state = to
	st.notify()
}

// notify wakes the watchers: something changed.
func (st *liveState) notify() {
	close(st.changed)
	st.changed = make(chan struct{})
	st.gen++
}

// record returns a copy of the run's record.
func (st *liveState) record() *canaryv1.Run {
	return proto.Clone(st.rec).(*canaryv1.Run)
}

// newLiveRun returns a run that is not published yet, in state loading.
func newLiveRun(id string) *liveRun {
	lr := &liveRun{id: id, loaded: make(chan struct{}), gone: make(chan struct{})}
	lr.st.changed = make(chan struct{})
	return lr
}

// init sets the immutable fields and the state of a run from its record
// and, for a running run, its data as read from the log. Called once, by
// whoever created lr, before loaded is closed.
func (lr *liveRun) init(run *canaryv1.Run, cfg *analysis.Config, ls *logState, now time.Time) {
	lr.cfg = cfg
	lr.metrics = make(map[string]int, len(cfg.Metrics))
	for i, m := range cfg.Metrics {
		lr.metrics[m.Name] = i
	}
	lr.service = run.GetService()
	lr.start = runStart(run)
	lr.bakeEnd = bakeEnd(run)
	lr.share = run.GetCanaryTrafficShare()
	lr.auto = newAutoFinish(run)
	if run.GetConfig().GetSource() != nil {
		lr.pulled = &canaryv1.Run{Config: run.GetConfig(), StartTime: timestamppb.New(lr.start)}
	}

	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	if run.Counters == nil {
		run.Counters = &canaryv1.RunCounters{}
	}
	st.rec = run
	st.lastUsed = now
	if v := run.GetVerdict(); v != nil {
		st.verdict, st.seq = v, v.GetSequence()
	}
	if !isRunning(run) {
		st.setState(stateFinished)
		return
	}
	st.setLog(ls)
	st.setState(stateLive)
}

// isRunning reports whether a run record is of a running run.
func isRunning(run *canaryv1.Run) bool {
	return run.GetState() == canaryv1.RunState_RUN_STATE_RUNNING
}

// runStart returns when a run's data begin: its start_time, else its
// creation.
func runStart(run *canaryv1.Run) time.Time {
	if st := run.GetStartTime(); st != nil {
		return st.AsTime()
	}
	return run.GetCreateTime().AsTime()
}

// bakeEnd returns when a run's bake time ends. The judge promotes nothing
// before it, and rolls back before it only on a critical regression.
func bakeEnd(run *canaryv1.Run) time.Time {
	return run.GetCreateTime().AsTime().Add(run.GetBakeTime().AsDuration())
}

// newData returns empty data for a run, its cohorts' warm-up starting at
// the run's start: the run's data are a function of its batches only,
// whatever order they arrive in (a batch of older samples does not move
// the start; ingest rejects samples timed too far before it).
func newData(cfg *analysis.Config, start time.Time) *analysis.Data {
	d := analysis.NewData(cfg)
	d.SetStart(analysis.Baseline, start)
	d.SetStart(analysis.Canary, start)
	return d
}

// acquire takes a lease on the run, unless it was evicted: then it returns
// the channel closed once it has left the registry.
func (lr *liveRun) acquire(now time.Time) (gone <-chan struct{}, ok bool) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.st.state == stateEvicted {
		return lr.gone, false
	}
	lr.st.users++
	lr.st.lastUsed = now
	return nil, true
}

// release returns a lease taken by acquire.
func (lr *liveRun) release(now time.Time) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.st.users--
	lr.st.lastUsed = now
}

// record returns a copy of the run's record.
func (lr *liveRun) record() *canaryv1.Run {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.st.record()
}

// state returns where the run is in its lifecycle.
func (lr *liveRun) state() runState {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.st.state
}

// admits returns nil if the run takes batches now, else the error that
// says why not.
func (lr *liveRun) admits() error {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	switch lr.st.state {
	case stateLive:
		return nil
	case stateFinishing:
		return failedPrecondition("run %q is being finished: it takes no more samples", lr.id)
	case stateEvicted:
		return errStale
	}
	return failedPrecondition("run %q is %s: it takes no more samples", lr.id, apiconv.RunStateName(lr.st.rec.GetState()))
}

// countDuplicate counts a batch acknowledged as a duplicate.
func (lr *liveRun) countDuplicate() {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.st.rec.Counters.DuplicateBatches++
	lr.st.gen++
}

// evictIfIdle evicts the run if it is loaded, unused, unwatched and was
// last used idle ago or more.
func (lr *liveRun) evictIfIdle(now time.Time, idle time.Duration) bool {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	if (st.state != stateLive && st.state != stateFinished) || st.users > 0 || st.watchers > 0 ||
		now.Sub(st.lastUsed) < idle {
		return false
	}
	st.setState(stateEvicted)
	return true
}

// evict evicts the run whatever its use (it is stale, or failed to load),
// unless it is being finished: the finish ends it.
func (lr *liveRun) evict() bool {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if canMove(lr.st.state, stateEvicted) {
		lr.st.setState(stateEvicted)
		return true
	}
	return false
}

// unflushed returns the record of a running run and its generation when it
// changed since it was last stored.
func (lr *liveRun) unflushed() (*canaryv1.Run, uint64, bool) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	if st.rec == nil || !isRunning(st.rec) || st.gen == st.flushedGen {
		return nil, 0, false
	}
	return st.record(), st.gen, true
}

// flushed records that the record of generation gen is stored.
func (lr *liveRun) flushed(gen uint64) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.st.flushedGen = max(lr.st.flushedGen, gen)
}

// The registry of the runs in memory: Service.runs, guarded by Service.mu.

// use returns run id in memory, loading it from the store if needed (one
// load per run at a time, which outlives a caller that gives up), with a
// lease on it: the run is not evicted for idleness until s.release(lr).
// It returns holding no lock.
func (s *Service) use(ctx context.Context, id string) (*liveRun, error) {
	if id == "" {
		return nil, badField("run_id", "is required")
	}
	for {
		lr, load := s.lookup(id)
		if load {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backgroundTimeout)
			s.load(lctx, lr)
			cancel()
		}
		select {
		case <-lr.loaded:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if lr.err != nil {
			return nil, lr.err
		}
		gone, ok := lr.acquire(s.now())
		if ok {
			return lr, nil
		}
		select { // evicted: look it up again once it has left
		case <-gone:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// release returns a lease taken by use.
func (s *Service) release(lr *liveRun) { lr.release(s.now()) }

// lookup returns the run in the registry, or registers a new one that the
// caller must load (load is true).
func (s *Service) lookup(id string) (lr *liveRun, load bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lr, ok := s.runs[id]; ok {
		return lr, false
	}
	lr = newLiveRun(id)
	s.runs[id] = lr
	return lr, true
}

// register adds a run created by this process to the registry, unless a
// use loaded it already.
func (s *Service) register(lr *liveRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.runs[lr.id]; !ok {
		s.runs[lr.id] = lr
	}
}

// unregister removes an evicted run from the registry and lets its users
// look it up again.
func (s *Service) unregister(lr *liveRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs[lr.id] == lr {
		delete(s.runs, lr.id)
	}
	close(lr.gone) // once: only the call that evicted lr unregisters it
}

// registered returns the runs in the registry.
func (s *Service) registered() []*liveRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]*liveRun, 0, len(s.runs))
	for _, lr := range s.runs {
		all = append(all, lr)
	}
	return all
}

// load reads run lr.id from the store: its record, and for a running run
// its data from its log. A failed load leaves the registry and is reported
// to every waiter.
func (s *Service) load(ctx context.Context, lr *liveRun) {
	defer close(lr.loaded)
	start := time.Now()
	run, cfg, ls, err := s.read(ctx, lr.id)
	if err != nil {
		lr.err = err
		lr.evict()
		s.unregister(lr)
		return
	}
	lr.init(run, cfg, ls, s.now())
	if ls != nil {
		s.log.Debug("run loaded", "run", lr.id, "batches", ls.counters.GetBatches(), "position", ls.cursor.N,
			"snapshot", ls.folded, "elapsed", time.Since(start))
	}
}

// read reads a run from the store: its record, its config, and for a
// running run its data (nil for a finished one).
func (s *Service) read(ctx context.Context, id string) (*canaryv1.Run, *analysis.Config, *logState, error) {
	run, err := s.store.GetRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil, notFound("run %q not found", id)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load run %s: %w", id, err)
	}
	cfg, err := apiconv.ConfigFromProto(run.GetConfig())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load run %s: stored config: %w", id, err)
	}
	if !isRunning(run) {
		return run, cfg, nil, nil
	}
	ls, err := readLog(ctx, s.store, id, cfg, run)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load run %s: %w", id, err)
	}
	return run, cfg, ls, nil
}

// drop evicts a run that is stale (finished through another process) so
// that its next use reloads it; its watchers move to the reloaded run.
func (s *Service) drop(lr *liveRun) {
	if lr.evict() {
		s.retire(lr)
		s.log.Debug("run dropped: finished through another process", "run", lr.id)
	}
}

// retire stores the counters and latest verdict of an evicted run if they
// changed, then takes it out of the registry.
func (s *Service) retire(lr *liveRun) {
	if err := s.flush(lr); err != nil {
		s.log.Warn("store counters of evicted run", "run", lr.id, "err", err)
	}
	s.unregister(lr)
}

// liveRuns is the number of runs in memory, for the metrics.
func (s *Service) liveRuns() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(len(s.runs))
}

// janitor drops idle runs from memory, finishes the runs in memory that
// finish by themselves (autoCheck), and starts the writers of the
// trajectory points that are due (trajectory.go), until Close.
func (s *Service) janitor() {
	defer close(s.janitorDone)
	t := time.NewTicker(max(s.idle/4, time.Second))
	defer t.Stop()
	traj := time.NewTicker(trajectoryEvery / 2)
	defer traj.Stop()
	for {
		select {
		case <-t.C:
			s.autoCheck()
			s.evictIdle()
		case <-traj.C:
			s.writeDueTrajectories()
		case <-s.stop:
			return
		}
	}
}

// evictIdle drops the runs unused for IdleTimeout that no call is using
// (no lease, no watcher), after storing their counters and latest verdict.
func (s *Service) evictIdle() {
	now := s.now()
	for _, lr := range s.registered() {
		select {
		case <-lr.loaded:
		default:
			continue // being loaded
		}
		if lr.err == nil && lr.evictIfIdle(now, s.idle) {
			s.retire(lr)
			s.log.Debug("run evicted", "run", lr.id)
		}
	}
}

// flush stores the points of a run's trajectory not stored yet, and the
// counters and latest verdict of a running run if they changed since they
// were last stored.
func (s *Service) flush(lr *liveRun) error {
	if err := s.flushTrajectory(lr); err != nil {
		return err
	}
	run, gen, ok := lr.unflushed()
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
	defer cancel()
	err := s.store.UpdateRun(ctx, run)
	if errors.Is(err, store.ErrFinished) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update run %s: %w", lr.id, err)
	}
	lr.flushed(gen)
	return nil
}
