package embedded

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// BenchmarkAppendBatch measures durable appends of 4 KB deltas from 1, 16
// and 128 concurrent writers (spread over 16 runs); each append returns
// only once its group commit is fsynced.
func BenchmarkAppendBatch(b *testing.B) {
	const runs = 16
	delta := make([]byte, 4<<10)
	for i := range delta {
		delta[i] = byte(i * 7)
	}
	for _, writers := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := b.Context()
			for r := range runs {
				id := fmt.Sprintf("run-%02d", r)
				if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: id, RequestId: id}, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(delta)))
			b.ReportAllocs()
			b.ResetTimer()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						run := fmt.Sprintf("run-%02d", i%runs)
						if _, err := s.AppendBatch(ctx, run, strconv.FormatInt(i, 10), delta); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkListVerdicts measures one page of history from a store holding
// 1M final verdicts (CANARYD_BENCH_VERDICTS overrides the count) of 200
// services × 10 stages × 3 decisions over a year, 10 metrics of evidence
// each. The fixture is built once per process, in a temp dir, or kept in
// the file CANARYD_BENCH_FIXTURE names (reused when it exists).
func BenchmarkListVerdicts(b *testing.B) {
	fx := benchFixture(b)
	mid := fx.start.Add(fx.span / 2)
	week := 7 * 24 * time.Hour
	promote, rollback := canaryv1.Decision_DECISION_PROMOTE, canaryv1.Decision_DECISION_ROLLBACK
	cases := []struct {
		name  string
		f     store.VerdictFilter
		size  int
		pages int // pages read per op (> 1: follows the tokens)
	}{
		{"all", store.VerdictFilter{}, 0, 1},
		{"service", store.VerdictFilter{Service: "service-042"}, 0, 1},
		{"stage", store.VerdictFilter{Stage: "wave-3"}, 0, 1},
		{"decision", store.VerdictFilter{Decision: rollback}, 0, 1},
		{"service+stage", store.VerdictFilter{Service: "service-042", Stage: "wave-3"}, 0, 1},
		{"service+decision", store.VerdictFilter{Service: "service-042", Decision: rollback}, 0, 1},
		{"stage+decision", store.VerdictFilter{Stage: "wave-3", Decision: promote}, 0, 1},
		{"service+stage+decision", store.VerdictFilter{Service: "service-042", Stage: "wave-3", Decision: rollback}, 0, 1},
		{"all/week", store.VerdictFilter{Since: mid, Until: mid.Add(week)}, 0, 1},
		{"service/since", store.VerdictFilter{Service: "service-042", Since: mid}, 0, 1},
		{"decision/until", store.VerdictFilter{Decision: rollback, Until: mid}, 0, 1},
		{"service+stage+decision/month", store.VerdictFilter{Service: "service-042", Stage: "wave-3", Decision: rollback, Since: mid, Until: mid.Add(30 * 24 * time.Hour)}, 0, 1},
		{"no-match", store.VerdictFilter{Service: "service-999"}, 0, 1},
		{"service/pages=5", store.VerdictFilter{Service: "service-042"}, 0, 5},
		{"all/size=1000", store.VerdictFilter{}, 1000, 1},
		{"decision/size=1000", store.VerdictFilter{Decision: promote}, 1000, 1},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				page := store.Page{Size: c.size}
				for range c.pages {
					vs, next, err := fx.s.ListVerdicts(ctx, c.f, page)
					if err != nil {
						b.Fatal(err)
					}
					n += len(vs)
					if page.Token = next; next == "" {
						break
					}
				}
			}
			b.ReportMetric(float64(n)/float64(b.N), "verdicts/op")
		})
	}
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
	rng := rand.New(rand.NewPCG(1, 2))
	stages := []string{"onebox/us-east-1", "onebox/eu-west-1", "wave-1", "wave-2", "wave-3", "wave-4", "wave-5", "canary", "staging", "prod"}
	metrics := make([]*canaryv1.MetricResult, 10)
	for i := range metrics {
		metrics[i] = &canaryv1.MetricResult{
			Name:      fmt.Sprintf("metric_%02d", i),
			Category:  canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
			Type:      canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION,
			Tolerance: 0.1,
			Outcome:   canaryv1.MetricOutcome_METRIC_OUTCOME_PASS,
			Baseline:  &canaryv1.CohortSummary{N: 12000, Median: proto.Float64(81.5), P99: proto.Float64(240), Mean: proto.Float64(90.1)},
			Canary:    &canaryv1.CohortSummary{N: 11800, Median: proto.Float64(83.0), P99: proto.Float64(251), Mean: proto.Float64(91.7)},
			Effect:    &canaryv1.Effect{Estimate: 1.02, Lower: 0.99, Upper: 1.05, Confidence: 0.99},
			PValue:    0.41, AdjustedPValue: 1,
			Test:   "mann-whitney-u",
			Reason: "canary 2% slower (99% CI -1%..5%), tolerance 10%",
			Gate:   &canaryv1.Gate{Ready: true, FloorMet: true, PowerMet: true, Unit: "samples"},
		}
	}
	const perTx = 200_000
	var total int64
	step := span / time.Duration(n)
	for lo := 0; lo < n; lo += perTx {
		hi := min(lo+perTx, n)
		// Each bucket gets its keys in order: bbolt inserts into the
		// in-memory node of a page, so unordered inserts in one large
		// transaction are quadratic.
		records := make([][2][]byte, 0, hi-lo)
		var index [store.NumMasks][][]byte
		for i := lo; i < hi; i++ {
			d := canaryv1.Decision_DECISION_PROMOTE
			switch r := rng.IntN(10); {
			case r == 0:
				d = canaryv1.Decision_DECISION_HOLD
			case r <= 2:
				d = canaryv1.Decision_DECISION_ROLLBACK
			}
			id := fmt.Appendf(nil, "run-%08d", i)
			v := &canaryv1.Verdict{
				RunId:           string(id),
				Service:         fmt.Sprintf("service-%03d", rng.IntN(200)),
				Stage:           stages[rng.IntN(len(stages))],
				Decision:        d,
				Reason:          "all metrics within tolerance",
				DecidingMetrics: []string{"metric_03"},
				Time:            timestamppb.New(start.Add(time.Duration(i)*step + time.Duration(rng.Int64N(int64(step))))),
				Final:           true,
				ConfigName:      "default",
				ConfigVersion:   3,
				Metrics:         metrics,
				RunState:        canaryv1.RunState_RUN_STATE_COMPLETED,
				Sequence:        42,
				Confidence:      0.99,
			}
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
