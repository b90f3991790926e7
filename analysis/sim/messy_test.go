package sim

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/analysis"
)

// builtin returns the built-in scenario called name.
func builtin(t *testing.T, name string) Scenario {
	t.Helper()
	for _, s := range Scenarios() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no built-in scenario %q", name)
	return Scenario{}
}

// generate returns the batches of one run of sc at effect, drawn from the
// stream Run would use for run index run under seed, and the run's config.
func generate(t *testing.T, sc *Scenario, effect float64, seed uint64, run int) ([]*Batch, *analysis.Config) {
	t.Helper()
	cfg, err := sc.Config()
	if err != nil {
		t.Fatal(err)
	}
	g := sc.newRun(cfg, effect, rand.New(rand.NewPCG(seed, streamOf(sc.Name, effect, run))))
	bs := make([]*Batch, sc.Minutes)
	for m := range bs {
		bs[m] = g.next(m)
	}
	return bs, cfg
}

// tally sums one cohort's data over the batches for which keep is true.
type tally struct {
	requests, errCount, errTotal float64
	logSum, n                    float64 // latency values: sum of logs, count
	values                       []float64
	buckets                      []float64
	bounds                       []float64
}

func tallyOf(bs []*Batch, cfg *analysis.Config, c analysis.Cohort, keep func(m int) bool) tally {
	var t tally
	lat, errs := cfg.Metric(Latency), cfg.Metric(Errors)
	for _, b := range bs {
		if !keep(b.Minute) {
			continue
		}
		t.requests += b.Requests[c]
		for _, s := range b.Samples {
			if s.Cohort != c {
				continue
			}
			switch {
			case s.Metric == errs && errs >= 0:
				t.errCount += s.Count
				t.errTotal += s.Total
			case s.Metric == lat && s.Histogram != nil:
				t.bounds = s.Histogram.Bounds
				if t.buckets == nil {
					t.buckets = make([]float64, len(s.Histogram.Counts))
				}
				for i, n := range s.Histogram.Counts {
					t.buckets[i] += n
				}
			case s.Metric == lat:
				for _, v := range s.Values {
					t.values = append(t.values, v)
					t.logSum += math.Log(v)
					t.n++
				}
			}
		}
	}
	return t
}

func all(int) bool { return true }

// TestShareSchedule checks the canary's scheduled share (steps: a quarter
// of the run each; ramp: linear from 5% at minute 0 to 50% at minute 59)
// and that the realized share of every minute, canary requests over all
// requests, lies within 4.5 binomial standard deviations of it (given the
// minute's total, Poisson counts split binomially): a bound that a correct
// generator exceeds with probability about 1e-3 over all these minutes.
func TestShareSchedule(t *testing.T) {
	t.Parallel()
	steps, ramp := builtin(t, "share-steps-burst"), builtin(t, "share-ramp-slowdown")
	for m, want := range map[int]float64{0: 0.05, 14: 0.05, 15: 0.10, 29: 0.10, 30: 0.25, 44: 0.25, 45: 0.50, 59: 0.50} {
		if got := steps.shareAt(m); got != want {
			t.Errorf("steps: share at minute %d = %v, want %v", m, got, want)
		}
	}
	for _, m := range []int{0, 1, 20, 30, 59} {
		want := 0.05 + 0.45*float64(m)/59
		if got := ramp.shareAt(m); math.Abs(got-want) > 1e-12 {
			t.Errorf("ramp: share at minute %d = %v, want %v", m, got, want)
		}
	}
	for _, sc := range []Scenario{steps, ramp} {
		for run := range 5 {
			bs, _ := generate(t, &sc, 0, 11, run)
			for _, b := range bs {
				n := b.Requests[0] + b.Requests[1]
				p := sc.shareAt(b.Minute)
				if got := b.Requests[analysis.Canary] / n; math.Abs(got-p) > 4.5*math.Sqrt(p*(1-p)/n) {
					t.Errorf("%s run %d minute %d: canary share %.4f of %v requests, scheduled %.4f", sc.Name, run, b.Minute, got, n, p)
				}
				// 2,000 req/min in all: Poisson, within 5 sd.
				if math.Abs(n-2000) > 5*math.Sqrt(2000) {
					t.Errorf("%s minute %d: %v requests in all, want about 2000", sc.Name, b.Minute, n)
				}
			}
		}
	}
	if got := steps.Traffic(); !strings.Contains(got, "5/10/25/50% (in 4 equal steps)") {
		t.Errorf("steps: Traffic() = %q", got)
	}
	if got := ramp.Traffic(); !strings.Contains(got, "5→50% (linear ramp)") {
		t.Errorf("ramp: Traffic() = %q", got)
	}
}

