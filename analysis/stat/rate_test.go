package stat

import (
	"fmt"
	"github.com/canaryd/canaryd/internal/refvec"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// rwNum is a number of a reference file (refvec.Num).
type rwNum = refvec.Num

// rwLoad decodes the JSON file testdata/name into v.
func rwLoad(t *testing.T, name string, v any) {
	t.Helper()
	refvec.Load(t, "testdata/"+name, v)
}

// rwClose reports whether got is within rel·|want| of want (plus an
// absolute 1e-290 for values that underflow); infinities must match.
func rwClose(got, want, rel float64) bool {
	if math.IsInf(want, 0) || math.IsInf(got, 0) {
		return got == want
	}
	if math.IsNaN(want) || math.IsNaN(got) {
		return math.IsNaN(want) && math.IsNaN(got)
	}
	return math.Abs(got-want) <= rel*math.Abs(want)+1e-290
}

func rwAlt(t *testing.T, s string) Alternative {
	switch s {
	case "two.sided":
		return TwoSided
	case "greater":
		return Greater
	case "less":
		return Less
	}
	t.Fatalf("unknown alternative %q", s)
	return 0
}

type rwRateVectors struct {
	Tools     map[string]string `json:"tools"`
	Tolerance struct {
		PRel          float64 `json:"p_rel"`
		CIRelR        float64 `json:"ci_rel_r"`
		ThetaAbsScipy float64 `json:"theta_abs_scipy"`
		TailRel       float64 `json:"tail_rel"`
	} `json:"tolerance"`
	Cases []struct {
		ID        string  `json:"id"`
		CountB    float64 `json:"count_b"`
		ExposureB float64 `json:"exposure_b"`
		CountC    float64 `json:"count_c"`
		ExposureC float64 `json:"exposure_c"`
		Ratio0    float64 `json:"ratio0"`
		Alt       string  `json:"alt"`
		Conf      float64 `json:"conf"`
		R         struct {
			P, Lower, Upper, Ratio, Theta0 rwNum
		} `json:"r"`
		Scipy struct {
			P          rwNum `json:"p"`
			ThetaLower rwNum `json:"theta_lower"`
			ThetaUpper rwNum `json:"theta_upper"`
		} `json:"scipy"`
	} `json:"cases"`
	BinomTails []struct {
		K, N, P    float64
		RLower     rwNum `json:"r_lower"`
		RUpper     rwNum `json:"r_upper"`
		ScipyLower rwNum `json:"scipy_lower"`
		ScipyUpper rwNum `json:"scipy_upper"`
	} `json:"binom_tails"`
}

// TestRateTestVectors compares RateTest with R's poisson.test and scipy's
// binomtest (testdata/rate_vectors.json, made by
// testdata/gen/rate_student.py; tools and tolerances are recorded there:
// 1e-9 relative for p-values and R's interval, which are exact
// computations on both sides; 1e-11 absolute on the θ scale against
// scipy's interval, which is a brentq root with absolute xtol 2e-12).
func TestRateTestVectors(t *testing.T) {
	t.Parallel()
	var v rwRateVectors
	rwLoad(t, "rate_vectors.json", &v)
	if len(v.Cases) < 100 {
		t.Fatalf("only %d cases", len(v.Cases))
	}
	tol := v.Tolerance
	for _, c := range v.Cases {
		got := RateTest(c.CountB, c.ExposureB, c.CountC, c.ExposureC, c.Ratio0, rwAlt(t, c.Alt), c.Conf)
		want := c.R
		if !rwClose(got.P, float64(want.P), tol.PRel) {
			t.Errorf("%s: P = %.17g, R %.17g", c.ID, got.P, float64(want.P))
		}
		if !rwClose(got.P, float64(c.Scipy.P), tol.PRel) {
			t.Errorf("%s: P = %.17g, scipy %.17g", c.ID, got.P, float64(c.Scipy.P))
		}
		if !rwClose(got.Lower, float64(want.Lower), tol.CIRelR) || !rwClose(got.Upper, float64(want.Upper), tol.CIRelR) {
			t.Errorf("%s: CI = [%.17g, %.17g], R [%.17g, %.17g]", c.ID, got.Lower, got.Upper, float64(want.Lower), float64(want.Upper))
		}
		if !rwClose(got.Ratio, float64(want.Ratio), 1e-15) {
			t.Errorf("%s: Ratio = %.17g, R %.17g", c.ID, got.Ratio, float64(want.Ratio))
		}
		if got.Theta0 != float64(want.Theta0) {
			t.Errorf("%s: Theta0 = %.17g, R %.17g", c.ID, got.Theta0, float64(want.Theta0))
		}
		// scipy's interval is on the θ scale.
		theta := func(r float64) float64 {
			if math.IsInf(r, 1) {
				return 1
			}
			return r * c.ExposureC / (r*c.ExposureC + c.ExposureB)
		}
		if math.Abs(theta(got.Lower)-float64(c.Scipy.ThetaLower)) > tol.ThetaAbsScipy ||
			math.Abs(theta(got.Upper)-float64(c.Scipy.ThetaUpper)) > tol.ThetaAbsScipy {
			t.Errorf("%s: θ CI = [%.17g, %.17g], scipy [%.17g, %.17g]", c.ID, theta(got.Lower), theta(got.Upper),
				float64(c.Scipy.ThetaLower), float64(c.Scipy.ThetaUpper))
		}
	}
}

// TestBinomialTailVectors compares BinomialTail with R's pbinom and
// scipy's binom.cdf/sf (testdata/rate_vectors.json, 1e-9 relative).
func TestBinomialTailVectors(t *testing.T) {
	t.Parallel()
	var v rwRateVectors
	rwLoad(t, "rate_vectors.json", &v)
	for _, c := range v.BinomTails {
		lo, up := BinomialTail(c.K, c.N, c.P, Less), BinomialTail(c.K, c.N, c.P, Greater)
		for _, w := range []struct {
			name      string
			got, want float64
		}{
			{"R lower", lo, float64(c.RLower)}, {"R upper", up, float64(c.RUpper)},
			{"scipy lower", lo, float64(c.ScipyLower)}, {"scipy upper", up, float64(c.ScipyUpper)},
		} {
			if !rwClose(w.got, w.want, v.Tolerance.TailRel) {
				t.Errorf("k=%g n=%g p=%g: %s = %.17g, want %.17g", c.K, c.N, c.P, w.name, w.got, w.want)
			}
		}
	}
}

// TestRateTestHand checks cases that can be worked out by hand. With
// exposures 9:1 (ρ = 0.1) and r₀ = 1, θ₀ = 0.1 and X ~ Binomial(N, 0.1).
func TestRateTestHand(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	// r = θ/(1−θ) · exposureB/exposureC.
	r := func(theta, scale float64) float64 { return theta / (1 - theta) * scale }
	for _, c := range []struct {
		name           string
		cB, eB, cC, eC float64
		ratio0         float64
		alt            Alternative
		conf           float64
		want           RateResult
	}{{
		// N = 1, x = 1: Pr(X ≥ 1) = 0.1. Two-sided: Pr(X=0) = 0.9 > 0.1,
		// so only x itself counts. Lower bound θ: θ¹ = α.
		name: "one canary event, greater", cB: 0, eB: 9, cC: 1, eC: 1, ratio0: 1, alt: Greater, conf: 0.95,
		want: RateResult{Ratio: inf, Lower: r(0.05, 9), Upper: inf, P: 0.1, Theta0: 0.1},
	}, {
		name: "one canary event, two-sided", cB: 0, eB: 9, cC: 1, eC: 1, ratio0: 1, alt: TwoSided, conf: 0.95,
		want: RateResult{Ratio: inf, Lower: r(0.025, 9), Upper: inf, P: 0.1, Theta0: 0.1},
	}, {
		// N = 2, x = 2: Pr(X = 2) = 0.01.
		name: "two canary events", cB: 0, eB: 9, cC: 2, eC: 1, ratio0: 1, alt: TwoSided, conf: 0.95,
		want: RateResult{Ratio: inf, Lower: r(math.Sqrt(0.025), 9), Upper: inf, P: 0.01, Theta0: 0.1},
	}, {
		// N = 2, x = 0: Pr(X ≤ 0) = 0.81; upper bound (1−θ)² = 0.05.
		name: "two baseline events, less", cB: 2, eB: 9, cC: 0, eC: 1, ratio0: 1, alt: Less, conf: 0.95,
		want: RateResult{Ratio: 0, Lower: 0, Upper: r(1-math.Sqrt(0.05), 9), P: 0.81, Theta0: 0.1},
	}, {
		// N = 2, x = 1, equal exposures: θ₀ = ½, x = m, P = 1.
		name: "balanced", cB: 1, eB: 5, cC: 1, eC: 5, ratio0: 1, alt: TwoSided, conf: 0.95,
		want: RateResult{Ratio: 1, Lower: r(1-math.Sqrt(0.975), 1), Upper: r(math.Sqrt(0.975), 1), P: 1, Theta0: 0.5},
	}, {
		// r₀ = 9 with ρ = 0.1 makes θ₀ = ½: Pr(X ≥ 2; N=2) = ¼.
		name: "ratio0 9", cB: 0, eB: 9, cC: 2, eC: 1, ratio0: 9, alt: Greater, conf: 0.95,
		want: RateResult{Ratio: inf, Lower: r(math.Sqrt(0.05), 9), Upper: inf, P: 0.25, Theta0: 0.5},
	}, {
		// N = 3, θ₀ = ½, x = 0: two-sided Pr(X=0) + Pr(X=3) = ¼.
		name: "symmetric two-sided", cB: 3, eB: 2, cC: 0, eC: 2, ratio0: 1, alt: TwoSided, conf: 0.9,
		want: RateResult{Ratio: 0, Lower: 0, Upper: r(1-math.Cbrt(0.05), 1), P: 0.25, Theta0: 0.5},
	}} {
		got := RateTest(c.cB, c.eB, c.cC, c.eC, c.ratio0, c.alt, c.conf)
		w := c.want
		if !rwClose(got.Ratio, w.Ratio, 1e-14) || !rwClose(got.P, w.P, 1e-14) || !rwClose(got.Theta0, w.Theta0, 1e-15) ||
			!rwClose(got.Lower, w.Lower, 1e-12) || !rwClose(got.Upper, w.Upper, 1e-12) {
			t.Errorf("%s: got %+v, want %+v", c.name, got, w)
		}
	}
}

// TestRateTestSpecialCases checks the documented results for data without
// information.
func TestRateTestSpecialCases(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	for _, c := range []struct {
		name           string
		cB, eB, cC, eC float64
		want           RateResult
	}{
		{"no events", 0, 900, 0, 100, RateResult{Ratio: 1, Lower: 0, Upper: inf, P: 1, Theta0: 0.1}},
		{"no canary exposure", 3, 900, 0, 0, RateResult{Ratio: 1, Lower: 0, Upper: inf, P: 1}},
		{"no baseline exposure", 0, 0, 1, 100, RateResult{Ratio: 1, Lower: 0, Upper: inf, P: 1}},
		{"negative count", -1, 900, 1, 100, RateResult{Ratio: 1, Lower: 0, Upper: inf, P: 1}},
		{"NaN count", math.NaN(), 900, 1, 100, RateResult{Ratio: 1, Lower: 0, Upper: inf, P: 1}},
		{"infinite exposure", 1, inf, 1, 100, RateResult{Ratio: 1, Lower: 0, Upper: inf, P: 1}},
	} {
		for _, alt := range []Alternative{TwoSided, Greater, Less} {
			if got := RateTest(c.cB, c.eB, c.cC, c.eC, 1, alt, 0.95); got != c.want {
				t.Errorf("%s, %v: got %+v, want %+v", c.name, alt, got, c.want)
			}
		}
	}
	// Extreme exposures: no NaN, whatever overflows.
	for _, e := range [][2]float64{{1e300, 1e-300}, {1e-300, 1e300}, {5e-324, 1}, {1e308, 1e308}} {
		for _, cs := range [][2]float64{{0, 3}, {3, 0}, {2, 5}} {
			for _, alt := range []Alternative{TwoSided, Greater, Less} {
				r := RateTest(cs[0], e[0], cs[1], e[1], 1, alt, 0.95)
				if math.IsNaN(r.Ratio) || math.IsNaN(r.Lower) || math.IsNaN(r.Upper) || math.IsNaN(r.P) || math.IsNaN(r.Theta0) {
					t.Errorf("exposures %g, %g, counts %v, %v: %+v", e[0], e[1], cs, alt, r)
				}
			}
		}
	}
	// Counts are rounded.
	if a, b := RateTest(90.2, 900, 24.8, 100, 1, TwoSided, 0.95), RateTest(90, 900, 25, 100, 1, TwoSided, 0.95); a.P != b.P || a.Lower != b.Lower {
		t.Errorf("rounding: %+v vs %+v", a, b)
	}
}

// TestRateTestDuality checks that the p-value and the interval agree: at
// the interval's end points the one-sided tests have p = 1 − confLevel.
func TestRateTestDuality(t *testing.T) {
	t.Parallel()
	for _, c := range [][4]float64{{90, 9e5, 25, 1e5}, {900, 9e5, 130, 1e5}, {3, 1, 1, 1}, {9e6, 9e9, 1.0003e6, 1e9}, {0, 99, 4, 1}} {
		for _, conf := range []float64{0.9, 0.99} {
			g := RateTest(c[0], c[1], c[2], c[3], 1, Greater, conf)
			if p := RateTest(c[0], c[1], c[2], c[3], g.Lower, Greater, conf).P; !rwClose(p, 1-conf, 1e-9) {
				t.Errorf("%v: Greater p at Lower %.17g = %.17g, want %g", c, g.Lower, p, 1-conf)
			}
			if c[0] == 0 {
				continue // Upper = +Inf
			}
			l := RateTest(c[0], c[1], c[2], c[3], 1, Less, conf)
			if p := RateTest(c[0], c[1], c[2], c[3], l.Upper, Less, conf).P; !rwClose(p, 1-conf, 1e-9) {
				t.Errorf("%v: Less p at Upper %.17g = %.17g, want %g", c, l.Upper, p, 1-conf)
			}
		}
	}
}

// TestBinomialTestHand checks the exact binomial test behind RateTest and
// ClopperPearson by hand:
// Binomial(4, ½) has densities 1, 4, 6, 4, 1 over 16.
func TestBinomialTestHand(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		k, n, p float64
		alt     Alternative
		want    float64
	}{
		{0, 4, 0.5, TwoSided, 2.0 / 16},
		{1, 4, 0.5, TwoSided, 10.0 / 16},
		{2, 4, 0.5, TwoSided, 1},
		{3, 4, 0.5, Greater, 5.0 / 16},
		{3, 4, 0.5, Less, 15.0 / 16},
		{0, 0, 0.3, TwoSided, 1},
		{0, 5, 0, TwoSided, 1},
		{1, 5, 0, TwoSided, 0},
		{5, 5, 1, TwoSided, 1},
		// Binomial(3, 0.1): 0.729, 0.243, 0.027, 0.001; x = 2: 0.027 + 0.001.
		{2, 3, 0.1, TwoSided, 0.028},
	} {
		if got := binomTestPQ(c.k, c.n, c.p, 1-c.p, c.alt); !rwClose(got, c.want, 1e-14) {
			t.Errorf("binomial test (%g, %g, %g, %v) = %.17g, want %.17g", c.k, c.n, c.p, c.alt, got, c.want)
		}
	}
	// k = n: lower bound α^{1/n}; k = 0: upper bound 1 − α^{1/n}.
	lo, hi := ClopperPearson(4, 4, TwoSided, 0.95)
	if !rwClose(lo, math.Pow(0.025, 0.25), 1e-14) || hi != 1 {
		t.Errorf("ClopperPearson(4, 4) = [%g, %g]", lo, hi)
	}
	lo, hi = ClopperPearson(0, 4, Less, 0.95)
	if lo != 0 || !rwClose(hi, 1-math.Pow(0.05, 0.25), 1e-14) {
		t.Errorf("ClopperPearson(0, 4, Less) = [%g, %g]", lo, hi)
	}
	// k = 1, n = 2, two-sided 90%: Pr(X ≥ 1) = 1 − (1−θ)² = 0.05 and
	// Pr(X ≤ 1) = 1 − θ² = 0.05.
	lo, hi = ClopperPearson(1, 2, TwoSided, 0.9)
	if !rwClose(lo, 1-math.Sqrt(0.95), 1e-13) || !rwClose(hi, math.Sqrt(0.95), 1e-14) {
		t.Errorf("ClopperPearson(1, 2) = [%.17g, %.17g]", lo, hi)
	}
}

