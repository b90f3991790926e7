package stat

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// ---- reference vectors ------------------------------------------------------

// mwuJSONFloat reads a JSON number, or "+Inf"/"-Inf", or null (NaN).
type mwuJSONFloat float64

func (f *mwuJSONFloat) UnmarshalJSON(b []byte) error {
	switch s := string(b); s {
	case `"+Inf"`:
		*f = mwuJSONFloat(math.Inf(1))
	case `"-Inf"`:
		*f = mwuJSONFloat(math.Inf(-1))
	case "null":
		*f = mwuJSONFloat(math.NaN())
	default:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("parse float %s: %w", s, err)
		}
		*f = mwuJSONFloat(v)
	}
	return nil
}

type mwuDataset struct {
	Name   string    `json:"name"`
	Family string    `json:"family"`
	X      []float64 `json:"x"`
	Y      []float64 `json:"y"`
}

// mwuRCase is one wilcox.test(x, y, ...) call.
type mwuRCase struct {
	Dataset     string  `json:"dataset"`
	Family      string  `json:"family"`
	Alternative string  `json:"alternative"`
	Mu          float64 `json:"mu"`
	Correct     bool    `json:"correct"`
	Exact       *bool   `json:"exact"`
	Method      string  `json:"method"`
	Statistic   float64 `json:"statistic"`
	PValue      float64 `json:"p_value"`
}

// mwuRVectors is analysis/testdata/mwu_vectors.json, written by
// analysis/testdata/gen/mwu.R.
type mwuRVectors struct {
	RVersion   string `json:"r_version"`
	Tolerances struct {
		Statistic float64 `json:"statistic"`
		PValue    float64 `json:"p_value"`
	} `json:"tolerances"`
	Datasets []mwuDataset `json:"datasets"`
	Cases    []mwuRCase   `json:"cases"`
	Pwilcox  []struct {
		M, N, Q, Lower, Upper float64
	} `json:"pwilcox"`
}

// mwuScipyVectors is analysis/testdata/mwu_scipy_vectors.json, written by
// analysis/testdata/gen/mwu.py.
type mwuScipyVectors struct {
	ScipyVersion string `json:"scipy_version"`
	Tolerances   struct {
		Statistic float64 `json:"statistic"`
		PValue    float64 `json:"p_value"`
	} `json:"tolerances"`
	Datasets []mwuDataset `json:"datasets"`
	Cases    []struct {
		Dataset       string  `json:"dataset"`
		Family        string  `json:"family"`
		Method        string  `json:"method"`
		Alternative   string  `json:"alternative"`
		UseContinuity bool    `json:"use_continuity"`
		Statistic     float64 `json:"statistic"`
		PValue        float64 `json:"p_value"`
	} `json:"cases"`
}

func mwuLoadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read reference vectors: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
}

func mwuDatasetMap(ds []mwuDataset) map[string]mwuDataset {
	m := make(map[string]mwuDataset, len(ds))
	for _, d := range ds {
		m[d.Name] = d
	}
	return m
}

// mwuBinsOf sorts raw observations and merges ties into Bins.
func mwuBinsOf(v []float64) []Bin {
	s := slices.Clone(v)
	slices.Sort(s)
	var b []Bin
	for _, e := range s {
		if n := len(b); n > 0 && b[n-1].Value == e {
			b[n-1].Count++
			continue
		}
		b = append(b, Bin{Value: e, Count: 1})
	}
	return b
}

// mwuExpand lists the observations the bins hold (integer counts only).
func mwuExpand(b []Bin) []float64 {
	var v []float64
	for _, e := range b {
		for range int(e.Count) {
			v = append(v, e.Value)
		}
	}
	return v
}

func mwuParseAlt(t testing.TB, s string) Alternative {
	switch s {
	case "two.sided", "two-sided":
		return TwoSided
	case "greater":
		return Greater
	case "less":
		return Less
	}
	t.Fatalf("unknown alternative %q", s)
	return 0
}

