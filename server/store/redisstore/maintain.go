package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// abandonedAfter is the age of a pending mark of a still-running run after
// which Maintain drops it: the FinishRun that set it failed before its
// commit (no call takes that long), and a later one sets its own.
const abandonedAfter = 10 * time.Minute

// sweepBatch is the number of expired verdicts Maintain reads at a time.
const sweepBatch = 256

// Maintenance is what one Maintain call did.
type Maintenance struct {
	// Indexed counts finished runs whose history entry and index moves
	// Maintain completed (FinishRun interrupted after its commit).
	Indexed int
	// Swept counts verdicts deleted, with their runs, for being older than
	// Options.VerdictRetention.
	Swept int
}

// Maintain completes what interrupted FinishRun calls left undone and, when
// Options.VerdictRetention is set, deletes the verdicts older than it with
// their runs. Every replica runs it every Options.MaintenanceInterval; it
// is idempotent and safe to run concurrently.
func (s *Store) Maintain(ctx context.Context) (Maintenance, error) {
	var m Maintenance
	var err error
	if m.Indexed, err = s.repair(ctx); err != nil {
		return m, fmt.Errorf("maintain: %w", err)
	}
	if s.opts.VerdictRetention > 0 {
		if m.Swept, err = s.sweep(ctx, s.opts.Now().Add(-s.opts.VerdictRetention)); err != nil {
			return m, fmt.Errorf("maintain: %w", err)
		}
	}
	return m, nil
}

func (s *Store) maintainLoop() {
	defer close(s.done)
	if s.opts.MaintenanceInterval < 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.quit
		cancel()
	}()
	t := time.NewTicker(s.opts.MaintenanceInterval)
	defer t.Stop()
	for {
		m, err := s.Maintain(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.opts.Logger.Warn("redis store maintenance failed", "err", err)
		case m != Maintenance{}:
			s.opts.Logger.Info("redis store maintenance", "indexed", m.Indexed, "swept", m.Swept)
		}
		select {
		case <-t.C:
		case <-s.quit:
			return
		}
	}
}