// TestSharedChange checks that the burst multiplies both cohorts' error
// rates by 4 in minutes 40-59, and the slowdown both cohorts' latencies by
// 1.5, in A/A runs with a changing share: the ratio of the rates after and
// before (pooled over 20 runs) within 4.5 standard errors of the factor.
func TestSharedChange(t *testing.T) {
	t.Parallel()
	inBurst := func(m int) bool { return m >= 40 }
	before := func(m int) bool { return m < 40 }
	burst, slow := builtin(t, "share-steps-burst"), builtin(t, "share-ramp-slowdown")
	for c := range analysis.Cohort(2) {
		var in, out tally
		var lin, lout tally
		for run := range 20 {
			bs, cfg := generate(t, &burst, 0, 5, run)
			a, b := tallyOf(bs, cfg, c, inBurst), tallyOf(bs, cfg, c, before)
			in.errCount, in.errTotal = in.errCount+a.errCount, in.errTotal+a.errTotal
			out.errCount, out.errTotal = out.errCount+b.errCount, out.errTotal+b.errTotal
			bs, cfg = generate(t, &slow, 0, 5, run)
			a, b = tallyOf(bs, cfg, c, inBurst), tallyOf(bs, cfg, c, before)
			lin.logSum, lin.n = lin.logSum+a.logSum, lin.n+a.n
			lout.logSum, lout.n = lout.logSum+b.logSum, lout.n+b.n
		}
		ratio := (in.errCount / in.errTotal) / (out.errCount / out.errTotal)
		se := 4 * math.Sqrt(1/in.errCount+1/out.errCount) // delta method on the log ratio
		if math.Abs(ratio-4) > 4.5*se {
			t.Errorf("%v: error rate ×%.3f during the burst (%v/%v against %v/%v), want ×4 ± %.3f",
				c, ratio, in.errCount, in.errTotal, out.errCount, out.errTotal, 4.5*se)
		}
		// Latency: log-normal with log-sd 0.5, so the mean log differs by
		// log 1.5 with standard error 0.5·sqrt(1/n1 + 1/n2).
		d := lin.logSum/lin.n - lout.logSum/lout.n
		if se := 0.5 * math.Sqrt(1/lin.n+1/lout.n); math.Abs(d-math.Log(1.5)) > 4.5*se {
			t.Errorf("%v: latency ×%.4f during the slowdown, want ×1.5", c, math.Exp(d))
		}
	}
}

// TestInstanceLayouts checks the few-instance scenarios: every sample names
// one of the cohort's instances, each instance reports every minute, and
// the instances share their cohort's traffic.
func TestInstanceLayouts(t *testing.T) {
	t.Parallel()
	for name, want := range map[string][2]int{
		"instances-2x2-errors": {2, 2}, "instances-2x2-latency": {2, 2},
		"instances-3x3-errors": {3, 3}, "instances-3x3-latency": {3, 3},
		"onebox-9x1-errors": {9, 1}, "onebox-9x1-latency": {9, 1},
	} {
		sc := builtin(t, name)
		sc.Minutes = 5
		bs, _ := generate(t, &sc, 0, 3, 0)
		for _, b := range bs {
			var seen [2]map[string]bool
			for c := range seen {
				seen[c] = map[string]bool{}
			}
			for _, s := range b.Samples {
				seen[s.Cohort][s.Instance] = true
			}
			if len(seen[0]) != want[0] || len(seen[1]) != want[1] || len(b.Samples) != want[0]+want[1] {
				t.Errorf("%s minute %d: instances %d+%d in %d samples, want %d+%d", name, b.Minute, len(seen[0]), len(seen[1]), len(b.Samples), want[0], want[1])
			}
		}
	}
}