// mwuClose reports whether got is within rel·|want| (or abs) of want;
// equal infinities are close.
func mwuClose(got, want, rel, abs float64) bool {
	if got == want {
		return true
	}
	d := math.Abs(got - want)
	return d <= abs || d <= rel*math.Abs(want)
}

// ---- known values -----------------------------------------------------------

func TestMannWhitneyKnownValues(t *testing.T) {
	t.Parallel()
	// STATS-NOTES.md, computed with R 4.2.2 wilcox.test(x, y):
	// x = [19,22,16,29,24], y = [20,11,17,12].
	x := mwuBinsOf([]float64{19, 22, 16, 29, 24})
	y := mwuBinsOf([]float64{20, 11, 17, 12})
	tests := []struct {
		name  string
		opts  MWUOptions
		u, p  float64
		exact bool
	}{
		{"exact two-sided", MWUOptions{}, 17, 0.1111111111, true},
		{"asymptotic corrected", MWUOptions{Method: MWUAsymptotic}, 17, 0.111346886533, false},
		// R 4.2.2: wilcox.test(x, y, exact = FALSE, correct = FALSE)$p.value.
		{"asymptotic uncorrected", MWUOptions{Method: MWUAsymptotic, NoCorrect: true}, 17, 0.0864107329737, false},
		// R 4.2.2: wilcox.test(x, y, alternative = "greater")$p.value = 7/126.
		{"exact greater", MWUOptions{Alternative: Greater}, 17, 7.0 / 126, true},
		// R 4.2.2: wilcox.test(x, y, alternative = "less")$p.value = 122/126.
		{"exact less", MWUOptions{Alternative: Less}, 17, 122.0 / 126, true},
	}
	for _, tc := range tests {
		got := MannWhitney(x, y, tc.opts)
		if got.U != tc.u || got.Exact != tc.exact || !mwuClose(got.P, tc.p, 1e-9, 0) {
			t.Errorf("%s: got U=%v P=%.12g exact=%v, want U=%v P=%.12g exact=%v",
				tc.name, got.U, got.P, got.Exact, tc.u, tc.p, tc.exact)
		}
		if got.NX != 5 || got.NY != 4 {
			t.Errorf("%s: NX, NY = %v, %v, want 5, 4", tc.name, got.NX, got.NY)
		}
	}
}

// ---- R and scipy ------------------------------------------------------------

func TestMannWhitneyRVectors(t *testing.T) {
	t.Parallel()
	var v mwuRVectors
	mwuLoadJSON(t, "mwu_vectors.json", &v)
	t.Logf("reference: %s, %d cases", v.RVersion, len(v.Cases))
	ds := mwuDatasetMap(v.Datasets)
	tol := v.Tolerances
	maxRel := map[string]float64{} // largest relative p-value error per family, for the log
	for _, c := range v.Cases {
		d, ok := ds[c.Dataset]
		if !ok {
			t.Fatalf("case refers to unknown data set %q", c.Dataset)
		}
		opts := MWUOptions{
			Alternative: mwuParseAlt(t, c.Alternative),
			Mu:          c.Mu,
			NoCorrect:   !c.Correct,
			Method:      mwuMethodOfR(c.Exact),
		}
		got := MannWhitney(mwuBinsOf(d.X), mwuBinsOf(d.Y), opts)
		name := fmt.Sprintf("%s %s mu=%v correct=%v exact=%v", c.Dataset, c.Alternative, c.Mu, c.Correct, mwuFmtExact(c.Exact))
		if want := strings.Contains(c.Method, "exact"); got.Exact != want {
			t.Errorf("%s: Exact = %v, R used %q", name, got.Exact, c.Method)
		}
		if !mwuClose(got.U, c.Statistic, tol.Statistic, 0) {
			t.Errorf("%s: U = %.17g, R W = %.17g", name, got.U, c.Statistic)
		}
		if !mwuClose(got.P, c.PValue, tol.PValue, 0) {
			t.Errorf("%s: P = %.17g, R = %.17g (rel err %.2g)", name, got.P, c.PValue, math.Abs(got.P-c.PValue)/c.PValue)
		}
		fam := c.Family + map[bool]string{true: "/exact", false: "/normal"}[got.Exact]
		maxRel[fam] = max(maxRel[fam], math.Abs(got.P-c.PValue)/c.PValue)
	}
	t.Logf("largest relative p-value error: %v", maxRel)
}

