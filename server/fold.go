package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// The fold. A run's data are the fold, in log order, of the deltas of its
// acknowledged batches: the store keeps them as an ordered log
// (store.Tailer), and a run in memory holds the fold up to a position of
// it (liveState.cursor), plus the counters the deltas imply. The same for
// one process and for several sharing a store: no process owns a run's
// data, any may append to it, and each brings its fold up to date by
// reading the log after its cursor (catchUp):
//   - after an append (Service.settle), so that the acknowledged batch is in
//     memory; a catch-up that started after an append completed covers it,
//     so concurrent appends share catch-ups;
//   - before GetRun, Judge and each verdict of WatchVerdict (Service.fresh),
//     and for the running runs ListRuns lists, so that their answers hold
//     every batch acknowledged by any process before them;
//   - when a watched run's log grows through another process (follow.go);
//   - before a final verdict (runs.go), after the run was closed to new
//     batches: the final verdict folds the whole log, and is stored only if
//     no delta was appended after the position it folds.
//
// Every Options.SnapshotEvery deltas the fold is encoded at its position
// and written back (store.Tailer.SnapshotThrough) in the background, so
// that loads stay fast; snapshots never move back, whichever process
// writes them. A catch-up that finds its cursor folded into a snapshot by
// another process (store.ErrSnapshotMoved) reads the run again from it.

// logState is the fold of a run's log as read from the store: data,
// counters, the position they fold up to, and the position the stored
// snapshot folds.
type logState struct {
	data     *analysis.Data
	counters *canaryv1.RunCounters
	alarms   []*canaryv1.AlarmEvent // the alarms recorded with the run, in log order
	pull     *canaryv1.PullStatus   // the pull records folded (pull.go)
	cursor   store.Cursor
	folded   int64
}

