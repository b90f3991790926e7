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

// live is a run in memory: its record, its merged data, its latest
// verdict, and the state of its ingest pipeline. Every field after mu is
// guarded by mu. Lock order: Service.mu before live.mu.
type live struct {
	id     string
	loaded chan struct{} // closed once load has set err or the fields below
	err    error         // of load; set before loaded is closed

	// Immutable once loaded.
	cfg     *analysis.Config
	metrics map[string]int // metric name -> index in cfg.Metrics
	service string         // the run's service
	start   time.Time      // when the run's data begin (runStart)
	share   float64        // the canary's declared share of traffic, 0 if none

	mu sync.Mutex
	// run is the record: as stored, plus the in-memory counters and latest
	// verdict. Handed out as clones only.
	run  *canaryv1.Run
	data *analysis.Data // nil once the run is finished

	version        uint64            // bumped by every merged delta
	verdict        *canaryv1.Verdict // latest computed (final once finished); immutable
	verdictVersion uint64            // data version verdict was computed on
	verdictBake    bool              // BakeComplete verdict was computed with
	seq            uint64            // sequence of verdict
	changed        chan struct{}     // closed and replaced on every change
	// judging is non-nil while a call judges a copy of data without mu
	// (see verdictNow), and closed when it is done.
	judging chan struct{}
	// judgeErr is the failure of the judge on data version
	// judgeErrVersion with bake state judgeErrBake (see judgeData).
	judgeErr        error
	judgeErrVersion uint64
	judgeErrBake    bool

	inflight  int           // appends started and not yet settled
	idle      chan struct{} // closed when inflight drops to 0, if waited for
	blocked   chan struct{} // non-nil while a snapshot holds new appends back
	sinceSnap int           // deltas merged since the last snapshot
	finishing chan struct{} // non-nil while CompleteRun/AbortRun is at work

	gen, flushedGen uint64 // changes to run, and the last one stored

	// On a store.Tailer (see tail.go): data folds the snapshot and the
	// deltas up to cursor. catchSeq numbers the catch-ups started (read
	// without mu by appends that just completed); caughtSeq is the number
	// of the last one that succeeded. snapping is set while a snapshot is
	// being written.
	cursor    store.Cursor
	catchSeq  atomic.Uint64
	caughtSeq uint64
	snapping  bool

	lastUsed time.Time
	watchers int
	evicted  bool
}

// finished reports whether the run is completed or aborted.
func (lr *live) finished() bool {
	st := lr.run.GetState()
	return st == canaryv1.RunState_RUN_STATE_COMPLETED || st == canaryv1.RunState_RUN_STATE_ABORTED
}

// notify wakes the watchers. Called with mu held.
func (lr *live) notify() {
	close(lr.changed)
	lr.changed = make(chan struct{})
	lr.gen++
}

// record returns a copy of the run record. Called with mu held.
func (lr *live) record() *canaryv1.Run {
	return proto.Clone(lr.run).(*canaryv1.Run)
}

// newLive returns the in-memory state of a new running run.
func newLive(run *canaryv1.Run, cfg *analysis.Config, now time.Time) *live {
	lr := &live{id: run.GetId(), loaded: make(chan struct{})}
	lr.init(run, cfg, now)
	lr.data = newData(cfg, run)
	close(lr.loaded)
	return lr
}

// init sets the state of a run from its record. Called before the run is
// published (loaded closed).
func (lr *live) init(run *canaryv1.Run, cfg *analysis.Config, now time.Time) {
	if run.Counters == nil {
		run.Counters = &canaryv1.RunCounters{}
	}
	lr.run = run
	lr.service = run.GetService()
	lr.start = runStart(run)
	lr.share = run.GetCanaryTrafficShare()
	lr.changed = make(chan struct{})
	lr.lastUsed = now
	lr.cfg = cfg
	lr.metrics = make(map[string]int, len(cfg.Metrics))
	for i, m := range cfg.Metrics {
		lr.metrics[m.Name] = i
	}
	if v := run.GetVerdict(); v != nil {
		lr.verdict, lr.seq = v, v.GetSequence()
	}
}

