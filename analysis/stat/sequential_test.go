package stat

import (
	"math"
	"strings"
	"testing"
)

// seqVectors is testdata/sequential_vectors.json, written by
// testdata/gen/sequential.py (scipy 1.10, numpy 1.24; see that script).
type seqVectors struct {
	BetaMixture []struct {
		X, Y, P0, A, B float64
		Alt, Source    string
		LogE           rwNum `json:"log_e"`
	} `json:"beta_mixture"`
	MeanMSPRT []struct {
		X, Y      [3]float64
		C         float64
		Alt       string
		Alpha, N0 float64
		E         rwNum
		Lo, Hi    *rwNum // two-sided only
	} `json:"mean_msprt"`
}

func loadSeqVectors(t *testing.T) *seqVectors {
	t.Helper()
	var v seqVectors
	rwLoad(t, "sequential_vectors.json", &v)
	if len(v.BetaMixture) == 0 || len(v.MeanMSPRT) == 0 {
		t.Fatal("sequential_vectors.json: missing sections")
	}
	return &v
}

func seqAltOf(t *testing.T, s string) Alternative {
	t.Helper()
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

// TestBetaMixtureVectors compares the beta-mixture e-value with scipy: the
// closed form (betaln, beta.logsf/logcdf) and the numerical integration of
// the likelihood ratio over the truncated prior (integrate.quad at 1e-12),
// to 1e-9 relative on E.
func TestBetaMixtureVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range loadSeqVectors(t).BetaMixture {
		got := BetaMixtureLogE(tc.X, tc.Y, tc.P0, tc.A, tc.B, seqAltOf(t, tc.Alt))
		if want := float64(tc.LogE); math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
			t.Errorf("%s: log E(x=%v, y=%v, p0=%v, Beta(%v, %v), %v) = %.12g, scipy %.12g", tc.Source, tc.X, tc.Y, tc.P0, tc.A, tc.B, tc.Alt, got, want)
		}
	}
}

// TestBetaMixtureKnownValues checks Netflix's figures for the prior
// Beta(10, 90) at p0 = 0.1 (ρ = 0.1, k = 100, r0 = 1), two-sided, to the
// four figures quoted, and that no trials give E = 1.
func TestBetaMixtureKnownValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ x, y, e float64 }{{25, 90, 31.23}, {130, 900, 7.717}} {
		if e := math.Exp(BetaMixtureLogE(tc.x, tc.y, 0.1, 10, 90, TwoSided)); math.Abs(e-tc.e) > 0.005 {
			t.Errorf("E(%v, %v) = %.4f, want %v", tc.x, tc.y, e, tc.e)
		}
	}
	for _, alt := range []Alternative{TwoSided, Greater, Less} {
		if le := BetaMixtureLogE(0, 0, 0.3, 2, 5, alt); le != 0 {
			t.Errorf("no trials, %v: log E = %v", alt, le)
		}
	}
}

// msprtOf returns MixtureSPRT's inputs for the contrast x̄ − c·ȳ of two
// samples summarized by their Moments, as a judge forms them.
func msprtOf(x, y Moments, c float64) (d, v, sz2, scale float64) {
	vx, vy := x.Variance(), c*c*y.Variance()
	return x.Mean - c*y.Mean, vx/x.N + vy/y.N, vx + vy, math.Max(math.Abs(x.Mean), math.Abs(c*y.Mean))
}

