package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// Replicas. When the store is a store.Tailer (the Redis store, shared by
// several canaryd processes), no process owns a run's data: any replica may
// append a delta to any run. A replica's in-memory state of a running run
// is then "snapshot + the deltas up to lr.cursor", in the store's order,
// and it is brought up to date by catching up through the tail of the
// run's deltas:
//   - Ingest appends its delta and then catches up, which merges its own
//     delta and those of other replicas exactly once, in stream order (an
//     append acknowledged as a duplicate still catches up: the original
//     may be another replica's). A catch-up that started after an append
//     completed covers it, so concurrent appends share catch-ups.
//   - Judge and GetRun check the run's stored state (a run finished through
//     another replica is reloaded) and catch up first; if the store cannot
//     be read they fail with UNAVAILABLE rather than judge partial data.
//     ListRuns catches up the running runs it lists (their state is the
//     one it read from the store), so its counters are as exact.
//   - CompleteRun/AbortRun catch up, judge, and store the final verdict
//     with FinishRunThrough at the cursor: if another replica appended a
//     delta meanwhile, nothing is stored and they catch up and try again
//     (maxFinishAttempts, then ABORTED: batches keep arriving), so every
//     acknowledged batch is in the final verdict.
//   - WatchVerdict waits on the tail (WaitBatches) instead of on local
//     changes, and polls the run's state to see it finished elsewhere.
//   - Snapshots use SnapshotThrough at the cursor, without holding appends
//     back; when another replica's snapshot overtook the cursor
//     (ErrSnapshotMoved) the run's data are read again from the snapshot.
//
// On another store the Service owns the runs it serves (one process per
// store) and merges each acknowledged delta directly (ingest.go).

// Tunables of the replicas.
const (
	// tailWait is the longest WaitBatches of a watcher: also the period at
	// which it notices a run finished through another replica.
	tailWait = 2 * time.Second
	// catchUpTimeout bounds the catch-up after an append, which holds the
	// run's lock: a Redis that stopped answering must not hold the run's
	// other callers for long.
	catchUpTimeout = 5 * time.Second
	// maxTailWaiters bounds the watchers of one Service blocked in
	// WaitBatches, each of which holds a connection of the store's pool
	// (go-redis: 10 per CPU); the others poll every tailPoll.
	maxTailWaiters = 8
	tailPoll       = 500 * time.Millisecond
)

// catchUpLocked merges the deltas appended to a running run after
// lr.cursor. Called with lr.mu held, which it keeps while it reads.
func (s *Service) catchUpLocked(ctx context.Context, lr *live) error {
	if s.tail == nil || lr.finished() || lr.data == nil {
		return nil
	}
	seq := lr.catchSeq.Add(1)
	var (
		merged int
		last   time.Time
		n      [2]uint64
	)
	from := lr.cursor
	cur, err := s.tail.ReadBatchesFrom(ctx, lr.id, &from, func(_ bool, b []byte) error {
		at, d, err := decodeDelta(lr.cfg, b)
		if err != nil {
			return err
		}
		lr.data.Merge(d)
		merged++
		bs, cs := cohortSamples(d)
		n[0] += bs
		n[1] += cs
		if at.After(last) {
			last = at
		}
		return nil
	})
	// What was delivered before an error is merged and counted in cur.
	lr.cursor = cur
	if merged > 0 {
		c := lr.run.Counters
		c.Batches += uint64(merged)
		c.BaselineSamples += n[0]
		c.CanarySamples += n[1]
		if last.After(c.GetLastIngestTime().AsTime()) {
			c.LastIngestTime = timestamppb.New(last)
		}
		lr.version++
		lr.sinceSnap += merged
		lr.notify()
	}
	if errors.Is(err, store.ErrSnapshotMoved) {
		err = s.reloadLocked(ctx, lr)
	}
	if err != nil {
		return fmt.Errorf("catch up run %s: %w", lr.id, err)
	}
	lr.caughtSeq = max(lr.caughtSeq, seq)
	if lr.sinceSnap >= s.snapN && !lr.snapping && lr.finishing == nil {
		lr.snapping = true
		s.bg.Go(func() { s.snapshotTail(lr) })
	}
	return nil
}

// reloadLocked reads a running run's data again from its snapshot, after
// another replica's snapshot folded deltas past lr.cursor. Called with
// lr.mu held.
func (s *Service) reloadLocked(ctx context.Context, lr *live) error {
	rd, err := s.readRun(ctx, lr, lr.run)
	if err != nil {
		return err
	}
	rd.counters.DuplicateBatches = max(rd.counters.GetDuplicateBatches(), lr.run.GetCounters().GetDuplicateBatches())
	lr.setData(rd)
	lr.version++
	lr.notify()
	s.log.Debug("run reloaded after a snapshot of another replica", "run", lr.id, "deltas", rd.cursor.N)
	return nil
}

// fresh returns a run locked and up to date with the store: on a Tailer, a
// run finished through another replica is reloaded, and a running one has
// caught up with the deltas of every replica. Elsewhere it is acquire.
func (s *Service) fresh(ctx context.Context, id string) (*live, error) {
	for attempt := 0; ; attempt++ {
		lr, err := s.acquire(ctx, id)
		if err != nil || s.tail == nil || lr.finished() {
			return lr, err
		}
		lr.mu.Unlock()
		run, err := s.store.GetRun(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFound("run %q not found", id)
		}
		if err != nil {
			return nil, fmt.Errorf("refresh run %s: %w", id, err)
		}
		if run.GetState() != canaryv1.RunState_RUN_STATE_RUNNING && attempt < 2 {
			s.evict(lr) // finished through another replica: reload it
			continue
		}
		lr.mu.Lock()
		if lr.evicted {
			lr.mu.Unlock()
			continue
		}
		if err := s.catchUpLocked(ctx, lr); err != nil {
			lr.mu.Unlock()
			return nil, err
		}
		lr.lastUsed = s.now()
		return lr, nil
	}
}