// TestIntegerLatency: latency-int-2ms draws whole milliseconds with a 2 ms
// median.
func TestIntegerLatency(t *testing.T) {
	t.Parallel()
	sc := builtin(t, "latency-int-2ms")
	sc.Minutes = 3
	bs, _ := generate(t, &sc, 0, 1, 0)
	var vs []float64
	for _, b := range bs {
		for _, s := range b.Samples {
			vs = append(vs, s.Values...)
		}
	}
	for _, v := range vs {
		if v != math.Round(v) || v < 0 {
			t.Fatalf("value %v is not a whole number of ms", v)
		}
	}
	if m := median(vs); m != 2 {
		t.Errorf("median %v ms, want 2", m)
	}
}

// TestHistograms checks the bucketed latency: one histogram per instance
// and minute with Prometheus' default bounds in ms, whose counts are the
// counts of the values the same run draws without buckets (same seed: the
// draws are the same) and sum to the requests, and whose Sum is the sum of
// those values (HasSum), or absent (LatencyNoSum).
func TestHistograms(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"prom-buckets", "prom-buckets-nosum"} {
		hs := builtin(t, name)
		hs.Minutes = 4
		plain := hs
		plain.LatencyBuckets, plain.LatencyNoSum = nil, false
		hb, _ := generate(t, &hs, 1, 9, 0)
		vb, _ := generate(t, &plain, 1, 9, 0)
		for m := range hb {
			var reqs [2]float64
			for i, s := range hb[m].Samples {
				h, vs := s.Histogram, vb[m].Samples[i].Values
				if h == nil || s.Values != nil {
					t.Fatalf("%s minute %d sample %d: histogram %v, values %d", name, m, i, h, len(s.Values))
				}
				if !slices.Equal(h.Bounds, PrometheusBuckets()) || !math.IsInf(h.Bounds[len(h.Bounds)-1], 1) {
					t.Fatalf("%s: bounds %v", name, h.Bounds)
				}
				want := make([]float64, len(h.Bounds))
				var sum, n float64
				for _, v := range vs {
					want[sort.SearchFloat64s(h.Bounds, v)]++
					sum += v
				}
				for _, c := range h.Counts {
					n += c
				}
				if !slices.Equal(h.Counts, want) {
					t.Errorf("%s minute %d sample %d: counts %v, want %v", name, m, i, h.Counts, want)
				}
				reqs[s.Cohort] += n
				switch {
				case name == "prom-buckets" && (!h.HasSum || h.Sum != sum):
					t.Errorf("%s minute %d: sum %v (has %v), want %v", name, m, h.Sum, h.HasSum, sum)
				case name == "prom-buckets-nosum" && (h.HasSum || h.Sum != 0):
					t.Errorf("%s: HasSum %v, Sum %v, want none", name, h.HasSum, h.Sum)
				}
			}
			if reqs != hb[m].Requests {
				t.Errorf("%s minute %d: histograms count %v, requests %v", name, m, reqs, hb[m].Requests)
			}
		}
	}
	// Bucket membership: le, the first bound >= the value.
	r := &run{s: &Scenario{}, bounds: PrometheusBuckets()}
	h := r.histogram([]float64{0, 5, 5.5, 10, 10000, 10001, 1e12})
	if want := []float64{2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2}; !slices.Equal(h.Counts, want) {
		t.Errorf("histogram counts %v, want %v", h.Counts, want)
	}
}

