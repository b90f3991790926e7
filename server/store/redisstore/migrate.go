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

// Migration from layout 1
//
// Layout 1 kept the run index and request ids in one slot ({runs}) and the
// history in another ({hist}). Open migrates it to layout 2 (the shards of
// keys.go) when it reads schema version 1:
//
//  1. It takes the lease P:migrating (SET NX with an expiry, renewed as it
//     goes); a replica that finds it taken waits until the schema reads 2.
//  2. It copies, in chunks: every run of the layout-1 "all" run index,
//     indexed again from its record (its current state) in its shard; every
//     request id; every verdict with its 8 index entries; every pending
//     mark. Each write is idempotent, so a migration interrupted here is
//     simply done again by the next Open.
//  3. It sets the schema to 2, then deletes the layout-1 keys.
//
// Every replica must run a layout-2 canaryd from then on: stop the old
// replicas before starting the new ones (an old replica refuses to start
// on schema 2, but one already running would keep writing layout-1 keys
// that nobody reads). A layout-1 claim of a request id whose run record
// was never written (a CreateRun cut off between its two steps) is copied
// without index entries; the retry of that request indexes the run.
// The migration reads every run record once: 6,800 runs/s on the loaded
// 2-core machine of BENCHMARKS.md (BenchmarkMigrateLayout1), about 15 s
// per 100,000 runs; TestMigrateLayout1 checks the result.

// migrateLease is how long the migration lease lasts unless renewed.
const migrateLease = time.Minute

// migrateChunk is the number of entries the migration reads at a time.
const migrateChunk = 500

// migrate1 migrates a layout-1 store to layout 2, or waits for the
// replica that does.
func (s *Store) migrate1(ctx context.Context) error {
	tok := token()
	for {
		ok, err := s.c.SetNX(ctx, s.k.migrating(), tok, migrateLease).Result()
		if err != nil {
			return s.fail(ctx, err)
		}
		if ok {
			break
		}
		v, err := s.c.Get(ctx, s.k.schema()).Result()
		if err != nil {
			return s.fail(ctx, err)
		}
		if v == schemaVersion {
			return nil
		}
		s.opts.Logger.Info("another replica migrates the redis layout; waiting", "prefix", s.opts.Prefix)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("wait for the migration of layout 1: %w", ctx.Err())
		}
	}
	defer func() {
		// Best effort: the lease expires anyway.
		_ = s.c.Del(context.WithoutCancel(ctx), s.k.migrating()).Err()
	}()
	start := time.Now()
	s.opts.Logger.Info("migrating redis layout 1 to 2", "prefix", s.opts.Prefix)
	m := &migration{s: s, tok: tok, old: map[string]bool{
		s.k.v1Requests(): true, s.k.v1Verdicts(): true, s.k.v1Pending(): true,
	}}
	if err := m.runs(ctx); err != nil {
		return fmt.Errorf("migrate layout 1: runs: %w", err)
	}
	if err := m.requests(ctx); err != nil {
		return fmt.Errorf("migrate layout 1: request ids: %w", err)
	}
	if err := m.verdicts(ctx); err != nil {
		return fmt.Errorf("migrate layout 1: verdicts: %w", err)
	}
	if err := m.pending(ctx); err != nil {
		return fmt.Errorf("migrate layout 1: pending marks: %w", err)
	}
	if err := s.c.Set(ctx, s.k.schema(), schemaVersion, 0).Err(); err != nil {
		return fmt.Errorf("migrate layout 1: %w", s.fail(ctx, err))
	}
	if err := m.deleteOld(ctx); err != nil {
		// The data are migrated; the old keys are garbage.
		s.opts.Logger.Warn("migrated; some layout-1 keys are left", "err", err)
	}
	s.opts.Logger.Info("migrated redis layout 1 to 2", "prefix", s.opts.Prefix,
		"runs", m.nRuns, "verdicts", m.nVerdicts, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// migration is the state of one migrate1 call.
type migration struct {
	s   *Store
	tok string
	old map[string]bool // layout-1 keys to delete at the end

	nRuns, nVerdicts int
}

// renew extends the lease, and fails if another process holds it.
func (m *migration) renew(ctx context.Context) error {
	v, err := m.s.c.Get(ctx, m.s.k.migrating()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return m.s.fail(ctx, err)
	}
	if v != m.tok {
		return errors.New("lost the migration lease")
	}
	return m.s.fail(ctx, m.s.c.PExpire(ctx, m.s.k.migrating(), migrateLease).Err())
}

// runs indexes every run of the layout-1 "all" index again, in its shard.
func (m *migration) runs(ctx context.Context) error {
	s := m.s
	all := s.k.v1RunIndex(filterName(0, "", "", 0))
	m.old[all] = true
	start := "-"
	for {
		if err := m.renew(ctx); err != nil {
			return err
		}
		members, err := s.c.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: all, Start: start, Stop: "+", ByLex: true, Count: migrateChunk,
		}).Result()
		if err != nil {
			return s.fail(ctx, err)
		}
		if len(members) == 0 {
			return nil
		}
		start = "(" + members[len(members)-1]
		pipe := s.c.Pipeline()
		cmds := make([]*redis.SliceCmd, len(members))
		for i, mem := range members {
			if len(mem) <= store.TimeLen {
				return fmt.Errorf("bad index entry %q", mem)
			}
			cmds[i] = pipe.HMGet(ctx, s.k.runMeta(mem[store.TimeLen:]), "run", "state")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return s.fail(ctx, err)
		}
		pipe = s.c.Pipeline()
		for i, cmd := range cmds {
			id := members[i][store.TimeLen:]
			vals := cmd.Val()
			data, ok := str(vals[0])
			if !ok {
				continue // claimed, not written: its retry indexes it
			}
			run := new(canaryv1.Run)
			if err := proto.Unmarshal(data, run); err != nil {
				return fmt.Errorf("decode run %s: %w", id, err)
			}
			st, _ := str(vals[1])
			state, err := strconv.Atoi(string(st))
			if err != nil {
				return fmt.Errorf("run %s: state %q: %w", id, st, err)
			}
			idx, mem := s.runIndexKeys(run, canaryv1.RunState(state))
			for _, k := range idx {
				pipe.ZAdd(ctx, k, redis.Z{Member: mem})
			}
			for _, st := range []int32{int32(canaryv1.RunState_RUN_STATE_RUNNING), int32(state)} {
				for mk := range store.NumMasks {
					m.old[s.k.v1RunIndex(filterName(mk, run.GetService(), run.GetStage(), st))] = true
				}
			}
			m.nRuns++
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return s.fail(ctx, err)
		}
	}
}

