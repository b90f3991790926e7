package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"

	"github.com/canaryd/canaryd/server/store"
)

var _ store.Docs = (*Store)(nil)

// PutDoc stores value under key in kind (hash P:{docs:<kind>}:h).
func (s *Store) PutDoc(ctx context.Context, kind, key string, value []byte) error {
	if kind == "" || key == "" {
		return fmt.Errorf("put %s doc: empty kind or key", kind)
	}
	if s.closed() {
		return errClosed
	}
	if err := s.c.HSet(ctx, s.k.docs(kind), key, value).Err(); err != nil {
		return fmt.Errorf("put %s %s: %w", kind, key, s.fail(ctx, err))
	}
	return nil
}

// GetDoc returns the value of key in kind.
func (s *Store) GetDoc(ctx context.Context, kind, key string) ([]byte, error) {
	if s.closed() {
		return nil, errClosed
	}
	v, err := s.c.HGet(ctx, s.k.docs(kind), key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("get %s %s: %w", kind, key, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", kind, key, s.fail(ctx, err))
	}
	return v, nil
}

// ListDocs returns every record of kind, ordered by key.
func (s *Store) ListDocs(ctx context.Context, kind string) ([]store.Doc, error) {
	if s.closed() {
		return nil, errClosed
	}
	m, err := s.c.HGetAll(ctx, s.k.docs(kind)).Result()
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, s.fail(ctx, err))
	}
	out := make([]store.Doc, 0, len(m))
	for k, v := range m {
		out = append(out, store.Doc{Key: k, Value: []byte(v)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// DeleteDocs deletes keys of kind.
func (s *Store) DeleteDocs(ctx context.Context, kind string, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	if s.closed() {
		return errClosed
	}
	if err := s.c.HDel(ctx, s.k.docs(kind), keys...).Err(); err != nil {
		return fmt.Errorf("delete %s: %w", kind, s.fail(ctx, err))
	}
	return nil
}
