package report_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	"github.com/canaryd/canaryd/internal/report"
	"github.com/canaryd/canaryd/internal/report/reporttest"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestBuildFromReplays builds the reports of the three example runs,
// judged by the real judge as a live run is, and checks each part against
// the data it comes from.
func TestBuildFromReplays(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		running  bool
		decision canaryv1.Decision
		windows  int
	}{
		{"rollback", false, canaryv1.Decision_DECISION_ROLLBACK, 1},
		{"promote", false, canaryv1.Decision_DECISION_PROMOTE, 1},
		{"hold", true, canaryv1.Decision_DECISION_HOLD, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := reporttest.Replay(t, tc.name, reporttest.Options{Running: tc.running})
			runBefore := proto.CloneOf(r.Run)
			rep := r.Report()
			if !proto.Equal(r.Run, runBefore) {
				t.Error("Build modified the run")
			}
			if rep.GetRun().GetVerdict() != nil || rep.GetRun().GetId() != r.Run.GetId() {
				t.Error("the report's run must be the run without its verdict (the verdict is apart)")
			}
			if got := rep.GetVerdict().GetDecision(); got != tc.decision {
				t.Fatalf("decision %v, want %v: %s", got, tc.decision, rep.GetVerdict().GetReason())
			}
			traj := rep.GetTrajectory()
			if n := len(traj); n < 10 || n > report.MaxPoints {
				t.Errorf("%d trajectory points", n)
			}
			if last := traj[len(traj)-1]; last.GetSequence() != r.Verdict.GetSequence() || last.GetDecision() != tc.decision {
				t.Errorf("the trajectory ends with judgement %d (%v), not the verdict's %d", last.GetSequence(), last.GetDecision(), r.Verdict.GetSequence())
			}
			vms := rep.GetVerdict().GetMetrics()
			if len(rep.GetMetrics()) != len(vms) {
				t.Fatalf("%d metric reports for %d metrics", len(rep.GetMetrics()), len(vms))
			}
			cfg := r.Data.Config()
			for i, mr := range rep.GetMetrics() {
				m := vms[i]
				if mr.GetName() != m.GetName() {
					t.Fatalf("metric report %d is %q, the verdict's %q", i, mr.GetName(), m.GetName())
				}
				for _, p := range traj {
					if len(p.GetMetrics()) != len(vms) {
						t.Fatalf("a trajectory point has %d metrics, the verdict %d", len(p.GetMetrics()), len(vms))
					}
				}
				k := cfg.Metric(m.GetName())
				switch m.GetType() {
				case canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION:
					h := mr.GetHistogram()
					if h == nil || len(h.GetEdges()) < 2 || len(h.GetEdges()) > report.DefaultMaxBins+1 {
						t.Fatalf("%s: histogram %v", m.GetName(), h)
					}
					for c, counts := range [][]float64{h.GetBaselineCounts(), h.GetCanaryCounts()} {
						dist := &r.Data.Metric(k).Cohorts[c].Dist
						var n float64
						for _, x := range counts {
							n += x
						}
						if uint64(n+[]float64{h.GetBaselineZeros(), h.GetCanaryZeros()}[c]) != dist.N() {
							t.Errorf("%s cohort %d: %v in the histogram, %d observed", m.GetName(), c, n, dist.N())
						}
						q := []*canaryv1.Quantiles{h.GetBaselineQuantiles(), h.GetCanaryQuantiles()}[c]
						if q.GetP50() != dist.Quantile(0.5) || q.GetP90() != dist.Quantile(0.9) || q.GetP99() != dist.Quantile(0.99) {
							t.Errorf("%s cohort %d: quantiles %v", m.GetName(), c, q)
						}
					}
					if cv := mr.GetCanary(); cv.GetStatistic() != "median" || cv.GetEstimate() != m.GetCanary().GetMedian() ||
						!(cv.GetLower() <= cv.GetEstimate() && cv.GetEstimate() <= cv.GetUpper()) {
						t.Errorf("%s: canary %v", m.GetName(), cv)
					}
				case canaryv1.MetricType_METRIC_TYPE_RATE:
					s := m.GetBaseline()
					if cv := mr.GetBaseline(); s.GetTotal() > 0 && (cv.GetEstimate() != s.GetCount()/s.GetTotal() || !(cv.GetLower() <= cv.GetEstimate() && cv.GetEstimate() <= cv.GetUpper())) {
						t.Errorf("%s: baseline %v from %v", m.GetName(), cv, s)
					}
				case canaryv1.MetricType_METRIC_TYPE_MEAN:
					if cv := mr.GetCanary(); cv.GetEstimate() != m.GetCanary().GetMean() || !(cv.GetLower() < cv.GetEstimate()) {
						t.Errorf("%s: canary %v", m.GetName(), cv)
					}
				}
				if m.GetName() == analysis.TrafficName {
					if len(mr.GetInstances()) != 0 || mr.GetHistogram() != nil {
						t.Errorf("traffic_share has instances or a histogram")
					}
					continue
				}
				// Six baseline and two canary instances, named.
				ins := mr.GetInstances()
				if len(ins) != 8 {
					t.Fatalf("%s: %d instances, want 8", m.GetName(), len(ins))
				}
				names := map[string]bool{}
				for _, e := range ins {
					names[e.GetInstance()] = true
				}
				for _, n := range r.InstanceNames {
					if !names[n] {
						t.Errorf("%s: instance %s missing (have %v)", m.GetName(), n, names)
					}
				}
			}
			// The bands of examples/canary.yaml.
			bands := map[string][4]float64{
				"latency_ms":  {0, 1.1, 0, 1.2},
				"errors":      {0, 1.2, 0, 1.4},
				"conversions": {0.9, math.Inf(1), 0.8, math.Inf(1)},
				"order_value": {0.9, math.Inf(1), 0.8, math.Inf(1)},
			}
			for _, mr := range rep.GetMetrics() {
				want, ok := bands[mr.GetName()]
				got := [4]float64{mr.GetToleranceLower(), mr.GetToleranceUpper(), mr.GetPromoteLower(), mr.GetPromoteUpper()}
				for j := range got {
					if ok && math.Abs(got[j]-want[j]) > 1e-12 && got[j] != want[j] {
						t.Errorf("%s: bands %v, want %v", mr.GetName(), got, want)
						break
					}
				}
			}
			// A canary 28% slower on every host (rollback.jsonl) shows on
			// both canary hosts.
			if tc.name == "rollback" {
				for _, e := range rep.GetMetrics()[0].GetInstances() {
					if e.GetCohort() == canaryv1.Cohort_COHORT_CANARY && !(e.GetRatio() > 1.15 && e.GetLower() > 1) {
						t.Errorf("latency_ms: canary host %s at %v× [%v, %v]", e.GetInstance(), e.GetRatio(), e.GetLower(), e.GetUpper())
					}
				}
			}
			w := rep.GetWindows()
			if w.GetLength().AsDuration() != 15*time.Minute || len(w.GetStarts()) != tc.windows {
				t.Errorf("windows %v, want 15m with %d starts", w, tc.windows)
			}
			if tc.windows == 1 && !w.GetStarts()[0].AsTime().Equal(r.Run.GetStartTime().AsTime().Add(15*time.Minute)) {
				t.Errorf("window start %v", w.GetStarts()[0].AsTime())
			}
		})
	}
}