// settleTail applies the outcome of b's append on a Tailer: a stored or
// duplicate batch catches the run up (unless a catch-up that started after
// the append completed has already succeeded). A failure to catch up does
// not fail the batch, which is stored: the next reader catches up.
func (s *Service) settleTail(b *batch) {
	lr := b.lr
	var finished bool
	lr.mu.Lock()
	switch {
	case b.err != nil:
		if errors.Is(b.err, store.ErrFinished) {
			b.err = failedPrecondition("run %q is finished: it takes no more samples", b.runID)
			finished = true
		}
	default:
		if b.dup {
			lr.run.Counters.DuplicateBatches++
			lr.gen++
			s.metrics.batches.WithLabelValues("duplicate").Inc()
		} else {
			s.metrics.batches.WithLabelValues("accepted").Inc()
			s.metrics.samples.Add(float64(b.total()))
		}
		if lr.caughtSeq <= b.seen {
			ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
			if err := s.catchUpLocked(ctx, lr); err != nil {
				s.log.Debug("catch up after append", "run", lr.id, "err", err)
			}
			cancel()
		}
	}
	lr.lastUsed = s.now()
	lr.inflight--
	if lr.inflight == 0 && lr.idle != nil {
		close(lr.idle)
		lr.idle = nil
	}
	lr.mu.Unlock()
	if finished {
		s.evict(lr) // finished through another replica: reload it
	}
}

// snapshotTail writes the merged state of lr, which folds the deltas up to
// lr.cursor, with SnapshotThrough. Appends go on meanwhile.
func (s *Service) snapshotTail(lr *live) {
	ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
	defer cancel()
	lr.mu.Lock()
	var (
		blob []byte
		err  error
	)
	n, cur, gen, run := lr.sinceSnap, lr.cursor, lr.gen, lr.record()
	if lr.data != nil && n > 0 && cur.ID != "" {
		blob, err = snapshotOf(run, lr.data)
	}
	lr.mu.Unlock()
	if err == nil && blob != nil {
		start := time.Now()
		var wrote bool
		wrote, err = s.tail.SnapshotThrough(ctx, lr.id, cur, blob)
		if err == nil {
			s.log.Debug("run snapshot", "run", lr.id, "through", cur.N, "wrote", wrote, "bytes", len(blob),
				"elapsed", time.Since(start))
			err = s.store.UpdateRun(ctx, run)
		}
		if errors.Is(err, store.ErrFinished) {
			err = nil
		}
	}
	lr.mu.Lock()
	if err == nil && blob != nil {
		lr.sinceSnap = max(lr.sinceSnap-n, 0)
		lr.flushedGen = max(lr.flushedGen, gen)
	}
	lr.snapping = false
	lr.mu.Unlock()
	if err != nil {
		s.log.Warn("run snapshot failed; retried after the next batches", "run", lr.id, "err", err)
	}
}

// watchTail is WatchVerdict on a Tailer: it waits for deltas of any
// replica on the run's tail (at most tailWait, so that it also notices the
// run finished elsewhere and the end of the bake time), catches up,
// re-judges and sends the verdict when its evidence changed, and the final
// verdict once the run is finished.
func (s *Service) watchTail(ctx context.Context, id string, stream canaryv1.CanaryService_WatchVerdictServer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.shutdown:
			cancel()
		case <-ctx.Done():
		}
	}()
	shutdownErr := func(err error) error {
		select {
		case <-s.shutdown:
			return errShuttingDown
		default:
			return err
		}
	}
	var (
		held *live // the run whose watchers count this watcher
		w    watchSent
	)
	defer func() {
		if held != nil {
			held.mu.Lock()
			held.watchers--
			held.lastUsed = s.now()
			held.mu.Unlock()
		}
	}()
	for {
		lr, err := s.fresh(ctx, id)
		if err != nil {
			return shutdownErr(err)
		}
		if lr != held {
			lr.watchers++
			if held != nil {
				held.mu.Lock()
				held.watchers--
				held.mu.Unlock()
			}
			held = lr
		}
		// The cursor to wait after is read before judging, which may
		// release lr.mu: deltas merged meanwhile then end the wait at once.
		cur, wait := lr.cursor, tailWait
		if d := bakeEnd(lr.run).Sub(s.now()); d > 0 {
			wait = min(wait, d)
		}
		final, err := s.judgeAndSend(stream, lr, &w)
		if err != nil || final {
			return err
		}
		if err := s.waitTail(ctx, id, cur, wait); err != nil {
			return shutdownErr(err)
		}
		if d := watchInterval - time.Since(w.lastSent); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return shutdownErr(ctx.Err())
			}
		}
	}
}

// waitTail waits up to wait for a delta of run id after cur: in
// WaitBatches when one of the maxTailWaiters slots is free, else by
// sleeping tailPoll (the caller then catches up either way).
func (s *Service) waitTail(ctx context.Context, id string, cur store.Cursor, wait time.Duration) error {
	select {
	case s.tailWaiters <- struct{}{}:
		defer func() { <-s.tailWaiters }()
		_, err := s.tail.WaitBatches(ctx, id, cur, wait)
		return err
	default:
	}
	t := time.NewTimer(min(wait, tailPoll))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
