package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

type rwWelchVectors struct {
	Tools     map[string]string `json:"tools"`
	Tolerance struct {
		Rel         float64 `json:"rel"`
		FiellerAbs  float64 `json:"fieller_abs"`
		MomentsRel  float64 `json:"moments_rel"`
		Description string  `json:"note"`
	} `json:"tolerance"`
	Samples map[string][]float64 `json:"samples"`
	Moments []struct {
		Sample       string
		N, Mean, Var rwNum
	} `json:"moments"`
	Cases []struct {
		ID, X, Y, Kind, Alt string
		Mu, C, Conf         float64
		R                   struct{ T, DF, P, Lower, Upper, Diff rwNum } `json:"r"`
		Scipy               struct{ T, P rwNum }                         `json:"scipy"`
	} `json:"cases"`
	Fieller []struct {
		ID, X, Y, Alt string
		Conf          float64
		RelLower      rwNum `json:"rel_lower"`
		RelUpper      rwNum `json:"rel_upper"`
	} `json:"fieller"`
	StatsCases []struct {
		ID, Alt                          string
		NX, MX, VX, NY, MY, VY, Mu, Conf float64
		R                                struct{ T, DF, P, Lower, Upper rwNum } `json:"r"`
		Scipy                            struct{ T, P rwNum }                   `json:"scipy"`
	} `json:"stats_cases"`
}

// rwMoments accumulates a sample with Moments.Add.
func rwMoments(xs []float64) Moments {
	var m Moments
	for _, x := range xs {
		m.Add(x)
	}
	return m
}

// TestWelchVectors compares WelchTest and WelchContrastTest with R's
// t.test and scipy's ttest_ind (testdata/welch_vectors.json, made by
// testdata/gen/rate_welch.py; t, df, p and the interval to 1e-9 relative,
// all being exact computations).
func TestWelchVectors(t *testing.T) {
	t.Parallel()
	var v rwWelchVectors
	rwLoad(t, "welch_vectors.json", &v)
	if len(v.Cases) < 100 {
		t.Fatalf("only %d cases", len(v.Cases))
	}
	tol := v.Tolerance.Rel
	for _, c := range v.Cases {
		x, y := rwMoments(v.Samples[c.X]), rwMoments(v.Samples[c.Y])
		alt := rwAlt(t, c.Alt)
		var got WelchResult
		if c.Kind == "welch" {
			got = WelchTest(x, y, c.Mu, alt, c.Conf)
		} else {
			got = WelchContrastTest(x, y, c.C, alt, c.Conf)
		}
		r := c.R
		for _, w := range []struct {
			name      string
			got, want float64
		}{
			{"T", got.T, float64(r.T)}, {"DF", got.DF, float64(r.DF)}, {"P", got.P, float64(r.P)},
			{"Lower", got.Lower, float64(r.Lower)}, {"Upper", got.Upper, float64(r.Upper)},
			{"Diff", got.Diff, float64(r.Diff)},
			{"T (scipy)", got.T, float64(c.Scipy.T)}, {"P (scipy)", got.P, float64(c.Scipy.P)},
		} {
			if !rwClose(w.got, w.want, tol) {
				t.Errorf("%s: %s = %.17g, want %.17g", c.ID, w.name, w.got, w.want)
			}
		}
	}
}

// TestWelchStatsVectors compares WelchTest on summary statistics of large
// samples (n up to 1e7, df up to 2e7) with t.test's formulas in R and with
// scipy's ttest_ind_from_stats, to 1e-9 relative.
func TestWelchStatsVectors(t *testing.T) {
	t.Parallel()
	var v rwWelchVectors
	rwLoad(t, "welch_vectors.json", &v)
	for _, c := range v.StatsCases {
		x := Moments{N: c.NX, Mean: c.MX, M2: c.VX * (c.NX - 1)}
		y := Moments{N: c.NY, Mean: c.MY, M2: c.VY * (c.NY - 1)}
		got := WelchTest(x, y, c.Mu, rwAlt(t, c.Alt), c.Conf)
		r := c.R
		for _, w := range []struct {
			name      string
			got, want float64
		}{
			{"T", got.T, float64(r.T)}, {"DF", got.DF, float64(r.DF)}, {"P", got.P, float64(r.P)},
			{"Lower", got.Lower, float64(r.Lower)}, {"Upper", got.Upper, float64(r.Upper)},
			{"T (scipy)", got.T, float64(c.Scipy.T)}, {"P (scipy)", got.P, float64(c.Scipy.P)},
		} {
			if !rwClose(w.got, w.want, v.Tolerance.Rel) {
				t.Errorf("%s: %s = %.17g, want %.17g", c.ID, w.name, w.got, w.want)
			}
		}
	}
}

