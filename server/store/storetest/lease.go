package storetest

import (
	"testing"
	"time"

	"github.com/canaryd/canaryd/server/store"
)

// testLease checks store.Leaser: one holder at a time, renewal, release,
// and takeover once the holder stops renewing.
func (s *suite) testLease(t *testing.T) {
	st := s.open(t)
	l, ok := st.(store.Leaser)
	if !ok {
		t.Fatalf("%T does not implement store.Leaser", st)
	}
	ctx := testContext(t)
	must := func(name, holder string, ttl time.Duration, want bool) {
		t.Helper()
		got, err := l.Lease(ctx, name, holder, ttl)
		if err != nil {
			t.Fatalf("Lease(%s, %s): %v", name, holder, err)
		}
		if got != want {
			t.Fatalf("Lease(%s, %s) = %v, want %v", name, holder, got, want)
		}
	}
	must("pull/r1", "a", time.Minute, true)
	must("pull/r1", "a", time.Minute, true) // renew
	must("pull/r1", "b", time.Minute, false)
	must("pull/r2", "b", time.Minute, true) // leases are independent
	if err := l.ReleaseLease(ctx, "pull/r1", "b"); err != nil {
		t.Fatal(err)
	}
	must("pull/r1", "b", time.Minute, false) // b's release of a's lease did nothing
	if err := l.ReleaseLease(ctx, "pull/r1", "a"); err != nil {
		t.Fatal(err)
	}
	must("pull/r1", "b", 200*time.Millisecond, true) // released: b takes it
	must("pull/r1", "a", time.Minute, false)
	deadline := time.Now().Add(30 * time.Second)
	for { // b stops renewing: a takes over once b's lease expires
		got, err := l.Lease(ctx, "pull/r1", "a", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a did not take over the lease b stopped renewing")
		}
		time.Sleep(50 * time.Millisecond)
	}
	must("pull/r1", "b", time.Minute, false)
}