// TestHistogramQuantile compares with Prometheus' histogram_quantile
// (promql/quantile.go bucketQuantile), worked by hand: cumulative counts
// 10, 20, 40, 45 over le 1, 2, 4, +Inf.
func TestHistogramQuantile(t *testing.T) {
	t.Parallel()
	bounds, counts := []float64{1, 2, 4, math.Inf(1)}, []float64{10, 10, 20, 5}
	for _, tc := range []struct{ q, want float64 }{
		{0.1, 0.45},  // rank 4.5 in (0, 1]: 0 + 1·4.5/10
		{0.5, 2.25},  // rank 22.5 in (2, 4]: 2 + 2·2.5/20
		{0.99, 4},    // rank 44.55 in (4, +Inf]: the largest finite bound
		{0, 0},       // rank 0 in the first bucket
		{2.0 / 9, 1}, // rank 10: the end of the first bucket
	} {
		if got := histogramQuantile(tc.q, bounds, counts); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("histogramQuantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := histogramQuantile(0.5, bounds, []float64{0, 0, 0, 0}); !math.IsNaN(got) {
		t.Errorf("no observations: %v, want NaN", got)
	}
	if got := histogramQuantile(0.5, []float64{math.Inf(1)}, []float64{3}); !math.IsNaN(got) {
		t.Errorf("only +Inf: %v, want NaN", got)
	}
}

// TestKayentaHistograms: the Kayenta-style policy's p50 of a minute of
// bucketed latency is histogram_quantile(0.5) of the cohort's summed
// histograms.
func TestKayentaHistograms(t *testing.T) {
	t.Parallel()
	sc := builtin(t, "prom-buckets")
	sc.Minutes = 1
	bs, cfg := generate(t, &sc, 0, 2, 0)
	k := NewKayenta(cfg, KayentaConfidence)
	k.Observe(bs[0])
	lat := cfg.Metric(Latency)
	for c := range analysis.Cohort(2) {
		tl := tallyOf(bs, cfg, c, all)
		want := histogramQuantile(0.5, tl.bounds, tl.buckets)
		got := k.series[lat][c]
		if len(got) != 1 || got[0].Value != want || !(want > 50 && want < 250) {
			t.Errorf("%v: series %v, want one p50 %v (about 100 ms)", c, got, want)
		}
	}
}

// TestExtremeValue: exactly one value equal to the extreme, in the
// scenario's cohort, at a minute that varies between runs; in a histogram
// it is counted in +Inf and in Sum.
func TestExtremeValue(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"extreme-canary", "extreme-baseline"} {
		sc := builtin(t, name)
		want, _ := analysis.ParseCohort(sc.ExtremeCohort)
		minutes := map[int]bool{}
		for run := range 6 {
			bs, _ := generate(t, &sc, 1, 4, run)
			found := 0
			for _, b := range bs {
				for _, s := range b.Samples {
					for _, v := range s.Values {
						if v == sc.ExtremeValue {
							found++
							minutes[b.Minute] = true
							if s.Cohort != want {
								t.Errorf("%s: extreme value in the %v", name, s.Cohort)
							}
						}
					}
				}
			}
			if found != 1 {
				t.Errorf("%s run %d: the extreme value appears %d times, want once", name, run, found)
			}
		}
		if len(minutes) < 2 {
			t.Errorf("%s: the extreme value came at minutes %v in 6 runs: not drawn per run", name, minutes)
		}
	}
	sc := builtin(t, "prom-buckets")
	sc.ExtremeValue, sc.ExtremeCohort, sc.Minutes = 1e12, "canary", 5
	bs, cfg := generate(t, &sc, 0, 4, 0)
	tl := tallyOf(bs, cfg, analysis.Canary, all)
	var sum float64
	for _, b := range bs {
		for _, s := range b.Samples {
			sum += s.Histogram.Sum
		}
	}
	if inf := tl.buckets[len(tl.buckets)-1]; inf < 1 || sum < 1e12 {
		t.Errorf("histogram: +Inf bucket %v, sum %v: the extreme value is missing", inf, sum)
	}
}

// TestShareDrop: in share-drop the canary's share is the declared 10%
// before minute 10 and, at effect k, 10%·max(0, 1 − 0.5k) from minute 10 on —
// a fifth at k = 4 — while the total stays 10,000 req/min; A/A keeps 10%.
// Each span's realized share within 4.5 binomial standard deviations.
func TestShareDrop(t *testing.T) {
	t.Parallel()
	sc := builtin(t, "share-drop")
	for _, tc := range []struct{ effect, after float64 }{{0, 0.1}, {1, 0.05}, {1.6, 0.02}, {2, 0}} {
		bs, _ := generate(t, &sc, tc.effect, 8, 0)
		for _, span := range []struct {
			keep func(int) bool
			want float64
		}{{func(m int) bool { return m < sc.ShareDropMinute }, 0.1}, {func(m int) bool { return m >= sc.ShareDropMinute }, tc.after}} {
			var can, n float64
			for _, b := range bs {
				if span.keep(b.Minute) {
					can += b.Requests[analysis.Canary]
					n += b.Requests[0] + b.Requests[1]
				}
			}
			p := span.want
			if got := can / n; math.Abs(got-p) > 4.5*math.Sqrt(p*(1-p)/n) || p == 0 && can != 0 {
				t.Errorf("effect %v: canary share %.5f, want %v", tc.effect, got, p)
			}
		}
		// The drop starts exactly at the minute: minute 9 is at 10%, minute 10 at the drop.
		if tc.effect == 4 {
			if b9, b10 := bs[9].Requests[analysis.Canary], bs[10].Requests[analysis.Canary]; b9 < 850 || b10 > 300 {
				t.Errorf("canary requests %v at minute 9 and %v at minute 10, want about 1000 and 200", b9, b10)
			}
		}
	}
	// The sequential policy passes the declared share to the judge.
	cfg, _ := sc.Config()
	for _, p := range Policies() {
		if p.Name != PolicySeq {
			continue
		}
		jp := p.New(cfg, &sc).(*JudgePolicy)
		if got := jp.opts(&Batch{}).ExpectedShare; got != 0.1 {
			t.Errorf("sequential: Options.ExpectedShare = %v, want 0.1", got)
		}
		other := builtin(t, "latency")
		if got := p.New(cfg, &other).(*JudgePolicy).opts(&Batch{}).ExpectedShare; got != 0 {
			t.Errorf("sequential without a declared share: Options.ExpectedShare = %v, want 0", got)
		}
	}
}

