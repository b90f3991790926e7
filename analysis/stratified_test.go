package analysis

import (
	"math"
	"slices"
	"testing"

	"github.com/canaryd/canaryd/analysis/stat"
	"github.com/canaryd/canaryd/internal/refvec"
)

// stratifiedVectors is analysis/testdata/stratified_vectors.json, written
// by testdata/gen/stratified.py from the raw observations with numpy and
// scipy (see its header).
type stratifiedVectors struct {
	Tolerance struct {
		Contrast, Exact, Saddle, Mixture, Design float64
	}
	Contrast []struct {
		Groups       [][2][]float64
		C            float64
		Logs         bool
		D, V, DF     rwNum
		PGreater     rwNum  `json:"p_greater"`
		PLess        rwNum  `json:"p_less"`
		ScipyGreater *rwNum `json:"scipy_greater,omitempty"`
		ScipyLess    *rwNum `json:"scipy_less,omitempty"`
	}
	RateStrat []struct {
		Groups       [][4]float64
		R0           float64
		Upper, Lower rwNum
		Events       float64
		ScipyGreater *rwNum `json:"scipy_greater,omitempty"`
		ScipyLess    *rwNum `json:"scipy_less,omitempty"`
	} `json:"ratestrat"`
	Mixture []struct {
		Groups [][4]float64
		R0     float64
		Alt    string
		LogE   rwNum `json:"log_e"`
	}
	Design []struct {
		X, Y     [][]float64
		C, Alpha float64
		Phi      rwNum
	}
	RateDesign []struct {
		X, Y  [][2]float64
		Alpha float64
		Phi   rwNum
	} `json:"rate_design"`
}

// rwNum is a number of a reference file (refvec.Num).
type rwNum = refvec.Num

func loadStratified(t *testing.T) *stratifiedVectors {
	t.Helper()
	var v stratifiedVectors
	refvec.Load(t, "testdata/stratified_vectors.json", &v)
	return &v
}

func relClose(got, want, tol float64) bool {
	if got == want {
		return true
	}
	return math.Abs(got-want) <= tol*math.Max(math.Abs(want), 1e-300)
}

// TestContrastVectors checks the stratified contrast (contrast.go) on raw
// data against its formula computed by numpy and scipy's Student t, and,
// for one group, against scipy's Welch test (R's t.test).
func TestContrastVectors(t *testing.T) {
	v := loadStratified(t)
	tol := v.Tolerance.Contrast
	for i, tc := range v.Contrast {
		gs := make([]group, len(tc.Groups))
		for g, xy := range tc.Groups {
			gs[g][Canary].raw, gs[g][Canary].log = stat.MomentsOf(xy[0]), stat.LogMomentsOf(xy[0])
			gs[g][Baseline].raw, gs[g][Baseline].log = stat.MomentsOf(xy[1]), stat.LogMomentsOf(xy[1])
		}
		k := newContrast(gs, tc.Logs)
		d, vv, df, _, _ := k.at(tc.C)
		pg := k.p(tc.C, stat.Greater, 1, false, 0.01, 1)
		pl := k.p(tc.C, stat.Less, 1, false, 0.01, 1)
		if !relClose(d, float64(tc.D), tol) && math.Abs(d-float64(tc.D)) > 1e-12 || !relClose(vv, float64(tc.V), tol) || !relClose(df, float64(tc.DF), tol) {
			t.Errorf("case %d (%d groups, c %v, logs %v): D %v V %v df %v, want %v %v %v", i, len(gs), tc.C, tc.Logs, d, vv, df, tc.D, tc.V, tc.DF)
		}
		if !relClose(pg, float64(tc.PGreater), 1e-8) || !relClose(pl, float64(tc.PLess), 1e-8) {
			t.Errorf("case %d: p %v %v, want %v %v", i, pg, pl, tc.PGreater, tc.PLess)
		}
		if tc.ScipyGreater != nil && (!relClose(pg, float64(*tc.ScipyGreater), 1e-8) || !relClose(pl, float64(*tc.ScipyLess), 1e-8)) {
			t.Errorf("case %d: p %v %v, scipy ttest_ind %v %v", i, pg, pl, *tc.ScipyGreater, *tc.ScipyLess)
		}
	}
}

// rateGroups builds the groups of a stratified rate case.
func rateGroups(in [][4]float64) []group {
	gs := make([]group, len(in))
	for g, r := range in {
		gs[g][Baseline].count, gs[g][Baseline].total = r[0], r[1]
		gs[g][Canary].count, gs[g][Canary].total = r[2], r[3]
	}
	return gs
}

// TestStratRateVectors checks the conditional tails of the stratified rate
// test (ratestrat.go) against scipy's exact convolution of binomials: the
// exact convolution to 1e-10, the saddle-point approximation (used above
// rateExactMax events) to 2e-3 relative where the tail exceeds 1e-300, and
// with one group against scipy's binomtest (R's binom.test / poisson.test).
func TestStratRateVectors(t *testing.T) {
	v := loadStratified(t)
	for i, tc := range v.RateStrat {
		s := newStratRate(rateGroups(tc.Groups), 1)
		up, down := s.tail(tc.R0, true), s.tail(tc.R0, false)
		tol := v.Tolerance.Exact
		if tc.Events > rateExactMax {
			tol = v.Tolerance.Saddle
		}
		for _, x := range []struct{ got, want float64 }{{up, float64(tc.Upper)}, {down, float64(tc.Lower)}} {
			want := min(1, x.want)
			if want < 1e-300 {
				if x.got > 1e-250 {
					t.Errorf("case %d (%v events, r0 %v): tail %v, want %v", i, tc.Events, tc.R0, x.got, want)
				}
				continue
			}
			if !relClose(x.got, want, tol) && math.Abs(x.got-want) > 1e-15 {
				t.Errorf("case %d (%d groups, %v events, r0 %v): tail %v, want %v (rel %.2g)", i, len(tc.Groups), tc.Events, tc.R0, x.got, want, math.Abs(x.got-want)/want)
			}
		}
		if tc.ScipyGreater != nil {
			pg, pl := s.fixedP(tc.R0, stat.Greater), s.fixedP(tc.R0, stat.Less)
			if !relClose(pg, float64(*tc.ScipyGreater), 1e-9) || !relClose(pl, float64(*tc.ScipyLess), 1e-9) {
				t.Errorf("case %d: p %v %v, scipy binomtest %v %v", i, pg, pl, *tc.ScipyGreater, *tc.ScipyLess)
			}
		}
	}
}

