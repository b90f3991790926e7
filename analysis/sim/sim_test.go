package sim

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// aaScenario is a small A/A-capable scenario with independent requests:
// lognormal latency and 0.5% errors at 1,000 req/min per cohort, 30 min,
// judged with 5-minute window tests.
func aaScenario() Scenario {
	return Scenario{
		Name: "test-aa", Minutes: 30, Instances: [2]int{1, 1}, RequestsPerMinute: [2]float64{1000, 1000},
		Target: Latency, LatencyMedian: 100, LatencySigma: 0.5, HasErrors: true, ErrorRate: 0.005,
		ConfigWindow: 5 * time.Minute,
	}
}

func policies(names ...string) []PolicySpec {
	var out []PolicySpec
	for _, p := range Policies() {
		for _, n := range names {
			if p.Name == n {
				out = append(out, p)
			}
		}
	}
	return out
}

func cell(t *testing.T, r *Report, scenario, policy string, effect float64) Cell {
	t.Helper()
	for _, c := range r.Cells {
		if c.Scenario == scenario && c.Policy == policy && c.Effect == effect {
			return c
		}
	}
	t.Fatalf("no cell %s/%s/%v", scenario, policy, effect)
	return Cell{}
}

// TestAAFalseRollback checks, on the same 200 seeded runs, that the
// fixed-sample judge looking once at the end keeps its level on A/A and at
// the tolerance boundary (a latency regression of exactly 1× tolerance,
// which H0 includes), as does the sequential judge looking after every
// batch — at most the 99.9% quantile of Binomial(200, α) rollbacks, a
// statistical bound that fails by chance with probability ≤ 0.1% if the
// level holds — and that the Kayenta-style policy judged every minute rolls
// back A/A runs clearly more often than its nominal 2% per look: the
// peeking problem.
func TestAAFalseRollback(t *testing.T) {
	t.Parallel()
	const runs = 200
	sc := aaScenario()
	sc.Minutes = 20
	rep, err := Run(context.Background(), Options{
		Runs: runs, Seed: 20261125, Scenarios: []Scenario{sc},
		Policies: policies(PolicyFixedEnd, PolicyKayenta, PolicySeq), Effects: []float64{0, 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	alpha := 0.01
	// The 99.9% quantile of Binomial(runs, α): 8, as R qbinom(0.999, 200, 0.01).
	bin := distuv.Binomial{N: runs, P: alpha}
	bound := 0.0
	for bin.CDF(bound) < 0.999 {
		bound++
	}
	for _, p := range []string{PolicyFixedEnd, PolicySeq} {
		for _, eff := range []float64{0, 1} {
			c := cell(t, rep, sc.Name, p, eff)
			if float64(c.Rollback.K) > bound {
				t.Errorf("%s, effect %v× tolerance: %d/%d runs rolled back, above the bound %v for α = %v", p, eff, c.Rollback.K, runs, bound, alpha)
			}
			t.Logf("%s, effect %v×: rollback %.3f [%.3f, %.3f]", p, eff, c.Rollback.Rate, c.Rollback.Lower, c.Rollback.Upper)
		}
	}
	k := cell(t, rep, sc.Name, PolicyKayenta, 0)
	if k.Rollback.Lower <= 1-KayentaConfidence {
		t.Errorf("kayenta under continuous judging: A/A rollback %v [%v, %v]; want the interval above its per-look level %v",
			k.Rollback.Rate, k.Rollback.Lower, k.Rollback.Upper, 1-KayentaConfidence)
	}
	t.Logf("kayenta A/A: rollback %.3f [%.3f, %.3f]", k.Rollback.Rate, k.Rollback.Lower, k.Rollback.Upper)
}

// TestDeterministic checks that the report depends on the seed and not on
// the number of workers, and that a scenario's data do not depend on which
// other scenarios are simulated with it.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	all := Scenarios()
	small := []Scenario{all[1], all[8]} // errors, instances
	for i := range small {
		small[i].Minutes = 12
	}
	run := func(seed uint64, workers int, sc []Scenario) []byte {
		rep, err := Run(context.Background(), Options{Runs: 12, Seed: seed, Scenarios: sc, Policies: Policies(), Effects: []float64{0, 4}, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		var cells []Cell
		for _, c := range rep.Cells {
			if c.Scenario == small[1].Name {
				cells = append(cells, c)
			}
		}
		b, err := json.Marshal(cells)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := run(7, 1, small), run(7, 3, small)
	if string(a) != string(b) {
		t.Errorf("same seed, different workers: reports differ\n%s\n%s", a, b)
	}
	if c := run(7, 2, small[1:]); string(a) != string(c) {
		t.Errorf("a scenario's figures depend on the other scenarios simulated")
	}
	if d := run(8, 2, small); string(a) == string(d) {
		t.Errorf("different seeds gave the same report")
	}
}

// TestScenarios checks every classic built-in scenario's config and that a
// strong regression is caught by the fixed judge (a smoke test of the
// generators and of the effect's direction). The messy scenarios are the
// conditions under which issue 9 found the judge failing: their figures
// are the targets of SIMULATION.md, not asserted here; the generators'
// behaviour is tested on the raw data (TestEffectDirection and below).
func TestScenarios(t *testing.T) {
	t.Parallel()
	var sc []Scenario
	for _, s := range Scenarios() {
		if s.Group == GroupClassic {
			sc = append(sc, s)
		}
	}
	for i := range sc {
		sc[i].Minutes = min(sc[i].Minutes, 12)
		sc[i].RampStart, sc[i].RampMinutes = min(sc[i].RampStart, 2), min(sc[i].RampMinutes, 2)
	}
	rep, err := Run(context.Background(), Options{Runs: 4, Seed: 3, Scenarios: sc, Policies: policies(PolicyFixedEnd), Effects: []float64{15}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Cells {
		if c.Rollback.K != c.Runs {
			t.Errorf("%s: a regression of 15× tolerance rolled back %d of %d runs", c.Scenario, c.Rollback.K, c.Runs)
		}
	}
}

func TestOptionsInvalid(t *testing.T) {
	t.Parallel()
	ok := Options{Runs: 1, Scenarios: Scenarios()[:1], Policies: Policies()}
	for name, mod := range map[string]func(*Options){
		"runs":      func(o *Options) { o.Runs = 0 },
		"scenarios": func(o *Options) { o.Scenarios = nil },
		"policies":  func(o *Options) { o.Policies = nil },
		"effect":    func(o *Options) { o.Effects = []float64{-1} },
		"workers":   func(o *Options) { o.Workers = -1 },
		"new":       func(o *Options) { o.Policies = []PolicySpec{{Name: "x"}} },
	} {
		o := ok
		mod(&o)
		if _, err := Run(context.Background(), o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: err = %v, want ErrOptions", name, err)
		}
	}
	bad := Scenarios()[:1]
	bad[0].Target = "nope"
	if _, err := Run(context.Background(), Options{Runs: 1, Scenarios: bad, Policies: Policies()}); err == nil {
		t.Error("unknown target: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, ok); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

// TestWilson compares with R 4.2 prop.test(k, n, correct = FALSE)$conf.int.
func TestWilson(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		k, n   int
		lo, hi float64
	}{
		{2, 200, 0.00274665813354, 0.03572176171618},
		{17, 50, 0.224369492225, 0.478461739498},
		{0, 200, 0, 0.0188453263773},
	} {
		r := Wilson(tc.k, tc.n)
		if math.Abs(r.Lower-tc.lo) > 1e-10 || math.Abs(r.Upper-tc.hi) > 1e-10 {
			t.Errorf("Wilson(%d, %d) = [%v, %v], want [%v, %v]", tc.k, tc.n, r.Lower, r.Upper, tc.lo, tc.hi)
		}
	}
}

// TestQuantilesOf checks the order statistics on 1..100: the median is
// x_(50), its interval ranks ⌊50 − 9.8⌋ = 40 and ⌈50 + 9.8⌉ + 1 = 61; the
// p90 is x_(90) with ranks ⌊90 − 5.88⌋ = 84 and ⌈90 + 5.88⌉ + 1 = 97.
func TestQuantilesOf(t *testing.T) {
	t.Parallel()
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i)
	}
	q := QuantilesOf(xs)
	want := Quantiles{N: 100, Median: 50, MedianLo: 40, MedianHi: 61, P90: 90, P90Lo: 84, P90Hi: 97}
	if q != want {
		t.Errorf("QuantilesOf(1..100) = %+v, want %+v", q, want)
	}
	if q := QuantilesOf(nil); q != (Quantiles{}) {
		t.Errorf("QuantilesOf(nil) = %+v", q)
	}
}

// TestDrawsMoments checks the count generators' mean and variance.
func TestDrawsMoments(t *testing.T) {
	t.Parallel()
	rng := newTestRand()
	for _, tc := range []struct {
		name   string
		draw   func() float64
		mu, v2 float64
	}{
		{"poisson(5)", func() float64 { return poisson(rng, 5) }, 5, 5},
		{"poisson(1000)", func() float64 { return poisson(rng, 1000) }, 1000, 1000},
		{"binomial(1000, .005)", func() float64 { return binomial(rng, 1000, 0.005) }, 5, 1000 * 0.005 * 0.995},
		{"binomial(500, .7)", func() float64 { return binomial(rng, 500, 0.7) }, 350, 500 * 0.7 * 0.3},
	} {
		const n = 20000
		var s, s2 float64
		for range n {
			x := tc.draw()
			s += x
			s2 += x * x
		}
		mean := s / n
		v := s2/n - mean*mean
		if math.Abs(mean-tc.mu) > 5*math.Sqrt(tc.v2/n) || math.Abs(v/tc.v2-1) > 0.05 {
			t.Errorf("%s: mean %v variance %v, want %v and %v", tc.name, mean, v, tc.mu, tc.v2)
		}
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// TestMedian compares the quickselect median with sorting.
func TestMedian(t *testing.T) {
	t.Parallel()
	rng := newTestRand()
	for n := 1; n < 60; n++ {
		for range 20 {
			vs := make([]float64, n)
			for i := range vs {
				vs[i] = math.Round(rng.Float64() * 10) // with ties
			}
			s := slices.Clone(vs)
			slices.Sort(s)
			want := s[n/2]
			if n%2 == 0 {
				want = (s[n/2-1] + s[n/2]) / 2
			}
			if got := median(vs); got != want {
				t.Fatalf("median(%v) = %v, want %v", s, got, want)
			}
		}
	}
}
