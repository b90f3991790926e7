package storetest

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// BenchAppendBatch measures appends of 4 KB deltas from 1, 16 and 128
// concurrent writers spread over 16 runs, each case on the store open
// returns for that number of writers. It is the body of both backends'
// BenchmarkAppendBatch.
func BenchAppendBatch(b *testing.B, open func(b *testing.B, writers int) store.Store) {
	const runs = 16
	delta := make([]byte, 4<<10)
	for i := range delta {
		delta[i] = byte(i * 7)
	}
	for _, writers := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s := open(b, writers)
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

// BenchListVerdicts measures one page (or several, following the tokens)
// of history from s, filled with VerdictSource's verdicts over
// [start, start+span), for the filters a history query uses. It is the
// body of both backends' BenchmarkListVerdicts.
func BenchListVerdicts(b *testing.B, s store.Store, start time.Time, span time.Duration) {
	mid := start.Add(span / 2)
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
					vs, next, err := s.ListVerdicts(ctx, c.f, page)
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

// BenchMetrics returns n passing distribution metrics, the evidence of a
// typical verdict.
func BenchMetrics(n int) []*canaryv1.MetricResult {
	metrics := make([]*canaryv1.MetricResult, n)
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
			Gate:   &canaryv1.Gate{Ready: true, FloorMet: true, EvidenceMet: true, Unit: "samples"},
		}
	}
	return metrics
}

// VerdictSource generates the final verdicts of the history benchmarks:
// n runs spread evenly over [start, start+span), of 200 services and 10
// stages, 70% PROMOTE, 20% ROLLBACK, 10% HOLD, 10 metrics of evidence each.
// Both backends load the same verdicts, seeded.
type VerdictSource struct {
	rng     *rand.Rand
	start   time.Time
	step    time.Duration
	metrics []*canaryv1.MetricResult
}

// NewVerdictSource returns the source of n verdicts over the span.
func NewVerdictSource(n int, start time.Time, span time.Duration) *VerdictSource {
	return &VerdictSource{rng: rand.New(rand.NewPCG(1, 2)), start: start, step: span / time.Duration(n), metrics: BenchMetrics(10)}
}

var benchStages = []string{"onebox/us-east-1", "onebox/eu-west-1", "wave-1", "wave-2", "wave-3", "wave-4", "wave-5", "canary", "staging", "prod"}

// Verdict returns verdict i; call it for i = 0, 1, … in order.
func (g *VerdictSource) Verdict(i int) *canaryv1.Verdict {
	d := canaryv1.Decision_DECISION_PROMOTE
	switch r := g.rng.IntN(10); {
	case r == 0:
		d = canaryv1.Decision_DECISION_HOLD
	case r <= 2:
		d = canaryv1.Decision_DECISION_ROLLBACK
	}
	return &canaryv1.Verdict{
		RunId:           fmt.Sprintf("run-%08d", i),
		Service:         fmt.Sprintf("service-%03d", g.rng.IntN(200)),
		Stage:           benchStages[g.rng.IntN(len(benchStages))],
		Decision:        d,
		Reason:          "all metrics within tolerance",
		DecidingMetrics: []string{"metric_03"},
		Time:            timestamppb.New(g.start.Add(time.Duration(i)*g.step + time.Duration(g.rng.Int64N(int64(g.step))))),
		Final:           true,
		ConfigName:      "default",
		ConfigVersion:   3,
		Metrics:         g.metrics,
		RunState:        canaryv1.RunState_RUN_STATE_COMPLETED,
		Sequence:        42,
		Confidence:      0.99,
	}
}
