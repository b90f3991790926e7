package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// maxConfigAttempts bounds the optimistic retries of PutConfig when other
// writers keep adding versions of the same name.
const maxConfigAttempts = 100

// PutConfig stores cfg as the next version of its name, with the YAML text
// it was put as, unless it equals the latest version's config, which it
// returns with created = false. The new version is stamped with
// Options.Now.
//
// The name goes into the name index first (idempotent), then the version
// is appended by a script that checks that no other version was appended
// since the latest was read (and the read is repeated if one was).
func (s *Store) PutConfig(ctx context.Context, cfg *canaryv1.CanaryConfig, yaml string) (*canaryv1.ConfigVersion, bool, error) {
	name := cfg.GetName()
	if err := store.CheckID("config name", name); err != nil {
		return nil, false, fmt.Errorf("put config: %w", err)
	}
	v, created, err := s.putConfig(ctx, proto.Clone(cfg).(*canaryv1.CanaryConfig), yaml)
	if err != nil {
		return nil, false, fmt.Errorf("put config %s: %w", name, err)
	}
	return v, created, nil
}

func (s *Store) putConfig(ctx context.Context, cfg *canaryv1.CanaryConfig, yaml string) (*canaryv1.ConfigVersion, bool, error) {
	if s.closed() {
		return nil, false, errClosed
	}
	name := cfg.GetName()
	key := s.k.configVersions(name)
	if err := s.c.ZAddNX(ctx, s.k.configNames(), redis.Z{Member: name}).Err(); err != nil {
		return nil, false, s.fail(ctx, err)
	}
	for range maxConfigAttempts {
		pipe := s.c.Pipeline()
		n := pipe.LLen(ctx, key)
		last := pipe.LIndex(ctx, key, -1)
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, false, s.fail(ctx, err)
		}
		if n.Val() > 0 {
			latest := new(canaryv1.ConfigVersion)
			if err := proto.Unmarshal([]byte(last.Val()), latest); err != nil {
				return nil, false, fmt.Errorf("decode version %d: %w", n.Val(), err)
			}
			if proto.Equal(latest.GetConfig(), cfg) {
				return latest, false, nil
			}
		}
		cv := &canaryv1.ConfigVersion{
			Name:       name,
			Version:    uint32(n.Val() + 1),
			Config:     cfg,
			Yaml:       yaml,
			CreateTime: timestamppb.New(s.opts.Now()),
		}
		data, err := proto.Marshal(cv)
		if err != nil {
			return nil, false, fmt.Errorf("encode: %w", err)
		}
		ok, err := s.runAckedCode(ctx, putConfigScript, []string{key}, n.Val(), data)
		if err != nil {
			return nil, false, err
		}
		if ok == 1 {
			return cv, true, nil
		}
	}
	return nil, false, fmt.Errorf("gave up after %d attempts: other writers keep adding versions", maxConfigAttempts)
}

// GetConfig returns a version of a config; version 0 is the latest.
func (s *Store) GetConfig(ctx context.Context, name string, version uint32) (*canaryv1.ConfigVersion, error) {
	cv, err := s.getConfig(ctx, name, version)
	if err != nil {
		return nil, fmt.Errorf("get config %s@%d: %w", name, version, err)
	}
	return cv, nil
}

func (s *Store) getConfig(ctx context.Context, name string, version uint32) (*canaryv1.ConfigVersion, error) {
	if name == "" {
		return nil, store.ErrNotFound
	}
	if s.closed() {
		return nil, errClosed
	}
	index := int64(version) - 1 // version 0: -1, the last
	data, err := s.c.LIndex(ctx, s.k.configVersions(name), index).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	cv := new(canaryv1.ConfigVersion)
	if err := proto.Unmarshal(data, cv); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return cv, nil
}

// ListConfigs lists the latest version of every config ordered by name, or,
// when name is set, every version of that config, newest first. An unknown
// name lists nothing.
func (s *Store) ListConfigs(ctx context.Context, name string, page store.Page) ([]*canaryv1.ConfigVersion, string, error) {
	var (
		out  []*canaryv1.ConfigVersion
		next string
		err  error
	)
	if s.closed() {
		err = errClosed
	} else if name == "" {
		out, next, err = s.listConfigNames(ctx, page)
	} else {
		out, next, err = s.listConfigVersions(ctx, name, page)
	}
	if err != nil {
		return nil, "", fmt.Errorf("list configs %q: %w", name, err)
	}
	return out, next, nil
}

func (s *Store) listConfigNames(ctx context.Context, page store.Page) ([]*canaryv1.ConfigVersion, string, error) {
	after, err := decodeToken(page.Token, kindConfigs, "", 1)
	if err != nil {
		return nil, "", err
	}
	start := "-"
	if after != nil {
		start = "(" + string(after)
	}
	limit := page.Limit()
	names, err := s.c.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.k.configNames(), Start: start, Stop: "+", ByLex: true, Count: int64(limit + 1),
	}).Result()
	if err != nil {
		return nil, "", s.fail(ctx, err)
	}
	next := ""
	if len(names) > limit {
		names = names[:limit]
		next = encodeToken(kindConfigs, "", []byte(names[limit-1]))
	}
	if len(names) == 0 {
		return nil, next, nil
	}
	pipe := s.c.Pipeline()
	cmds := make([]*redis.StringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.LIndex(ctx, s.k.configVersions(n), -1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", s.fail(ctx, err)
	}
	out := make([]*canaryv1.ConfigVersion, 0, len(names))
	for i, cmd := range cmds {
		if errors.Is(cmd.Err(), redis.Nil) {
			continue // named, first version not stored (yet)
		}
		cv := new(canaryv1.ConfigVersion)
		if err := proto.Unmarshal([]byte(cmd.Val()), cv); err != nil {
			return nil, "", fmt.Errorf("decode config %s: %w", names[i], err)
		}
		out = append(out, cv)
	}
	return out, next, nil
}

func (s *Store) listConfigVersions(ctx context.Context, name string, page store.Page) ([]*canaryv1.ConfigVersion, string, error) {
	before, err := decodeToken(page.Token, kindConfigVersions, name, 4)
	if err != nil {
		return nil, "", err
	}
	if before != nil && len(before) != 4 {
		return nil, "", store.ErrBadPageToken
	}
	key := s.k.configVersions(name)
	n, err := s.c.LLen(ctx, key).Result()
	if err != nil {
		return nil, "", s.fail(ctx, err)
	}
	top := n // newest version of the page
	if before != nil {
		top = min(top, int64(binary.BigEndian.Uint32(before))-1)
	}
	if top < 1 {
		return nil, "", nil
	}
	bottom := max(top-int64(page.Limit())+1, 1)
	vals, err := s.c.LRange(ctx, key, bottom-1, top-1).Result()
	if err != nil {
		return nil, "", s.fail(ctx, err)
	}
	out := make([]*canaryv1.ConfigVersion, 0, len(vals))
	for i := len(vals) - 1; i >= 0; i-- {
		cv := new(canaryv1.ConfigVersion)
		if err := proto.Unmarshal([]byte(vals[i]), cv); err != nil {
			return nil, "", fmt.Errorf("decode version %d: %w", bottom+int64(i), err)
		}
		out = append(out, cv)
	}
	next := ""
	if bottom > 1 && len(out) > 0 {
		next = encodeToken(kindConfigVersions, name, binary.BigEndian.AppendUint32(nil, uint32(bottom)))
	}
	return out, next, nil
}