// TestBuildWithoutData: a run whose raw data are gone still has a report,
// from its verdict.
func TestBuildWithoutData(t *testing.T) {
	t.Parallel()
	r := reporttest.Replay(t, "rollback", reporttest.Options{})
	rep := report.Build(r.Run, nil, r.Trajectory, nil, report.Options{})
	if rep.GetVerdict().GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		t.Fatal("the run's verdict is not used when v is nil")
	}
	for _, mr := range rep.GetMetrics() {
		if mr.GetHistogram() != nil || len(mr.GetInstances()) > 0 {
			t.Errorf("%s: a histogram or instances without data", mr.GetName())
		}
		if mr.GetCanary() == nil {
			t.Errorf("%s: no canary value", mr.GetName())
		}
	}
	if rep.GetWindows().GetLength().AsDuration() != 15*time.Minute {
		t.Errorf("windows %v: the config's window is known from the run", rep.GetWindows())
	}
}

// TestBuildWindowDecides: a regression that starts mid-run is found by a
// window test, and the report says which window.
func TestBuildWindowDecides(t *testing.T) {
	t.Parallel()
	cfg, err := analysis.ParseConfig([]byte(`name: slow-burn
window: 10m
metrics:
  - {name: latency_ms, category: performance, type: distribution, critical: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	d := analysis.NewData(cfg)
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	d.SetStart(analysis.Baseline, start)
	d.SetStart(analysis.Canary, start)
	rng := rand.New(rand.NewPCG(9, 10))
	for m := range 60 {
		at := start.Add(time.Duration(m) * time.Minute)
		for range 60 {
			if err := d.Add(&analysis.Record{Metric: "latency_ms", Cohort: analysis.Baseline, Value: math.Exp(4 + 0.3*rng.NormFloat64()), Time: at}); err != nil {
				t.Fatal(err)
			}
			slow := 1.0
			if m >= 48 {
				slow = 1.4
			}
			if err := d.Add(&analysis.Record{Metric: "latency_ms", Cohort: analysis.Canary, Value: slow * math.Exp(4+0.3*rng.NormFloat64()), Time: at}); err != nil {
				t.Fatal(err)
			}
		}
	}
	v := analysis.Judge(d, analysis.Options{Sequential: true})
	pv := apiconv.VerdictToProto(&v)
	pv.Time = timestamppb.New(start.Add(60 * time.Minute))
	run := &canaryv1.Run{Id: "burn", Config: apiconv.ConfigToProto(cfg), StartTime: timestamppb.New(start), BakeTime: durationpb.New(time.Hour)}
	rep := report.Build(run, pv, nil, d, report.Options{Newest: start.Add(59*time.Minute + 30*time.Second)})
	ws := rep.GetMetrics()[0].GetWindowStart()
	if ws == nil {
		t.Fatalf("no window start; the test says %q", v.Metrics[0].Test)
	}
	var starts []time.Time
	for _, s := range rep.GetWindows().GetStarts() {
		starts = append(starts, s.AsTime())
	}
	want := []time.Time{start.Add(50 * time.Minute), start.Add(40 * time.Minute), start.Add(30 * time.Minute), start.Add(20 * time.Minute)}
	if !slices.EqualFunc(starts, want, time.Time.Equal) {
		t.Errorf("window starts %v, want %v", starts, want)
	}
	if !slices.ContainsFunc(starts, ws.AsTime().Equal) {
		t.Errorf("the deciding window %v is not one of the windows tested %v", ws.AsTime(), starts)
	}
}
