// Package reporttest makes real run reports for tests: it replays one of
// the data sets of examples/ as a live run, judging it with the real
// analysis.Judge (the anytime-valid tests a live run uses) every 30
// seconds of sample time, and keeps the trajectory the server would keep.
package reporttest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/collectors/jsonl"
	"github.com/canaryd/canaryd/internal/apiconv"
	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Replayed is a run replayed from an example data set.
type Replayed struct {
	Run           *canaryv1.Run
	Verdict       *canaryv1.Verdict
	Trajectory    []*canaryv1.TrajectoryPoint
	Data          *analysis.Data
	InstanceNames []string // the instances the records were dealt to
	Newest        time.Time
}

// Options change a replay.
type Options struct {
	// Bake is the run's bake time; 0 means 30 minutes.
	Bake time.Duration
	// Running leaves the run running (a provisional verdict, the bake
	// incomplete); otherwise it is completed with a final verdict.
	Running bool
	// Step is the sample time between judgements; 0 means 30 seconds.
	Step time.Duration
	// Shift shifts every sample's time (to make a trajectory's times
	// differ between runs).
	Shift time.Duration
}

// Replay replays examples/NAME.jsonl (promote, rollback or hold) with
// examples/canary.yaml as a run of the checkout-api service, its records
// dealt in turn to six baseline and two canary instances.
func Replay(tb testing.TB, name string, o Options) *Replayed {
	tb.Helper()
	if o.Bake == 0 {
		o.Bake = 30 * time.Minute
	}
	if o.Step == 0 {
		o.Step = 30 * time.Second
	}
	// The instances the records are dealt to, in turn.
	baselineHosts := []string{"web-1", "web-2", "web-3", "web-4", "web-5", "web-6"}
	canaryHosts := []string{"canary-a", "canary-b"}
	root := repoRoot(tb)
	src, err := os.ReadFile(filepath.Join(root, "examples", "canary.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := analysis.ParseConfig(src)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "examples", name+".jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var recs []analysis.Record
	dealt := map[[2]string]int{}
	if err := jsonl.Read(f, func(r analysis.Record) error {
		hosts := baselineHosts
		if r.Cohort == analysis.Canary {
			hosts = canaryHosts
		}
		k := [2]string{r.Metric, r.Cohort.String()}
		r.Instance = hosts[dealt[k]%len(hosts)]
		dealt[k]++
		r.Time = r.Time.Add(o.Shift)
		recs = append(recs, r)
		return nil
	}); err != nil {
		tb.Fatalf("read %s: %v", name, err)
	}
	slices.SortStableFunc(recs, func(a, b analysis.Record) int { return a.Time.Compare(b.Time) })
	start := recs[0].Time
	data := analysis.NewData(cfg)
	data.SetStart(analysis.Baseline, start)
	data.SetStart(analysis.Canary, start)

	run := &canaryv1.Run{
		Id:             fmt.Sprintf("%s-%08x", name, start.Unix()&0xffffffff),
		RequestId:      "deploy-4711/" + name,
		Service:        "checkout-api",
		Stage:          "onebox/us-east-1",
		ConfigName:     cfg.Name,
		ConfigVersion:  3,
		Config:         apiconv.ConfigToProto(cfg),
		BaselineLabels: map[string]string{"version": "v1.41.0"},
		CanaryLabels:   map[string]string{"version": "v1.42.0"},
		BakeTime:       durationpb.New(o.Bake),
		State:          canaryv1.RunState_RUN_STATE_RUNNING,
		CreateTime:     timestamppb.New(start),
		StartTime:      timestamppb.New(start),
		Counters:       &canaryv1.RunCounters{},
	}
	out := &Replayed{Run: run, Data: data, InstanceNames: append(slices.Clone(baselineHosts), canaryHosts...)}
	var seq uint64
	judge := func(at time.Time, final bool) *canaryv1.Verdict {
		bakeDone := at.Sub(start) >= o.Bake || final
		v := analysis.Judge(data, analysis.Options{BakeComplete: bakeDone, Sequential: true})
		seq++
		pv := apiconv.VerdictToProto(&v)
		pv.RunId, pv.Service, pv.Stage = run.Id, run.Service, run.Stage
		pv.ConfigVersion, pv.Sequence, pv.Time = run.ConfigVersion, seq, timestamppb.New(at)
		pv.RunState, pv.Final = canaryv1.RunState_RUN_STATE_RUNNING, final
		return pv
	}
	next := start.Add(o.Step)
	for i := range recs {
		r := &recs[i]
		for !r.Time.Before(next) {
			out.Trajectory = report.Append(out.Trajectory, report.Point(judge(next, false)))
			next = next.Add(o.Step)
		}
		if err := data.Add(r); err != nil {
			tb.Fatalf("%s record %d: %v", name, i+1, err)
		}
		if r.Cohort == analysis.Baseline {
			run.Counters.BaselineSamples++
		} else {
			run.Counters.CanarySamples++
		}
		out.Newest = r.Time
	}
	end := out.Newest.Add(time.Second)
	if !o.Running && end.Before(start.Add(o.Bake)) {
		end = start.Add(o.Bake) // completed when the bake time ended
	}
	run.Counters.Batches = uint64(end.Sub(start) / o.Step)
	run.Counters.LastIngestTime = timestamppb.New(end)
	v := judge(end, !o.Running)
	if !o.Running {
		run.State = canaryv1.RunState_RUN_STATE_COMPLETED
		run.FinishTime = timestamppb.New(end)
		run.FinishReason = "bake time elapsed"
		v.RunState = run.State
	}
	run.Verdict = v
	out.Verdict = v
	out.Trajectory = report.Append(out.Trajectory, report.Point(v))
	return out
}

// Report builds the run's report.
func (r *Replayed) Report() *canaryv1.RunReport {
	return report.Build(r.Run, r.Verdict, r.Trajectory, r.Data, report.Options{Newest: r.Newest})
}

// repoRoot returns the directory of go.mod, from the test's directory up.
func repoRoot(tb testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("reporttest: go.mod not found above the working directory")
		}
		dir = parent
	}
}
