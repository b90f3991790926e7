package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

func TestHodgesLehmannKnownValues(t *testing.T) {
	t.Parallel()
	// STATS-NOTES.md, R 4.2.2 wilcox.test(x, y, conf.int = TRUE):
	// x = [19,22,16,29,24], y = [20,11,17,12]: estimate 7, 95% CI [-1, 17].
	// The other rows are the same call with conf.level = 0.99 (R reports the
	// achieved level 0.984127 = 1 - 2·P(U ≤ 0) = 1 - 2/126) and alternative =
	// "greater"/"less" (R 4.2.2, recorded in mwu_vectors.json).
	x := mwuBinsOf([]float64{19, 22, 16, 29, 24})
	y := mwuBinsOf([]float64{20, 11, 17, 12})
	inf := math.Inf(1)
	tests := []struct {
		conf      float64
		alt       Alternative
		lo, hi    float64
		confLevel float64
	}{
		{0.95, TwoSided, -1, 17, 0.95},
		{0.99, TwoSided, -4, 18, 1 - 2.0/126},
		{0.95, Greater, -1, inf, 0.95},
		{0.99, Greater, -4, inf, 0.99},
		{0.95, Less, -inf, 13, 0.95},
		{0.99, Less, -inf, 18, 0.99},
	}
	for _, tc := range tests {
		got := HodgesLehmann(x, y, tc.conf, tc.alt, MWUAuto)
		want := HLResult{Estimate: 7, Lower: tc.lo, Upper: tc.hi, Exact: true, ConfLevel: tc.confLevel}
		if got.Estimate != want.Estimate || got.Lower != want.Lower || got.Upper != want.Upper ||
			got.Exact != want.Exact || !mwuClose(got.ConfLevel, want.ConfLevel, 1e-12, 0) {
			t.Errorf("%v %v: got %+v, want %+v", tc.conf, tc.alt, got, want)
		}
	}
}

// hlRootInterval is the set of shifts d at which R's statistic W(d) of
// x - d against y is zero or changes sign, without the continuity
// correction: R's asymptotic point estimate is uniroot(W) after it has set
// correct <- FALSE, so it lies in this interval (to within tol.root)
// whatever the alternative. The interval runs between the two middle order
// statistics and contains the median.
func hlRootInterval(x, y []Bin, ratio bool) (a, b float64) {
	p := newHLPairs(x, y, ratio)
	var nx, ny float64
	for _, e := range x {
		nx += e.Count
	}
	for _, e := range y {
		ny += e.Count
	}
	half := nx * ny / 2
	return p.orderStat(half, false), p.orderStat(half, true)
}

