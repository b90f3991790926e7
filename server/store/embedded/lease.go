package embedded

import (
	"context"
	"sync"
	"time"

	"github.com/canaryd/canaryd/server/store"
)

// leases holds the store's leases (store.Leaser) in memory: one process
// has the file open at a time (Open locks it), so the leases of its
// holders need no persistence; a restart starts with none.
type leases struct {
	mu sync.Mutex
	m  map[string]lease
}

type lease struct {
	holder string
	until  time.Time
}

var _ store.Leaser = (*Store)(nil)

// Lease acquires or renews a lease; see store.Leaser.
func (s *Store) Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if s.closed() {
		return false, errClosed
	}
	now := time.Now()
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	if s.leases.m == nil {
		s.leases.m = map[string]lease{}
	}
	if l, ok := s.leases.m[name]; ok && l.holder != holder && now.Before(l.until) {
		return false, nil
	}
	s.leases.m[name] = lease{holder: holder, until: now.Add(ttl)}
	return true, nil
}

// ReleaseLease ends a lease; see store.Leaser.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	if l, ok := s.leases.m[name]; ok && l.holder == holder {
		delete(s.leases.m, name)
	}
	return nil
}
