package server

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// hostBatch returns a batch of latency values (a column per host) and
// error counts (a sample per host), host "web-3" of the baseline 1.6 times
// slower than the others.
func hostBatch(rng *rand.Rand, runID, batchID string, hosts map[canaryv1.Cohort][]string) *canaryv1.Batch {
	b := &canaryv1.Batch{RunId: runID, BatchId: batchID}
	for _, c := range []canaryv1.Cohort{canaryv1.Cohort_COHORT_BASELINE, canaryv1.Cohort_COHORT_CANARY} {
		for _, h := range hosts[c] {
			f := 1.0
			if h == "web-3" {
				f = 1.6
			}
			vals := make([]float64, 60)
			for i := range vals {
				vals[i] = f * 80 * math.Exp(0.3*rng.NormFloat64())
			}
			b.Columns = append(b.Columns, &canaryv1.MetricColumn{Metric: "latency_ms", Cohort: c, Instance: h, Values: vals})
			b.Samples = append(b.Samples, &canaryv1.Sample{Metric: "errors", Cohort: c, Instance: h,
				Observation: &canaryv1.Sample_Counts{Counts: &canaryv1.Counts{Count: float64(rng.IntN(20)), Total: 5000}}})
		}
	}
	return b
}

// instanceNames returns the instance names of each metric of a report.
func instanceNames(rep *canaryv1.RunReport) map[string][]string {
	out := map[string][]string{}
	for _, m := range rep.GetMetrics() {
		for _, e := range m.GetInstances() {
			out[m.GetName()] = append(out[m.GetName()], e.GetInstance())
		}
		slices.Sort(out[m.GetName()])
	}
	return out
}

// TestReportInstanceNames: the report names each instance by the name
// its samples carried (the odd host stands out by name), from the live
// run, from a new process reading the run's log and snapshot (a restart),
// and for the finished run; an instance name beyond the limit is refused
// with its field and nothing is stored. On both stores.
func TestReportInstanceNames(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"embedded", "redis"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			st := openTestStore(t, backend)
			e := newEnvOn(t, st, func(o *Options) { o.SnapshotEvery = 3 })
			ctx := ctxT(t)
			long := strings.Repeat("é", 128) // 256 bytes, the most a name may have
			hosts := map[canaryv1.Cohort][]string{
				canaryv1.Cohort_COHORT_BASELINE: {"web-1", "web-2", "web-3", "web-4"},
				canaryv1.Cohort_COHORT_CANARY:   {"canary-a", long},
			}
			var all []string
			for _, hs := range hosts {
				all = append(all, hs...)
			}
			slices.Sort(all)
			run := e.createRun(ctx, "names", testConfig("checkout"), time.Hour)
			rng := rand.New(rand.NewPCG(5, 5))
			for _, id := range seqIDs("b", 7) {
				e.clock.Advance(20 * time.Second)
				e.ingest(ctx, hostBatch(rng, run.GetId(), id, hosts))
			}
			// Too long a name: refused, nothing stored.
			bad := hostBatch(rng, run.GetId(), "bad", map[canaryv1.Cohort][]string{canaryv1.Cohort_COHORT_CANARY: {long + "x"}})
			_, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: bad})
			wantCode(t, err, codes.InvalidArgument, "batch.columns[0].instance")
			wantCode(t, err, codes.InvalidArgument, "batch.samples[0].instance")
			if n := e.getRun(ctx, run.GetId()).GetCounters().GetBatches(); n != 7 {
				t.Fatalf("%d batches stored, want 7", n)
			}

			check := func(when string, rep *canaryv1.RunReport) {
				t.Helper()
				for _, m := range []string{"latency_ms", "errors"} {
					if got := instanceNames(rep)[m]; !slices.Equal(got, all) {
						t.Errorf("%s: %s instances %q, want %q", when, m, got, all)
					}
				}
				for _, mr := range rep.GetMetrics() {
					if mr.GetName() != "latency_ms" {
						continue
					}
					var odd []string
					for _, e := range mr.GetInstances() {
						if e.GetStandsOut() {
							odd = append(odd, e.GetInstance())
						}
					}
					if !slices.Equal(odd, []string{"web-3"}) {
						t.Errorf("%s: latency instances standing out %v, want [web-3]", when, odd)
					}
				}
			}
			check("live", e.report(ctx, run.GetId()))
			e.svc.bg.Wait() // snapshots are written in the background
			if snaps, _ := e.storedDeltas(ctx, run.GetId()); snaps == 0 {
				t.Errorf("no snapshot stored after 7 batches (SnapshotEvery 3): the names were not read from one")
			}

			reopen := func() *Service {
				t.Helper()
				e.svc.bg.Wait()
				svc, err := New(Options{Store: st, Now: e.clock.Now})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { svc.Close() })
				return svc
			}
			get := func(svc *Service) *canaryv1.RunReport {
				t.Helper()
				r, err := svc.GetRunReport(context.WithoutCancel(ctx), &canaryv1.GetRunReportRequest{RunId: run.GetId()})
				if err != nil {
					t.Fatal(err)
				}
				return r.GetReport()
			}
			check("a new process", get(reopen()))
			e.clock.Advance(20 * time.Second)
			if _, err := e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: run.GetId(), Reason: "slow host"}); err != nil {
				t.Fatal(err)
			}
			check("finished, a new process", get(reopen()))
		})
	}
}

// TestReportOverrides: a run's report lists the deploy blockers
// overridden for its service and stage from overrideLookback before its
// creation until its end, and no others.
func TestReportOverrides(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	// Every deployment is blocked on 2026-11-22, the test clock's day.
	if _, err := e.c.PutDeployPolicy(ctx, &canaryv1.PutDeployPolicyRequest{Source: &canaryv1.PutDeployPolicyRequest_Policy{
		Policy: &canaryv1.DeployPolicy{Service: "*", DeployWindows: &canaryv1.DeployWindows{DenyDates: []string{"2026-11-22"}}}}}); err != nil {
		t.Fatal(err)
	}
	override := func(stage, reason string) {
		t.Helper()
		r, err := e.c.CheckDeploy(ctx, &canaryv1.CheckDeployRequest{Service: "checkout", Stage: stage, OverrideReason: reason})
		if err != nil || r.GetOverride() == nil {
			t.Fatalf("override %s: %v, %v", reason, r, err)
		}
	}
	e.clock.Set(time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC))
	override("wave-1", "too early") // 7 h before the run
	e.clock.Set(time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC))
	override("wave-1", "INC-7 <hotfix>")
	override("wave-2", "another stage")
	e.clock.Set(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC))
	run := e.createRun(ctx, "ov", testConfig("checkout"), time.Hour)
	e.clock.Advance(time.Minute)
	override("wave-1", "during the run")
	reasons := func() []string {
		var out []string
		for _, o := range e.report(ctx, run.GetId()).GetOverrides() {
			out = append(out, o.GetReason())
			if len(o.GetBlockedReasons()) == 0 || !strings.Contains(o.GetBlockedReasons()[0], "deny date") {
				t.Errorf("override %q overrode %q, want the deny date", o.GetReason(), o.GetBlockedReasons())
			}
		}
		return out
	}
	if got, want := reasons(), []string{"INC-7 <hotfix>", "during the run"}; !slices.Equal(got, want) {
		t.Errorf("overrides of the running run %q, want %q", got, want)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: run.GetId(), Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	override("wave-1", "after the run")
	if got, want := reasons(), []string{"INC-7 <hotfix>", "during the run"}; !slices.Equal(got, want) {
		t.Errorf("overrides of the finished run %q, want %q", got, want)
	}
}
