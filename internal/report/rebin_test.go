package report

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/analysis/stat"
)

// distOf returns the Dist of values.
func distOf(t *testing.T, vs []float64) *analysis.Dist {
	t.Helper()
	var d analysis.Dist
	for _, v := range vs {
		if err := d.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	return &d
}

func lognormal(rng *rand.Rand, n int, mu, sigma float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Exp(mu + sigma*rng.NormFloat64())
	}
	return out
}

func TestRebin(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct {
		name     string
		b, c     []float64
		maxBins  int
		wantBins int
	}{
		// Rice's rule on the geometric mean of the cohorts' sizes:
		// 2·∛√(6000·700) = 2·∛2049.4 = 25.4 → 26.
		{"exact", lognormal(rng, 6000, 4.4, 0.4), lognormal(rng, 700, 4.6, 0.4), 0, 26},
		// Beyond analysis.ExactCap the Dist is binned; 2·∛√(1e5·2e4) = 70.8 → 71.
		{"binned", lognormal(rng, 100000, 1, 1), lognormal(rng, 20000, 1.2, 1), 0, 71},
		{"capped", lognormal(rng, 1000000, 1, 1), lognormal(rng, 1000000, 1, 1), 50, 50},
		// Few distinct values: no more bins than values.
		{"integers", []float64{1, 1, 2, 2, 2, 3, 3, 0, 0}, []float64{2, 3, 3, 4, 4, 0}, 0, 4},
		{"one value", []float64{5, 5, 5}, []float64{5}, 0, 1},
		{"one cohort", lognormal(rng, 1000, 0, 1), nil, 0, 20}, // 2·∛1000
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, dc := distOf(t, tc.b), distOf(t, tc.c)
			bb, bc := db.Bins(), dc.Bins()
			got := Rebin(bb, bc, tc.maxBins)
			if k := len(got.Edges) - 1; k != tc.wantBins {
				t.Errorf("%d bins, want %d", k, tc.wantBins)
			}
			for i := 1; i < len(got.Edges); i++ {
				if !(got.Edges[i] > got.Edges[i-1]) || !(got.Edges[i-1] > 0) {
					t.Fatalf("edges not increasing and positive: %v", got.Edges[i-1:i+1])
				}
			}
			// Every observation is counted once, in the bin that holds it.
			for c, bins := range [][]stat.Bin{bb, bc} {
				var n, zeros, sum float64
				for _, b := range bins {
					if b.Value == 0 {
						zeros += b.Count
					}
					n += b.Count
				}
				for _, x := range got.Counts[c] {
					sum += x
				}
				if math.Abs(sum+got.Zeros[c]-n) > 1e-9 || got.Zeros[c] != zeros {
					t.Errorf("cohort %d: %v in bins + %v zeros, want %v (%v zeros)", c, sum, got.Zeros[c], n, zeros)
				}
				if len(got.Counts[c]) != len(got.Edges)-1 {
					t.Errorf("cohort %d: %d counts for %d bins", c, len(got.Counts[c]), len(got.Edges)-1)
				}
			}
			k := len(got.Edges) - 1
			for _, b := range bb {
				if b.Value <= 0 {
					continue
				}
				i := int(float64(k) * math.Log(b.Value/got.Edges[0]) / math.Log(got.Edges[k]/got.Edges[0]))
				i = max(0, min(i, k-1))
				if b.Value < got.Edges[i]*(1-1e-12) || (i < k-1 && b.Value >= got.Edges[i+1]*(1+1e-12)) {
					t.Fatalf("%v is put in bin %d [%v, %v)", b.Value, i, got.Edges[i], got.Edges[i+1])
				}
			}
		})
	}
}

func TestRebinEmpty(t *testing.T) {
	t.Parallel()
	got := Rebin(nil, []stat.Bin{{Value: 0, Count: 4}}, 0)
	if len(got.Edges) != 0 || got.Zeros[1] != 4 {
		t.Errorf("Rebin of zeros only = %+v", got)
	}
}

// TestQuantileOf: quantileOf gives what analysis.Dist.Quantile gives.
func TestQuantileOf(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 7, 100, 5000, 30000} {
		d := distOf(t, lognormal(rng, n, 2, 1))
		bins := d.Bins()
		for _, p := range []float64{0, 0.01, 0.5, 0.9, 0.99, 1} {
			if got, want := quantileOf(bins, p), d.Quantile(p); got != want {
				t.Errorf("n=%d p=%v: %v, Dist.Quantile %v", n, p, got, want)
			}
		}
	}
	if !math.IsNaN(quantileOf(nil, 0.5)) {
		t.Error("the quantile of nothing is not NaN")
	}
}