func mwuMethodOfR(exact *bool) MWUMethod {
	switch {
	case exact == nil:
		return MWUAuto
	case *exact:
		return MWUExact
	}
	return MWUAsymptotic
}

func mwuFmtExact(exact *bool) string {
	if exact == nil {
		return "NULL"
	}
	return strconv.FormatBool(*exact)
}

func TestMannWhitneyScipyVectors(t *testing.T) {
	t.Parallel()
	var v mwuScipyVectors
	mwuLoadJSON(t, "mwu_scipy_vectors.json", &v)
	t.Logf("reference: scipy %s, %d cases", v.ScipyVersion, len(v.Cases))
	ds := mwuDatasetMap(v.Datasets)
	maxRel := map[string]float64{}
	for _, c := range v.Cases {
		d := ds[c.Dataset]
		opts := MWUOptions{Alternative: mwuParseAlt(t, c.Alternative), NoCorrect: !c.UseContinuity, Method: MWUAsymptotic}
		if c.Method == "exact" {
			opts.Method = MWUExact
		}
		got := MannWhitney(mwuBinsOf(d.X), mwuBinsOf(d.Y), opts)
		name := fmt.Sprintf("%s %s %s continuity=%v", c.Dataset, c.Method, c.Alternative, c.UseContinuity)
		if got.Exact != (c.Method == "exact") {
			t.Errorf("%s: Exact = %v", name, got.Exact)
		}
		if !mwuClose(got.U, c.Statistic, v.Tolerances.Statistic, 0) {
			t.Errorf("%s: U = %.17g, scipy %.17g", name, got.U, c.Statistic)
		}
		if !mwuClose(got.P, c.PValue, v.Tolerances.PValue, 0) {
			t.Errorf("%s: P = %.17g, scipy %.17g", name, got.P, c.PValue)
		}
		maxRel[c.Method] = max(maxRel[c.Method], math.Abs(got.P-c.PValue)/c.PValue)
	}
	t.Logf("largest relative p-value error: %v", maxRel)
}

// TestMWUNullDistribution checks the exact distribution against R's pwilcox
// (R 4.2.2, from mwu.R) and against brute-force enumeration.
func TestMWUNullDistribution(t *testing.T) {
	t.Parallel()
	var v mwuRVectors
	mwuLoadJSON(t, "mwu_vectors.json", &v)
	for _, p := range v.Pwilcox {
		d := newMWUNull(int(p.M), int(p.N))
		if got := d.cdf(int(p.Q)); !mwuClose(got, p.Lower, 1e-9, 1e-300) {
			t.Errorf("pwilcox(%v, %v, %v) = %.17g, R %.17g", p.Q, p.M, p.N, got, p.Lower)
		}
		if got := d.sf(int(p.Q)); !mwuClose(got, p.Upper, 1e-9, 1e-300) {
			t.Errorf("pwilcox(%v - 1, %v, %v, lower = FALSE) = %.17g, R %.17g", p.Q, p.M, p.N, got, p.Upper)
		}
	}
	// Brute force: U over all C(m+n, m) ways to interleave the samples.
	for m := 0; m <= 6; m++ {
		for n := 0; n <= 7; n++ {
			want := make([]float64, m*n+1)
			for mask := 0; mask < 1<<(m+n); mask++ {
				if bits.OnesCount(uint(mask)) != m {
					continue
				}
				u, ys := 0, 0
				for k := range m + n { // position k holds an x iff bit k is set
					if mask>>k&1 == 1 {
						u += ys
					} else {
						ys++
					}
				}
				want[u]++
			}
			d := newMWUNull(m, n)
			var total float64
			for u, w := range want {
				total += w
				if d.at(u) != w {
					t.Errorf("f(%d; %d, %d) = %v, want %v", u, m, n, d.at(u), w)
				}
			}
			if d.total != total {
				t.Errorf("total(%d, %d) = %v, want %v", m, n, d.total, total)
			}
		}
	}
}

