package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// Watching. A WatchVerdict stream registers as a watcher of the run
// (watch.follow) and waits on the run's change signal (liveState.changed),
// which every catch-up that folds deltas and every transition of the run
// closes. Batches ingested through this process are folded by their own
// catch-up; for those of other processes sharing the store, a run with
// watchers has one log follower (Service.follow): it waits for the log to
// grow (store.Tailer.WaitBatches) and catches up, for all the watchers of
// the run at once.

// Tunables of the followers.
const (
	// tailWait is the longest WaitBatches of a follower: also the period at
	// which it notices a run finished through another process.
	tailWait = 2 * time.Second
	// catchUpTimeout bounds a catch-up of the service's own (after an
	// append, by a follower), which holds the run's lock: a store that
	// stopped answering must not hold the run's other callers for long.
	catchUpTimeout = 5 * time.Second
	// maxTailWaiters bounds the followers of one Service blocked in
	// WaitBatches, each of which may hold a connection of the store's pool
	// (go-redis: 10 per CPU); the others poll every tailPoll.
	maxTailWaiters = 8
	tailPoll       = 500 * time.Millisecond
)

// watch is the registration of one WatchVerdict stream as a watcher of a
// run: a watched run stays in memory and is followed.
type watch struct {
	s  *Service
	lr *liveRun // the run watched, nil before the first follow
}

// follow makes w a watcher of lr, leaving the run it watched before (which
// was evicted and reloaded as lr), and returns lr's change signal as of
// now: read before judging, so that a change meanwhile wakes w at once.
func (w *watch) follow(lr *liveRun) <-chan struct{} {
	add := w.lr != lr
	if add {
		w.leave()
		w.lr = lr
	}
	changed, start := lr.watch(add)
	if start {
		w.s.bg.Go(func() { w.s.follow(lr) })
	}
	return changed
}

// leave ends the registration.
func (w *watch) leave() {
	if w.lr != nil {
		w.lr.unwatch(w.s.now())
		w.lr = nil
	}
}

// watch returns the run's change signal, after counting a new watcher
// when add is set, and reports whether the caller must start the run's
// follower (a running, watched run has one).
func (lr *liveRun) watch(add bool) (changed <-chan struct{}, startFollower bool) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	if add {
		st.watchers++
	}
	if !st.following && st.watchers > 0 && st.state.running() {
		st.following = true
		startFollower = true
	}
	return st.changed, startFollower
}

// unwatch removes a watcher.
func (lr *liveRun) unwatch(now time.Time) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.st.watchers--
	lr.st.lastUsed = now
}

// followFrom returns the position a follower waits after, or false when it
// must end (no watcher, the run no longer running, or stop): the follower
// is then marked ended.
func (lr *liveRun) followFrom(stop bool) (store.Cursor, bool) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	if stop || st.watchers == 0 || !st.state.running() {
		st.following = false
		return store.Cursor{}, false
	}
	return st.cursor, true
}

// follow keeps a watched run up to date with its log: it waits for deltas
// (of any process) after the run's cursor, at most tailWait so that it also
// notices the run finished through another process, and refreshes the
// run, which wakes its watchers. It ends when the run has no watcher left,
// is no longer running, or the service closes.
func (s *Service) follow(lr *liveRun) {
	for {
		cur, ok := lr.followFrom(s.shutdownCtx.Err() != nil)
		if !ok {
			return
		}
		if err := s.waitLog(s.shutdownCtx, lr.id, cur, tailWait); err != nil && s.shutdownCtx.Err() == nil {
			s.log.Debug("wait for batches", "run", lr.id, "err", err)
			pause(s.shutdownCtx, tailPoll)
		}
		ctx, cancel := context.WithTimeout(s.shutdownCtx, catchUpTimeout)
		err := s.refresh(ctx, lr)
		cancel()
		switch {
		case errors.Is(err, errStale):
			s.drop(lr) // its watchers move to the reloaded run
		case err != nil && s.shutdownCtx.Err() == nil:
			s.log.Debug("follow run", "run", lr.id, "err", err)
			pause(s.shutdownCtx, tailPoll)
		}
	}
}

// waitLog waits up to wait for a delta of run id after cur: in
// WaitBatches when one of the maxTailWaiters slots is free, else by
// sleeping tailPoll (the caller then catches up either way).
func (s *Service) waitLog(ctx context.Context, id string, cur store.Cursor, wait time.Duration) error {
	select {
	case s.tailWaiters <- struct{}{}:
		defer func() { <-s.tailWaiters }()
		_, err := s.store.WaitBatches(ctx, id, cur, wait)
		return err
	default:
	}
	pause(ctx, min(wait, tailPoll))
	return nil
}

// pause sleeps for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// refresh brings a running run up to date with the store: errStale if the
// store says it is finished while lr holds it live (finished through
// another process: the caller drops it and looks it up again), else it
// catches up with the run's log. A run this process is finishing only
// catches up: its finish ends it.
func (s *Service) refresh(ctx context.Context, lr *liveRun) error {
	switch lr.state() {
	case stateLive:
	case stateFinishing:
		return s.catchUp(ctx, lr)
	default:
		return nil
	}
	run, err := s.store.GetRun(ctx, lr.id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("run %q not found", lr.id)
	}
	if err != nil {
		return fmt.Errorf("refresh run %s: %w", lr.id, err)
	}
	if run.GetState() != canaryv1.RunState_RUN_STATE_RUNNING {
		return errStale
	}
	return s.catchUp(ctx, lr)
}

// fresh returns run id in memory with a lease on it (see use), up to date
// with the store (see refresh): its answers hold every batch acknowledged
// by any process before the call.
func (s *Service) fresh(ctx context.Context, id string) (*liveRun, error) {
	for attempt := 0; ; attempt++ {
		lr, err := s.use(ctx, id)
		if err != nil {
			return nil, err
		}
		err = s.refresh(ctx, lr)
		if err == nil {
			return lr, nil
		}
		s.release(lr)
		if !errors.Is(err, errStale) || attempt == 2 {
			return nil, err
		}
		s.drop(lr)
	}
}