// scan calls fn with every field and value of a layout-1 hash, a chunk
// at a time, in one pipeline per chunk.
func (m *migration) scan(ctx context.Context, key string, fn func(pipe redis.Pipeliner, field, value string) error) error {
	s := m.s
	var cursor uint64
	for {
		if err := m.renew(ctx); err != nil {
			return err
		}
		kv, next, err := s.c.HScan(ctx, key, cursor, "", migrateChunk).Result()
		if err != nil {
			return s.fail(ctx, err)
		}
		pipe := s.c.Pipeline()
		for i := 0; i+1 < len(kv); i += 2 {
			if err := fn(pipe, kv[i], kv[i+1]); err != nil {
				return err
			}
		}
		if pipe.Len() > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return s.fail(ctx, err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// requests copies every request id to its shard.
func (m *migration) requests(ctx context.Context) error {
	return m.scan(ctx, m.s.k.v1Requests(), func(pipe redis.Pipeliner, rid, value string) error {
		pipe.HSet(ctx, m.s.k.requests(shardOf(rid)), rid, value)
		return nil
	})
}

// verdicts copies every verdict, with its index entries, to its shard.
func (m *migration) verdicts(ctx context.Context) error {
	s := m.s
	return m.scan(ctx, s.k.v1Verdicts(), func(pipe redis.Pipeliner, id, data string) error {
		v := new(canaryv1.Verdict)
		if err := proto.Unmarshal([]byte(data), v); err != nil {
			return fmt.Errorf("decode verdict %s: %w", id, err)
		}
		sh := shardOf(id)
		pipe.HSet(ctx, s.k.verdicts(sh), id, data)
		names, mem := indexEntries(v.GetService(), v.GetStage(), int32(v.GetDecision()), v.GetTime().AsTime(), id)
		for _, n := range names {
			pipe.ZAdd(ctx, s.k.verdictIndex(sh, n), redis.Z{Member: mem})
			m.old[s.k.v1VerdictIndex(n)] = true
		}
		m.nVerdicts++
		return nil
	})
}

// pending copies every pending mark to its shard.
func (m *migration) pending(ctx context.Context) error {
	return m.scan(ctx, m.s.k.v1Pending(), func(pipe redis.Pipeliner, id, mark string) error {
		pipe.HSet(ctx, m.s.k.pending(shardOf(id)), id, mark)
		return nil
	})
}

// deleteOld deletes the layout-1 keys, one at a time (the two groups are
// in two slots).
func (m *migration) deleteOld(ctx context.Context) error {
	pipe := m.s.c.Pipeline()
	for k := range m.old {
		pipe.Unlink(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return m.s.fail(ctx, err)
	}
	return nil
}
