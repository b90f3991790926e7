package analysis

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestFisherExactVectors compares FisherExact with
// scipy.stats.fisher_exact and with the same p-values evaluated with
// 60-digit decimals (testdata/fisher_vectors.json, made by
// testdata/gen/rate_welch.py). scipy 1.10's hypergeometric tails err by up
// to ~1e-9 relative on tables of a million and more, so p is held to 1e-9
// against scipy and to 1e-12 against the decimal values; the sample odds
// ratio to 1e-15.
func TestFisherExactVectors(t *testing.T) {
	t.Parallel()
	var v struct {
		Tools     map[string]string `json:"tools"`
		Tolerance struct {
			PRel         float64 `json:"p_rel"`
			PExactRel    float64 `json:"p_exact_rel"`
			OddsRatioRel float64 `json:"odds_ratio_rel"`
		} `json:"tolerance"`
		Cases []struct {
			Table     [4]float64 `json:"table"`
			Alt       string     `json:"alt"`
			OddsRatio rwNum      `json:"odds_ratio"`
			P         rwNum      `json:"p"`
			PExact    rwNum      `json:"p_exact"`
		} `json:"cases"`
	}
	rwLoad(t, "fisher_vectors.json", &v)
	if len(v.Cases) < 50 {
		t.Fatalf("only %d cases", len(v.Cases))
	}
	for _, c := range v.Cases {
		tb := c.Table
		or, p := FisherExact(tb[0], tb[1], tb[2], tb[3], rwAlt(t, c.Alt))
		if !rwClose(or, float64(c.OddsRatio), v.Tolerance.OddsRatioRel) || !rwClose(p, float64(c.P), v.Tolerance.PRel) {
			t.Errorf("%v %s: got (%.17g, %.17g), scipy (%.17g, %.17g)", tb, c.Alt, or, p, float64(c.OddsRatio), float64(c.P))
		}
		if !rwClose(p, float64(c.PExact), v.Tolerance.PExactRel) {
			t.Errorf("%v %s: p = %.17g, 60-digit %.17g", tb, c.Alt, p, float64(c.PExact))
		}
	}
}

// TestFisherExactHand checks tables whose hypergeometric densities are
// small fractions. For [[3, 1], [1, 3]] the densities of X = 0..4 are
// 1, 16, 36, 16, 1 over 70; for [[8, 2], [1, 5]] (scipy's example) they
// are C(10, x)·C(6, 9−x)/C(16, 9) for x = 3..9.
func TestFisherExactHand(t *testing.T) {
	t.Parallel()
	binom := func(n, k float64) float64 {
		r := 1.0
		for i := 1.0; i <= k; i++ {
			r *= (n - k + i) / i
		}
		return r
	}
	whale := func(x float64) float64 { return binom(10, x) * binom(6, 9-x) / binom(16, 9) }
	// Two-sided for x = 8: the densities at most whale(8) = 270/11440, at
	// x = 3 (120), 8 (270) and 9 (10); x = 4 has 1260.
	whaleTwo := whale(3) + whale(8) + whale(9)
	for _, c := range []struct {
		tb      [4]float64
		alt     Alternative
		or, p   float64
		comment string
	}{
		{[4]float64{3, 1, 1, 3}, TwoSided, 9, 34.0 / 70, "1+16+16+1"},
		{[4]float64{3, 1, 1, 3}, Greater, 9, 17.0 / 70, "16+1"},
		{[4]float64{3, 1, 1, 3}, Less, 9, 69.0 / 70, "all but x = 4"},
		{[4]float64{2, 2, 2, 2}, TwoSided, 1, 1, "the mode"},
		{[4]float64{8, 2, 1, 5}, TwoSided, 20, whaleTwo, "scipy's whales"},
		{[4]float64{8, 2, 1, 5}, Greater, 20, whale(8) + whale(9), ""},
		{[4]float64{5, 0, 0, 5}, TwoSided, math.Inf(1), 2.0 / 252, "C(10,5) = 252"},
		{[4]float64{0, 5, 5, 0}, Less, 0, 1.0 / 252, ""},
	} {
		or, p := FisherExact(c.tb[0], c.tb[1], c.tb[2], c.tb[3], c.alt)
		if !rwClose(or, c.or, 1e-15) || !rwClose(p, c.p, 1e-13) {
			t.Errorf("%v %v (%s): got (%.17g, %.17g), want (%.17g, %.17g)", c.tb, c.alt, c.comment, or, p, c.or, c.p)
		}
	}
}

