package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/canaryd/canaryd/server/store"
)

var _ store.Leaser = (*Store)(nil)

// leaseScript acquires or renews a lease: it sets the key to the holder
// with a time to live (Redis' clock) when it is free or the holder's, and
// returns 1; 0 when another holder has it.
//
//	KEYS: lease   ARGV: holder, ttl (ms)
var leaseScript = redis.NewScript(`#!lua
local h = redis.call('GET', KEYS[1])
if h and h ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// leaseReleaseScript deletes a lease if the holder has it.
//
//	KEYS: lease   ARGV: holder
var leaseReleaseScript = redis.NewScript(`#!lua
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`)

// Lease acquires or renews a lease; see store.Leaser. The key is
// P:lease:{<name>}, which expires with the lease.
func (s *Store) Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	ms := max(1, ttl.Milliseconds())
	n, err := s.runAckedCode(ctx, leaseScript, []string{s.k.lease(name)}, holder, ms)
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// ReleaseLease ends a lease; see store.Leaser.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.runCode(ctx, leaseReleaseScript, []string{s.k.lease(name)}, holder)
	return err
}