// TestWelchFiellerVectors compares the relative interval with the set of
// ratios that R's t.test(x, c*y) does not reject, located with uniroot
// (testdata/welch_vectors.json; 1e-9 absolute, uniroot's tolerance being
// 1e-15 on c).
func TestWelchFiellerVectors(t *testing.T) {
	t.Parallel()
	var v rwWelchVectors
	rwLoad(t, "welch_vectors.json", &v)
	for _, c := range v.Fieller {
		x, y := rwMoments(v.Samples[c.X]), rwMoments(v.Samples[c.Y])
		got := WelchTest(x, y, 0, rwAlt(t, c.Alt), c.Conf)
		for _, w := range []struct {
			name      string
			got, want float64
		}{{"RelLower", got.RelLower, float64(c.RelLower)}, {"RelUpper", got.RelUpper, float64(c.RelUpper)}} {
			if math.IsInf(w.want, 0) || math.IsInf(w.got, 0) {
				if w.got != w.want {
					t.Errorf("%s: %s = %g, want %g", c.ID, w.name, w.got, w.want)
				}
				continue
			}
			if math.Abs(w.got-w.want) > v.Tolerance.FiellerAbs*math.Max(1, math.Abs(w.want)) {
				t.Errorf("%s: %s = %.17g, want %.17g", c.ID, w.name, w.got, w.want)
			}
		}
	}
}

// TestWelchFiellerDuality checks that Fieller's interval is the set of
// ratios the contrast test does not reject: at each finite end point the
// contrast test's p-value is 1 − confLevel, including tiny samples where
// the fixed-point iteration on the degrees of freedom may need the
// bisection fallback.
func TestWelchFiellerDuality(t *testing.T) {
	t.Parallel()
	samples := [][2][]float64{
		{{10, 12, 11, 13, 9, 14}, {9, 10, 9.5, 10.5}},
		{{3.1, 2.7}, {2, 2.2}},
		{{5, 9, 7}, {4, 4.1, 3.9, 4.2, 4.05, 3.95, 4}},
		{{-5.5, -6, -4, -5}, {-4, -4.4, -3.9, -4.1, -4.2}},
		{{101, 99, 104, 98, 100}, {50, 80, 20, 70, 55, 45}},
	}
	for i, s := range samples {
		x, y := rwMoments(s[0]), rwMoments(s[1])
		for _, alt := range []Alternative{TwoSided, Greater, Less} {
			for _, conf := range []float64{0.8, 0.95, 0.99} {
				w := WelchTest(x, y, 0, alt, conf)
				want := 1 - conf
				for _, e := range []struct {
					name string
					rel  float64
					alt  Alternative
				}{{"lower", w.RelLower, alt}, {"upper", w.RelUpper, alt}} {
					if math.IsInf(e.rel, 0) {
						continue
					}
					p := WelchContrastTest(x, y, 1+e.rel, e.alt, conf).P
					if !rwClose(p, want, 1e-8) {
						t.Errorf("sample %d %v conf %g: contrast p at %s end %.17g = %.17g, want %g", i, alt, conf, e.name, e.rel, p, want)
					}
				}
				if w.RelLower > w.Rel || w.RelUpper < w.Rel {
					t.Errorf("sample %d %v conf %g: Rel %g outside [%g, %g]", i, alt, conf, w.Rel, w.RelLower, w.RelUpper)
				}
			}
		}
	}
}