// ---- bins versus raw observations -------------------------------------------

// mwuRandomHist returns a histogram of nbins bins on a grid with integer
// counts in 1..maxCount.
func mwuRandomHist(r *rand.Rand, nbins, maxCount int, offset float64) []Bin {
	var b []Bin
	v := offset
	for range nbins {
		v += float64(1 + r.IntN(3))
		b = append(b, Bin{Value: v, Count: float64(1 + r.IntN(maxCount))})
	}
	return b
}

// mwuBrute is the textbook computation on the expanded observations.
func mwuBrute(x, y []float64, opts MWUOptions) (u, z, p float64) {
	xs := make([]float64, len(x))
	for i, e := range x {
		xs[i] = e - opts.Mu
	}
	for _, a := range xs {
		for _, b := range y {
			switch {
			case a > b:
				u++
			case a == b:
				u += 0.5
			}
		}
	}
	pooled := append(slices.Clone(xs), y...)
	slices.Sort(pooled)
	var ties float64
	for i := 0; i < len(pooled); {
		j := i
		for j < len(pooled) && pooled[j] == pooled[i] {
			j++
		}
		tt := float64(j - i)
		ties += tt*tt*tt - tt
		i = j
	}
	nx, ny := float64(len(x)), float64(len(y))
	n := nx + ny
	sigma := math.Sqrt(nx * ny / 12 * ((n + 1) - ties/(n*(n-1))))
	dz := u - nx*ny/2
	c := 0.0
	if !opts.NoCorrect {
		c = map[Alternative]float64{TwoSided: 0.5 * mwuSign(dz), Greater: 0.5, Less: -0.5}[opts.Alternative]
	}
	z = (dz - c) / sigma
	nrm := distuv.UnitNormal
	p = map[Alternative]float64{TwoSided: 2 * math.Min(nrm.CDF(z), nrm.CDF(-z)), Greater: nrm.CDF(-z), Less: nrm.CDF(z)}[opts.Alternative]
	return u, z, p
}

func TestMannWhitneyHistogramEqualsRaw(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 40 {
		x := mwuRandomHist(r, 1+r.IntN(40), 1+r.IntN(6), 0)
		y := mwuRandomHist(r, 1+r.IntN(40), 1+r.IntN(6), float64(r.IntN(10))-5)
		xr, yr := mwuExpand(x), mwuExpand(y)
		for _, alt := range []Alternative{TwoSided, Greater, Less} {
			for _, mu := range []float64{0, 1, 0.5} {
				for _, nc := range []bool{false, true} {
					opts := MWUOptions{Alternative: alt, Mu: mu, NoCorrect: nc, Method: MWUAsymptotic}
					got := MannWhitney(x, y, opts)
					u, z, p := mwuBrute(xr, yr, opts)
					if got.U != u || !mwuClose(got.Z, z, 1e-12, 1e-14) || !mwuClose(got.P, p, 1e-12, 1e-300) {
						t.Fatalf("trial %d %v %+v: bins give U=%v Z=%v P=%v, raw U=%v Z=%v P=%v", trial, alt, opts, got.U, got.Z, got.P, u, z, p)
					}
					// The same observations given one Bin per distinct raw value.
					if raw := MannWhitney(mwuBinsOf(xr), mwuBinsOf(yr), opts); raw != got {
						t.Fatalf("trial %d: raw %+v != histogram %+v", trial, raw, got)
					}
				}
			}
		}
	}
}

