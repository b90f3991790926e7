package redisstore

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// ListVerdicts returns final verdicts newest first (by Verdict.Time, then
// run id descending) matching f: the page's entries from the sorted set of
// f's filter values (ZRANGE BYLEX REV LIMIT, bounded by the time range and
// the page token), then their verdicts (HMGET), both in the {hist} slot.
func (s *Store) ListVerdicts(ctx context.Context, f store.VerdictFilter, page store.Page) ([]*canaryv1.Verdict, string, error) {
	out, next, err := s.listVerdicts(ctx, f, page)
	if err != nil {
		return nil, "", fmt.Errorf("list verdicts: %w", err)
	}
	return out, next, nil
}

func (s *Store) listVerdicts(ctx context.Context, f store.VerdictFilter, page store.Page) ([]*canaryv1.Verdict, string, error) {
	fn := filterName(store.FilterMask(f.Service, f.Stage, int32(f.Decision)), f.Service, f.Stage, int32(f.Decision))
	members, next, err := s.indexPage(ctx, kindVerdicts, s.k.verdictIndex(fn), fn, f.Since, f.Until, page)
	if err != nil {
		return nil, "", err
	}
	if len(members) == 0 {
		return nil, next, nil
	}
	ids := make([]string, len(members))
	for i, mem := range members {
		ids[i] = mem[store.TimeLen:]
	}
	vals, err := s.c.HMGet(ctx, s.k.verdicts(), ids...).Result()
	if err != nil {
		return nil, "", s.fail(ctx, err)
	}
	out := make([]*canaryv1.Verdict, 0, len(vals))
	for i, val := range vals {
		data, ok := str(val)
		if !ok {
			continue // swept since the index was read
		}
		v := new(canaryv1.Verdict)
		if err := proto.Unmarshal(data, v); err != nil {
			return nil, "", fmt.Errorf("decode verdict %q: %w", ids[i], err)
		}
		out = append(out, v)
	}
	return out, next, nil
}
