package embedded

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
	"github.com/canaryd/canaryd/server/store/storetest"
)

// Environment of the child process of TestAcknowledgedBatchesSurviveSIGKILL.
const (
	crashChildEnv = "CANARYD_EMBEDDED_CRASH_CHILD" // the store's path
	crashRoundEnv = "CANARYD_EMBEDDED_CRASH_ROUND"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path, os.Getenv(crashRoundEnv)))
	}
	code := m.Run()
	removeBenchFixture()
	os.Exit(code)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openAt opens the store at path, closed at the end of the test.
func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func openTemp(t *testing.T) *Store {
	return openAt(t, filepath.Join(t.TempDir(), "canaryd.db"))
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t,
		func(t *testing.T) store.Store { return openTemp(t) },
		storetest.Reopen(func(t *testing.T, s store.Store) store.Store {
			path := s.(*Store).Path()
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openAt(t, path)
		}),
		storetest.Retention(func(t *testing.T, o storetest.RetentionOptions) store.Store {
			s, err := Open(filepath.Join(t.TempDir(), "canaryd.db"), Options{
				Logger: testLogger(t), Retention: o.Retention, VerdictRetention: o.VerdictRetention, Now: o.Now,
				MaintenanceInterval: -1,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}, func(ctx context.Context, s store.Store) error {
			_, err := s.(*Store).Maintain(ctx)
			return err
		}))
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notBolt := filepath.Join(dir, "not-bolt")
	if err := os.WriteFile(notBolt, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	otherSchema := filepath.Join(dir, "schema")
	{
		db, err := bolt.Open(otherSchema, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(keySchema, []byte("99"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		path string
		opts Options
	}{
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "db"), Options{}},
		{"not a bbolt file", notBolt, Options{}},
		{"newer schema", otherSchema, Options{}},
		{"negative lock timeout", filepath.Join(dir, "a"), Options{LockTimeout: -1}},
		{"negative group writes", filepath.Join(dir, "b"), Options{MaxGroupWrites: -1}},
		{"negative group bytes", filepath.Join(dir, "c"), Options{MaxGroupBytes: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.path, tt.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name the path", err)
			}
		})
	}
}

func TestOpenLockedFile(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	start := time.Now()
	other, err := Open(s.Path(), Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		other.Close()
		t.Fatal("second Open of an open file succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v, want about the lock timeout", d)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openTemp(t)
	if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r", RequestId: "q"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	calls := map[string]func() error{
		"Healthy":   func() error { return s.Healthy(ctx) },
		"PutConfig": func() error { _, _, err := s.PutConfig(ctx, &canaryv1.CanaryConfig{Name: "c"}, ""); return err },
		"GetConfig": func() error { _, err := s.GetConfig(ctx, "c", 0); return err },
		"CreateRun": func() error {
			_, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r2", RequestId: "q2"}, nil)
			return err
		},
		"GetRun":      func() error { _, err := s.GetRun(ctx, "r"); return err },
		"AppendBatch": func() error { _, err := s.AppendBatch(ctx, "r", "b", nil); return err },
		"ReadBatches": func() error { return s.ReadBatches(ctx, "r", func(bool, []byte) error { return nil }) },
		"ListVerdicts": func() error {
			_, _, err := s.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after Close = %v, want ErrUnavailable", name, err)
		}
	}
}

func TestCanceledWriteStoresNothing(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	ctx := t.Context()
	if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r", RequestId: "q"}, nil); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.AppendBatch(canceled, "r", "b1", []byte("d")); !errors.Is(err, context.Canceled) {
		t.Fatalf("AppendBatch(canceled) = %v, want context.Canceled", err)
	}
	if dup, err := s.AppendBatch(ctx, "r", "b1", []byte("d")); err != nil || dup {
		t.Errorf("AppendBatch after the canceled one = dup %v, err %v; want stored", dup, err)
	}
}

// TestGroupCommitIsolation checks that a write failing inside a group does
// not fail the others, and that it stores nothing.
func TestGroupCommitIsolation(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	put := func(key string, fail error) *write {
		return &write{done: make(chan error, 1), apply: func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Put([]byte(key), []byte("v")); err != nil {
				return err
			}
			return fail
		}}
	}
	boom := errors.New("boom")
	group := []*write{
		put("x", nil),
		put("y", boom), // wrote, then failed: the group is retried write by write
		{done: make(chan error, 1), apply: func(*bolt.Tx) error { return reject(store.ErrFinished) }},
		{done: make(chan error, 1), apply: func(*bolt.Tx) error { panic("kaboom") }},
		put("z", nil),
	}
	s.commit(group)
	want := []error{nil, boom, store.ErrFinished, errors.New("panic"), nil}
	for i, w := range group {
		err := <-w.done
		switch {
		case want[i] == nil && err != nil:
			t.Errorf("write %d = %v, want nil", i, err)
		case want[i] != nil && (err == nil || !strings.Contains(err.Error(), want[i].Error())):
			t.Errorf("write %d = %v, want %v", i, err, want[i])
		}
	}
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		for key, want := range map[string]bool{"x": true, "y": false, "z": true} {
			if got := meta.Get([]byte(key)) != nil; got != want {
				t.Errorf("key %s stored = %v, want %v", key, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadBatchesInChunks reads more deltas than one read transaction
// copies, and checks that fn may call the store, and that a snapshot that
// folds deltas not yet delivered is reported.
func TestReadBatchesInChunks(t *testing.T) {
	t.Parallel()
	s := openTemp(t)
	ctx := t.Context()
	if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r", RequestId: "q"}, nil); err != nil {
		t.Fatal(err)
	}
	const n = 12
	delta := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 1<<20) }
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := s.AppendBatch(ctx, "r", strconv.Itoa(i), delta(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	seen := map[byte]bool{}
	err := s.ReadBatches(ctx, "r", func(snap bool, d []byte) error {
		if snap {
			return nil
		}
		if len(d) != 1<<20 || seen[d[0]] {
			t.Errorf("unexpected delta %d (%d bytes)", d[0], len(d))
		}
		seen[d[0]] = true
		// The store can be written from fn.
		_, err := s.AppendBatch(ctx, "r", strconv.Itoa(int(d[0])), nil)
		return err
	})
	if err != nil || len(seen) != n {
		t.Fatalf("ReadBatches = %v after %d deltas, want nil after %d", err, len(seen), n)
	}

	delivered := 0
	err = s.ReadBatches(ctx, "r", func(snap bool, d []byte) error {
		if snap {
			return nil
		}
		if delivered++; delivered == 1 {
			return s.Snapshot(ctx, "r", n, []byte("all"))
		}
		return nil
	})
	if !errors.Is(err, store.ErrSnapshotMoved) {
		t.Errorf("ReadBatches with a snapshot of every delta during the read = %v after %d deltas, want store.ErrSnapshotMoved", err, delivered)
	}
}

// TestAcknowledgedBatchesSurviveSIGKILL runs a child process (this test
// binary, see TestMain) that appends batches from several goroutines and
// prints the id of each acknowledged one, kills it with SIGKILL mid-ingest,
// and checks that every acknowledged batch is in the reopened store. It does
// so three times on the same file.
func TestAcknowledgedBatchesSurviveSIGKILL(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL is POSIX")
	}
	t.Parallel()
	path := filepath.Join(t.TempDir(), "canaryd.db")
	ctx := t.Context()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "run-crash", RequestId: "q"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	acked := map[string]bool{}
	for round, killAfter := range []int{50, 300, 1000} {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashRoundEnv+"="+strconv.Itoa(round))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := false
		n := 0
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			id, ok := strings.CutPrefix(sc.Text(), "ack ")
			if !ok {
				continue
			}
			acked[id] = true
			if n++; n == killAfter {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("round %d: child ended after %d acks before it was killed: %v\n%s", round, n, err, stderr.Bytes())
		}
		t.Logf("round %d: killed after %d acks (%d read from the pipe)", round, killAfter, n)

		s := openAt(t, path)
		stored := map[string]bool{}
		err = s.ReadBatches(ctx, "run-crash", func(snap bool, d []byte) error {
			if !snap {
				id, _, _ := bytes.Cut(d, []byte(";"))
				if !bytes.Equal(d, crashDelta(string(id))) {
					return fmt.Errorf("delta of %s corrupt", id)
				}
				stored[string(id)] = true
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: ReadBatches: %v", round, err)
		}
		for id := range acked {
			if !stored[id] {
				t.Errorf("round %d: acknowledged batch %s lost", round, id)
			}
		}
		for id := range acked {
			if dup, err := s.AppendBatch(ctx, "run-crash", id, nil); err != nil || !dup {
				t.Errorf("round %d: AppendBatch of acknowledged batch %s = dup %v, err %v; want dup", round, id, dup, err)
			}
			break
		}
		err = s.view(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		})
		if err != nil {
			t.Errorf("round %d: consistency check: %v", round, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			return
		}
	}
}

func crashDelta(id string) []byte {
	return append([]byte(id+";"), bytes.Repeat([]byte("0123456789abcdef"), 256)...) // ~4 KB
}

// crashChild appends batches until it is killed, printing "ack <id>" for
// each acknowledged batch.
func crashChild(path, round string) int {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	for w := range 8 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("r%s-w%d-%06d", round, w, i)
				if _, err := s.AppendBatch(context.Background(), "run-crash", id, crashDelta(id)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ack %s\n", id) // unbuffered: one write(2) per ack
				mu.Unlock()
			}
		}()
	}
	time.Sleep(2 * time.Minute)
	fmt.Fprintln(os.Stderr, "not killed")
	return 3
}
