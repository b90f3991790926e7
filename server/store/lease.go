package store

import (
	"context"
	"time"
)

// Leaser is implemented by both backends beside Store: named leases with a
// time to live, by which one process of several sharing the store does a
// job at a time (the puller: one replica pulls a run) and another takes it
// over when the holder stops renewing (it died, or lost the store).
type Leaser interface {
	// Lease acquires the lease name for holder, or renews it when holder
	// holds it, for ttl from now (the store's clock), and reports whether
	// holder holds it now; false when another holder does.
	Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease ends holder's lease of name, if holder holds it, so that
	// another holder may take it at once.
	ReleaseLease(ctx context.Context, name, holder string) error
}
