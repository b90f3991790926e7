package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/canaryd/canaryd/internal/testfs"
	"github.com/canaryd/canaryd/internal/testlog"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// TestDiskFull fills a real (tmpfs) file system under the store: writes
// then fail with store.ErrUnavailable (ENOSPC in the chain), Healthy
// reports it, the failures are logged a bounded number of times, nothing
// acknowledged is lost, and once space is freed the same store takes writes
// again without a restart; the file is consistent after all of it.
func TestDiskFull(t *testing.T) {
	dir := testfs.Tmpfs(t, "8m")
	path := filepath.Join(dir, "canaryd.db")
	var logs testlog.Buffer
	s, err := Open(path, Options{Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	ctx := context.Background()
	if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r", Service: "checkout"}, nil); err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	delta := func(id string) []byte { return bytes.Repeat([]byte(id), 64<<10/len(id)) }
	var acked []string
	for i := range 5 {
		id := fmt.Sprintf("a%04d", i)
		if _, err := s.AppendBatch(ctx, "r", id, delta(id)); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, id)
	}
	testfs.Fill(t, filepath.Join(dir, "filler"))
	for i := 0; ; i++ {
		id := fmt.Sprintf("b%04d", i)
		_, err := s.AppendBatch(ctx, "r", id, delta(id))
		if err == nil {
			acked = append(acked, id)
			if i > 200 {
				t.Fatal("the store still takes writes on a full file system")
			}
			continue
		}
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("AppendBatch on a full disk = %v, want ErrUnavailable wrapping ENOSPC", err)
		}
		break
	}
	t.Logf("%d batches acknowledged before the disk was full", len(acked))
	defer func() { t.Logf("logs:\n%s", logs.String()) }()
	if err := s.Healthy(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Healthy on a full disk = %v, want ErrUnavailable", err)
	}
	// Many writers keep failing, in groups and alone: a bounded number of
	// log lines, not one per write.
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				id := fmt.Sprintf("f%d-%d", w, i)
				if _, err := s.AppendBatch(ctx, "r", id, delta(id)); !errors.Is(err, store.ErrUnavailable) {
					t.Errorf("AppendBatch(%s) on a full disk = %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	if n := strings.Count(logs.String(), "\n"); n > 3 {
		t.Errorf("%d log lines for 401 failed writes, want at most 3:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "no space left on device") {
		t.Errorf("the failure is not logged:\n%s", logs.String())
	}

	// Space freed: the same store recovers.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if err := s.Healthy(ctx); err != nil {
		t.Fatalf("Healthy after space was freed = %v", err)
	}
	if !strings.Contains(logs.String(), "writes succeed again") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
	if _, err := s.AppendBatch(ctx, "r", "after", delta("after")); err != nil {
		t.Fatalf("AppendBatch after space was freed = %v", err)
	}
	acked = append(acked, "after")

	check := func(s *Store) {
		t.Helper()
		var got []string
		err := s.ReadBatches(ctx, "r", func(snap bool, d []byte) error {
			if !snap {
				got = append(got, string(d[:5]))
				if len(d) < 5 || !bytes.Equal(d, delta(string(d[:5]))) {
					t.Errorf("delta %q... is damaged", d[:5])
				}
			}
			return nil
		})
		if err != nil || strings.Join(got, " ") != strings.Join(acked, " ") {
			t.Errorf("stored deltas = %v, %v; want the %d acknowledged ones", got, err, len(acked))
		}
		if err := s.db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		}); err != nil {
			t.Errorf("consistency check: %v", err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	check(s)
}