func TestHodgesLehmannRVectors(t *testing.T) {
	t.Parallel()
	var v mwuRVectors
	mwuLoadJSON(t, "mwu_vectors.json", &v)
	ds := mwuDatasetMap(v.Datasets)
	tol := v.Tolerances
	// Largest deviations from R's default-tolerance figures, for the log.
	maxCIDev, maxEstDev, maxTight := map[string]float64{}, map[string]float64{}, map[string]float64{}
	for _, c := range v.Cases {
		d := ds[c.Dataset]
		x, y := mwuBinsOf(d.X), mwuBinsOf(d.Y)
		alt := mwuParseAlt(t, c.Alternative)
		method := mwuMethodOfR(c.Exact)
		name := fmt.Sprintf("%s %s conf=%v mu=%v correct=%v exact=%v", c.Dataset, c.Alternative, c.ConfLevel, c.Mu, c.Correct, mwuFmtExact(c.Exact))
		// R decides between the exact and the normal interval from the ties
		// of x - mu and y, HodgesLehmann from those of x and y.
		if mwuMerge(x, y, c.Mu).ties != mwuMerge(x, y, 0).ties {
			continue
		}
		got := hodgesLehmann("test", x, y, c.ConfLevel, alt, method, c.Correct, false)
		if want := strings.Contains(c.Method, "exact"); got.Exact != want {
			t.Errorf("%s: Exact = %v, R used %q", name, got.Exact, c.Method)
			continue
		}
		if !mwuClose(got.Estimate, d.MedianDiffs, 1e-12, 0) {
			t.Errorf("%s: Estimate = %.17g, R median(outer(x, y, \"-\")) = %.17g", name, got.Estimate, d.MedianDiffs)
		}
		ci := [2]float64{got.Lower, got.Upper}
		if got.Exact {
			if !mwuClose(got.Estimate, c.Estimate, tol.HLExact, 0) {
				t.Errorf("%s: Estimate = %.17g, R %.17g", name, got.Estimate, c.Estimate)
			}
			for k := range 2 {
				if !mwuClose(ci[k], float64(c.ConfInt[k]), tol.HLExact, 0) {
					t.Errorf("%s: CI = %v, R %v", name, ci, c.ConfInt)
				}
			}
			if !mwuClose(got.ConfLevel, c.ConfLevelAttr, 1e-12, 0) {
				t.Errorf("%s: ConfLevel = %.17g, R %.17g", name, got.ConfLevel, c.ConfLevelAttr)
			}
			continue
		}
		if got.ConfLevel != c.ConfLevelAttr {
			t.Errorf("%s: ConfLevel = %v, R %v", name, got.ConfLevel, c.ConfLevelAttr)
		}
		for k := range 2 {
			tight, def := float64(c.ConfIntTight[k]), float64(c.ConfInt[k])
			if !mwuClose(ci[k], tight, 0, tol.HLTightAbs) {
				t.Errorf("%s: CI = %.17g, R (tol.root = 1e-10) %v", name, ci, c.ConfIntTight)
			}
			if !mwuClose(ci[k], def, tol.HLDefaultRel, tol.HLDefaultAbs) {
				t.Errorf("%s: CI = %.17g, R (tol.root = 1e-4) %v", name, ci, c.ConfInt)
			}
			if !math.IsInf(def, 0) {
				maxCIDev[c.Family] = max(maxCIDev[c.Family], math.Abs(ci[k]-def))
				maxTight[c.Family] = max(maxTight[c.Family], math.Abs(ci[k]-tight))
			}
		}
		a, b := hlRootInterval(x, y, false)
		if c.EstimateTight < a-tol.HLTightAbs || c.EstimateTight > b+tol.HLTightAbs {
			t.Errorf("%s: R estimate (tol.root = 1e-10) %.17g outside the roots [%.17g, %.17g] of W", name, c.EstimateTight, a, b)
		}
		if c.Estimate < a-tol.HLDefaultAbs || c.Estimate > b+tol.HLDefaultAbs {
			t.Errorf("%s: R estimate %.17g outside the roots [%.17g, %.17g] of W", name, c.Estimate, a, b)
		}
		maxEstDev[c.Family] = max(maxEstDev[c.Family], math.Abs(got.Estimate-c.Estimate))
	}
	t.Logf("asymptotic cases, largest |Go - R|: CI ends %v (tol.root = 1e-10: %v); estimate %v", maxCIDev, maxTight, maxEstDev)
}

