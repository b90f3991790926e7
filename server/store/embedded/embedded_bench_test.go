package embedded

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/server/store"
	"github.com/canaryd/canaryd/server/store/storetest"
)

// BenchmarkAppendBatch measures durable appends of 4 KB deltas from 1, 16
// and 128 concurrent writers (spread over 16 runs); each append returns
// only once its group commit is fsynced.
func BenchmarkAppendBatch(b *testing.B) {
	storetest.BenchAppendBatch(b, func(b *testing.B, _ int) store.Store {
		s, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// BenchmarkListVerdicts measures one page of history from a store holding
// 1M final verdicts (CANARYD_BENCH_VERDICTS overrides the count) of 200
// services × 10 stages × 3 decisions over a year, 10 metrics of evidence
// each. The fixture is built once per process, in a temp dir, or kept in
// the file CANARYD_BENCH_FIXTURE names (reused when it exists).
func BenchmarkListVerdicts(b *testing.B) {
	fx := benchFixture(b)
	storetest.BenchListVerdicts(b, fx.s, fx.start, fx.span)
}

type fixture struct {
	s     *Store
	dir   string // removed at the end, "" to keep
	start time.Time
	span  time.Duration
	err   error
}

var (
	fixtureOnce sync.Once
	theFixture  fixture
)

func benchFixture(b *testing.B) *fixture {
	fixtureOnce.Do(func() { theFixture = buildFixture(b) })
	if theFixture.err != nil {
		b.Fatal(theFixture.err)
	}
	return &theFixture
}

func removeBenchFixture() {
	if theFixture.s != nil {
		theFixture.s.Close()
	}
	if theFixture.dir != "" {
		os.RemoveAll(theFixture.dir)
	}
}

func buildFixture(b *testing.B) fixture {
	n := 1_000_000
	if v := os.Getenv("CANARYD_BENCH_VERDICTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			return fixture{err: fmt.Errorf("CANARYD_BENCH_VERDICTS: %w", err)}
		}
	}
	fx := fixture{start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), span: 365 * 24 * time.Hour}
	path := os.Getenv("CANARYD_BENCH_FIXTURE")
	if path == "" {
		dir, err := os.MkdirTemp("", "canaryd-bench-")
		if err != nil {
			return fixture{err: err}
		}
		fx.dir, path = dir, filepath.Join(dir, "verdicts.db")
	}
	_, statErr := os.Stat(path)
	s, err := Open(path, Options{InitialMmapSize: 16 << 30})
	if err != nil {
		return fixture{err: err, dir: fx.dir}
	}
	fx.s = s
	if statErr == nil {
		b.Logf("reusing the fixture in %s", path)
		return fx
	}
	start := time.Now()
	size, err := loadVerdicts(s, n, fx.start, fx.span)
	if err != nil {
		fx.err = err
		return fx
	}
	fi, _ := os.Stat(path)
	b.Logf("fixture: %d verdicts (%d bytes each on average) stored in %v; file %d MB", n, size/int64(n), time.Since(start).Round(time.Second), fi.Size()>>20)
	return fx
}

// loadVerdicts stores n final verdicts directly, in large transactions,
// through the same indexing as FinishRun, and returns their encoded size.
func loadVerdicts(s *Store, n int, start time.Time, span time.Duration) (int64, error) {
	src := storetest.NewVerdictSource(n, start, span)
	const perTx = 200_000
	var total int64
	for lo := 0; lo < n; lo += perTx {
		hi := min(lo+perTx, n)
		// Each bucket gets its keys in order: bbolt inserts into the
		// in-memory node of a page, so unordered inserts in one large
		// transaction are quadratic.
		records := make([][2][]byte, 0, hi-lo)
		var index [store.NumMasks][][]byte
		for i := lo; i < hi; i++ {
			v := src.Verdict(i)
			id := []byte(v.GetRunId())
			data, err := proto.Marshal(v)
			if err != nil {
				return 0, err
			}
			total += int64(len(data))
			records = append(records, [2][]byte{id, data})
			for m := range store.NumMasks {
				index[m] = append(index[m], verdictIndexKey(m, v, id))
			}
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketVerdicts)
			b.FillPercent = 1
			for _, r := range records {
				if err := b.Put(r[0], r[1]); err != nil {
					return err
				}
			}
			for m := range store.NumMasks {
				slices.SortFunc(index[m], bytes.Compare)
				b := tx.Bucket(verdictIndexes[m])
				for _, k := range index[m] {
					if err := b.Put(k, nil); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("load verdicts %d..%d: %w", lo, hi, err)
		}
	}
	return total, nil
}
