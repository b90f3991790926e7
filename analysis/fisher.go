package analysis

import "math"

// FisherExact performs Fisher's exact test on the 2×2 table
//
//	a  b
//	c  d
//
// (rows: e.g. canary and baseline; columns: failures and successes) and
// returns the sample odds ratio and the p-value. Conditionally on the
// margins, the top-left cell X follows the hypergeometric distribution
//
//	Pr(X = x) = C(a+b, x) C(c+d, a+c−x) / C(a+b+c+d, a+c),
//
// and the p-values are
//
//	Less:     Pr(X ≤ a)
//	Greater:  Pr(X ≥ a)
//	TwoSided: Σ Pr(X = x) over the tables at most as likely as the observed,
//
// the two-sided sum following scipy's relative tolerance 1 + 10⁻¹⁴. The
// odds ratio is the sample (unconditional maximum likelihood) estimate
//
//	oddsRatio = a·d / (b·c),
//
// +Inf when b·c = 0 (a·d is then positive). This matches
// scipy.stats.fisher_exact([[a, b], [c, d]], alternative) (scipy 1.10);
// R's fisher.test has the same p-values for Less and Greater but reports
// the conditional maximum likelihood estimate of the odds ratio and uses a
// relative tolerance of 1 + 10⁻⁷ for the two-sided p-value.
//
// The densities are computed in log space from Loader's binomial
// densities (as R's dhyper), and a tail is summed from the observed cell
// outward, term ratios only, until the terms are negligible relative to
// the sum (as R's pdhyper); the larger tail is the complement of the
// smaller. The point on the other side of the mode that bounds the
// two-sided sum is found by bisection. The work therefore grows with the
// standard deviation of X, not with the size of its support.
//
// Special cases: counts are rounded to the nearest integer. If a row or a
// column of the table is empty, or a count is negative or not finite, the
// table carries no information: the odds ratio is NaN (as scipy's) and
// P = 1. FisherExact panics if alt is unknown.
//
// References: Fisher (1935), "The logic of inductive inference", JRSS 98,
// 39–82; Agresti (2013), Categorical Data Analysis, 3rd ed., §3.5;
// scipy.stats.fisher_exact.
func FisherExact(a, b, c, d float64, alt Alternative) (oddsRatio, p float64) {
	mustTestArgs("FisherExact", alt, 0.5)
	for _, v := range [...]float64{a, b, c, d} {
		if !(v >= 0) || math.IsInf(v, 1) {
			return math.NaN(), 1
		}
	}
	a, b, c, d = math.Round(a), math.Round(b), math.Round(c), math.Round(d)
	if a+b == 0 || c+d == 0 || a+c == 0 || b+d == 0 {
		return math.NaN(), 1
	}
	oddsRatio = math.Inf(1)
	if b > 0 && c > 0 {
		oddsRatio = a * d / (c * b)
	}
	h := hypergeom{k: a + b, m: a + b + c + d, n: a + c}
	switch alt {
	case Less:
		return oddsRatio, h.lower(a)
	case Greater:
		return oddsRatio, h.upper(a)
	}
	// Two-sided, as scipy 1.10: the tables on the other side of the mode
	// whose density is below the observed one's (within the tolerance).
	mode := math.Floor((h.n + 1) * (h.k + 1) / (h.m + 2))
	lpx, lpm := h.logPMF(a), h.logPMF(mode)
	if -math.Expm1(-math.Abs(lpx-lpm)) <= 1e-14 {
		return oddsRatio, 1
	}
	lg := lpx + math.Log1p(1e-14)
	var pv float64
	if a < mode {
		pv = h.lower(a)
		if h.logPMF(h.n) > lg {
			return oddsRatio, pv
		}
		neg := func(x float64) float64 { return -h.logPMF(x) }
		guess := fisherSearch(neg, -lg, mode, h.n)
		pv += h.upper(guess + 1)
	} else {
		pv = h.upper(a)
		if h.logPMF(0) > lg {
			return oddsRatio, pv
		}
		guess := fisherSearch(h.logPMF, lg, 0, mode)
		pv += h.lower(guess)
	}
	return oddsRatio, math.Min(pv, 1)
}

// fisherSearch is scipy's _binary_search_for_binom_tst: for f increasing
// on the integers of [lo, hi], it returns i with f(i) ≤ d < f(i+1).
func fisherSearch(f func(float64) float64, d, lo, hi float64) float64 {
	for lo < hi {
		mid := lo + math.Floor((hi-lo)/2)
		switch v := f(mid); {
		case v < d:
			lo = mid + 1
		case v > d:
			hi = mid - 1
		default:
			return mid
		}
	}
	if f(lo) <= d {
		return lo
	}
	return lo - 1
}

// hypergeom is the distribution of the number of marked items in a sample
// of n drawn without replacement from m items of which k are marked.
type hypergeom struct{ k, m, n float64 }

// support returns the smallest and largest possible values.
func (h hypergeom) support() (lo, hi float64) {
	return math.Max(0, h.n-(h.m-h.k)), math.Min(h.k, h.n)
}

// logPMF returns log Pr(X = x) as the ratio of binomial densities at
// p = n/m (Loader 2000; R's dhyper):
//
//	Pr(X = x) = b(x; k, p) · b(n−x; m−k, p) / b(n; m, p).
func (h hypergeom) logPMF(x float64) float64 {
	if lo, hi := h.support(); x < lo || x > hi {
		return math.Inf(-1)
	}
	p, q := h.n/h.m, (h.m-h.n)/h.m
	return binomLogPMF(x, h.k, p, q) + binomLogPMF(h.n-x, h.m-h.k, p, q) - binomLogPMF(h.n, h.m, p, q)
}

// lower returns Pr(X ≤ x).
func (h hypergeom) lower(x float64) float64 {
	lo, hi := h.support()
	switch {
	case x < lo:
		return 0
	case x >= hi:
		return 1
	case x*h.m <= h.n*h.k: // at or below the mean: the smaller tail
		return h.sumDown(x, lo)
	}
	return 1 - h.sumUp(x+1, hi)
}

// upper returns Pr(X ≥ x).
func (h hypergeom) upper(x float64) float64 {
	lo, hi := h.support()
	switch {
	case x <= lo:
		return 1
	case x > hi:
		return 0
	case x*h.m >= h.n*h.k:
		return h.sumUp(x, hi)
	}
	return 1 - h.sumDown(x-1, lo)
}

// sumDown returns Pr(X ≤ x) by summing the densities from x down, using
// Pr(X = j−1)/Pr(X = j) = j (m−k−n+j) / ((k−j+1)(n−j+1)), until the terms
// no longer change the sum.
func (h hypergeom) sumDown(x, lo float64) float64 {
	sum, term := 1.0, 1.0
	for j := x; j > lo; j-- {
		term *= j * (h.m - h.k - h.n + j) / ((h.k - j + 1) * (h.n - j + 1))
		sum += term
		if term < 0x1p-53*sum {
			break
		}
	}
	return math.Exp(h.logPMF(x)) * sum
}

// sumUp returns Pr(X ≥ x) by summing the densities from x up, using
// Pr(X = j+1)/Pr(X = j) = (k−j)(n−j) / ((j+1)(m−k−n+j+1)).
func (h hypergeom) sumUp(x, hi float64) float64 {
	sum, term := 1.0, 1.0
	for j := x; j < hi; j++ {
		term *= (h.k - j) * (h.n - j) / ((j + 1) * (h.m - h.k - h.n + j + 1))
		sum += term
		if term < 0x1p-53*sum {
			break
		}
	}
	return math.Exp(h.logPMF(x)) * sum
}
