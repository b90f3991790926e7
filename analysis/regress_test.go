package analysis

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The reproductions of issue 9, one test each: every one failed on the
// judge before time strata, evidence for PROMOTE, the fixed bin grid and
// the cluster-level design effect (canaryd 63179e5). The simulated figures
// behind the targets are in SIMULATION.md; these tests are small
// enough for every CI run.

const stepsConfig = `
name: steps
confidence: 0.99
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 200}
  - {name: errors, category: stability, type: rate, tolerance: 0.2, critical: true, min_total: 2000}
`

// stepsRun streams an A/A run of 60 one-minute batches whose canary share
// of 2,000 requests a minute steps 5, 10, 25, 50% (Argo Rollouts'
// setWeight), with a change both cohorts share in minutes 40–59: errors ×4
// (burst) or latency ×1.5 (slowdown). It returns whether the sequential
// judge ever rolled back, and the fixed-sample judge's decision at the end.
func stepsRun(t *testing.T, cfg *Config, seed uint64, burst, slowdown bool) (seq bool, fixed Decision) {
	rng := rand.New(rand.NewPCG(seed, 17))
	start := time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC)
	d := NewData(cfg)
	d.SetStart(Baseline, start)
	d.SetStart(Canary, start)
	for m := range 60 {
		at := start.Add(time.Duration(m) * time.Minute)
		share := []float64{0.05, 0.10, 0.25, 0.50}[m/15]
		errRate, lat := 0.005, 100.0
		if m >= 40 {
			if burst {
				errRate *= 4
			}
			if slowdown {
				lat *= 1.5
			}
		}
		for c, f := range [2]float64{1 - share, share} {
			n := int(2000 * f)
			vals := make([]float64, n)
			for j := range vals {
				vals[j] = lat * math.Exp(0.5*rng.NormFloat64())
			}
			if err := d.AddValues(0, Cohort(c), "", at, vals); err != nil {
				t.Fatal(err)
			}
			k := 0
			for range n {
				if rng.Float64() < errRate {
					k++
				}
			}
			if err := d.Add(&Record{Metric: "errors", Cohort: Cohort(c), IsCount: true, Count: float64(k), Total: float64(n), Time: at}); err != nil {
				t.Fatal(err)
			}
		}
		if !seq && Judge(d, Options{Sequential: true, BakeComplete: m == 59}).Decision == Rollback {
			seq = true
		}
	}
	return seq, Judge(d, Options{BakeComplete: true}).Decision
}

// Reproduction 1: the canary's share of traffic steps up while both
// cohorts' errors burst (or latency slows) late in the run. Pooled over
// the run, the canary has more of its traffic in the bad period and looked
// worse: 97.5% of A/A runs rolled back (latency with a shared slowdown:
// 100%). Within time strata the shared change cancels.
func TestRegressShareSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	cfg := testConfig(t, stepsConfig)
	for _, tc := range []struct {
		name            string
		burst, slowdown bool
	}{{"error burst", true, false}, {"slowdown", false, true}} {
		const runs = 40
		seq, fixed := 0, 0
		for r := range uint64(runs) {
			s, f := stepsRun(t, cfg, r, tc.burst, tc.slowdown)
			if s {
				seq++
			}
			if f == Rollback {
				fixed++
			}
		}
		t.Logf("%s: A/A rolled back in %d/%d runs (sequential), %d/%d (one fixed-sample look)", tc.name, seq, runs, fixed, runs)
		// At the 1% level, more than 3 of 40 has probability < 0.1%.
		if seq > 3 || fixed > 3 {
			t.Errorf("%s: %d and %d of %d A/A runs rolled back: the shared change does not cancel", tc.name, seq, fixed, runs)
		}
	}
}