// TestMixtureSPRTVectors compares MixtureSPRT and the two-sided sequence
// of MixtureSPRTRadius with their closed forms evaluated by scipy
// (norm.logcdf): 1e-9 relative, or 1e-9 absolute on the bounds relative
// to the standard error.
func TestMixtureSPRTVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range loadSeqVectors(t).MeanMSPRT {
		x := Moments{N: tc.X[0], Mean: tc.X[1], M2: tc.X[2]}
		y := Moments{N: tc.Y[0], Mean: tc.Y[1], M2: tc.Y[2]}
		d, v, sz2, scale := msprtOf(x, y, tc.C)
		alt := seqAltOf(t, tc.Alt)
		e := MixtureSPRT(d, v, sz2, scale, alt, tc.Alpha, tc.N0)
		if !rwClose(e, float64(tc.E), 1e-9) {
			t.Errorf("x=%v y=%v c=%v %v α=%v: e=%.12g, scipy %.12g", tc.X, tc.Y, tc.C, tc.Alt, tc.Alpha, e, float64(tc.E))
		}
		if tc.Lo == nil {
			continue
		}
		half := MixtureSPRTRadius(v, sz2, tc.Alpha, tc.N0) * math.Sqrt(v)
		for _, b := range []struct{ got, want float64 }{{d - half, float64(*tc.Lo)}, {d + half, float64(*tc.Hi)}} {
			if !rwClose(b.got, b.want, 1e-9) && math.Abs(b.got-b.want) > 1e-9*math.Sqrt(v) {
				t.Errorf("x=%v y=%v c=%v α=%v: bound %.12g, scipy %.12g", tc.X, tc.Y, tc.C, tc.Alpha, b.got, b.want)
			}
		}
	}
}

// TestMixtureSPRTDuality checks, on a sweep of contrasts, that the
// two-sided sequence Δ̂ ± k√v excludes 0 exactly when the two-sided e-value
// reaches 1/α, and that the one-sided e-values grow with the contrast on
// their side (and reject only there).
func TestMixtureSPRTDuality(t *testing.T) {
	t.Parallel()
	y := Moments{N: 400, Mean: 10, M2: 399 * 4}
	prev := map[Alternative]float64{Greater: 0, Less: math.Inf(1)}
	for m := 9.0; m <= 13; m += 0.01 {
		x := Moments{N: 300, Mean: m, M2: 299 * 5}
		d, v, sz2, scale := msprtOf(x, y, 1.1)
		e := MixtureSPRT(d, v, sz2, scale, TwoSided, 0.01, 100)
		k := MixtureSPRTRadius(v, sz2, 0.01, 100)
		if excl := math.Abs(d) > k*math.Sqrt(v); excl != (e >= 100) && math.Abs(math.Log(e/100)) > 1e-9 {
			t.Fatalf("mean %v: e=%v, interval %v ± %v", m, e, d, k*math.Sqrt(v))
		}
		g, l := MixtureSPRT(d, v, sz2, scale, Greater, 0.01, 100), MixtureSPRT(d, v, sz2, scale, Less, 0.01, 100)
		if g < prev[Greater] || l > prev[Less] || (g >= 100 && d <= 0) || (l >= 100 && d >= 0) {
			t.Fatalf("mean %v (d %v): one-sided e-values %v (greater), %v (less)", m, d, g, l)
		}
		prev[Greater], prev[Less] = g, l
	}
}

// TestMixtureSPRTSpecial covers the special cases of MixtureSPRT's doc
// comment and its panics.
func TestMixtureSPRTSpecial(t *testing.T) {
	t.Parallel()
	inf, nan := math.Inf(1), math.NaN()
	for _, c := range []struct {
		name             string
		d, v, sz2, scale float64
		alt              Alternative
		want             float64
	}{
		{"NaN contrast", nan, 1, 1, 1, Greater, 1},
		{"NaN variance", 1, nan, 1, 1, Greater, 1},
		{"infinite variance", 1, inf, 1, 1, TwoSided, 1},
		{"negative variance", 1, -1, 1, 1, Less, 1},
		{"constant, worse", 0.6, 0, 0, 5, Greater, inf},
		{"constant, other side", 0.6, 0, 0, 5, Less, 1},
		{"constant, equal", 0, 0, 0, 5, TwoSided, 1},
		{"constant, two-sided", -0.6, 0, 0, 5, TwoSided, inf},
		{"no spread information", 1, 1, 0, 1, Greater, 1},
	} {
		if got := MixtureSPRT(c.d, c.v, c.sz2, c.scale, c.alt, 0.05, 10); got != c.want {
			t.Errorf("%s: e = %v, want %v", c.name, got, c.want)
		}
	}
	if e := MixtureSPRT(1e6, 1, 1, 1, Greater, 0.05, 10); !math.IsInf(e, 1) {
		t.Errorf("overwhelming evidence: e = %v, want +Inf", e)
	}
	if k := MixtureSPRTRadius(1, 0, 0.05, 10); !math.IsInf(k, 1) {
		t.Errorf("radius without spread: %v", k)
	}
	for name, f := range map[string]func(){
		"alternative": func() { MixtureSPRT(1, 1, 1, 1, Alternative(9), 0.05, 10) },
		"alpha 0":     func() { MixtureSPRT(1, 1, 1, 1, Greater, 0, 10) },
		"alpha 1":     func() { MixtureSPRTRadius(1, 1, 1, 10) },
		"n0 0.5":      func() { MixtureSPRT(1, 1, 1, 1, Greater, 0.05, 0.5) },
		"n0 Inf":      func() { MixtureSPRTRadius(1, 1, 0.05, inf) },
		"boundary":    func() { MixtureSPRTBoundary(0) },
	} {
		mustPanicStat(t, name, f)
	}
}