func TestHodgesLehmannRatioRVectors(t *testing.T) {
	t.Parallel()
	var v mwuRVectors
	mwuLoadJSON(t, "mwu_vectors.json", &v)
	ds := mwuDatasetMap(v.RatioDatasets)
	tol := v.Tolerances
	for _, c := range v.RatioCases {
		d := ds[c.Dataset]
		x, y := mwuBinsOf(d.X), mwuBinsOf(d.Y)
		alt := mwuParseAlt(t, c.Alternative)
		name := fmt.Sprintf("%s %s conf=%v", c.Dataset, c.Alternative, c.ConfLevel)
		got := HodgesLehmannRatio(x, y, c.ConfLevel, alt)
		if got.Exact != c.Exact {
			t.Errorf("%s: Exact = %v, R %q", name, got.Exact, c.Method)
			continue
		}
		if want := math.Exp(d.MedianLogDiffs); !mwuClose(got.Estimate, want, tol.RatioRel, 0) {
			t.Errorf("%s: Estimate = %.17g, R exp(median(log x - log y)) = %.17g", name, got.Estimate, want)
		}
		ci := [2]float64{got.Lower, got.Upper}
		want := c.ConfInt
		if !c.Exact {
			want = c.ConfIntTight
			// R's estimate is a root of W on the log scale.
			a, b := hlRootInterval(x, y, true)
			if l := c.LogEstimateTight; l < math.Log(a)-tol.HLTightAbs || l > math.Log(b)+tol.HLTightAbs {
				t.Errorf("%s: R log estimate %.17g outside log roots [%.17g, %.17g]", name, l, math.Log(a), math.Log(b))
			}
		} else if !mwuClose(got.ConfLevel, c.ConfLevelAttr, 1e-12, 0) {
			t.Errorf("%s: ConfLevel = %v, R %v", name, got.ConfLevel, c.ConfLevelAttr)
		}
		// On the log scale the tight tolerance is absolute; exp makes it
		// relative.
		rel := tol.RatioRel
		if !c.Exact {
			rel = tol.HLTightAbs
		}
		for k := range 2 {
			if !mwuClose(ci[k], float64(want[k]), rel, 0) {
				t.Errorf("%s: CI = %.17g, R %v", name, ci, want)
			}
		}
	}
}

// ---- brute force on the expanded observations --------------------------------

// hlBruteDiffs returns the sorted pairwise values f(x_i, y_j) of the
// observations.
func hlBruteDiffs(xr, yr []float64, ratio bool) []float64 {
	p := hlPairs{ratio: ratio}
	var d []float64
	for _, a := range xr {
		for _, b := range yr {
			d = append(d, p.f(a, b))
		}
	}
	slices.Sort(d)
	return d
}

// hlBruteW is R's W(d) computed naively: the continuity-corrected,
// tie-corrected z of x - d against y.
func hlBruteW(xr, yr []float64, d float64, alt Alternative, correct bool) float64 {
	xs := make([]float64, len(xr))
	for i, e := range xr {
		xs[i] = e - d
	}
	_, z, _ := mwuBrute(xs, yr, MWUOptions{Alternative: alt, NoCorrect: !correct})
	return z
}

// hlBruteAsymptoticCI follows R's uniroot search: it evaluates W on every
// open interval between consecutive distinct pairwise differences and
// returns the difference at which W first drops below the target.
func hlBruteAsymptoticCI(xr, yr []float64, conf float64, alt Alternative, correct bool) (lo, hi float64) {
	u := slices.Compact(hlBruteDiffs(xr, yr, false))
	alpha := 1 - conf
	zc := -distuv.UnitNormal.Quantile(alpha)
	if alt == TwoSided {
		zc = -distuv.UnitNormal.Quantile(alpha / 2)
	}
	cross := func(zq float64) float64 {
		for k := 0; k <= len(u); k++ {
			var d float64
			switch k {
			case 0:
				d = u[0] - 1
			case len(u):
				d = u[len(u)-1] + 1
			default:
				d = (u[k-1] + u[k]) / 2
			}
			if hlBruteW(xr, yr, d, alt, correct) < zq {
				return u[max(k-1, 0)]
			}
		}
		return u[len(u)-1]
	}
	lo, hi = math.Inf(-1), math.Inf(1)
	if alt != Less {
		lo = cross(zc)
	}
	if alt != Greater {
		hi = cross(-zc)
	}
	return lo, hi
}

func hlBruteMedian(d []float64, ratio bool) float64 {
	n := len(d)
	p := hlPairs{ratio: ratio}
	return p.middle(d[(n-1)/2], d[n/2])
}