// Reproduction 2: few instances that differ. At the tolerance boundary a
// canary on 2 instances against 2 baseline instances whose latencies
// differ by a log-sd of 0.05 was rolled back in 5.9% of runs: the
// between-instance variance, estimated from 2 degrees of freedom, often
// came out smaller than the instances' own noise and was dropped.
func TestRegressFewInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	cfg := testConfig(t, `
name: few
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 200}
`)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const runs = 400
	rollbacks := 0
	vals := make([]float64, 500)
	for r := range uint64(runs) {
		rng := rand.New(rand.NewPCG(r, 5))
		d := NewData(cfg)
		var fac [2][2]float64
		for c := range 2 {
			for i := range 2 {
				fac[c][i] = math.Exp(0.05 * rng.NormFloat64())
			}
		}
		for m := range 10 {
			at := start.Add(time.Duration(m) * time.Minute)
			for c := range 2 {
				for i := range 2 {
					f := 100 * fac[c][i]
					if Cohort(c) == Canary {
						f *= 1.1 // at the tolerance boundary
					}
					for j := range vals {
						vals[j] = f * math.Exp(0.5*rng.NormFloat64())
					}
					d.AddValues(0, Cohort(c), string(rune('a'+2*c+i)), at, vals)
				}
			}
			if Judge(d, Options{Sequential: true}).Decision == Rollback {
				rollbacks++
				break
			}
		}
	}
	t.Logf("2+2 instances at the tolerance boundary: %d/%d rolled back (α = 1%%)", rollbacks, runs)
	// α = 1%: more than 10 of 400 has probability < 0.3%.
	if rollbacks > 10 {
		t.Errorf("%d of %d runs at the boundary rolled back", rollbacks, runs)
	}
}

// Reproduction 3: integer milliseconds with a 2 ms median, the canary
// exactly at the +10% tolerance. The rank test of the canary scaled by
// 1/1.1 broke the ties against the canary: 31% of runs rolled back. The
// ratio of means of rounded values is nearly unbiased (Sheppard), and the
// judge does not take logarithms of such coarse values.
func TestRegressIntegerLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	cfg := testConfig(t, `
name: int
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 200}
`)
	const runs = 200
	var seq, fixed int
	for r := range uint64(runs) {
		rng := rand.New(rand.NewPCG(r, 9))
		d := NewData(cfg)
		vals := make([]float64, 1000)
		rolled := false
		for m := range 30 {
			for c := range 2 {
				f := 2.0
				if Cohort(c) == Canary {
					f *= 1.1
				}
				for j := range vals {
					vals[j] = math.Round(f * math.Exp(0.5*rng.NormFloat64()))
				}
				d.AddValues(0, Cohort(c), "", time.Unix(int64(60*m), 0), vals)
			}
			if !rolled && Judge(d, Options{Sequential: true}).Decision == Rollback {
				rolled = true
			}
		}
		if rolled {
			seq++
		}
		v := Judge(d, Options{BakeComplete: true})
		if v.Decision == Rollback {
			fixed++
		}
		if r == 0 && !strings.Contains(v.Metrics[0].Test, "whole numbers with a median of 2") {
			t.Errorf("test %q does not say why it avoids logarithms", v.Metrics[0].Test)
		}
	}
	t.Logf("integer ms at the tolerance boundary: %d/%d rolled back (sequential), %d/%d (fixed)", seq, runs, fixed, runs)
	if seq > 6 || fixed > 6 { // α = 1%: more than 6 of 200 has probability < 0.5%
		t.Errorf("%d and %d of %d runs at the boundary rolled back", seq, fixed, runs)
	}
}

