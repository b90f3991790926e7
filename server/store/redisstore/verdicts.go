package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// ListVerdicts returns final verdicts newest first (by Verdict.Time, then
// run id descending) matching f: the page's entries from the sorted sets
// of f's filter values in every shard (ZRANGE BYLEX REV LIMIT, bounded by
// the time range and the page token, merged), then their verdicts (HGET
// in each entry's shard, one pipeline).
func (s *Store) ListVerdicts(ctx context.Context, f store.VerdictFilter, page store.Page) ([]*canaryv1.Verdict, string, error) {
	out, next, err := s.listVerdicts(ctx, f, page)
	if err != nil {
		return nil, "", fmt.Errorf("list verdicts: %w", err)
	}
	return out, next, nil
}

func (s *Store) listVerdicts(ctx context.Context, f store.VerdictFilter, page store.Page) ([]*canaryv1.Verdict, string, error) {
	fn := filterName(store.FilterMask(f.Service, f.Stage, int32(f.Decision)), f.Service, f.Stage, int32(f.Decision))
	members, next, err := s.indexPage(ctx, kindVerdicts, s.k.verdictIndexShards(fn), fn, f.Since, f.Until, page)
	if err != nil {
		return nil, "", err
	}
	if len(members) == 0 {
		return nil, next, nil
	}
	ids := make([]string, len(members))
	pipe := s.c.Pipeline()
	cmds := make([]*redis.StringCmd, len(members))
	for i, mem := range members {
		ids[i] = mem[store.TimeLen:]
		cmds[i] = pipe.HGet(ctx, s.k.verdicts(shardOf(ids[i])), ids[i])
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", s.fail(ctx, err)
	}
	out := make([]*canaryv1.Verdict, 0, len(cmds))
	for i, cmd := range cmds {
		if errors.Is(cmd.Err(), redis.Nil) {
			continue // swept since the index was read
		}
		data := []byte(cmd.Val())
		v := new(canaryv1.Verdict)
		if err := proto.Unmarshal(data, v); err != nil {
			return nil, "", fmt.Errorf("decode verdict %q: %w", ids[i], err)
		}
		out = append(out, v)
	}
	return out, next, nil
}