func TestHodgesLehmannHistogramEqualsRaw(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(11, 12))
	for trial := range 25 {
		// Integer-valued histograms, so the naive W is evaluated at
		// half-integers where x - d never ties with y.
		x := mwuRandomHist(r, 1+r.IntN(15), 1+r.IntN(5), 0)
		y := mwuRandomHist(r, 1+r.IntN(15), 1+r.IntN(5), float64(r.IntN(6))-3)
		xr, yr := mwuExpand(x), mwuExpand(y)
		diffs := hlBruteDiffs(xr, yr, false)
		for _, alt := range []Alternative{TwoSided, Greater, Less} {
			for _, conf := range []float64{0.8, 0.95, 0.99} {
				for _, correct := range []bool{true, false} {
					got := hodgesLehmann("test", x, y, conf, alt, MWUAsymptotic, correct, false)
					lo, hi := hlBruteAsymptoticCI(xr, yr, conf, alt, correct)
					if want := hlBruteMedian(diffs, false); got.Estimate != want {
						t.Fatalf("trial %d: Estimate = %v, median of raw differences %v", trial, got.Estimate, want)
					}
					if got.Lower != lo || got.Upper != hi {
						t.Fatalf("trial %d %v conf=%v correct=%v: CI [%v, %v], naive root search [%v, %v]\nx=%v\ny=%v",
							trial, alt, conf, correct, got.Lower, got.Upper, lo, hi, x, y)
					}
					raw := hodgesLehmann("test", mwuBinsOf(xr), mwuBinsOf(yr), conf, alt, MWUAsymptotic, correct, false)
					if raw != got {
						t.Fatalf("trial %d: raw %+v != histogram %+v", trial, raw, got)
					}
				}
			}
		}
	}
}

// TestHodgesLehmannExactOrderStatistics checks the exact interval against
// the sorted list of all differences, with q from qwilcox (checked against R
// in TestMWUNullDistribution).
func TestHodgesLehmannExactOrderStatistics(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(13, 14))
	for trial := range 30 {
		v := r.Perm(10 + r.IntN(60))
		k := 1 + r.IntN(min(len(v)-2, 48))
		xr, yr := mwuInts(v[:k]), mwuInts(v[k:])
		if len(yr) >= 50 {
			yr = yr[:49]
		}
		x, y := mwuBinsOf(xr), mwuBinsOf(yr)
		diffs := hlBruteDiffs(xr, yr, false)
		dist := newMWUNull(len(xr), len(yr))
		for _, conf := range []float64{0.5, 0.9, 0.95, 0.99} {
			got := HodgesLehmann(x, y, conf, TwoSided, MWUAuto)
			q := max(dist.quantile((1-conf)/2), 1)
			want := HLResult{Estimate: hlBruteMedian(diffs, false), Lower: diffs[q-1], Upper: diffs[len(diffs)-q], Exact: true}
			if got.Estimate != want.Estimate || got.Lower != want.Lower || got.Upper != want.Upper || !got.Exact {
				t.Fatalf("trial %d conf %v: got %+v, want %+v", trial, conf, got, want)
			}
		}
	}
}

func TestHodgesLehmannRatioBruteForce(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(15, 16))
	for trial := range 40 {
		// Non-negative grids that include 0, so 0/0 = 1 and x/0 = +Inf occur.
		x := mwuRandomHist(r, 1+r.IntN(12), 1+r.IntN(4), -2)
		y := mwuRandomHist(r, 1+r.IntN(12), 1+r.IntN(4), -2)
		x, y = hlClip(x), hlClip(y)
		if len(x) == 0 || len(y) == 0 {
			continue
		}
		xr, yr := mwuExpand(x), mwuExpand(y)
		ratios := hlBruteDiffs(xr, yr, true)
		n := float64(len(ratios))
		for _, alt := range []Alternative{TwoSided, Greater, Less} {
			got := HodgesLehmannRatio(x, y, 0.9, alt)
			if want := hlBruteMedian(ratios, true); got.Estimate != want || math.IsNaN(got.Estimate) {
				t.Fatalf("trial %d: Estimate = %v, median of raw ratios %v\nx=%v y=%v", trial, got.Estimate, want, x, y)
			}
			if got.Exact {
				continue
			}
			// Ranks of the asymptotic interval, from the doc comment.
			z := -distuv.UnitNormal.Quantile(0.1)
			if alt == TwoSided {
				z = -distuv.UnitNormal.Quantile(0.05)
			}
			var nx, ny float64
			for _, e := range x {
				nx += e.Count
			}
			for _, e := range y {
				ny += e.Count
			}
			k := n/2 + 0.5 + z*mwuSigma(nx, ny, mwuTieTermWithin(x, y))
			wantLo, wantHi := 0.0, math.Inf(1)
			if alt != Less {
				wantLo = ratios[min(max(int(math.Floor(n-k)), 0), len(ratios)-1)]
			}
			if alt != Greater {
				wantHi = ratios[min(max(int(math.Ceil(k))-1, 0), len(ratios)-1)]
			}
			if got.Lower != wantLo || got.Upper != wantHi {
				t.Fatalf("trial %d %v: CI [%v, %v], sorted ratios give [%v, %v]", trial, alt, got.Lower, got.Upper, wantLo, wantHi)
			}
		}
	}
}