// TestWelchHand checks cases with closed forms. With one sample constant
// the Welch df is n − 1 of the other; for df = 1 (Cauchy)
// Pr(T > t) = ½ − atan(t)/π and the quantile is tan(π(p − ½)); for df = 2,
// Pr(T > t) = ½ − t/(2√(2 + t²)) = 1/(√(2 + t²)(√(2 + t²) + t)).
func TestWelchHand(t *testing.T) {
	t.Parallel()
	x := rwMoments([]float64{0, 2})     // mean 1, s² = 2, s²/n = 1
	y := rwMoments([]float64{5, 5, 5})  // mean 5, s² = 0
	z := rwMoments([]float64{1, 3, 5})  // mean 3, s² = 4
	w := rwMoments([]float64{3, 7, 11}) // mean 7, s² = 16
	q975 := math.Tan(math.Pi * 0.475)
	for _, c := range []struct {
		name string
		got  WelchResult
		want WelchResult
	}{{
		name: "df 1 two-sided",
		got:  WelchTest(x, y, 0, TwoSided, 0.95),
		// t = (1 − 5)/1 = −4; Rel = −0.8 with interval (1 ± q)/5 − 1.
		want: WelchResult{T: -4, DF: 1, P: 1 - 2*math.Atan(4)/math.Pi, Diff: -4, Lower: -4 - q975, Upper: -4 + q975,
			Rel: -0.8, RelLower: (1-q975)/5 - 1, RelUpper: (1+q975)/5 - 1},
	}, {
		name: "df 1 greater, mu",
		got:  WelchTest(x, y, -5, Greater, 0.9),
		// t = (−4 + 5)/1 = 1: Pr(T > 1) = ¼; q = tan(0.4π).
		want: WelchResult{T: 1, DF: 1, P: 0.25, Diff: -4, Lower: -4 - math.Tan(0.4*math.Pi), Upper: math.Inf(1),
			Rel: -0.8, RelLower: (1-math.Tan(0.4*math.Pi))/5 - 1, RelUpper: math.Inf(1)},
	}, {
		name: "welch less",
		got:  WelchTest(z, x, 0, Less, 0.95),
		// s²/n: 4/3 and 1: se² = 7/3, df = (7/3)² / ((4/3)²/2 + 1/1) = (49/9)/(17/9) = 49/17.
		want: WelchResult{T: 2 / math.Sqrt(7.0/3), DF: 49.0 / 17, P: studentUpper(-2/math.Sqrt(7.0/3), 49.0/17), Diff: 2,
			Lower: math.Inf(-1), Upper: 2 + studentCrit(0.05, 49.0/17)*math.Sqrt(7.0/3), Rel: 2},
	}, {
		name: "contrast, equal shares",
		got:  WelchContrastTest(z, w, 0.5, TwoSided, 0.9),
		// x̄ − ½ȳ = 3 − 3.5 = −½; s²/n = 4/3 and ¼·16/3 = 4/3, equal
		// shares, so df = 2(n − 1) = 4.
		want: WelchResult{T: -0.5 / math.Sqrt(8.0/3), DF: 4, P: 2 * studentUpper(0.5/math.Sqrt(8.0/3), 4), Diff: -0.5,
			Lower: -0.5 - studentCrit(0.05, 4)*math.Sqrt(8.0/3), Upper: -0.5 + studentCrit(0.05, 4)*math.Sqrt(8.0/3), Rel: 3.0/7 - 1},
	}} {
		g, e := c.got, c.want
		for _, f := range []struct {
			name      string
			got, want float64
		}{
			{"T", g.T, e.T}, {"DF", g.DF, e.DF}, {"P", g.P, e.P}, {"Diff", g.Diff, e.Diff},
			{"Lower", g.Lower, e.Lower}, {"Upper", g.Upper, e.Upper}, {"Rel", g.Rel, e.Rel},
		} {
			if !rwClose(f.got, f.want, 1e-13) {
				t.Errorf("%s: %s = %.17g, want %.17g", c.name, f.name, f.got, f.want)
			}
		}
		if c.name[:4] == "df 1" {
			if !rwClose(g.RelLower, e.RelLower, 1e-13) || !rwClose(g.RelUpper, e.RelUpper, 1e-13) {
				t.Errorf("%s: Rel interval [%.17g, %.17g], want [%.17g, %.17g]", c.name, g.RelLower, g.RelUpper, e.RelLower, e.RelUpper)
			}
		}
	}
	// Student t with df = 2 in closed form.
	for _, tt := range []float64{0.1, 1, 3, 30} {
		r := math.Sqrt(2 + tt*tt)
		if got, want := studentUpper(tt, 2), 1/(r*(r+tt)); !rwClose(got, want, 1e-14) {
			t.Errorf("Pr(T₂ > %g) = %.17g, want %.17g", tt, got, want)
		}
	}
	// Cauchy: Pr(T₁ > t) = atan(1/t)/π, out to where 1/t² underflows.
	for _, tt := range []float64{0.5, 3, 1e8, 1e99, 1e160} {
		if got, want := studentUpper(tt, 1), math.Atan2(1, tt)/math.Pi; !rwClose(got, want, 1e-13) {
			t.Errorf("Pr(T₁ > %g) = %.17g, want %.17g", tt, got, want)
		}
	}
	// q such that Pr(T₂ > q) = p: q = (1 − 2p)/√(2p(1 − p)).
	for _, p := range []float64{0.4, 0.025, 0.005, 1e-6} {
		if got, want := studentCrit(p, 2), (1-2*p)/math.Sqrt(2*p*(1-p)); !rwClose(got, want, 1e-14) {
			t.Errorf("t₂ quantile %g = %.17g, want %.17g", p, got, want)
		}
	}
}

