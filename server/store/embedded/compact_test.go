package embedded

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/canaryd/canaryd/internal/testlog"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// bloated returns the path of a closed store whose file is mostly free
// pages: a finished run whose 8 MiB of deltas expired, and a running one.
func bloated(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "canaryd.db")
	s, err := Open(path, Options{Logger: testLogger(t), Retention: time.Nanosecond, MaintenanceInterval: -1, CompactThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"old", "live"} {
		if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: id, RequestId: "req-" + id, Service: "checkout"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 500 {
		if _, err := s.AppendBatch(ctx, "old", fmt.Sprint(i), bytes.Repeat([]byte{byte(i)}, 16384)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AppendBatch(ctx, "live", "1", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	done := &canaryv1.Run{Id: "old", State: canaryv1.RunState_RUN_STATE_COMPLETED,
		Verdict: &canaryv1.Verdict{Decision: canaryv1.Decision_DECISION_PROMOTE, Final: true}}
	if err := s.FinishRun(ctx, done); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Maintain(ctx); err != nil || m.Expired != 1 {
		t.Fatalf("Maintain = %+v, %v; want 1 run expired", m, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// checkKept checks that a compacted store still has everything.
func checkKept(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	if run, err := s.GetRun(ctx, "old"); err != nil || run.GetState() != canaryv1.RunState_RUN_STATE_COMPLETED {
		t.Errorf("GetRun(old) = %v, %v", run, err)
	}
	var got []string
	if err := s.ReadBatches(ctx, "live", func(_ bool, d []byte) error { got = append(got, string(d)); return nil }); err != nil || strings.Join(got, ",") != ",kept" {
		t.Errorf("ReadBatches(live) = %q, %v", got, err)
	}
	if vs, _, err := s.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{}); err != nil || len(vs) != 1 {
		t.Errorf("ListVerdicts = %v, %v", vs, err)
	}
	if _, err := s.AppendBatch(ctx, "live", "2", []byte("more")); err != nil {
		t.Errorf("AppendBatch after compaction: %v", err)
	}
}

// TestCompactAtOpen: a file that is mostly free pages is compacted when
// opened (smaller file, same data, no temporary file left); below the
// threshold, or with compaction off, it is left alone.
func TestCompactAtOpen(t *testing.T) {
	t.Parallel()
	path := bloated(t)
	before := fileSize(t, path)
	var logs testlog.Buffer
	s, err := Open(path, Options{Logger: logs.Logger(), CompactThreshold: 256 << 20, MaintenanceInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fileSize(t, path) != before {
		t.Errorf("compacted below the threshold")
	}
	s, err = Open(path, Options{Logger: logs.Logger(), CompactThreshold: 1 << 20, MaintenanceInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	after := fileSize(t, path)
	t.Logf("file %d → %d bytes", before, after)
	if after*4 > before {
		t.Errorf("file %d bytes after compaction, was %d: want it at most a quarter", after, before)
	}
	if !strings.Contains(logs.String(), "embedded store compacted") {
		t.Errorf("compaction not logged:\n%s", logs.String())
	}
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	checkKept(t, s)
}

// TestCompactWhileAnotherWaits: a canaryd that opened the file before
// another compacted it, and waited for its lock, ends up on the compacted
// file (the old one is marked moved), not on the unlinked old one.
func TestCompactWhileAnotherWaits(t *testing.T) {
	t.Parallel()
	path := bloated(t)
	holder, err := bolt.Open(path, 0o600, nil) // the first process, before it compacts
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		s   *Store
		err error
	}
	waiter := make(chan result, 1)
	go func() {
		s, err := Open(path, Options{Logger: testLogger(t), LockTimeout: 30 * time.Second, MaintenanceInterval: -1, CompactThreshold: -1})
		waiter <- result{s, err}
	}()
	time.Sleep(200 * time.Millisecond) // the waiter has the old file open and waits for its lock
	opts := Options{Logger: testLogger(t), CompactThreshold: 1 << 20}
	opts.setDefaults()
	compacted, err := compactIfWorth(holder, path, opts, func() (*bolt.DB, error) { return bolt.Open(path, 0o600, nil) })
	if err != nil {
		t.Fatal(err)
	}
	if compacted == holder {
		t.Fatal("not compacted")
	}
	compacted.Close() // the first process stops
	r := <-waiter
	if r.err != nil {
		t.Fatalf("waiting Open: %v", r.err)
	}
	defer r.s.Close()
	checkKept(t, r.s)
	// What it writes lands in the file at the path.
	r.s.Close()
	s := openAt(t, path)
	var n int
	s.ReadBatches(context.Background(), "live", func(snap bool, _ []byte) error {
		if !snap {
			n++
		}
		return nil
	})
	if n != 2 {
		t.Errorf("the file at the path has %d deltas of live, want 2 (the waiter's write is lost)", n)
	}
}