// hlClip keeps the bins with non-negative values.
func hlClip(b []Bin) []Bin {
	var out []Bin
	for _, e := range b {
		if e.Value >= 0 {
			out = append(out, e)
		}
	}
	return out
}

// TestHodgesLehmannRatioIsLogShift checks that, for positive data, the ratio
// interval is HodgesLehmann on log values transformed back.
func TestHodgesLehmannRatioIsLogShift(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(17, 18))
	for trial := range 30 {
		nx, ny := 3+r.IntN(300), 3+r.IntN(300)
		xr, yr := make([]float64, nx), make([]float64, ny)
		for i := range xr {
			xr[i] = math.Round(math.Exp(r.NormFloat64()*0.5+4)*10) / 10
		}
		for i := range yr {
			yr[i] = math.Round(math.Exp(r.NormFloat64()*0.5+4.05)*10) / 10
		}
		x, y := mwuBinsOf(xr), mwuBinsOf(yr)
		lx, ly := hlLogBins(x), hlLogBins(y)
		for _, alt := range []Alternative{TwoSided, Greater, Less} {
			got := HodgesLehmannRatio(x, y, 0.95, alt)
			lg := HodgesLehmann(lx, ly, 0.95, alt, MWUAuto)
			want := HLResult{Estimate: math.Exp(lg.Estimate), Lower: math.Exp(lg.Lower), Upper: math.Exp(lg.Upper), Exact: lg.Exact, ConfLevel: lg.ConfLevel}
			if got.Exact != want.Exact || got.ConfLevel != want.ConfLevel ||
				!mwuClose(got.Estimate, want.Estimate, 1e-13, 0) || !mwuClose(got.Lower, want.Lower, 1e-13, 0) || !mwuClose(got.Upper, want.Upper, 1e-13, 0) {
				t.Fatalf("trial %d %v: ratio %+v, exp(HL of logs) %+v", trial, alt, got, want)
			}
		}
	}
}

func hlLogBins(b []Bin) []Bin {
	out := make([]Bin, len(b))
	for i, e := range b {
		out[i] = Bin{Value: math.Log(e.Value), Count: e.Count}
	}
	return out
}

