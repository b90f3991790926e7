package embedded

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/canaryd/canaryd/server/store"
)

var _ store.Docs = (*Store)(nil)

// PutDoc stores value under key in kind (bucket docs/<kind>).
func (s *Store) PutDoc(ctx context.Context, kind, key string, value []byte) error {
	if kind == "" || key == "" {
		return fmt.Errorf("put %s doc: empty kind or key", kind)
	}
	err := s.update(ctx, len(key)+len(value), func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketDocs).CreateBucketIfNotExists([]byte(kind))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), bytes.Clone(value))
	})
	if err != nil {
		return fmt.Errorf("put %s %s: %w", kind, key, err)
	}
	return nil
}

// GetDoc returns the value of key in kind.
func (s *Store) GetDoc(_ context.Context, kind, key string) ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDocs).Bucket([]byte(kind))
		if b == nil || key == "" {
			return store.ErrNotFound
		}
		v := b.Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", kind, key, err)
	}
	return out, nil
}

// ListDocs returns every record of kind, ordered by key.
func (s *Store) ListDocs(_ context.Context, kind string) ([]store.Doc, error) {
	var out []store.Doc
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDocs).Bucket([]byte(kind))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out = append(out, store.Doc{Key: string(k), Value: bytes.Clone(v)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	return out, nil
}

// DeleteDocs deletes keys of kind.
func (s *Store) DeleteDocs(ctx context.Context, kind string, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	err := s.update(ctx, 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDocs).Bucket([]byte(kind))
		if b == nil {
			return nil
		}
		for _, k := range keys {
			if k == "" {
				continue
			}
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete %s: %w", kind, err)
	}
	return nil
}