// newData returns empty data for a run, its cohorts' warm-up starting at
// the run's start: the run's data are a function of its batches only,
// whatever order they arrive in (a batch of older samples does not move
// the start; ingest rejects samples timed too far before it).
func newData(cfg *analysis.Config, run *canaryv1.Run) *analysis.Data {
	d := analysis.NewData(cfg)
	start := runStart(run)
	d.SetStart(analysis.Baseline, start)
	d.SetStart(analysis.Canary, start)
	return d
}

// runStart returns when a run's data begin: its start_time, else its
// creation.
func runStart(run *canaryv1.Run) time.Time {
	if st := run.GetStartTime(); st != nil {
		return st.AsTime()
	}
	return run.GetCreateTime().AsTime()
}

// get returns the run in memory, loading it from the store if needed (one
// load per run at a time). The run may be evicted concurrently; callers
// that change it use acquire.
func (s *Service) get(ctx context.Context, id string) (*live, error) {
	if id == "" {
		return nil, badField("run_id", "is required")
	}
	s.mu.Lock()
	lr, ok := s.runs[id]
	if !ok {
		lr = &live{id: id, loaded: make(chan struct{})}
		s.runs[id] = lr
	}
	s.mu.Unlock()
	if ok {
		select {
		case <-lr.loaded:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if lr.err != nil {
			return nil, lr.err
		}
		return lr, nil
	}
	// The load outlives a caller that gives up: others may wait for it.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backgroundTimeout)
	defer cancel()
	if err := s.load(lctx, lr); err != nil {
		s.mu.Lock()
		delete(s.runs, id)
		s.mu.Unlock()
		lr.err = err
		close(lr.loaded)
		return nil, err
	}
	close(lr.loaded)
	return lr, nil
}

// acquire returns the run locked, reloading it if it was evicted meanwhile.
func (s *Service) acquire(ctx context.Context, id string) (*live, error) {
	for {
		lr, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		lr.mu.Lock()
		if !lr.evicted {
			lr.lastUsed = s.now()
			return lr, nil
		}
		lr.mu.Unlock()
	}
}

// load reads a run from the store into lr, which nobody else reads until
// lr.loaded is closed: its record, and for a running run its snapshot and
// the deltas appended after it.
func (s *Service) load(ctx context.Context, lr *live) error {
	id := lr.id
	run, err := s.store.GetRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("run %q not found", id)
	}
	if err != nil {
		return fmt.Errorf("load run %s: %w", id, err)
	}
	cfg, err := apiconv.ConfigFromProto(run.GetConfig())
	if err != nil {
		return fmt.Errorf("load run %s: stored config: %w", id, err)
	}
	lr.init(run, cfg, s.now())
	if lr.finished() {
		return nil
	}
	start := time.Now()
	rd, err := s.readRun(ctx, lr, run)
	if err != nil {
		return fmt.Errorf("load run %s: %w", id, err)
	}
	lr.setData(rd)
	lr.version = 1
	s.log.Debug("run loaded", "run", id, "batches", rd.counters.GetBatches(), "since_snapshot", lr.sinceSnap,
		"elapsed", time.Since(start))
	return nil
}

// runData is the data of a running run as read from the store.
type runData struct {
	data      *analysis.Data
	counters  *canaryv1.RunCounters
	cursor    store.Cursor // on a Tailer: the position data folds up to
	sinceSnap int          // deltas after the snapshot
}

// setData installs what readRun read. Called with mu held, or before lr is
// published.
func (lr *live) setData(rd runData) {
	lr.data = rd.data
	lr.run.Counters = rd.counters
	lr.cursor = rd.cursor
	lr.sinceSnap = rd.sinceSnap
}