// repair indexes the finished runs that have a pending mark, in every
// shard.
func (s *Store) repair(ctx context.Context) (int, error) {
	if s.closed() {
		return 0, errClosed
	}
	n := 0
	for sh := range NumShards {
		k, err := s.repairShard(ctx, s.k.pending(sh))
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (s *Store) repairShard(ctx context.Context, pending string) (int, error) {
	n := 0
	var cursor uint64
	for {
		kv, next, err := s.c.HScan(ctx, pending, cursor, "", 100).Result()
		if err != nil {
			return n, s.fail(ctx, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			done, err := s.repairRun(ctx, pending, kv[i], kv[i+1])
			if err != nil {
				return n, fmt.Errorf("index finished run %s: %w", kv[i], err)
			}
			if done {
				n++
			}
		}
		if cursor = next; cursor == 0 {
			return n, nil
		}
	}
}

func (s *Store) repairRun(ctx context.Context, pending, id, mark string) (bool, error) {
	vals, err := s.c.HMGet(ctx, s.k.runMeta(id), "run", "state", "fin").Result()
	if err != nil {
		return false, s.fail(ctx, err)
	}
	data, ok := str(vals[0])
	st, _ := str(vals[1])
	fin, finished := str(vals[2])
	if !ok || (string(st) == runningState && !finished) {
		since, _ := strconv.ParseInt(mark, 10, 64)
		if ok && s.opts.Now().Sub(time.UnixMilli(since)) < abandonedAfter {
			return false, nil // a FinishRun may be on its way
		}
		_, err := s.runCode(ctx, unpendScript, []string{pending}, id, mark)
		return false, err
	}
	base, f := new(canaryv1.Run), new(canaryv1.Run)
	if err := proto.Unmarshal(data, base); err != nil {
		return false, fmt.Errorf("decode run: %w", err)
	}
	if err := proto.Unmarshal(fin, f); err != nil {
		return false, fmt.Errorf("decode final state: %w", err)
	}
	h, err := historyOf(base, f)
	if err != nil {
		return false, err
	}
	if err := s.index(ctx, h); err != nil {
		return false, err
	}
	return true, nil
}

// sweep deletes the verdicts older than cutoff, with their runs: for each,
// the run's index entries and request id, then the run's keys, then the
// verdict's index entries and record, walking the "all" verdict index of
// each shard from its oldest entry; the entry there goes last, so that an
// interrupted sweep is resumed by the next one.
func (s *Store) sweep(ctx context.Context, cutoff time.Time) (int, error) {
	if s.closed() {
		return 0, errClosed
	}
	n := 0
	for sh := range NumShards {
		k, err := s.sweepShard(ctx, sh, cutoff)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (s *Store) sweepShard(ctx context.Context, sh int, cutoff time.Time) (int, error) {
	all := s.k.verdictIndex(sh, filterName(0, "", "", 0))
	n := 0
	for {
		members, err := s.c.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: all, Start: "-", Stop: "(" + string(store.AppendTime(nil, cutoff)), ByLex: true, Count: sweepBatch,
		}).Result()
		if err != nil {
			return n, s.fail(ctx, err)
		}
		for _, mem := range members {
			if len(mem) <= store.TimeLen {
				return n, fmt.Errorf("bad index entry %q", mem)
			}
			if err := s.forget(ctx, sh, mem[store.TimeLen:], mem); err != nil {
				return n, fmt.Errorf("sweep run %s: %w", mem[store.TimeLen:], err)
			}
			n++
		}
		if len(members) < sweepBatch {
			return n, nil
		}
	}
}

// forget deletes one run and its verdict, whose "all" index entry is mem
// in history shard sh.
func (s *Store) forget(ctx context.Context, sh int, id, mem string) error {
	vals, err := s.c.HMGet(ctx, s.k.runMeta(id), "run", "upd", "fin").Result()
	if err != nil {
		return s.fail(ctx, err)
	}
	run, err := assembleRun(id, vals)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Deleted by an earlier sweep.
	case err != nil:
		return err
	default:
		base := new(canaryv1.Run)
		data, _ := str(vals[0])
		if err := proto.Unmarshal(data, base); err != nil {
			return fmt.Errorf("decode run: %w", err)
		}
		reqs := s.k.requests(runShard(base.GetRequestId(), id))
		keys := []string{reqs}
		for _, state := range []canaryv1.RunState{canaryv1.RunState_RUN_STATE_RUNNING, run.GetState()} {
			idx, _ := s.runIndexKeys(base, state)
			keys = append(keys, idx...)
		}
		rid, value := base.GetRequestId(), ""
		if rid != "" {
			v, err := s.c.HGet(ctx, reqs, rid).Result()
			switch {
			case errors.Is(err, redis.Nil):
				rid = ""
			case err != nil:
				return s.fail(ctx, err)
			default:
				if claimed, _, _, err := parseRequestValue(v); err != nil || claimed != id {
					rid = "" // another run's claim
				}
				value = v
			}
		}
		_, runMem := s.runIndexKeys(base, 0)
		if _, err := s.runCode(ctx, releaseScript, keys, rid, value, runMem); err != nil {
			return err
		}
		if err := s.c.Unlink(ctx, s.k.runKeys(id)...).Err(); err != nil {
			return s.fail(ctx, err)
		}
	}

	keys := []string{s.k.verdicts(sh), s.k.verdictIndex(sh, filterName(0, "", "", 0))}
	data, err := s.c.HGet(ctx, s.k.verdicts(sh), id).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		// Only the "all" entry is left.
	case err != nil:
		return s.fail(ctx, err)
	default:
		v := new(canaryv1.Verdict)
		if err := proto.Unmarshal(data, v); err != nil {
			return fmt.Errorf("decode verdict: %w", err)
		}
		names, _ := indexEntries(v.GetService(), v.GetStage(), int32(v.GetDecision()), v.GetTime().AsTime(), id)
		for _, n := range names[1:] {
			keys = append(keys, s.k.verdictIndex(sh, n))
		}
	}
	_, err = s.runCode(ctx, forgetScript, keys, id, mem)
	return err
}