// TestWelchDegenerate checks the documented results for samples too small
// or constant, which R's t.test refuses.
func TestWelchDegenerate(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	one := rwMoments([]float64{3})
	pair := rwMoments([]float64{1, 2})
	c4 := rwMoments([]float64{4, 4, 4})
	c5 := rwMoments([]float64{5, 5})
	for _, c := range []struct {
		name string
		got  WelchResult
		want WelchResult
	}{
		{"n = 1", WelchTest(one, pair, 0, TwoSided, 0.95),
			WelchResult{P: 1, Diff: 1.5, Lower: -inf, Upper: inf, Rel: 1, RelLower: -inf, RelUpper: inf}},
		{"empty", WelchTest(Moments{}, pair, 0, Greater, 0.95),
			WelchResult{P: 1, Diff: -1.5, Lower: -inf, Upper: inf, Rel: -1, RelLower: -inf, RelUpper: inf}},
		{"both empty", WelchTest(Moments{}, Moments{}, 0, TwoSided, 0.95),
			WelchResult{P: 1, Lower: -inf, Upper: inf, Rel: 0, RelLower: -inf, RelUpper: inf}},
		{"constant, equal", WelchTest(c4, c4, 0, TwoSided, 0.95),
			WelchResult{P: 1, Diff: 0, Lower: 0, Upper: 0, Rel: 0, RelLower: 0, RelUpper: 0}},
		{"constant, different", WelchTest(c4, c5, 0, TwoSided, 0.95),
			WelchResult{T: -inf, P: 0, Diff: -1, Lower: -1, Upper: -1, Rel: -0.2, RelLower: -0.2, RelUpper: -0.2}},
		{"constant, greater", WelchTest(c4, c5, 0, Greater, 0.95),
			WelchResult{T: -inf, P: 1, Diff: -1, Lower: -1, Upper: inf, Rel: -0.2, RelLower: -0.2, RelUpper: -0.2}},
		{"constant, less", WelchTest(c4, c5, 0, Less, 0.95),
			WelchResult{T: -inf, P: 0, Diff: -1, Lower: -inf, Upper: -1, Rel: -0.2, RelLower: -0.2, RelUpper: -0.2}},
		{"constant, mu", WelchTest(c4, c5, -1, TwoSided, 0.95),
			WelchResult{P: 1, Diff: -1, Lower: -1, Upper: -1, Rel: -0.2, RelLower: -0.2, RelUpper: -0.2}},
		{"constant contrast", WelchContrastTest(c5, c4, 1.25, Greater, 0.95),
			WelchResult{P: 1, Diff: 0, Lower: 0, Upper: inf, Rel: 0.25, RelLower: 0.25, RelUpper: 0.25}},
		{"NaN observation", WelchTest(rwMoments([]float64{1, math.NaN(), 3}), pair, 0, TwoSided, 0.95),
			WelchResult{P: 1, Lower: -inf, Upper: inf, RelLower: -inf, RelUpper: inf}},
		{"infinite observation", WelchContrastTest(pair, rwMoments([]float64{1, inf}), 1.1, Less, 0.95),
			WelchResult{P: 1, Lower: -inf, Upper: inf, RelLower: -inf, RelUpper: inf}},
		{"zero baseline mean", WelchTest(pair, rwMoments([]float64{-1, 1}), 0, TwoSided, 0.95),
			WelchResult{T: 1.5 / math.Sqrt(1.25), DF: 1.25 * 1.25 / (0.25*0.25 + 1), Diff: 1.5, Rel: inf, RelLower: -inf, RelUpper: inf}},
	} {
		g, e := c.got, c.want
		if c.name == "zero baseline mean" { // P and the interval are ordinary
			e.P, e.Lower, e.Upper = g.P, g.Lower, g.Upper
		}
		if !(rwClose(g.T, e.T, 1e-14) && rwClose(g.DF, e.DF, 1e-14) && g.P == e.P && g.Diff == e.Diff &&
			g.Lower == e.Lower && g.Upper == e.Upper && rwClose(g.Rel, e.Rel, 1e-15) &&
			rwClose(g.RelLower, e.RelLower, 1e-15) && rwClose(g.RelUpper, e.RelUpper, 1e-15)) {
			t.Errorf("%s: got %+v, want %+v", c.name, g, e)
		}
	}
}

