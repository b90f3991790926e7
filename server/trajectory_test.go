package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store/embedded"
)

// report returns the report of a run through the API.
func (e *env) report(ctx context.Context, runID string) *canaryv1.RunReport {
	e.t.Helper()
	resp, err := e.c.GetRunReport(ctx, &canaryv1.GetRunReportRequest{RunId: runID})
	if err != nil {
		e.t.Fatalf("get run report: %v", err)
	}
	return resp.GetReport()
}

// decisions returns the decisions of a trajectory, one per change.
func decisions(pts []*canaryv1.TrajectoryPoint) []string {
	var out []string
	for _, p := range pts {
		d := p.GetDecision().String()
		if len(out) == 0 || out[len(out)-1] != d {
			out = append(out, d)
		}
	}
	return out
}

// hasPoints reports whether every point of want is in got.
func hasPoints(got, want []*canaryv1.TrajectoryPoint) bool {
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g *canaryv1.TrajectoryPoint) bool { return proto.Equal(g, w) }) {
			return false
		}
	}
	return true
}

// judgeTrajectory makes a run whose verdict goes from HOLD (too few data)
// to ROLLBACK (a slow canary), judged every 20 s of the clock, and returns
// it.
func judgeTrajectory(ctx context.Context, t *testing.T, e *env, req string) *canaryv1.Run {
	t.Helper()
	run := e.createRun(ctx, req, testConfig("checkout"), time.Hour)
	rng := rand.New(rand.NewPCG(14, 14))
	for i, id := range seqIDs("b", 8) {
		sc := scenario{Latency: 1, Errors: 1, N: 40}
		if i >= 3 {
			sc = scenario{Latency: 1.6, Errors: 1, N: 500}
		}
		e.clock.Advance(20 * time.Second)
		e.ingest(ctx, makeBatch(rng, run.GetId(), id, sc))
		e.judge(ctx, run.GetId())
	}
	return run
}

// TestTrajectoryPersists: a run's verdict trajectory is stored as it is
// judged (each decision change at once), so that a new process on the same
// store (a restart, even after a crash) reports it; after a clean close
// every point is stored; a finished run keeps its trajectory, its final
// point and its data. On both stores.
func TestTrajectoryPersists(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"embedded", "redis"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			e := newEnvOn(t, openTestStore(t, backend), nil)
			ctx := ctxT(t)
			run := judgeTrajectory(ctx, t, e, "traj")
			rep := e.report(ctx, run.GetId())
			if got := decisions(rep.GetTrajectory()); !slices.Equal(got, []string{"DECISION_HOLD", "DECISION_ROLLBACK"}) {
				t.Fatalf("trajectory decisions %v, want HOLD then ROLLBACK", got)
			}
			if n := len(rep.GetTrajectory()); n < 8 {
				t.Fatalf("%d trajectory points, want one per judgement (8)", n)
			}
			metrics := len(rep.GetVerdict().GetMetrics())
			for i, p := range rep.GetTrajectory() {
				if len(p.GetMetrics()) != metrics || p.GetSequence() != uint64(i+1) {
					t.Fatalf("point %d: sequence %d, %d metrics; want sequence %d and %d metrics", i, p.GetSequence(), len(p.GetMetrics()), i+1, metrics)
				}
			}

			// A crash: a new service on the store, the first one never
			// flushed. The decision changes were stored at once.
			e.svc.bg.Wait()
			svc2, err := New(Options{Store: e.store, Now: e.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { svc2.Close() })
			stored, err := svc2.loadTrajectory(ctx, run.GetId())
			if err != nil {
				t.Fatal(err)
			}
			if got := decisions(stored); !slices.Equal(got, []string{"DECISION_HOLD", "DECISION_ROLLBACK"}) {
				t.Errorf("stored trajectory before any flush: decisions %v, want HOLD then ROLLBACK", got)
			}
			// A clean stop stores every point.
			for _, lr := range e.svc.registered() {
				if err := e.svc.flush(lr); err != nil {
					t.Fatal(err)
				}
			}
			r2, err := svc2.GetRunReport(ctx, &canaryv1.GetRunReportRequest{RunId: run.GetId()})
			if err != nil {
				t.Fatal(err)
			}
			if !hasPoints(r2.GetReport().GetTrajectory(), rep.GetTrajectory()) {
				t.Errorf("after a restart the report lacks points of the trajectory:\n got %d points %v\nwant %d points %v",
					len(r2.GetReport().GetTrajectory()), decisions(r2.GetReport().GetTrajectory()), len(rep.GetTrajectory()), decisions(rep.GetTrajectory()))
			}

			// Finished: the final point is stored, and a new process
			// reports the run with its trajectory and its data.
			e.clock.Advance(20 * time.Second)
			fin, err := e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: run.GetId(), Reason: "slow"})
			if err != nil {
				t.Fatal(err)
			}
			e.svc.bg.Wait()
			svc3, err := New(Options{Store: e.store, Now: e.clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { svc3.Close() })
			r3, err := svc3.GetRunReport(ctx, &canaryv1.GetRunReportRequest{RunId: run.GetId()})
			if err != nil {
				t.Fatal(err)
			}
			traj := r3.GetReport().GetTrajectory()
			last := traj[len(traj)-1]
			if fv := fin.GetRun().GetVerdict(); last.GetSequence() != fv.GetSequence() || last.GetDecision() != fv.GetDecision() ||
				!last.GetTime().AsTime().Equal(fv.GetTime().AsTime()) {
				t.Errorf("last point of the finished run %v, want the final verdict's (sequence %d)", last, fv.GetSequence())
			}
			if !hasPoints(traj, rep.GetTrajectory()) {
				t.Errorf("finished run's trajectory lacks points of the running one")
			}
			if h := r3.GetReport().GetMetrics()[0].GetHistogram(); h == nil || len(h.GetEdges()) == 0 {
				t.Errorf("finished run's report has no latency histogram: its data were not read from the store")
			}
		})
	}
}

