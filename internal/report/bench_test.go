package report_test

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// benchRun is a run of n metrics (distribution, rate and mean in turn)
// over two hours, 6 + 2 instances, 20,000 baseline and 5,000 canary
// observations per distribution metric (binned beyond analysis.ExactCap),
// judged by the real judge, with a trajectory of MaxPoints judgements.
type benchRun struct {
	run  *canaryv1.Run
	v    *canaryv1.Verdict
	traj []*canaryv1.TrajectoryPoint
	data *analysis.Data
}

func newBenchRun(b *testing.B, n int) *benchRun {
	b.Helper()
	var cfgText strings.Builder
	cfgText.WriteString("name: bench\nwindow: 15m\nmetrics:\n")
	types := []string{"distribution", "rate", "mean"}
	for i := range n {
		fmt.Fprintf(&cfgText, "  - {name: m%02d, category: performance, type: %s, unit: ms}\n", i, types[i%3])
	}
	cfg, err := analysis.ParseConfig([]byte(cfgText.String()))
	if err != nil {
		b.Fatal(err)
	}
	d := analysis.NewData(cfg)
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	d.SetStart(analysis.Baseline, start)
	d.SetStart(analysis.Canary, start)
	rng := rand.New(rand.NewPCG(1, 2))
	hosts := []string{"web-1", "web-2", "web-3", "web-4", "web-5", "web-6", "canary-a", "canary-b"}
	const minutes = 120
	for i := range n {
		name := fmt.Sprintf("m%02d", i)
		for m := range minutes {
			at := start.Add(time.Duration(m) * time.Minute)
			for h, host := range hosts {
				c := analysis.Baseline
				if h >= 6 {
					c = analysis.Canary
				}
				var err error
				switch types[i%3] {
				case "rate":
					err = d.Add(&analysis.Record{Metric: name, Cohort: c, IsCount: true, Count: float64(rng.IntN(20)), Total: 2000, Time: at, Instance: host})
				default:
					per := 28 // 20,160 baseline, 6,720 canary observations
					vs := make([]float64, per)
					for k := range vs {
						vs[k] = math.Exp(4 + 0.5*rng.NormFloat64())
					}
					err = d.AddValues(i, c, host, at, vs)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	av := analysis.Judge(d, analysis.Options{Sequential: true, BakeComplete: true})
	v := apiconv.VerdictToProto(&av)
	end := start.Add(minutes * time.Minute)
	v.Time, v.Final, v.Sequence = timestamppb.New(end), true, 720
	run := &canaryv1.Run{
		Id: "bench", Service: "checkout-api", Stage: "onebox", ConfigName: "bench", ConfigVersion: 1,
		Config: apiconv.ConfigToProto(cfg), BakeTime: durationpb.New(time.Hour),
		CreateTime: timestamppb.New(start), StartTime: timestamppb.New(start), FinishTime: timestamppb.New(end),
		State: canaryv1.RunState_RUN_STATE_COMPLETED, Verdict: v,
	}
	// A trajectory of MaxPoints judgements with p-values that fall.
	var traj []*canaryv1.TrajectoryPoint
	for k := range report.MaxPoints {
		p := report.Point(v)
		p.Time = timestamppb.New(start.Add(time.Duration(k) * minutes * time.Minute / report.MaxPoints))
		p.Sequence = uint64(k + 1)
		for _, tm := range p.Metrics {
			tm.AdjustedPValue = float32(math.Pow(10, -6*float64(k)/report.MaxPoints) * rng.Float64())
			tm.PromotePValue = float32(rng.Float64())
			tm.HaveCanary *= float32(k+1) / report.MaxPoints
		}
		traj = append(traj, p)
	}
	return &benchRun{run: run, v: v, traj: traj, data: d}
}

func (r *benchRun) build() *canaryv1.RunReport {
	return report.Build(r.run, r.v, r.traj, r.data, report.Options{})
}

// BenchmarkRender measures the server-side cost of a run's HTML page:
// Build (from the run's data) and Render.
func BenchmarkRender(b *testing.B) {
	r, err := report.NewRenderer()
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{5, 20, 50} {
		run := newBenchRun(b, n)
		rep := run.build()
		b.Run(fmt.Sprintf("metrics=%d/build", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				run.build()
			}
		})
		b.Run(fmt.Sprintf("metrics=%d/render", n), func(b *testing.B) {
			b.ReportAllocs()
			var size int
			for b.Loop() {
				var w countWriter
				if err := r.Report(&w, rep, report.ReportOptions{}); err != nil {
					b.Fatal(err)
				}
				size = int(w)
			}
			b.ReportMetric(float64(size)/1024, "KiB/page")
		})
		b.Run(fmt.Sprintf("metrics=%d/build+render", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for b.Loop() {
				if err := r.Report(io.Discard, run.build(), report.ReportOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			// The process's CPU time (GC included): on a loaded machine
			// the wall time per op says more about the others' jobs.
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
		if n == 20 {
			pb, _ := proto.Marshal(rep)
			tb, _ := proto.Marshal(&canaryv1.RunReport{Trajectory: rep.GetTrajectory()})
			b.Logf("20 metrics: RunReport %d KiB encoded, of which the trajectory (%d points) %d KiB", len(pb)/1024, len(rep.GetTrajectory()), len(tb)/1024)
		}
	}
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countWriter counts the bytes written.
type countWriter int

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