// TestRatePanics checks that misuse panics with the package prefix.
func TestRatePanics(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func(){
		"ratio0 negative":  func() { RateTest(1, 1, 1, 1, -1, TwoSided, 0.95) },
		"ratio0 NaN":       func() { RateTest(1, 1, 1, 1, math.NaN(), TwoSided, 0.95) },
		"ratio0 Inf":       func() { RateTest(1, 1, 1, 1, math.Inf(1), TwoSided, 0.95) },
		"conf 1":           func() { RateTest(1, 1, 1, 1, 1, TwoSided, 1) },
		"conf NaN":         func() { RateTest(1, 1, 1, 1, 1, TwoSided, math.NaN()) },
		"alternative":      func() { RateTest(1, 1, 1, 1, 1, Alternative(7), 0.95) },
		"tail p":           func() { BinomialTail(1, 2, 1.5, Less) },
		"tail two-sided":   func() { BinomialTail(1, 2, 0.5, TwoSided) },
		"clopper n = 0":    func() { ClopperPearson(0, 0, TwoSided, 0.95) },
		"clopper conf 1.5": func() { ClopperPearson(0, 1, TwoSided, 1.5) },
	} {
		func() {
			defer func() {
				r := recover()
				if s, ok := r.(string); !ok || !strings.HasPrefix(s, "stat: ") {
					t.Errorf("%s: recovered %v, want a stat panic", name, r)
				}
			}()
			f()
		}()
	}
}