// TestTrajectoryReplicas: two replicas on one Redis each store the points
// of the judgements they make, merged with the other's, and each reports
// the points of both.
func TestTrajectoryReplicas(t *testing.T) {
	t.Parallel()
	clk := newClock()
	a, b := redisReplicas(t, func(o *Options) { o.Now = clk.Now })
	a.clock, b.clock = clk, clk
	ctx := ctxT(t)
	run := judgeTrajectory(ctx, t, a, "replicas")
	a.svc.bg.Wait()
	fromA := a.report(ctx, run.GetId()).GetTrajectory()
	a.svc.bg.Wait()
	// B sees A's decision changes without any flush of A.
	fromB := b.report(ctx, run.GetId()).GetTrajectory()
	if got := decisions(fromB); !slices.Equal(got, []string{"DECISION_HOLD", "DECISION_ROLLBACK"}) {
		t.Fatalf("replica B's trajectory decisions %v, want A's HOLD then ROLLBACK", got)
	}
	// B judges more data; after B stores its points, A reports them too.
	rng := rand.New(rand.NewPCG(15, 15))
	for _, id := range seqIDs("c", 3) {
		b.ingest(ctx, makeBatch(rng, run.GetId(), id, scenario{Latency: 1, Errors: 1, N: 2000}))
		b.judge(ctx, run.GetId())
	}
	for _, lr := range b.svc.registered() {
		if err := b.svc.flush(lr); err != nil {
			t.Fatal(err)
		}
	}
	bPoints := b.report(ctx, run.GetId()).GetTrajectory()
	b.svc.bg.Wait()
	for _, lr := range b.svc.registered() {
		if err := b.svc.flush(lr); err != nil {
			t.Fatal(err)
		}
	}
	got := a.report(ctx, run.GetId()).GetTrajectory()
	if !hasPoints(got, bPoints[:len(bPoints)-1]) || !hasPoints(got, fromA[:len(fromA)-1]) {
		t.Errorf("replica A's trajectory (%d points) lacks points of B (%d) or its own (%d)", len(got), len(bPoints), len(fromA))
	}
}

