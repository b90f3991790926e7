package embedded

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// PutConfig stores cfg as the next version of its name, with the YAML text
// it was put as, unless it equals the latest version's config, which it
// returns with created = false. The new version is stamped with
// Options.Now.
func (s *Store) PutConfig(ctx context.Context, cfg *canaryv1.CanaryConfig, yaml string) (*canaryv1.ConfigVersion, bool, error) {
	name := cfg.GetName()
	if err := store.CheckID("config name", name); err != nil {
		return nil, false, fmt.Errorf("put config: %w", err)
	}
	cfg = proto.Clone(cfg).(*canaryv1.CanaryConfig)
	now := timestamppb.New(s.opts.Now())
	var (
		out     *canaryv1.ConfigVersion
		created bool
	)
	err := s.update(ctx, 0, func(tx *bolt.Tx) error {
		out, created = nil, false
		configs := tx.Bucket(bucketConfigs)
		version := uint32(1)
		if b := configs.Bucket([]byte(name)); b != nil {
			k, v := b.Cursor().Last()
			if k != nil {
				latest := new(canaryv1.ConfigVersion)
				if err := proto.Unmarshal(v, latest); err != nil {
					return reject(fmt.Errorf("decode config %s: %w", name, err))
				}
				if proto.Equal(latest.GetConfig(), cfg) {
					out = latest
					return nil
				}
				version = binary.BigEndian.Uint32(k) + 1
			}
		}
		cv := &canaryv1.ConfigVersion{Name: name, Version: version, Config: cfg, Yaml: yaml, CreateTime: now}
		data, err := proto.Marshal(cv)
		if err != nil {
			return reject(fmt.Errorf("encode config: %w", err))
		}
		b, err := configs.CreateBucketIfNotExists([]byte(name))
		if err != nil {
			return err
		}
		b.FillPercent = 1 // versions are appended in order
		if err := b.Put(u32(version), data); err != nil {
			return err
		}
		out, created = cv, true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("put config %s: %w", name, err)
	}
	return out, created, nil
}

// GetConfig returns a version of a config; version 0 is the latest.
func (s *Store) GetConfig(ctx context.Context, name string, version uint32) (*canaryv1.ConfigVersion, error) {
	out := new(canaryv1.ConfigVersion)
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketConfigs).Bucket([]byte(name))
		if name == "" || b == nil {
			return store.ErrNotFound
		}
		var v []byte
		if version == 0 {
			_, v = b.Cursor().Last()
		} else {
			v = b.Get(u32(version))
		}
		if v == nil {
			return store.ErrNotFound
		}
		return proto.Unmarshal(v, out)
	})
	if err != nil {
		return nil, fmt.Errorf("get config %s@%d: %w", name, version, err)
	}
	return out, nil
}

// ListConfigs lists the latest version of every config ordered by name, or,
// when name is set, every version of that config, newest first. An unknown
// name lists nothing.
func (s *Store) ListConfigs(ctx context.Context, name string, page store.Page) ([]*canaryv1.ConfigVersion, string, error) {
	var (
		out  []*canaryv1.ConfigVersion
		next string
	)
	limit := page.Limit()
	err := s.view(func(tx *bolt.Tx) error {
		configs := tx.Bucket(bucketConfigs)
		if name == "" {
			after, err := decodeToken(page.Token, kindConfigs, 0, nil, 1)
			if err != nil {
				return err
			}
			c := configs.Cursor()
			var k []byte
			if after == nil {
				k, _ = c.First()
			} else if k, _ = c.Seek(after); k != nil && string(k) == string(after) {
				k, _ = c.Next()
			}
			for ; k != nil; k, _ = c.Next() {
				if len(out) == limit {
					next = encodeToken(kindConfigs, 0, []byte(out[len(out)-1].GetName()))
					return nil
				}
				b := configs.Bucket(k)
				if b == nil {
					continue
				}
				_, v := b.Cursor().Last()
				if v == nil {
					continue
				}
				cv := new(canaryv1.ConfigVersion)
				if err := proto.Unmarshal(v, cv); err != nil {
					return fmt.Errorf("decode config %s: %w", k, err)
				}
				out = append(out, cv)
			}
			return nil
		}

		prefix := appendString(nil, name)
		before, err := decodeToken(page.Token, kindConfigVersions, 0, prefix, len(prefix)+4)
		if err != nil {
			return err
		}
		b := configs.Bucket([]byte(name))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if before == nil {
			k, v = c.Last()
		} else {
			k, v = seekBefore(c, before[len(prefix):])
		}
		for ; k != nil; k, v = c.Prev() {
			if len(out) == limit {
				last := out[len(out)-1].GetVersion()
				next = encodeToken(kindConfigVersions, 0, append(prefix, u32(last)...))
				return nil
			}
			cv := new(canaryv1.ConfigVersion)
			if err := proto.Unmarshal(v, cv); err != nil {
				return fmt.Errorf("decode config %s@%x: %w", name, k, err)
			}
			out = append(out, cv)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list configs %q: %w", name, err)
	}
	return out, next, nil
}

// seekBefore positions c on the last key < upper (nil upper: the last key)
// and returns it.
func seekBefore(c *bolt.Cursor, upper []byte) (k, v []byte) {
	if upper == nil {
		return c.Last()
	}
	if k, _ = c.Seek(upper); k == nil {
		return c.Last()
	}
	return c.Prev()
}