func TestHodgesLehmannSymmetry(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(19, 20))
	for trial := range 40 {
		var x, y []Bin
		if trial%2 == 0 {
			v := r.Perm(20 + r.IntN(60))
			k := 1 + r.IntN(len(v)-2)
			x, y = mwuBinsOf(mwuInts(v[:k])), mwuBinsOf(mwuInts(v[k:]))
		} else {
			x = mwuRandomHist(r, 1+r.IntN(50), 20, 0)
			y = mwuRandomHist(r, 1+r.IntN(50), 20, 3)
		}
		for _, conf := range []float64{0.9, 0.95} {
			for _, method := range []MWUMethod{MWUAuto, MWUAsymptotic} {
				a := HodgesLehmann(x, y, conf, TwoSided, method)
				b := HodgesLehmann(y, x, conf, TwoSided, method)
				if b.Estimate != -a.Estimate || b.Lower != -a.Upper || b.Upper != -a.Lower || a.Exact != b.Exact || a.ConfLevel != b.ConfLevel {
					t.Fatalf("trial %d: HL(x, y) = %+v, HL(y, x) = %+v", trial, a, b)
				}
				g := HodgesLehmann(x, y, conf, Greater, method)
				l := HodgesLehmann(y, x, conf, Less, method)
				if g.Lower != -l.Upper || !math.IsInf(g.Upper, 1) || !math.IsInf(l.Lower, -1) {
					t.Fatalf("trial %d: greater %+v, swapped less %+v", trial, g, l)
				}
				if !(a.Lower <= a.Estimate && a.Estimate <= a.Upper) {
					t.Fatalf("trial %d: estimate outside its interval: %+v", trial, a)
				}
			}
			// Ratios: swapping the samples inverts the estimate and interval
			// (up to the rounding of x/y versus 1/(y/x)).
			xp, yp := hlShift(x, 1), hlShift(y, 1)
			a, b := HodgesLehmannRatio(xp, yp, conf, TwoSided), HodgesLehmannRatio(yp, xp, conf, TwoSided)
			if !mwuClose(b.Estimate, 1/a.Estimate, 1e-14, 0) || !mwuClose(b.Lower, 1/a.Upper, 1e-14, 0) || !mwuClose(b.Upper, 1/a.Lower, 1e-14, 0) {
				t.Fatalf("trial %d: ratio(x, y) = %+v, ratio(y, x) = %+v", trial, a, b)
			}
		}
	}
}

func hlShift(b []Bin, s float64) []Bin {
	out := make([]Bin, len(b))
	for i, e := range b {
		out[i] = Bin{Value: e.Value + s, Count: e.Count}
	}
	return out
}

func TestHodgesLehmannDegenerate(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	tests := []struct {
		name        string
		x, y        []Bin
		diff, ratio HLResult
	}{
		{"empty x", nil, []Bin{{1, 2}}, HLResult{0, -inf, inf, false, 0.95}, HLResult{1, 0, inf, false, 0.95}},
		{"empty y", []Bin{{1, 2}}, []Bin{}, HLResult{0, -inf, inf, false, 0.95}, HLResult{1, 0, inf, false, 0.95}},
		{"all tied", []Bin{{5, 3}}, []Bin{{5, 4}}, HLResult{0, 0, 0, false, 0.95}, HLResult{1, 1, 1, false, 0.95}},
		{"all zero", []Bin{{0, 3}}, []Bin{{0, 1e6}}, HLResult{0, 0, 0, false, 0.95}, HLResult{1, 1, 1, false, 0.95}},
		// One observation each: R reports the achieved level 1 - 2·P(U ≤ 0) = 0.
		{"one each", []Bin{{1, 1}}, []Bin{{3, 1}}, HLResult{-2, -2, -2, true, 0}, HLResult{1.0 / 3, 1.0 / 3, 1.0 / 3, true, 0}},
		{"zeros against positives", []Bin{{0, 5}}, []Bin{{2, 5}}, HLResult{-2, -2, -2, false, 0.95}, HLResult{0, 0, 0, false, 0.95}},
		{"positives against zeros", []Bin{{2, 5}}, []Bin{{0, 5}}, HLResult{2, 2, 2, false, 0.95}, HLResult{inf, inf, inf, false, 0.95}},
		{"zeros both sides", []Bin{{0, 1}, {2, 1}}, []Bin{{0, 1}, {3, 1}}, HLResult{-0.5, -3, 2, false, 0.95}, HLResult{math.Sqrt(2.0 / 3), 0, inf, false, 0.95}},
	}
	for _, tc := range tests {
		if got := HodgesLehmann(tc.x, tc.y, 0.95, TwoSided, MWUAuto); !hlEqual(got, tc.diff) {
			t.Errorf("%s: HodgesLehmann = %+v, want %+v", tc.name, got, tc.diff)
		}
		if got := HodgesLehmannRatio(tc.x, tc.y, 0.95, TwoSided); !hlEqual(got, tc.ratio) {
			t.Errorf("%s: HodgesLehmannRatio = %+v, want %+v", tc.name, got, tc.ratio)
		}
		for _, alt := range []Alternative{Greater, Less} {
			for _, got := range []HLResult{HodgesLehmann(tc.x, tc.y, 0.9, alt, MWUAuto), HodgesLehmannRatio(tc.x, tc.y, 0.9, alt)} {
				if math.IsNaN(got.Estimate) || math.IsNaN(got.Lower) || math.IsNaN(got.Upper) || math.IsNaN(got.ConfLevel) {
					t.Errorf("%s %v: NaN in %+v", tc.name, alt, got)
				}
			}
		}
	}
}