// BenchmarkRateTest times RateTest (two-sided p-value and interval) from a
// handful of events to ten million, with the canary at 10% of exposure.
func BenchmarkRateTest(b *testing.B) {
	for _, c := range []struct {
		name   string
		cB, cC float64
	}{
		{"N=115", 90, 25},
		{"N=1e4", 9000, 1100},
		{"N=1e6", 9e5, 1.003e5},
		{"N=1e7", 9e6, 1.0003e6},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				RateTest(c.cB, 9e9, c.cC, 1e9, 1, TwoSided, 0.95)
			}
		})
	}
}

// TestRateTestProperties checks, on seeded random inputs from one event to
// ten million and canary shares from 1e-4 to 0.9, that results are never
// NaN, P is in [0, 1], the interval holds the estimate, and a wider
// confidence level gives a wider interval.
func TestRateTestProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		n := math.Floor(math.Exp(rng.Float64() * math.Log(1e7)))
		rho := math.Exp(math.Log(1e-4) + rng.Float64()*(math.Log(0.9)-math.Log(1e-4)))
		cC := math.Floor(rng.Float64() * (n + 1))
		if i%3 == 0 { // near the null
			cC = math.Round(n * rho)
		}
		eC := 1e3 + rng.Float64()*1e9
		eB := eC * (1 - rho) / rho
		ratio0 := []float64{1, 1.2, 0.8, 2}[i%4]
		alt := []Alternative{TwoSided, Greater, Less}[i%3]
		a := RateTest(n-cC, eB, cC, eC, ratio0, alt, 0.95)
		b := RateTest(n-cC, eB, cC, eC, ratio0, alt, 0.99)
		id := fmt.Sprintf("cB=%g eB=%g cC=%g eC=%g r0=%g %v", n-cC, eB, cC, eC, ratio0, alt)
		for _, v := range []float64{a.Ratio, a.Lower, a.Upper, a.P, a.Theta0} {
			if math.IsNaN(v) {
				t.Fatalf("%s: NaN in %+v", id, a)
			}
		}
		if a.P < 0 || a.P > 1 || a.P != b.P {
			t.Errorf("%s: P = %g / %g", id, a.P, b.P)
		}
		if !(a.Lower <= a.Ratio*(1+1e-12) && a.Ratio <= a.Upper*(1+1e-12)) {
			t.Errorf("%s: Ratio %g outside [%g, %g]", id, a.Ratio, a.Lower, a.Upper)
		}
		if !(b.Lower <= a.Lower && a.Upper <= b.Upper) {
			t.Errorf("%s: 99%% [%g, %g] inside 95%% [%g, %g]", id, b.Lower, b.Upper, a.Lower, a.Upper)
		}
	}
}