// Reproduction 4: with min_samples 3, a canary twice as slow as its
// baseline was promoted ("canary 2.000× baseline (99% CI 1.810×–2.211×),
// within the 10% tolerance"): the exact rank test cannot reach p < 0.05 with
// 3 + 3 observations, and "no significant regression" passed. A PROMOTE
// now needs the data to show the canary within tolerance + detectable
// effect, and the t-test of the log values finds the regression.
func TestRegressPromoteOnEvidence(t *testing.T) {
	cfg := testConfig(t, `
name: three
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 3}
`)
	d := NewData(cfg)
	for _, v := range []float64{95, 100, 105} {
		d.Add(&Record{Metric: "latency", Cohort: Baseline, Value: v})
	}
	for _, v := range []float64{190, 200, 210} {
		d.Add(&Record{Metric: "latency", Cohort: Canary, Value: v})
	}
	for _, seq := range []bool{false, true} {
		v := Judge(d, Options{BakeComplete: true, Sequential: seq})
		if v.Decision == Promote {
			t.Errorf("sequential=%v: PROMOTE of a canary 2× slower: %s", seq, v.Reason)
		}
		if !seq && v.Decision != Rollback {
			t.Errorf("fixed-sample: %s (%s), want ROLLBACK", v.Decision, v.Reason)
		}
	}

	// At 200 + 200 observations a canary at tolerance + detectable effect
	// (1.2×) is promoted in at most 1 − power = 20% of runs.
	cfg = testConfig(t, `
name: x
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 100}
`)
	const runs = 200
	promoted := 0
	for r := range uint64(runs) {
		rng := rand.New(rand.NewPCG(r, 13))
		d := NewData(cfg)
		for c, f := range [2]float64{100, 120} {
			vals := make([]float64, 200)
			for j := range vals {
				vals[j] = f * math.Exp(0.5*rng.NormFloat64())
			}
			d.AddValues(0, Cohort(c), "", time.Time{}, vals)
		}
		if Judge(d, Options{BakeComplete: true}).Decision == Promote {
			promoted++
		}
	}
	t.Logf("a 1.2× canary at 200+200: promoted in %d/%d runs", promoted, runs)
	if promoted > 56 { // 20%: more than 56 of 200 has probability < 0.1%
		t.Errorf("a canary at tolerance + detectable effect was promoted in %d of %d runs", promoted, runs)
	}
}