// readLog reads a running run's log from its snapshot and folds it.
func readLog(ctx context.Context, log store.Tailer, id string, cfg *analysis.Config, run *canaryv1.Run) (*logState, error) {
	ls := &logState{
		data:     newData(cfg, runStart(run)),
		counters: &canaryv1.RunCounters{DuplicateBatches: run.GetCounters().GetDuplicateBatches()},
	}
	var after int64 // deltas after the snapshot
	cur, err := log.ReadBatchesFrom(ctx, id, nil, func(snapshot bool, b []byte) error {
		if !snapshot {
			after++
			return foldDelta(cfg, ls.data, ls.counters, &ls.pull, &ls.alarms, b)
		}
		if len(b) == 0 {
			return nil // no snapshot yet
		}
		h, d, err := decodeSnapshot(cfg, b)
		if err != nil {
			return err
		}
		if h.pull != nil {
			mergePull(&ls.pull, h.pull)
		}
		ls.data.Merge(d)
		ls.alarms = append(ls.alarms, h.alarms...)
		c := ls.counters
		c.Batches = h.batches
		c.DuplicateBatches = max(c.DuplicateBatches, h.duplicates)
		c.BaselineSamples, c.CanarySamples = cohortSamples(d)
		if !h.lastIngest.IsZero() {
			c.LastIngestTime = timestamppb.New(h.lastIngest)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ls.cursor = cur
	ls.folded = cur.N - after
	return ls, nil
}

// foldDelta folds one entry of a run's log: a batch's delta into data and
// its counters, a pull record into *pull, or an alarm (alarms.go) into
// *alarms.
func foldDelta(cfg *analysis.Config, data *analysis.Data, c *canaryv1.RunCounters, pull **canaryv1.PullStatus,
	alarms *[]*canaryv1.AlarmEvent, b []byte) error {
	if isAlarm(b) {
		ev, err := decodeAlarm(b)
		if err != nil {
			return err
		}
		*alarms = append(*alarms, ev)
		return nil
	}
	if isPull(b) {
		p, err := decodePull(b)
		if err != nil {
			return err
		}
		mergePull(pull, p)
		return nil
	}
	at, d, err := decodeDelta(cfg, b)
	if err != nil {
		return err
	}
	data.Merge(d)
	bs, cs := cohortSamples(d)
	c.Batches++
	c.BaselineSamples += bs
	c.CanarySamples += cs
	if c.LastIngestTime == nil || at.After(c.LastIngestTime.AsTime()) {
		c.LastIngestTime = timestamppb.New(at)
	}
	return nil
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

// setLog makes the fold read from the log the run's data.
func (st *liveState) setLog(ls *logState) {
	if ls.counters.GetDuplicateBatches() < st.rec.GetCounters().GetDuplicateBatches() {
		ls.counters.DuplicateBatches = st.rec.GetCounters().GetDuplicateBatches()
	}
	st.data = ls.data
	st.alarms = ls.alarms
	st.rec.Counters = ls.counters
	st.rec.Pull = ls.pull
	st.cursor = ls.cursor
	st.snapshots.at = ls.folded
	st.snapshots.stored = ls.folded
	st.version++
}

// catchUp folds into lr the deltas of its log after its cursor (see the
// comment above), and starts writing a snapshot when one is due.
func (s *Service) catchUp(ctx context.Context, lr *liveRun) error {
	job, err := lr.catchUp(ctx, s.store, s.snapN)
	if job != nil {
		s.bg.Go(func() { s.writeSnapshots(lr, job) })
	}
	if err != nil {
		return fmt.Errorf("catch up run %s: %w", lr.id, err)
	}
	return nil
}

// catchUp is Service.catchUp under the run's lock: it returns the first
// snapshot to write when it starts the run's snapshot writer.
func (lr *liveRun) catchUp(ctx context.Context, log store.Tailer, snapN int) (*snapshotJob, error) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	if !st.state.running() {
		return nil, nil
	}
	seq := lr.catchSeq.Add(1)
	folded := 0
	from := st.cursor
	cur, err := log.ReadBatchesFrom(ctx, lr.id, &from, func(_ bool, b []byte) error {
		if err := foldDelta(lr.cfg, st.data, st.rec.Counters, &st.rec.Pull, &st.alarms, b); err != nil {
			return err
		}
		folded++
		return nil
	})
	// What was delivered before an error is folded, and counted in cur.
	st.cursor = cur
	if folded > 0 {
		st.version++
		st.notify()
	}
	if errors.Is(err, store.ErrSnapshotMoved) {
		// Another process folded deltas past the cursor into a snapshot:
		// read the run again from it.
		var ls *logState
		if ls, err = readLog(ctx, log, lr.id, lr.cfg, st.rec); err == nil {
			st.setLog(ls)
			st.notify()
		}
	}
	if err != nil {
		return nil, err
	}
	st.caughtSeq = max(st.caughtSeq, seq)
	job, err := st.snapshotDue(snapN)
	return job, err
}

// caughtUpSince reports whether a catch-up that started after catchSeq was
// seen has succeeded: it folded every delta appended before then.
func (lr *liveRun) caughtUpSince(seen uint64) bool {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.st.caughtSeq > seen
}

// snapshotProgress is where a run's snapshots stand: at and stored are the
// positions that the last snapshot encoded and the last one stored fold;
// writing is set while a writer (Service.writeSnapshots) runs, with the
// lease it holds on the run, and next is the snapshot it writes next.
type snapshotProgress struct {
	at, stored int64
	writing    bool
	next       *snapshotJob
}

// snapshotJob is a snapshot to write: the fold encoded at a position, and
// the record (counters, latest verdict) to store with it.
type snapshotJob struct {
	through store.Cursor
	blob    []byte
	run     *canaryv1.Run
	gen     uint64
}

// snapshotDue encodes a snapshot of the fold when snapN deltas were folded
// since the last one. It returns it to write when no writer runs (the
// caller starts one, which holds a lease on the run); otherwise the writer
// writes it next.
func (st *liveState) snapshotDue(snapN int) (*snapshotJob, error) {
	sn := &st.snapshots
	if st.cursor.N-sn.at < int64(snapN) || st.cursor.ID == "" {
		return nil, nil
	}
	run := st.record()
	blob, err := snapshotOf(run, st.data, st.alarms)
	if err != nil {
		return nil, err
	}
	job := &snapshotJob{through: st.cursor, blob: blob, run: run, gen: st.gen}
	sn.at = st.cursor.N
	if sn.writing {
		sn.next = job
		return nil, nil
	}
	sn.writing = true
	st.users++
	return job, nil
}

// writeSnapshots writes job, and then the snapshots that became due
// meanwhile, each folding more than the one before.
func (s *Service) writeSnapshots(lr *liveRun, job *snapshotJob) {
	for job != nil {
		err := s.writeSnapshot(lr.id, job)
		if err != nil {
			s.log.Warn("run snapshot failed; retried after the next batches", "run", lr.id, "err", err)
		}
		job = lr.snapshotWritten(job, err, s.now())
	}
}

// writeSnapshot stores one snapshot and the record that goes with it.
func (s *Service) writeSnapshot(id string, job *snapshotJob) error {
	ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
	defer cancel()
	start := time.Now()
	wrote, err := s.store.SnapshotThrough(ctx, id, job.through, job.blob)
	if err == nil {
		s.log.Debug("run snapshot", "run", id, "through", job.through.N, "wrote", wrote, "bytes", len(job.blob),
			"elapsed", time.Since(start))
		err = s.store.UpdateRun(ctx, job.run)
	}
	if errors.Is(err, store.ErrFinished) {
		return nil
	}
	return err
}

// snapshotWritten records the outcome of a snapshot and returns the next
// one to write, or nil once there is none: the writer then ends and
// returns its lease.
func (lr *liveRun) snapshotWritten(job *snapshotJob, err error, now time.Time) *snapshotJob {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	sn := &st.snapshots
	if err == nil {
		sn.stored = max(sn.stored, job.through.N)
		st.flushedGen = max(st.flushedGen, job.gen)
	}
	next := sn.next
	sn.next = nil
	if next == nil {
		if err != nil {
			sn.at = sn.stored // due again after the next batches
		}
		sn.writing = false
		st.users--
		st.lastUsed = now
	}
	return next
}