// TestMixtureSPRTBoundary checks z*(α) against the minimum over a fine
// grid of the expression it minimizes, the closed form √(1 + r*) at the
// root, and the ordering z(1−α) < z*(α) for the usual levels.
func TestMixtureSPRTBoundary(t *testing.T) {
	t.Parallel()
	for _, a := range []float64{0.5, 0.1, 0.05, 0.01, 0.0033, 1e-6, 1e-30, 1e-300} {
		l := 2 * math.Log(1/a)
		best := math.Inf(1)
		for lr := -10.0; lr <= 15; lr += 1e-4 {
			r := math.Exp(lr)
			best = math.Min(best, (1+r)/r*(l+math.Log1p(r)))
		}
		got := MixtureSPRTBoundary(a)
		if math.Abs(got-math.Sqrt(best)) > 1e-7*math.Sqrt(best) {
			t.Errorf("alpha %v: z* = %.10g, grid %.10g", a, got, math.Sqrt(best))
		}
		// At r* = z*² − 1 the derivative vanishes: r* − log(1 + r*) = l.
		if r := got*got - 1; math.Abs(r-math.Log1p(r)-l) > 1e-12*l {
			t.Errorf("alpha %v: r* = %v leaves %v", a, r, r-math.Log1p(r)-l)
		}
		if z := -logNormQuantileUpper(a); !(got > z) {
			t.Errorf("alpha %v: z* = %v not above z = %v", a, got, z)
		}
	}
}

// logNormQuantileUpper returns −z(1 − a) by bisection on logNormCDF, to
// compare z* with the normal quantile without another dependency.
func logNormQuantileUpper(a float64) float64 {
	z, err := Root(func(z float64) float64 { return logNormCDF(z) - math.Log(a) }, -40, 0, 1e-12)
	if err != nil {
		panic(err)
	}
	return z
}

// mustPanicStat fails unless f panics with a "stat: " message.
func mustPanicStat(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if s, ok := recover().(string); !ok || !strings.HasPrefix(s, "stat: ") {
			t.Errorf("%s: recovered %q, want a stat panic", name, s)
		}
	}()
	f()
}

// TestLogNormCDF checks log Φ against scipy.stats.norm.logcdf (scipy
// 1.10) across the switch points of its three branches: 1e-12 relative.
func TestLogNormCDF(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ z, want float64 }{
		{-40, -804.6084420137539},
		{-37.5, -707.6689893175072},
		{-36.9, -685.3328831653507},
		{-10, -53.23128515051248},
		{-1, -1.841021645009264},
		{0, -0.6931471805599453},
		{2, -0.023012909328963486},
		{5.5, -1.8989562646189424e-08},
		{8, -6.220960574271743e-16},
	} {
		if got := logNormCDF(tc.z); !rwClose(got, tc.want, 1e-12) {
			t.Errorf("log Φ(%v) = %.17g, scipy %.17g", tc.z, got, tc.want)
		}
	}
}