// TestFisherExactDegenerate checks tables without information.
func TestFisherExactDegenerate(t *testing.T) {
	t.Parallel()
	for _, tb := range [][4]float64{{0, 0, 3, 4}, {3, 0, 4, 0}, {0, 0, 0, 0}, {-1, 2, 3, 4}, {1, math.NaN(), 3, 4}, {1, 2, math.Inf(1), 4}} {
		for _, alt := range []Alternative{TwoSided, Greater, Less} {
			if or, p := FisherExact(tb[0], tb[1], tb[2], tb[3], alt); !math.IsNaN(or) || p != 1 {
				t.Errorf("%v %v: got (%g, %g), want (NaN, 1)", tb, alt, or, p)
			}
		}
	}
	defer func() {
		if r, ok := recover().(string); !ok || !strings.HasPrefix(r, "analysis: ") {
			t.Errorf("unknown alternative: recovered %v", r)
		}
	}()
	FisherExact(1, 2, 3, 4, Alternative(9))
}

// TestFisherExactLarge checks a large table, error counts per billion
// requests, against the binomial distribution, which the hypergeometric
// approaches when the sample (the 2100 errors) is a tiny fraction of the
// population: the relative difference is of order 2100/2e9.
func TestFisherExactLarge(t *testing.T) {
	t.Parallel()
	a, b, c, d := 1100.0, 999e6-1100, 1000.0, 999e6-1000
	for _, alt := range []Alternative{Greater, Less} {
		_, p := FisherExact(a, b, c, d, alt)
		want := BinomialTail(a, a+c, (a+b)/(a+b+c+d), alt)
		if !rwClose(p, want, 1e-4) {
			t.Errorf("%v: p = %.17g, binomial %.17g", alt, p, want)
		}
	}
}

// BenchmarkFisherExact times the two-sided test on a small and a large
// table.
func BenchmarkFisherExact(b *testing.B) {
	for _, c := range []struct {
		name       string
		a, b, c, d float64
	}{{"small", 8, 2, 1, 5}, {"1e6", 1100, 498900, 1000, 499000}, {"1e9", 1100, 499998900, 1000, 499999000}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				FisherExact(c.a, c.b, c.c, c.d, TwoSided)
			}
		})
	}
}

// TestFisherExactBruteForce compares FisherExact with a direct sum over
// the whole support (densities from log-factorials) on seeded random
// tables of up to 200 counts.
func TestFisherExactBruteForce(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	lf := func(n float64) float64 { v, _ := math.Lgamma(n + 1); return v }
	for range 2000 {
		var tb [4]float64
		for j := range tb {
			tb[j] = float64(rng.IntN(1 + rng.IntN(50)))
		}
		a, b, c, d := tb[0], tb[1], tb[2], tb[3]
		k, n, m := a+b, a+c, a+b+c+d
		if k == 0 || n == 0 || m-k == 0 || m-n == 0 {
			continue
		}
		lo, hi := math.Max(0, n-(m-k)), math.Min(k, n)
		pmf := func(x float64) float64 {
			return math.Exp(lf(k) - lf(x) - lf(k-x) + lf(m-k) - lf(n-x) - lf(m-k-n+x) - lf(m) + lf(n) + lf(m-n))
		}
		var less, greater, two float64
		pa := pmf(a)
		for x := lo; x <= hi; x++ {
			px := pmf(x)
			if x <= a {
				less += px
			}
			if x >= a {
				greater += px
			}
			if px <= pa*(1+1e-12) { // lgamma noise (~1e-13) in exact ties; distinct densities differ by far more
				two += px
			}
		}
		for _, e := range []struct {
			alt  Alternative
			want float64
		}{{Less, less}, {Greater, greater}, {TwoSided, math.Min(two, 1)}} {
			if _, p := FisherExact(a, b, c, d, e.alt); !rwClose(p, e.want, 1e-11) {
				t.Errorf("%v %v: p = %.17g, brute force %.17g", tb, e.alt, p, e.want)
			}
		}
	}
}
