package analysis

import (
	"math"
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
		E, Lo, Hi rwNum
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
		got := rateMixtureLogE(tc.Y, tc.X, tc.A, tc.B, tc.P0, 1-tc.P0, seqAltOf(t, tc.Alt))
		if want := float64(tc.LogE); math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
			t.Errorf("%s: log E(x=%v, y=%v, p0=%v, Beta(%v, %v), %v) = %.12g, scipy %.12g", tc.Source, tc.X, tc.Y, tc.P0, tc.A, tc.B, tc.Alt, got, want)
		}
	}
}

// TestSeqMeanVectors compares SeqMean with the closed forms evaluated by
// scipy (norm.logcdf, brentq for the one-sided bound): 1e-9 relative, or
// 1e-9 absolute on the bounds relative to the standard error.
func TestSeqMeanVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range loadSeqVectors(t).MeanMSPRT {
		x := Moments{N: tc.X[0], Mean: tc.X[1], M2: tc.X[2]}
		y := Moments{N: tc.Y[0], Mean: tc.Y[1], M2: tc.Y[2]}
		e, lo, hi := SeqMean(x, y, tc.C, seqAltOf(t, tc.Alt), tc.Alpha, tc.N0)
		se := math.Sqrt(x.Variance()/x.N + tc.C*tc.C*y.Variance()/y.N)
		near := func(got, want float64) bool {
			return rwClose(got, want, 1e-9) || math.Abs(got-want) <= 1e-9*se
		}
		if !rwClose(e, float64(tc.E), 1e-9) || !near(lo, float64(tc.Lo)) || !near(hi, float64(tc.Hi)) {
			t.Errorf("x=%v y=%v c=%v %v α=%v: e=%.12g [%.12g, %.12g], scipy %.12g [%.12g, %.12g]", tc.X, tc.Y, tc.C, tc.Alt, tc.Alpha,
				e, lo, hi, float64(tc.E), float64(tc.Lo), float64(tc.Hi))
		}
	}
}

// TestSeqMeanDuality checks that the sequence excludes 0 exactly when
// the e-value reaches 1/α, on a sweep of contrasts.
func TestSeqMeanDuality(t *testing.T) {
	t.Parallel()
	y := Moments{N: 400, Mean: 10, M2: 399 * 4}
	for _, alt := range []Alternative{Greater, Less, TwoSided} {
		for m := 9.0; m <= 13; m += 0.01 {
			x := Moments{N: 300, Mean: m, M2: 299 * 5}
			e, lo, hi := SeqMean(x, y, 1.1, alt, 0.01, 100)
			if excl := lo > 0 || hi < 0; excl != (e >= 100) && math.Abs(math.Log(e/100)) > 1e-9 {
				t.Fatalf("%v mean %v: e=%v, interval [%v, %v]", alt, m, e, lo, hi)
			}
		}
	}
}

// TestSeqMeanSpecial covers the special cases of SeqMean's doc comment.
func TestSeqMeanSpecial(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	one := Moments{N: 1, Mean: 3}
	ok := Moments{N: 50, Mean: 3, M2: 49}
	if e, lo, hi := SeqMean(one, ok, 1, Greater, 0.05, 10); e != 1 || lo != -inf || hi != inf {
		t.Errorf("n=1: %v [%v, %v]", e, lo, hi)
	}
	if e, lo, hi := SeqMean(Moments{N: 5, Mean: math.NaN(), M2: 1}, ok, 1, Greater, 0.05, 10); e != 1 || lo != -inf || hi != inf {
		t.Errorf("NaN: %v [%v, %v]", e, lo, hi)
	}
	c1, c2 := Moments{N: 10, Mean: 5}, Moments{N: 10, Mean: 4}
	if e, lo, hi := SeqMean(c1, c2, 1.1, Greater, 0.05, 10); e != inf || math.Abs(lo-0.6) > 1e-12 || hi != inf {
		t.Errorf("constant, worse: %v [%v, %v]", e, lo, hi)
	}
	if e, _, _ := SeqMean(c1, c2, 1.1, Less, 0.05, 10); e != 1 {
		t.Errorf("constant, other side: %v", e)
	}
	if e, lo, hi := SeqMean(c1, c1, 1, TwoSided, 0.05, 10); e != 1 || lo != 0 || hi != 0 {
		t.Errorf("constant, equal: %v [%v, %v]", e, lo, hi)
	}
}

// TestSeqLogNormCDF checks log Φ against scipy.stats.norm.logcdf (scipy
// 1.10) across the switch points of its three branches: 1e-12 relative.
func TestSeqLogNormCDF(t *testing.T) {
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
		if got := seqLogNormCDF(tc.z); !rwClose(got, tc.want, 1e-12) {
			t.Errorf("log Φ(%v) = %.17g, scipy %.17g", tc.z, got, tc.want)
		}
	}
}