// TestMixtureVectors checks the anytime-valid mixture e-value of the
// stratified rate ratio against its formula in numpy.
func TestMixtureVectors(t *testing.T) {
	v := loadStratified(t)
	for i, tc := range v.Mixture {
		s := newStratRate(rateGroups(tc.Groups), 1)
		alt := map[string]stat.Alternative{"greater": stat.Greater, "less": stat.Less, "two-sided": stat.TwoSided}[tc.Alt]
		got := math.Log(s.mixtureE(tc.R0, alt))
		want := float64(tc.LogE)
		if math.IsInf(got, 1) && want > 700 {
			continue // overflows as an e-value; its p-value is 0 either way
		}
		if math.Abs(got-want) > v.Tolerance.Mixture*math.Max(1, math.Abs(want)) {
			t.Errorf("case %d (r0 %v, %s): log E %v, want %v", i, tc.R0, tc.Alt, got, want)
		}
	}
}

// TestDesignEffectVectors checks DesignEffect and RateDesignEffect against
// numpy computations from the raw values and counts.
func TestDesignEffectVectors(t *testing.T) {
	v := loadStratified(t)
	for i, tc := range v.Design {
		x, y := make([]stat.Moments, len(tc.X)), make([]stat.Moments, len(tc.Y))
		for j, g := range tc.X {
			x[j] = stat.MomentsOf(g)
		}
		for j, g := range tc.Y {
			y[j] = stat.MomentsOf(g)
		}
		if got := DesignEffect(x, y, tc.C, tc.Alpha); !relClose(got, float64(tc.Phi), v.Tolerance.Design) {
			t.Errorf("design case %d (%d+%d, c %v, alpha %v): φ %v, want %v", i, len(x), len(y), tc.C, tc.Alpha, got, tc.Phi)
		}
	}
	for i, tc := range v.RateDesign {
		x, y := make([]stat.Moments, len(tc.X)), make([]stat.Moments, len(tc.Y))
		for j, ce := range tc.X {
			x[j] = stat.BernoulliMoments(ce[0], ce[1])
		}
		for j, ce := range tc.Y {
			y[j] = stat.BernoulliMoments(ce[0], ce[1])
		}
		if got := RateDesignEffect(x, y, tc.Alpha); !relClose(got, float64(tc.Phi), v.Tolerance.Design) {
			t.Errorf("rate design case %d (%d+%d, alpha %v): φ %v, want %v", i, len(x), len(y), tc.Alpha, got, tc.Phi)
		}
	}
}

// TestContrastDFOverflow: the Satterthwaite degrees of freedom of a
// contrast do not depend on the scale of its variances, also where their
// squares overflow (a ratio c of 10⁷⁷ on values, found by FuzzJudge: the
// interval's Student quantile then got NaN degrees of freedom and
// panicked), and an infinite variance gives the conservative bound, the
// smallest n − 1.
func TestContrastDFOverflow(t *testing.T) {
	t.Parallel()
	terms := []contrastTerm{
		{w: 12, xbar: 3, ybar: 2, vx: 0.4, vy: 1.9, nx: 24, ny: 24},
		{w: 20, xbar: 5, ybar: 4, vx: 0.1, vy: 0.3, nx: 40, ny: 40},
	}
	k := contrast{terms: terms, w: 32, nx: 64, ny: 64, scale: 5}
	_, _, want, _, _ := k.at(1.5)
	if !(want > 23 && want < 126) {
		t.Fatalf("df %v: not within Satterthwaite's bounds [23, 126]", want)
	}
	for _, scale := range []float64{1e150, 1e200, 1e300} {
		big := contrast{terms: slices.Clone(terms), w: k.w, nx: k.nx, ny: k.ny, scale: k.scale}
		for i := range big.terms {
			big.terms[i].vx *= scale
			big.terms[i].vy *= scale
		}
		if _, _, df, _, _ := big.at(1.5); !(math.Abs(df/want-1) <= 1e-12) {
			t.Errorf("variances × %g: df %v, want %v", scale, df, want)
		}
	}
	// c = 1e77 on values: c²·vy overflows in the squares only.
	if _, _, df, _, _ := k.at(1e77); !(df >= 23 && !math.IsInf(df, 0)) {
		t.Errorf("at(1e77): df %v", df)
	}
	// c = 1e200: c²·vy is infinite; the bound.
	if _, _, df, _, _ := k.at(1e200); df != 23 {
		t.Errorf("at(1e200): df %v, want 23 (the smallest n − 1)", df)
	}
	if _, lo, hi := k.effect(0.99, 1, false, 0); !(lo < hi) {
		t.Errorf("effect interval [%v, %v]", lo, hi)
	}
}