// TestMannWhitneyLargeHistogram checks that a histogram of a million
// observations per side keeps the integer statistic exact and the p-value
// finite.
func TestMannWhitneyLargeHistogram(t *testing.T) {
	t.Parallel()
	x := mwuBenchHist(3000, 1e6, 4.01)
	y := mwuBenchHist(3000, 1e6, 4)
	got := MannWhitney(x, y, MWUOptions{})
	if got.Exact || math.IsNaN(got.P) || got.P <= 0 || got.P > 1 || got.U != math.Trunc(2*got.U)/2 {
		t.Errorf("large histogram: %+v", got)
	}
	sw := MannWhitney(y, x, MWUOptions{})
	if sw.U != got.NX*got.NY-got.U || !mwuClose(sw.P, got.P, 1e-12, 0) {
		t.Errorf("swapped: %+v vs %+v", sw, got)
	}
}

// ---- properties ---------------------------------------------------------------

func TestMannWhitneySymmetry(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 60 {
		var x, y []Bin
		if trial%2 == 0 { // untied: exact for small samples
			v := r.Perm(30 + r.IntN(40))
			k := 1 + r.IntN(len(v)-2)
			x, y = mwuBinsOf(mwuInts(v[:k])), mwuBinsOf(mwuInts(v[k:]))
		} else {
			x = mwuRandomHist(r, 1+r.IntN(30), 4, 0)
			y = mwuRandomHist(r, 1+r.IntN(30), 4, 2)
		}
		for _, method := range []MWUMethod{MWUAuto, MWUAsymptotic} {
			for _, nc := range []bool{false, true} {
				o := func(a Alternative) MWUOptions { return MWUOptions{Alternative: a, NoCorrect: nc, Method: method} }
				two, twoS := MannWhitney(x, y, o(TwoSided)), MannWhitney(y, x, o(TwoSided))
				gr, grS := MannWhitney(x, y, o(Greater)), MannWhitney(y, x, o(Greater))
				le, leS := MannWhitney(x, y, o(Less)), MannWhitney(y, x, o(Less))
				if twoS.U != two.NX*two.NY-two.U || twoS.NX != two.NY || twoS.Z != -two.Z {
					t.Fatalf("trial %d: swap gives %+v for %+v", trial, twoS, two)
				}
				if !mwuClose(twoS.P, two.P, 1e-12, 0) || !mwuClose(grS.P, le.P, 1e-12, 0) || !mwuClose(leS.P, gr.P, 1e-12, 0) {
					t.Fatalf("trial %d: swapped p-values %v %v %v vs %v %v %v", trial, twoS.P, grS.P, leS.P, two.P, le.P, gr.P)
				}
			}
		}
	}
}

func mwuInts(v []int) []float64 {
	f := make([]float64, len(v))
	for i, e := range v {
		f[i] = float64(e)
	}
	return f
}

