package report

import (
	"math"

	"github.com/canaryd/canaryd/analysis/stat"
)

// DefaultMaxBins is the most bins Rebin makes for a report.
const DefaultMaxBins = 200

// Binned is two cohorts' distributions on the same log-spaced bins: bin i
// holds the positive values in [Edges[i], Edges[i+1]) (the last bin its
// upper edge too); zeros are counted apart, a log scale having no place
// for them.
type Binned struct {
	Edges  []float64
	Counts [2][]float64 // baseline, canary; len(Edges) − 1 each
	Zeros  [2]float64
}

// Rebin puts the observations of two cohorts (sorted bins of values and
// counts, as analysis.Dist.Bins returns them) on shared log-spaced bins
// from the smallest to the largest positive value of either, for an
// overlaid plot. The number of bins follows Rice's rule, 2·∛n, with n the
// geometric mean of the cohorts' positive observations (so that the
// smaller cohort's histogram is not all noise), at most maxBins
// (DefaultMaxBins when maxBins ≤ 0) and at most the number of distinct
// positive values. Negative and NaN values are ignored (a distribution
// metric has none). Without any positive value, Edges is empty.
func Rebin(baseline, canary []stat.Bin, maxBins int) Binned {
	if maxBins <= 0 {
		maxBins = DefaultMaxBins
	}
	cohorts := [2][]stat.Bin{baseline, canary}
	var out Binned
	lo, hi := math.Inf(1), math.Inf(-1)
	var n [2]float64
	distinct := 0
	for c, bins := range cohorts {
		for _, b := range bins {
			switch {
			case !(b.Count > 0):
			case b.Value == 0:
				out.Zeros[c] += b.Count
			case b.Value > 0 && !math.IsInf(b.Value, 1):
				n[c] += b.Count
				lo, hi = math.Min(lo, b.Value), math.Max(hi, b.Value)
				distinct++
			}
		}
	}
	if distinct == 0 {
		return out
	}
	k := 1
	if hi > lo {
		size := math.Sqrt(n[0] * n[1])
		if size == 0 {
			size = n[0] + n[1]
		}
		k = int(math.Ceil(2 * math.Cbrt(size)))
		k = max(1, min(k, maxBins, distinct))
	}
	if hi == lo { // one value: one bin around it
		lo, hi = lo/1.05, hi*1.05
	}
	out.Edges = make([]float64, k+1)
	span := math.Log(hi / lo)
	for i := range out.Edges {
		out.Edges[i] = lo * math.Exp(span*float64(i)/float64(k))
	}
	out.Edges[0], out.Edges[k] = lo, hi
	for c, bins := range cohorts {
		counts := make([]float64, k)
		for _, b := range bins {
			if !(b.Count > 0) || !(b.Value > 0) || math.IsInf(b.Value, 1) {
				continue
			}
			i := int(float64(k) * math.Log(b.Value/lo) / span)
			counts[max(0, min(i, k-1))] += b.Count
		}
		out.Counts[c] = counts
	}
	return out
}

// quantileOf returns the p-quantile of sorted bins by the inverse of the
// empirical CDF (R's type 1), as analysis.Dist.Quantile computes it; NaN
// for no observations.
func quantileOf(bins []stat.Bin, p float64) float64 {
	var n float64
	for _, b := range bins {
		n += b.Count
	}
	if n == 0 {
		return math.NaN()
	}
	return byRank(bins, math.Max(1, math.Ceil(p*n)))
}

// byRank returns the value of the observation of rank r (1-based) of
// sorted bins, clamped to the first and the last.
func byRank(bins []stat.Bin, r float64) float64 {
	var cum float64
	for _, b := range bins {
		cum += b.Count
		if cum >= r {
			return b.Value
		}
	}
	return bins[len(bins)-1].Value
}