// TestEffectDirection checks on the raw data of every messy scenario that
// a regression of 15× makes the canary's target worse than the baseline's
// and A/A does not (the judge-free counterpart of TestScenarios): error
// rate, median latency (histograms: the interpolated median), or the
// canary's share after the drop.
func TestEffectDirection(t *testing.T) {
	t.Parallel()
	for _, sc := range Scenarios() {
		if sc.Group != GroupMessy {
			continue
		}
		worse := func(effect float64) (ratio float64) {
			bs, cfg := generate(t, &sc, effect, 6, 0)
			b, c := tallyOf(bs, cfg, analysis.Baseline, all), tallyOf(bs, cfg, analysis.Canary, all)
			switch {
			case sc.Target == TargetTraffic:
				late := func(m int) bool { return m >= sc.ShareDropMinute }
				b, c = tallyOf(bs, cfg, analysis.Baseline, late), tallyOf(bs, cfg, analysis.Canary, late)
				return sc.CanaryShare[0] / (c.requests / (b.requests + c.requests)) // share lost: > 1
			case sc.Target == Errors:
				return (c.errCount / c.errTotal) / (b.errCount / b.errTotal)
			case b.buckets != nil:
				return histogramQuantile(0.5, c.bounds, c.buckets) / histogramQuantile(0.5, b.bounds, b.buckets)
			}
			return median(c.values) / median(b.values)
		}
		// Under A/A the ratio is near 1 (per-instance factors and the
		// shared change with a moving share allow some way from it); at 15×
		// it is far beyond any of that.
		aa, reg := worse(0), worse(15)
		t.Logf("%s: canary/baseline %.3f at 15×, %.3f on A/A", sc.Name, reg, aa)
		if !(reg > 1.5 && reg > aa) {
			t.Errorf("%s (target %s): canary/baseline %.3f at 15×, %.3f on A/A", sc.Name, sc.Target, reg, aa)
		}
	}
}