func TestMannWhitneyDegenerate(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	tests := []struct {
		name  string
		x, y  []Bin
		want  MWUResult
		pLess float64 // P for Less when it differs from want.P
	}{
		{"both empty", nil, nil, MWUResult{P: 1}, 1},
		{"x empty", nil, []Bin{{1, 3}}, MWUResult{NY: 3, P: 1}, 1},
		{"y empty", []Bin{{1, 3}, {2, 1}}, []Bin{}, MWUResult{NX: 4, P: 1}, 1},
		{"all tied", []Bin{{5, 3}}, []Bin{{5, 4}}, MWUResult{U: 6, NX: 3, NY: 4, P: 1}, 1},
		{"all tied, one each", []Bin{{5, 1}}, []Bin{{5, 1}}, MWUResult{U: 0.5, NX: 1, NY: 1, P: 1}, 1},
		{"one each, exact", []Bin{{1, 1}}, []Bin{{2, 1}}, MWUResult{U: 0, NX: 1, NY: 1, P: 1, Exact: true}, 0.5},
		{"huge tied bin", []Bin{{7, 1e6}}, []Bin{{7, 2e6}}, MWUResult{U: 1e12, NX: 1e6, NY: 2e6, P: 1}, 1},
	}
	for _, tc := range tests {
		for _, alt := range []Alternative{TwoSided, Greater, Less} {
			got := MannWhitney(tc.x, tc.y, MWUOptions{Alternative: alt})
			want := tc.want
			if alt == Less {
				want.P = tc.pLess
			}
			if got != want {
				t.Errorf("%s %v: got %+v, want %+v", tc.name, alt, got, want)
			}
		}
	}
	// Infinite values and fractional counts give finite, NaN-free results.
	for _, c := range [][2][]Bin{
		{{{math.Inf(-1), 1}, {0, 2}, {inf, 1}}, {{inf, 2}}},
		{{{0.5, 0.25}, {1, 0.5}}, {{0.75, 0.3}, {2, 1.5}}},
		{{{1, 1e-300}}, {{2, 1e-300}}},
	} {
		for _, alt := range []Alternative{TwoSided, Greater, Less} {
			for _, nc := range []bool{false, true} {
				got := MannWhitney(c[0], c[1], MWUOptions{Alternative: alt, NoCorrect: nc})
				if math.IsNaN(got.U) || math.IsNaN(got.Z) || math.IsNaN(got.P) || got.P < 0 || got.P > 1 {
					t.Errorf("%v %v: got %+v", c, alt, got)
				}
			}
		}
	}
}

// TestMannWhitneyEqualAdjacentBins checks that bins with equal Values, as a
// rescaling may produce, count as one bin.
func TestMannWhitneyEqualAdjacentBins(t *testing.T) {
	t.Parallel()
	x := []Bin{{1, 1}, {2, 2}, {2, 1}, {5, 1}}
	merged := []Bin{{1, 1}, {2, 3}, {5, 1}}
	y := []Bin{{2, 1}, {3, 1}, {3, 2}}
	ym := []Bin{{2, 1}, {3, 3}}
	for _, alt := range []Alternative{TwoSided, Greater, Less} {
		opts := MWUOptions{Alternative: alt}
		if got, want := MannWhitney(x, y, opts), MannWhitney(merged, ym, opts); got != want {
			t.Errorf("%v: %+v, merged bins %+v", alt, got, want)
		}
	}
	// Untied values split over bins of count 1 stay eligible for the exact
	// test only when no two are equal.
	if got := MannWhitney([]Bin{{1, 1}, {1, 1}}, []Bin{{2, 1}}, MWUOptions{}); got.Exact {
		t.Errorf("equal adjacent bins: Exact = true")
	}
}

// TestMannWhitneyExactFallback checks when an explicit MWUExact is honoured.
func TestMannWhitneyExactFallback(t *testing.T) {
	t.Parallel()
	seq := func(n int, off float64) []Bin {
		b := make([]Bin, n)
		for i := range b {
			b[i] = Bin{Value: float64(2*i) + off, Count: 1}
		}
		return b
	}
	tests := []struct {
		name  string
		x, y  []Bin
		opts  MWUOptions
		exact bool
	}{
		{"auto 49x49", seq(49, 0), seq(49, 1), MWUOptions{}, true},
		{"auto 50x10", seq(50, 0), seq(10, 1), MWUOptions{}, false},
		{"exact 100x100", seq(100, 0), seq(100, 1), MWUOptions{Method: MWUExact}, true},
		{"exact above cap", seq(101, 0), seq(100, 1), MWUOptions{Method: MWUExact}, false},
		{"exact with cross ties", seq(10, 0), seq(10, 0), MWUOptions{Method: MWUExact}, false},
		{"exact with count 2", []Bin{{1, 2}}, seq(5, 2), MWUOptions{Method: MWUExact}, false},
		{"ties removed by mu", seq(10, 0), seq(10, 0), MWUOptions{Mu: 1}, true},
		{"ties created by mu", seq(10, 0), seq(10, 1), MWUOptions{Mu: 1}, false},
		{"asymptotic", seq(5, 0), seq(5, 1), MWUOptions{Method: MWUAsymptotic}, false},
	}
	for _, tc := range tests {
		if got := MannWhitney(tc.x, tc.y, tc.opts); got.Exact != tc.exact {
			t.Errorf("%s: Exact = %v, want %v", tc.name, got.Exact, tc.exact)
		}
	}
}