// readRun reads the data of a running run from the store: its snapshot and
// the deltas after it (up to a cursor, on a Tailer). lr.cfg is set.
func (s *Service) readRun(ctx context.Context, lr *live, run *canaryv1.Run) (runData, error) {
	cfg := lr.cfg
	rd := runData{data: newData(cfg, run)}
	data := rd.data
	c := &canaryv1.RunCounters{DuplicateBatches: run.GetCounters().GetDuplicateBatches()}
	var last time.Time
	fn := func(snapshot bool, b []byte) error {
		if snapshot {
			if len(b) == 0 {
				return nil // no snapshot yet
			}
			h, d, err := decodeSnapshot(cfg, b)
			if err != nil {
				return err
			}
			data.Merge(d)
			c.Batches = h.batches
			c.DuplicateBatches = max(c.DuplicateBatches, h.duplicates)
			last = h.lastIngest
			return nil
		}
		at, d, err := decodeDelta(cfg, b)
		if err != nil {
			return err
		}
		data.Merge(d)
		c.Batches++
		rd.sinceSnap++
		if at.After(last) {
			last = at
		}
		return nil
	}
	var err error
	if s.tail != nil {
		rd.cursor, err = s.tail.ReadBatchesFrom(ctx, lr.id, nil, fn)
	} else {
		err = s.store.ReadBatches(ctx, lr.id, fn)
	}
	if err != nil {
		return runData{}, err
	}
	c.BaselineSamples, c.CanarySamples = cohortSamples(data)
	if !last.IsZero() {
		c.LastIngestTime = timestamppb.New(last)
	}
	rd.counters = c
	return rd, nil
}

// cohortSamples counts the observations a Data holds per cohort, those
// excluded by the warm-up included (as Data.Samples counts them).
func cohortSamples(d *analysis.Data) (baseline, canary uint64) {
	var n [2]uint64
	for i := range d.Config().Metrics {
		for c, cd := range d.Metric(i).Cohorts {
			n[c] += cd.Samples()
		}
	}
	return n[analysis.Baseline], n[analysis.Canary]
}

// liveRuns is the number of runs in memory, for the metrics.
func (s *Service) liveRuns() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(len(s.runs))
}

// janitor drops idle runs from memory until Close.
func (s *Service) janitor() {
	defer close(s.janitorDone)
	t := time.NewTicker(max(s.idle/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.evictIdle()
		case <-s.stop:
			return
		}
	}
}

// evictIdle drops the runs unused for IdleTimeout that no call is using
// (no append in flight, no watcher, no snapshot, finish or judge at work),
// after storing their counters and latest verdict.
func (s *Service) evictIdle() {
	now := s.now()
	var evicted []*live
	s.mu.Lock()
	for id, lr := range s.runs {
		select {
		case <-lr.loaded:
		default:
			continue // being loaded
		}
		lr.mu.Lock()
		if lr.inflight == 0 && lr.watchers == 0 && lr.blocked == nil && lr.finishing == nil && !lr.snapping &&
			lr.judging == nil && now.Sub(lr.lastUsed) >= s.idle {
			lr.evicted = true
			delete(s.runs, id)
			evicted = append(evicted, lr)
		}
		lr.mu.Unlock()
	}
	s.mu.Unlock()
	for _, lr := range evicted {
		if err := s.flush(lr); err != nil {
			s.log.Warn("store counters of evicted run", "run", lr.id, "err", err)
		}
		s.log.Debug("run evicted", "run", lr.id)
	}
}

// flush stores the counters and latest verdict of a running run if they
// changed since they were last stored.
func (s *Service) flush(lr *live) error {
	select {
	case <-lr.loaded:
		if lr.err != nil {
			return nil
		}
	default:
		return nil
	}
	lr.mu.Lock()
	if lr.finished() || lr.gen == lr.flushedGen {
		lr.mu.Unlock()
		return nil
	}
	gen, run := lr.gen, lr.record()
	lr.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
	defer cancel()
	err := s.store.UpdateRun(ctx, run)
	if errors.Is(err, store.ErrFinished) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update run %s: %w", lr.id, err)
	}
	lr.mu.Lock()
	lr.flushedGen = max(lr.flushedGen, gen)
	lr.mu.Unlock()
	return nil
}
