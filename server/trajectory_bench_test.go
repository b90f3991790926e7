package server

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// BenchmarkTrajectory12h replays what the engine does with the trajectory
// of a 12-hour bake judged every 15 s (2,880 verdicts) of n metrics: each
// verdict's point added to the pending points (report.Append), and every
// 30 s the pending points merged into the stored trajectory and encoded
// (the store write itself excluded). It reports the CPU per verdict, the
// points and the bytes stored at the end (the size bound), and the largest
// stored trajectory over the bake.
func BenchmarkTrajectory12h(b *testing.B) {
	for _, n := range []int{3, 20} {
		b.Run(fmt.Sprintf("metrics=%d", n), func(b *testing.B) {
			const every, bake = 15 * time.Second, 12 * time.Hour
			const verdicts = int(bake / every)
			start := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
			rng := rand.New(rand.NewPCG(12, uint64(n)))
			vs := make([]*canaryv1.Verdict, verdicts)
			for i := range vs {
				v := &canaryv1.Verdict{Time: timestamppb.New(start.Add(time.Duration(i+1) * every)), Sequence: uint64(i + 1),
					Decision: canaryv1.Decision_DECISION_HOLD}
				if i > verdicts*2/3 {
					v.Decision = canaryv1.Decision_DECISION_PROMOTE
				}
				for j := range n {
					v.Metrics = append(v.Metrics, &canaryv1.MetricResult{
						Name: fmt.Sprintf("m%02d", j), Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION,
						Outcome: canaryv1.MetricOutcome_METRIC_OUTCOME_HOLD, PValue: rng.Float64(), AdjustedPValue: rng.Float64(),
						PromotePValue: rng.Float64(),
						Effect:        &canaryv1.Effect{Estimate: rng.NormFloat64(), Lower: rng.NormFloat64() - 1, Upper: rng.NormFloat64() + 1},
						Baseline:      &canaryv1.CohortSummary{N: uint64(1000 * (i + 1))}, Canary: &canaryv1.CohortSummary{N: uint64(300 * (i + 1))},
						Gate: &canaryv1.Gate{NeedBaseline: 5000, NeedCanary: 1500},
					})
				}
				vs[i] = v
			}
			var stored, pending []*canaryv1.TrajectoryPoint
			var enc []byte
			largest := 0
			b.ReportAllocs()
			var ru0 syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru0); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				stored, pending, largest = nil, nil, 0
				for i, v := range vs {
					pending = report.Append(pending, report.Point(v))
					if i%2 == 1 || i == len(vs)-1 {
						stored = mergePoints(stored, pending)
						pending = nil
						var err error
						if enc, err = encodeTrajectory(stored); err != nil {
							b.Fatal(err)
						}
						largest = max(largest, len(enc))
					}
				}
			}
			var ru1 syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru1); err != nil {
				b.Fatal(err)
			}
			cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			// The process's CPU time (GC included) per verdict: on a loaded
			// machine the wall time says more about the others' jobs.
			b.ReportMetric(float64(cpu)/1e3/float64(b.N)/float64(verdicts), "cpu-µs/verdict")
			b.ReportMetric(float64(len(stored)), "points")
			b.ReportMetric(float64(len(enc))/1024, "KiB")
			b.ReportMetric(float64(largest)/1024, "KiB-max")
		})
	}
}