func TestMannWhitneyPanics(t *testing.T) {
	t.Parallel()
	ok := []Bin{{1, 1}, {2, 1}}
	tests := []struct {
		name string
		x    []Bin
		opts MWUOptions
	}{
		{"unsorted", []Bin{{2, 1}, {1, 1}}, MWUOptions{}},
		{"NaN value", []Bin{{math.NaN(), 1}}, MWUOptions{}},
		{"zero count", []Bin{{1, 0}}, MWUOptions{}},
		{"negative count", []Bin{{1, -1}}, MWUOptions{}},
		{"infinite count", []Bin{{1, math.Inf(1)}}, MWUOptions{}},
		{"NaN count", []Bin{{1, math.NaN()}}, MWUOptions{}},
		{"NaN mu", ok, MWUOptions{Mu: math.NaN()}},
		{"infinite mu", ok, MWUOptions{Mu: math.Inf(1)}},
		{"bad alternative", ok, MWUOptions{Alternative: 7}},
		{"bad method", ok, MWUOptions{Method: 7}},
	}
	for _, tc := range tests {
		func() {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.HasPrefix(s, "stat: MannWhitney: ") {
					t.Errorf("%s: recovered %v, want an analysis: MannWhitney panic", tc.name, r)
				}
			}()
			MannWhitney(tc.x, ok, tc.opts)
		}()
	}
}

// ---- benchmarks -------------------------------------------------------------

// mwuBenchHist is a histogram of about n log-normal(mu, 2.2) observations
// in nbins log-linear bins as analysis.Dist keeps them: 128 bins per
// octave from 2^-6 up, each represented by its (exactly representable)
// midpoint. Histograms built with different mu share the grid.
func mwuBenchHist(nbins int, n, mu float64) []Bin {
	d := distuv.LogNormal{Mu: mu, Sigma: 2.2}
	b := make([]Bin, 0, nbins)
	for k := range nbins {
		oct := math.Ldexp(1, k/128-6)
		lo := oct * (1 + float64(k%128)/128)
		hi := oct * (1 + float64(k%128+1)/128)
		if c := math.Round(n * (d.CDF(hi) - d.CDF(lo))); c > 0 {
			b = append(b, Bin{Value: (lo + hi) / 2, Count: c})
		}
	}
	return b
}

// mwuBenchRaw is n distinct raw observations.
func mwuBenchRaw(r *rand.Rand, n int, shift float64) []Bin {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64() + shift
	}
	return mwuBinsOf(v)
}

type mwuBenchCase struct {
	name string
	x, y []Bin
}

func mwuBenchCases() []mwuBenchCase {
	r := rand.New(rand.NewPCG(5, 6))
	return []mwuBenchCase{
		{"small/raw-20x20-exact", mwuBenchRaw(r, 20, 0.3), mwuBenchRaw(r, 20, 0)},
		{"medium/raw-2000x2000", mwuBenchRaw(r, 2000, 0.05), mwuBenchRaw(r, 2000, 0)},
		{"large/hist-3000bins-1Mx1M", mwuBenchHist(3000, 1e6, 4.01), mwuBenchHist(3000, 1e6, 4)},
	}
}

func BenchmarkMannWhitney(b *testing.B) {
	cases := mwuBenchCases()
	r := rand.New(rand.NewPCG(7, 8))
	cases = append(cases, mwuBenchCase{"exact-forced/raw-100x100", mwuBenchRaw(r, 100, 0.3), mwuBenchRaw(r, 100, 0)})
	for _, bc := range cases {
		opts := MWUOptions{}
		if strings.HasPrefix(bc.name, "exact-forced") {
			opts.Method = MWUExact
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				MannWhitney(bc.x, bc.y, opts)
			}
		})
	}
}