// TestWelchUnboundedRatio checks that the relative interval is unbounded
// exactly when the baseline mean is not significantly different from 0.
func TestWelchUnboundedRatio(t *testing.T) {
	t.Parallel()
	x := rwMoments([]float64{1.2, 0.8, 1.1, 0.9, 1.0})
	y := rwMoments([]float64{0.1, -0.2, 0.4, 0.3, -0.1}) // t = 0.5/√(0.06·...) small
	for _, alt := range []Alternative{TwoSided, Greater, Less} {
		w := WelchTest(x, y, 0, alt, 0.95)
		if !math.IsInf(w.RelLower, -1) || !math.IsInf(w.RelUpper, 1) {
			t.Errorf("%v: [%g, %g], want (−Inf, +Inf)", alt, w.RelLower, w.RelUpper)
		}
	}
	// The same baseline shifted far from 0 gives a bounded interval.
	var y2 Moments
	for _, v := range []float64{0.1, -0.2, 0.4, 0.3, -0.1} {
		y2.Add(v + 10)
	}
	if w := WelchTest(x, y2, 0, TwoSided, 0.95); math.IsInf(w.RelLower, 0) || math.IsInf(w.RelUpper, 0) {
		t.Errorf("shifted: [%g, %g], want bounded", w.RelLower, w.RelUpper)
	}
}

// TestWelchContrastMatchesWelch checks that the contrast with c = 1 is
// Welch's test with mu = 0.
func TestWelchContrastMatchesWelch(t *testing.T) {
	t.Parallel()
	x := rwMoments([]float64{10, 12, 11, 13, 9, 14})
	y := rwMoments([]float64{9, 10, 9.5, 10.5})
	for _, alt := range []Alternative{TwoSided, Greater, Less} {
		if a, b := WelchTest(x, y, 0, alt, 0.9), WelchContrastTest(x, y, 1, alt, 0.9); a != b {
			t.Errorf("%v: %+v != %+v", alt, a, b)
		}
	}
}