func hlEqual(a, b HLResult) bool {
	c := func(p, q float64) bool { return p == q || mwuClose(p, q, 1e-15, 0) }
	return c(a.Estimate, b.Estimate) && c(a.Lower, b.Lower) && c(a.Upper, b.Upper) && a.Exact == b.Exact && c(a.ConfLevel, b.ConfLevel)
}

func TestHodgesLehmannPanics(t *testing.T) {
	t.Parallel()
	ok := []Bin{{1, 1}, {2, 1}}
	tests := []struct {
		name  string
		call  func()
		panic string
	}{
		{"conf 0", func() { HodgesLehmann(ok, ok, 0, TwoSided, MWUAuto) }, "analysis: HodgesLehmann: "},
		{"conf 1", func() { HodgesLehmann(ok, ok, 1, TwoSided, MWUAuto) }, "analysis: HodgesLehmann: "},
		{"conf NaN", func() { HodgesLehmann(ok, ok, math.NaN(), TwoSided, MWUAuto) }, "analysis: HodgesLehmann: "},
		{"infinite value", func() { HodgesLehmann([]Bin{{math.Inf(1), 1}}, ok, 0.95, TwoSided, MWUAuto) }, "analysis: HodgesLehmann: "},
		{"unsorted", func() { HodgesLehmann(ok, []Bin{{2, 1}, {1, 1}}, 0.95, TwoSided, MWUAuto) }, "analysis: HodgesLehmann: "},
		{"bad method", func() { HodgesLehmann(ok, ok, 0.95, TwoSided, 9) }, "analysis: HodgesLehmann: "},
		{"bad alternative", func() { HodgesLehmann(ok, ok, 0.95, 9, MWUAuto) }, "analysis: HodgesLehmann: "},
		{"negative ratio", func() { HodgesLehmannRatio([]Bin{{-1, 1}}, ok, 0.95, TwoSided) }, "analysis: HodgesLehmannRatio: "},
	}
	for _, tc := range tests {
		func() {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.HasPrefix(s, tc.panic) {
					t.Errorf("%s: recovered %v, want a %q panic", tc.name, r, tc.panic)
				}
			}()
			tc.call()
		}()
	}
}

func TestHLKeyOrder(t *testing.T) {
	t.Parallel()
	v := []float64{math.Inf(-1), -math.MaxFloat64, -1, -math.SmallestNonzeroFloat64, math.Copysign(0, -1), 0,
		math.SmallestNonzeroFloat64, 1, math.MaxFloat64, math.Inf(1)}
	for i, f := range v {
		if g := hlFromKey(hlKey(f)); math.Float64bits(g) != math.Float64bits(f) {
			t.Errorf("hlFromKey(hlKey(%v)) = %v", f, g)
		}
		if i > 0 && hlKey(v[i-1]) >= hlKey(f) {
			t.Errorf("hlKey(%v) >= hlKey(%v)", v[i-1], f)
		}
	}
}

// ---- benchmarks ---------------------------------------------------------------

func BenchmarkHodgesLehmann(b *testing.B) {
	for _, bc := range mwuBenchCases() {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				HodgesLehmann(bc.x, bc.y, 0.95, TwoSided, MWUAuto)
			}
		})
	}
	x, y := mwuBenchHist(3000, 1e6, 4.01), mwuBenchHist(3000, 1e6, 4)
	b.Run("large/ratio-hist-3000bins-1Mx1M", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			HodgesLehmannRatio(x, y, 0.95, TwoSided)
		}
	})
}