// TestTrajectoryBounded: a 12-hour bake judged every 2 minutes keeps at most
// report.MaxPoints points in the store, every decision change among them,
// and the last hour at full resolution. The judge is a stand-in (cheap,
// each verdict different) so that 360 judgements take little time.
// (BenchmarkTrajectory12h measures the size of a 20-metric trajectory
// judged every 15 s.)
func TestTrajectoryBounded(t *testing.T) {
	t.Parallel()
	step := 0
	var first analysis.Verdict
	// On Redis: 720 writes without an fsync each.
	e := newEnvOn(t, openTestStore(t, "redis"), func(o *Options) {
		o.Judge = func(d *analysis.Data, opts analysis.Options) analysis.Verdict {
			if step == 0 {
				first = analysis.Judge(d, opts)
			}
			v := first
			v.Metrics = slices.Clone(first.Metrics)
			step++
			v.Decision = analysis.Hold
			if step/50%2 == 1 {
				v.Decision = analysis.Rollback
			}
			for i := range v.Metrics {
				v.Metrics[i].P = 1 / float64(step+1)
			}
			return v
		}
	})
	ctx := ctxT(t)
	run := e.createRun(ctx, "bounded", testConfig("checkout"), 12*time.Hour)
	rng := rand.New(rand.NewPCG(16, 16))
	const every = 2 * time.Minute
	const judgements = int(12 * time.Hour / every)
	for i := range judgements {
		e.clock.Advance(every)
		e.ingest(ctx, makeBatch(rng, run.GetId(), fmt.Sprintf("b-%05d", i), scenario{Latency: 1, Errors: 1, N: 10}))
		e.judge(ctx, run.GetId())
	}
	e.svc.bg.Wait()
	for _, lr := range e.svc.registered() {
		if err := e.svc.flush(lr); err != nil {
			t.Fatal(err)
		}
	}
	b, err := e.store.GetTrajectory(ctx, run.GetId())
	if err != nil {
		t.Fatal(err)
	}
	pts, err := decodeTrajectory(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("12-hour bake, a judgement every %v: %d points stored, %d bytes (%d metrics)", every, len(pts), len(b), len(pts[0].GetMetrics()))
	if len(pts) > report.MaxPoints || len(pts) > judgements/2 {
		t.Errorf("%d points stored of %d judgements, want at most %d and the old ones coarsened", len(pts), judgements, report.MaxPoints)
	}
	if got, want := len(decisions(pts)), judgements/50+1; got != want {
		t.Errorf("%d decision runs stored, want %d: a decision change was dropped", got, want)
	}
	var recent int
	for _, p := range pts {
		if e.clock.Now().Sub(p.GetTime().AsTime()) < report.RecentAge {
			recent++
		}
	}
	if recent < int(report.RecentAge/every)-1 {
		t.Errorf("%d points of the last hour stored, want every judgement of it (%d)", recent, report.RecentAge/every)
	}
}

// TestTrajectoryAfterRetention: once the retention has expired a finished
// run's raw data, its report keeps the trajectory and the final verdict,
// without the histograms only the data gave.
func TestTrajectoryAfterRetention(t *testing.T) {
	t.Parallel()
	clk := newClock()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "canaryd.db"),
		embedded.Options{Retention: time.Hour, Now: clk.Now, MaintenanceInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, st, func(o *Options) { o.Now = clk.Now })
	e.clock = clk
	ctx := ctxT(t)
	run := judgeTrajectory(ctx, t, e, "retention")
	if _, err := e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: run.GetId()}); err != nil {
		t.Fatal(err)
	}
	before := e.report(ctx, run.GetId())
	if before.GetMetrics()[0].GetHistogram() == nil {
		t.Fatal("finished run's report has no histogram before the retention")
	}
	clk.Advance(2 * time.Hour)
	if m, err := st.Maintain(ctx); err != nil || m.Expired != 1 {
		t.Fatalf("maintain: %+v, %v; want one run expired", m, err)
	}
	after := e.report(ctx, run.GetId())
	if h := after.GetMetrics()[0].GetHistogram(); h != nil {
		t.Errorf("report after the retention has a histogram: its data should be gone")
	}
	if !proto.Equal(after.GetVerdict(), before.GetVerdict()) {
		t.Errorf("final verdict changed after the retention")
	}
	if !hasPoints(after.GetTrajectory(), before.GetTrajectory()) || len(after.GetTrajectory()) != len(before.GetTrajectory()) {
		t.Errorf("trajectory after the retention: %d points, want the %d before", len(after.GetTrajectory()), len(before.GetTrajectory()))
	}
}

// TestTrajectoryDueWithoutVerdicts: points that wait for their 30 s are
// stored by the janitor's round when no verdict follows them.
func TestTrajectoryDueWithoutVerdicts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "due", testConfig("checkout"), time.Hour)
	rng := rand.New(rand.NewPCG(17, 17))
	for _, id := range seqIDs("b", 2) {
		e.clock.Advance(time.Second)
		e.ingest(ctx, makeBatch(rng, run.GetId(), id, scenario{Latency: 1, Errors: 1, N: 40}))
		e.judge(ctx, run.GetId()) // HOLD twice: the first stored at once, the second waits
		e.svc.bg.Wait()
	}
	stored := func() []*canaryv1.TrajectoryPoint {
		pts, err := e.svc.loadTrajectory(ctx, run.GetId())
		if err != nil {
			t.Fatal(err)
		}
		return pts
	}
	if n := len(stored()); n != 1 {
		t.Fatalf("%d points stored, want the first only (the second is not due)", n)
	}
	e.svc.writeDueTrajectories()
	e.svc.bg.Wait()
	if n := len(stored()); n != 1 {
		t.Fatalf("%d points stored before 30 s, want 1", n)
	}
	e.clock.Advance(trajectoryEvery)
	e.svc.writeDueTrajectories()
	e.svc.bg.Wait()
	if n := len(stored()); n != 2 {
		t.Fatalf("%d points stored after 30 s, want 2", n)
	}
}