// TestWelchPanics checks that misuse panics with the package prefix.
func TestWelchPanics(t *testing.T) {
	t.Parallel()
	x := rwMoments([]float64{1, 2, 3})
	for name, f := range map[string]func(){
		"mu NaN":      func() { WelchTest(x, x, math.NaN(), TwoSided, 0.95) },
		"mu Inf":      func() { WelchTest(x, x, math.Inf(1), TwoSided, 0.95) },
		"c Inf":       func() { WelchContrastTest(x, x, math.Inf(-1), TwoSided, 0.95) },
		"conf 0":      func() { WelchTest(x, x, 0, TwoSided, 0) },
		"alternative": func() { WelchContrastTest(x, x, 1, Alternative(-1), 0.95) },
	} {
		func() {
			defer func() {
				r := recover()
				if s, ok := r.(string); !ok || !strings.HasPrefix(s, "analysis: ") {
					t.Errorf("%s: recovered %v, want an analysis panic", name, r)
				}
			}()
			f()
		}()
	}
}

// BenchmarkWelchTest times WelchTest (t, p, interval and Fieller's
// relative interval) on summary statistics, from a handful of
// observations to ten million per cohort.
func BenchmarkWelchTest(b *testing.B) {
	for _, n := range []float64{5, 100, 1e4, 1e7} {
		x := Moments{N: n, Mean: 20.4, M2: 410 * (n - 1)}
		y := Moments{N: 10 * n, Mean: 20, M2: 400 * (10*n - 1)}
		b.Run(fmt.Sprintf("n=%g", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				WelchTest(x, y, 0, TwoSided, 0.95)
			}
		})
	}
}

// TestWelchProperties checks, on seeded random summaries from 2 to ten
// million observations (some with zero variance, means of either sign or
// near 0), that results are never NaN, P is in [0, 1], each interval holds
// its estimate, and finite Fieller end points are where the contrast test
// has p = 1 − confLevel.
func TestWelchProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	draw := func(i int) Moments {
		n := math.Floor(math.Exp(math.Log(2) + rng.Float64()*(math.Log(1e7)-math.Log(2))))
		mean := rng.NormFloat64() * math.Pow(10, float64(rng.IntN(5)-2))
		sd := math.Abs(mean) * math.Exp(rng.NormFloat64())
		if i%17 == 0 {
			sd = 0
		}
		return Moments{N: n, Mean: mean, M2: sd * sd * (n - 1)}
	}
	for i := range 2000 {
		x, y := draw(i), draw(i+1)
		alt := []Alternative{TwoSided, Greater, Less}[i%3]
		conf := []float64{0.9, 0.95, 0.99}[i%3]
		c := []float64{1, 1.05, 0.9, 0}[i%4]
		w := WelchContrastTest(x, y, c, alt, conf)
		id := fmt.Sprintf("x=%+v y=%+v c=%g %v %g", x, y, c, alt, conf)
		for _, v := range []float64{w.T, w.DF, w.P, w.Diff, w.Lower, w.Upper, w.Rel, w.RelLower, w.RelUpper} {
			if math.IsNaN(v) {
				t.Fatalf("%s: NaN in %+v", id, w)
			}
		}
		if w.P < 0 || w.P > 1 || !(w.Lower <= w.Diff && w.Diff <= w.Upper) || !(w.RelLower <= w.Rel && w.Rel <= w.RelUpper) {
			t.Errorf("%s: %+v", id, w)
		}
		if i%10 != 0 {
			continue
		}
		for _, e := range []float64{w.RelLower, w.RelUpper} {
			if math.IsInf(e, 0) || e == w.Rel {
				continue
			}
			if p := WelchContrastTest(x, y, 1+e, alt, conf).P; !rwClose(p, 1-conf, 1e-9) {
				t.Errorf("%s: contrast p at Fieller end %g = %g, want %g", id, e, p, 1-conf)
			}
		}
	}
}