// TestMessyDeterministic: a run's data, and the Report, are a function of
// the seed for the new features too (changing shares, histograms, the
// extreme value, the share drop), whatever the number of workers.
func TestMessyDeterministic(t *testing.T) {
	t.Parallel()
	var sc []Scenario
	for _, n := range []string{"share-steps-burst", "prom-buckets", "extreme-canary", "share-drop", "onebox-9x1-errors"} {
		s := builtin(t, n)
		s.Minutes = 12
		sc = append(sc, s)
	}
	for i := range sc {
		a, _ := generate(t, &sc[i], 2, 17, 3)
		b, _ := generate(t, &sc[i], 2, 17, 3)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two generations with the same seed differ", sc[i].Name)
		}
	}
	run := func(workers int, seed uint64) string {
		rep, err := Run(context.Background(), Options{Runs: 4, Seed: seed, Scenarios: sc, Policies: policies(PolicyKayenta, PolicySeq), Effects: []float64{0, 4}, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		out, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	if a, b := run(1, 5), run(3, 5); a != b {
		t.Error("same seed, different workers: reports differ")
	}
	if run(2, 5) == run(2, 6) {
		t.Error("different seeds gave the same report")
	}
}

// TestFalsePromote checks the report's false-PROMOTE cells and summary:
// FalsePromote is Promote at and beyond the tolerance plus the detectable
// effect (2× for the built-in configs; any drop for the traffic target),
// and the default effects include that multiple.
func TestFalsePromote(t *testing.T) {
	t.Parallel()
	a, drop := aaScenario(), builtin(t, "share-drop")
	_ = drop.Name
	a.Minutes, drop.Minutes, drop.ShareDropMinute = 6, 6, 2
	rep, err := Run(context.Background(), Options{Runs: 3, Seed: 1, Scenarios: []Scenario{a, drop}, Policies: policies(PolicyKayenta)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Effects, []float64{0, 1, ShareDropFalsePromote, 2, 4}) {
		t.Errorf("default effects %v", rep.Effects)
	}
	want := map[string]float64{a.Name: 2, drop.Name: ShareDropFalsePromote}
	for _, si := range rep.Scenarios {
		if si.FalsePromoteEffect != want[si.Name] {
			t.Errorf("%s: false-PROMOTE effect %v, want %v", si.Name, si.FalsePromoteEffect, want[si.Name])
		}
	}
	for _, c := range rep.Cells {
		if has := c.FalsePromote != nil; has != (c.Effect >= want[c.Scenario]) || has && *c.FalsePromote != c.Promote {
			t.Errorf("%s effect %v: false PROMOTE %v (promote %v)", c.Scenario, c.Effect, c.FalsePromote, c.Promote)
		}
	}
	if len(rep.Summary) != 2 {
		t.Fatalf("summary has %d rows, want 2", len(rep.Summary))
	}
	for _, s := range rep.Summary {
		aa, fp := cell(t, rep, s.Scenario, s.Policy, 0), cell(t, rep, s.Scenario, s.Policy, want[s.Scenario])
		if *s.FalseRollbackAA != aa.Rollback || *s.Detection != fp.Rollback || *s.FalsePromote != fp.Promote || s.Minutes != fp.Minutes {
			t.Errorf("%s: summary %+v does not match its cells", s.Scenario, s)
		}
		// Both have a boundary at 1×: the metric's tolerance, and a share
		// dropped by half (the sample-ratio check's tolerance).
		if s.FalseRollbackBoundary == nil || *s.FalseRollbackBoundary != cell(t, rep, s.Scenario, s.Policy, 1).Rollback {
			t.Errorf("%s: boundary %v", s.Scenario, s.FalseRollbackBoundary)
		}
	}
}

// TestScenarioInvalid: the new fields are validated by Config.
func TestScenarioInvalid(t *testing.T) {
	t.Parallel()
	for name, mod := range map[string]func(*Scenario){
		"share without total":  func(s *Scenario) { s.CanaryShare = []float64{0.1} },
		"total without share":  func(s *Scenario) { s.TotalRequestsPerMinute = 1000 },
		"share out of range":   func(s *Scenario) { s.TotalRequestsPerMinute, s.CanaryShare = 1000, []float64{0.1, 1} },
		"expected share":       func(s *Scenario) { s.ExpectedShare = 1.5 },
		"traffic needs total":  func(s *Scenario) { s.Target = TargetTraffic },
		"drop needs traffic":   func(s *Scenario) { s.ShareDropMinute = 3 },
		"buckets not sorted":   func(s *Scenario) { s.LatencyBuckets = []float64{10, 5} },
		"buckets not positive": func(s *Scenario) { s.LatencyBuckets = []float64{0, 5} },
		"extreme cohort":       func(s *Scenario) { s.ExtremeValue, s.ExtremeCohort = 1e12, "both" },
		"extreme negative":     func(s *Scenario) { s.ExtremeValue = -1 },
		"buckets no latency":   func(s *Scenario) { s.LatencyMedian, s.Target, s.LatencyBuckets = 0, Errors, []float64{1} },
	} {
		s := aaScenario()
		mod(&s)
		if _, err := s.Config(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for _, s := range Scenarios() {
		if _, err := s.Config(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
		if s.Group != GroupClassic && s.Group != GroupMessy || s.Description == "" {
			t.Errorf("%s: group %q, description %q", s.Name, s.Group, s.Description)
		}
	}
}