// rollbackData returns the data of a one-box 28% slower than its
// baseline, past ExactCap observations in each cohort (binned).
func rollbackData(t *testing.T, cfg *Config, factor float64) *Data {
	rng := rand.New(rand.NewPCG(4, 4))
	d := NewData(cfg)
	for c, n := range [2]int{6000, 5000} {
		f := 80.0
		if Cohort(c) == Canary {
			f *= factor
		}
		vals := make([]float64, n)
		for j := range vals {
			vals[j] = f * math.Exp(0.4*rng.NormFloat64())
		}
		if err := d.AddValues(0, Cohort(c), "", time.Time{}, vals); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// Reproduction 5: one value, however extreme, flips no verdict and crashes
// nothing. One baseline value of 1e22 turned a 1.28× regression into a
// PASS (baseline p50 = p99 = 54,400 ms: the low bins were merged relative
// to the cohort's maximum); one canary value of 1e22 rolled back an A/A
// run "at 5.56×"; 1.8e308 panicked the judge. Values are now bounded
// (MaxValue, rejected at ingest), the bins are on a fixed grid, and the
// tests standardize by each stratum's own variance, so that one value moves
// the statistic by about one standard error at most.
func TestRegressExtremeValue(t *testing.T) {
	cfg := testConfig(t, `
name: x
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 100}
`)
	for _, v := range []float64{1e22, 1.7976931348623157e308, math.Inf(1), math.NaN(), -1} {
		if err := NewData(cfg).Check(&Record{Metric: "latency", Cohort: Baseline, Value: v}); err == nil {
			t.Errorf("value %v accepted", v)
		}
	}
	for _, seq := range []bool{false, true} {
		// The regression stays a regression with one baseline value at the
		// bound, and keeps its effect.
		d := rollbackData(t, cfg, 1.28)
		d.AddValues(0, Baseline, "", time.Time{}, []float64{MaxValue})
		v := Judge(d, Options{BakeComplete: true, Sequential: seq})
		b := v.Metrics[0].Baseline
		if v.Decision != Rollback || math.Abs(float64(v.Metrics[0].Effect.Estimate)-1.28) > 0.03 || b.Median > 100 || b.P99 > 300 {
			t.Errorf("sequential=%v, baseline value %g: %s (%s), baseline p50 %v p99 %v", seq, MaxValue, v.Decision, v.Reason, b.Median, b.P99)
		}
		// An A/A run is not rolled back for one canary value at the bound.
		d = rollbackData(t, cfg, 1)
		d.AddValues(0, Canary, "", time.Time{}, []float64{MaxValue})
		if v := Judge(d, Options{BakeComplete: true, Sequential: seq}); v.Decision == Rollback {
			t.Errorf("sequential=%v, canary value %g in an A/A run: %s", seq, MaxValue, v.Reason)
		}
	}
	// Log-Cauchy latencies (no mean, no variance): no panic, no rollback
	// of an A/A run.
	rng := rand.New(rand.NewPCG(6, 6))
	d := NewData(cfg)
	for c := range 2 {
		vals := make([]float64, 5000)
		for j := range vals {
			vals[j] = min(MaxValue, 80*math.Exp(math.Tan(math.Pi*(rng.Float64()-0.5))))
		}
		d.AddValues(0, Cohort(c), "", time.Time{}, vals)
	}
	for _, seq := range []bool{false, true} {
		if v := Judge(d, Options{BakeComplete: true, Sequential: seq}); v.Decision == Rollback {
			t.Errorf("log-Cauchy A/A, sequential=%v: %s", seq, v.Reason)
		}
	}
}

// Reproduction 6: baseline 36 × 0 and 4 × 1, canary 24 × 0 and 16 × 1,
// tolerance 4.0 was rolled back as "canary 1.000× baseline (99% CI
// 1.000×–∞×), beyond the 400% tolerance": the rank test saw more ones, the
// Hodges-Lehmann ratio of zeros and ones said 1. The test and the effect
// are now one ratio of means (4×, within the 5× boundary), and the
// superiority P(canary > baseline) shows what a rank test sees.
func TestRegressDegenerateEffect(t *testing.T) {
	cfg := testConfig(t, `
name: x
metrics:
  - {name: m, category: performance, type: distribution, tolerance: 4.0, critical: true, min_samples: 10}
`)
	d := NewData(cfg)
	for c, ones := range [2]int{4, 16} {
		for j := range 40 {
			v := 0.0
			if j < ones {
				v = 1
			}
			d.Add(&Record{Metric: "m", Cohort: Cohort(c), Value: v})
		}
	}
	for _, seq := range []bool{false, true} {
		v := Judge(d, Options{BakeComplete: true, Sequential: seq})
		r := v.Metrics[0]
		if v.Decision == Rollback || math.Abs(float64(r.Effect.Estimate)-4) > 1e-9 || r.Effect.Kind != KindMeanRatio {
			t.Errorf("sequential=%v: %s, effect %v: %s", seq, v.Decision, r.Effect, v.Reason)
		}
		if want := 0.5 + 0.5*(0.4-0.1); math.Abs(r.Superiority-want) > 1e-12 || math.Abs(float64(r.Canary.NonZero)-0.4) > 1e-12 {
			t.Errorf("superiority %v (want %v), canary non-zero %v", r.Superiority, want, r.Canary.NonZero)
		}
		if !strings.Contains(r.Test, "zeros") {
			t.Errorf("test %q does not say why it avoids logarithms", r.Test)
		}
	}
}

// Reproduction 9: bad_direction decrease with a tolerance of 0.5 or more
// and no detectable_effect was rejected (the default detectable effect,
// the tolerance, made their sum ≥ 1).
func TestRegressDecreaseTolerance(t *testing.T) {
	for _, tol := range []string{"0.5", "0.7", "0.95"} {
		cfg, err := ParseConfig([]byte(`
name: x
metrics:
  - {name: conversions, category: business, type: rate, bad_direction: decrease, tolerance: ` + tol + `}
`))
		if err != nil {
			t.Errorf("tolerance %s: %v", tol, err)
			continue
		}
		m := cfg.Metrics[0]
		if !(m.DetectableEffect > 0 && m.Tolerance+m.DetectableEffect < 1) {
			t.Errorf("tolerance %s: detectable effect %v", tol, m.DetectableEffect)
		}
	}
}
