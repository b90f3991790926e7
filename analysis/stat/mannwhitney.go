package stat

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// MWUMethod selects how MannWhitney obtains the null
// distribution of the Mann-Whitney statistic.
type MWUMethod int

const (
	// MWUAuto follows R 4.2's wilcox.test (exact = NULL): the exact
	// distribution when both samples have fewer than 50 observations and
	// there are no ties (after subtracting Mu), the normal approximation
	// otherwise.
	MWUAuto MWUMethod = iota
	// MWUExact asks for the exact distribution (R's exact = TRUE). As in R
	// it falls back to the normal approximation when there are ties; unlike
	// R it also falls back when nx·ny > MWUExactMaxPairs. MWUResult.Exact
	// reports what was used.
	MWUExact
	// MWUAsymptotic always uses the normal approximation (R's exact = FALSE).
	MWUAsymptotic
)

// MWUExactMaxPairs bounds nx·ny for the exact null distribution. Building
// it costs about (nx·ny)²/8 additions and (nx·ny)·min(nx,ny)/2 float64s
// of memory, so the bound keeps an explicit MWUExact request at or below
// about 12 ms and 4 MB (100×100 observations). R's automatic rule never
// needs more than 49×49. Beyond the bound, and without ties, the normal
// approximation is accurate to well under 1e-3 in the p-value.
const MWUExactMaxPairs = 10000

// String returns the name of the method.
func (m MWUMethod) String() string {
	switch m {
	case MWUAuto:
		return "auto"
	case MWUExact:
		return "exact"
	case MWUAsymptotic:
		return "asymptotic"
	}
	return "unknown"
}

// MWUOptions configures MannWhitney. The zero value is R's default
// wilcox.test(x, y): two-sided, mu = 0, continuity-corrected, automatic
// choice between the exact and the normal null distribution.
type MWUOptions struct {
	// Alternative is R's alternative: Greater means x - Mu is shifted to
	// the right of y.
	Alternative Alternative
	// Mu is R's mu: the test compares x - Mu with y.
	Mu float64
	// NoCorrect disables the continuity correction of the normal
	// approximation (R's correct = FALSE, scipy's use_continuity=False).
	NoCorrect bool
	// Method chooses the exact or the normal null distribution.
	Method MWUMethod
}

// MWUResult is the outcome of MannWhitney.
type MWUResult struct {
	// U is R's W statistic, the Mann-Whitney U of x: the number of pairs
	// with x_i - Mu > y_j plus half the number of tied pairs.
	U float64
	// NX and NY are the numbers of observations (sums of the bin counts).
	NX, NY float64
	// Z is the normal score used for P; 0 when P comes from the exact
	// distribution or when the test is degenerate.
	Z float64
	// P is the p-value for the requested alternative.
	P float64
	// Exact reports whether P comes from the exact null distribution.
	Exact bool
}

// MannWhitney performs the two-sample Mann-Whitney U test (Wilcoxon rank-sum
// test) of x - opts.Mu against y. The statistic is the U of x,
//
//	U = Σ_i Σ_j ( [x_i - μ > y_j] + ½·[x_i - μ = y_j] ) = R_x - nx(nx+1)/2,
//
// with R_x the sum of the mid-ranks of x - μ in the pooled sample. It is
// computed by one merge of the two sorted bin lists, in O(len(x)+len(y))
// time whatever the number of observations the bins hold.
//
// With the normal approximation, E[U] = nx·ny/2 and, for tie groups of
// sizes t_k among the N = nx + ny pooled observations,
//
//	Var[U] = (nx·ny/12) · [ (N+1) - Σ_k (t_k³ - t_k) / (N(N-1)) ]
//	       = (nx·ny/12) · (N³ - Σ_k t_k³) / (N(N-1)),
//	z      = (U - nx·ny/2 - c) / sqrt(Var[U]).
//
// The second form is evaluated by adding, for each new group, the positive
// increment 3·t·S·(S+t) (S the observations merged so far), so heavily tied
// histograms lose no precision to cancellation. The continuity correction c
// is R's: 0.5·sign(U - nx·ny/2) for TwoSided, +0.5 for Greater, -0.5 for
// Less, and 0 with NoCorrect. P is Φ(z) for Less, Φ(-z) for Greater and
// 2·Φ(-|z|) for TwoSided, each through erfc so that p-values far in the
// tail (1e-130 for two separated samples of 400) keep full relative
// precision.
//
// The exact null distribution (no ties) counts the arrangements with U = u,
//
//	f(u; m, n) = f(u - n; m - 1, n) + f(u; m, n - 1),  f(0; m, 0) = f(0; 0, n) = 1,
//
// in float64 as R's cwilcox (additions only; the counts stay below 1e59
// within MWUExactMaxPairs), with P(U = u) = f(u; nx, ny) / C(nx+ny, nx).
// P is P(U ≥ U_obs) for Greater, P(U ≤ U_obs) for Less and, for TwoSided,
// min(2·P(U ≤ U_obs), 1) when U_obs ≤ nx·ny/2 and min(2·P(U ≥ U_obs), 1)
// otherwise; tail sums run over the shorter tail, as in R's pwilcox.
// opts.Method chooses between the two; see MWUMethod.
//
// Special cases: an empty sample gives U = 0, Z = 0, P = 1 (R stops with
// an error); when all N observations are tied (σ = 0) the result is Z = 0,
// P = 1 (R returns NaN for the two-sided test). Adjacent bins with equal
// Values (say, after rescaling) are pooled like any other tie. MannWhitney
// panics on misuse: bins not sorted by Value, a NaN Value, a Count that is
// not positive and finite, a Mu that is not finite, or an unknown
// Alternative or Method.
//
// The results match R 4.2's wilcox.test(x, y, alternative, mu, exact,
// correct) and scipy.stats.mannwhitneyu (method "exact" or "asymptotic",
// use_continuity). References: H. B. Mann and D. R. Whitney (1947), "On a
// test of whether one of two random variables is stochastically larger
// than the other", Ann. Math. Statist. 18(1):50–60; M. Hollander, D. A.
// Wolfe and E. Chicken (2014), Nonparametric Statistical Methods, 3rd ed.,
// Wiley, §4.1.
func MannWhitney(x, y []Bin, opts MWUOptions) MWUResult {
	const fn = "MannWhitney"
	nx := mwuCheckBins(fn, "x", x)
	ny := mwuCheckBins(fn, "y", y)
	mwuCheckAlternative(fn, opts.Alternative)
	mwuCheckMethod(fn, opts.Method)
	if math.IsNaN(opts.Mu) || math.IsInf(opts.Mu, 0) {
		panic(fmt.Sprintf("stat: %s: Mu must be finite, got %v", fn, opts.Mu))
	}

	res := MWUResult{NX: nx, NY: ny, P: 1}
	if nx == 0 || ny == 0 {
		return res
	}
	m := mwuMerge(x, y, opts.Mu)
	res.U = m.u

	if mwuUseExact(opts.Method, nx, ny, m.ties) {
		res.Exact = true
		res.P = mwuExactP(m.u, int(nx), int(ny), opts.Alternative)
		return res
	}

	sigma := mwuSigma(nx, ny, m.d)
	if !(sigma > 0) {
		return res
	}
	dz := m.u - nx*ny/2
	var c float64
	if !opts.NoCorrect {
		switch opts.Alternative {
		case TwoSided:
			c = 0.5 * mwuSign(dz)
		case Greater:
			c = 0.5
		case Less:
			c = -0.5
		}
	}
	res.Z = (dz - c) / sigma
	res.P = mwuNormalP(res.Z, opts.Alternative)
	return res
}

// mwuNormalP is the p-value of the normal score z for alt. Upper tails are
// taken as Φ(-z) (an erfc) rather than distuv's Survival, 0.5·(1 - erf),
// which cancels to 0 beyond z ≈ 8.3.
func mwuNormalP(z float64, alt Alternative) float64 {
	switch alt {
	case Greater:
		return distuv.UnitNormal.CDF(-z)
	case Less:
		return distuv.UnitNormal.CDF(z)
	}
	return math.Min(1, 2*distuv.UnitNormal.CDF(-math.Abs(z)))
}

func mwuSign(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// mwuSigma is sqrt(Var[U]) from the tie term d = N³ - Σ t³.
func mwuSigma(nx, ny, d float64) float64 {
	n := nx + ny
	return math.Sqrt(nx * ny / 12 * (d / (n * (n - 1))))
}

// mwuUseExact reports whether method asks for, and the data allow, the
// exact null distribution. Without ties every count is 1, so nx and ny are
// whole numbers.
func mwuUseExact(method MWUMethod, nx, ny float64, ties bool) bool {
	if ties {
		return false
	}
	switch method {
	case MWUAuto:
		return nx < 50 && ny < 50
	case MWUExact:
		return nx*ny <= MWUExactMaxPairs
	}
	return false
}

// mwuMerged is the result of merging x - shift with y.
type mwuMerged struct {
	u    float64 // U of x
	d    float64 // N³ - Σ t³ over the pooled tie groups
	ties bool    // a tie group of more than one observation, or a count ≠ 1
}

// mwuMerge merges the sorted bins of x - shift and y in one pass. Bins of x
// that become equal after subtracting shift are pooled, like any other tie.
func mwuMerge(x, y []Bin, shift float64) mwuMerged {
	var (
		r          mwuMerged
		i, j       int
		below, sum float64 // y observations below the current value; all merged so far
	)
	for i < len(x) || j < len(y) {
		var v float64
		switch {
		case j == len(y):
			v = x[i].Value - shift
		case i == len(x):
			v = y[j].Value
		default:
			v = math.Min(x[i].Value-shift, y[j].Value)
		}
		var cx, cy float64
		bins := 0
		for ; i < len(x) && x[i].Value-shift == v; i++ {
			cx += x[i].Count
			r.ties = r.ties || x[i].Count != 1
			bins++
		}
		for ; j < len(y) && y[j].Value == v; j++ {
			cy += y[j].Count
			r.ties = r.ties || y[j].Count != 1
			bins++
		}
		r.ties = r.ties || bins > 1
		r.u += cx * (below + cy/2)
		below += cy
		t := cx + cy
		r.d += 3 * t * sum * (sum + t)
		sum += t
	}
	return r
}

// mwuExactP is the exact p-value of U = u for sample sizes m and n.
func mwuExactP(u float64, m, n int, alt Alternative) float64 {
	dist := newMWUNull(m, n)
	w := int(math.Round(u))
	switch alt {
	case Greater:
		return dist.sf(w)
	case Less:
		return dist.cdf(w)
	}
	var p float64
	if 2*w > dist.mn {
		p = dist.sf(w)
	} else {
		p = dist.cdf(w)
	}
	return math.Min(2*p, 1)
}

// mwuNull is the exact null distribution of U for samples of m and n
// untied observations: half[u] = f(u; m, n) for 0 ≤ u ≤ ⌊mn/2⌋ (the rest
// follows from f(u) = f(mn - u)), and total = Σ_u f(u) = C(m+n, m).
type mwuNull struct {
	mn    int
	half  []float64
	total float64
}

// newMWUNull builds f(·; m, n) with the recursion
// f(u; i, j) = f(u - j; i - 1, j) + f(u; i, j - 1), keeping only the lower
// half of each f(·; i, j) as R's cwilcox does. f is symmetric in m and n,
// so rows run over the larger size and columns over the smaller one, which
// keeps the two rows of vectors at about max(m,n)·min(m,n)²/4 float64s.
func newMWUNull(m, n int) *mwuNull {
	a, b := max(m, n), min(m, n)
	halfLen := func(i, j int) int { return i*j/2 + 1 }
	// off[j] is the start of the vector of column j in a row buffer.
	off := make([]int, b+2)
	for j := 0; j <= b; j++ {
		off[j+1] = off[j] + halfLen(a, j)
	}
	prev := make([]float64, off[b+1])
	cur := make([]float64, off[b+1])
	for j := 0; j <= b; j++ { // row i = 0: f(0; 0, j) = 1
		prev[off[j]] = 1
	}
	for i := 1; i <= a; i++ {
		cur[off[0]] = 1 // f(0; i, 0) = 1
		for j := 1; j <= b; j++ {
			h := cur[off[j] : off[j]+halfLen(i, j)]
			up := prev[off[j] : off[j]+halfLen(i-1, j)]
			left := cur[off[j-1] : off[j-1]+halfLen(i, j-1)]
			// f(u; i, j-1): stored up to its middle, mirrored above it,
			// zero beyond i(j-1).
			tot := i * (j - 1)
			k := copy(h, left)
			for u := k; u < len(h); u++ {
				if u <= tot {
					h[u] = left[tot-u]
				} else {
					h[u] = 0
				}
			}
			// + f(u - j; i - 1, j); u - j ≤ ⌊(i-1)j/2⌋, inside up.
			for u := j; u < len(h); u++ {
				h[u] += up[u-j]
			}
		}
		prev, cur = cur, prev
	}
	d := &mwuNull{mn: a * b, half: append([]float64(nil), prev[off[b]:off[b]+halfLen(a, b)]...)}
	for u, f := range d.half {
		if 2*u == d.mn {
			d.total += f
		} else {
			d.total += 2 * f
		}
	}
	return d
}

// at returns f(u; m, n).
func (d *mwuNull) at(u int) float64 {
	if u < 0 || u > d.mn {
		return 0
	}
	if 2*u > d.mn {
		u = d.mn - u
	}
	return d.half[u]
}

// lowerSum returns Σ_{u ≤ q} f(u) for q ≤ ⌊mn/2⌋.
func (d *mwuNull) lowerSum(q int) float64 {
	var s float64
	for _, f := range d.half[:q+1] {
		s += f
	}
	return s
}

// cdf returns P(U ≤ q), summing over the shorter tail as R's pwilcox.
func (d *mwuNull) cdf(q int) float64 {
	switch {
	case q < 0:
		return 0
	case q >= d.mn:
		return 1
	case 2*q <= d.mn:
		return d.lowerSum(q) / d.total
	}
	return 1 - d.lowerSum(d.mn-q-1)/d.total
}

// sf returns P(U ≥ w) = P(U ≤ mn - w).
func (d *mwuNull) sf(w int) float64 { return d.cdf(d.mn - w) }

// mwuCheckBins panics unless b is a valid sample and returns its number of
// observations.
func mwuCheckBins(fn, name string, b []Bin) float64 {
	var n float64
	for k, bin := range b {
		if math.IsNaN(bin.Value) {
			panic(fmt.Sprintf("stat: %s: %s[%d].Value is NaN", fn, name, k))
		}
		if k > 0 && !(b[k-1].Value <= bin.Value) {
			panic(fmt.Sprintf("stat: %s: %s bins not sorted by Value at index %d", fn, name, k))
		}
		if !(bin.Count > 0) || math.IsInf(bin.Count, 1) {
			panic(fmt.Sprintf("stat: %s: %s[%d].Count = %v, want positive and finite", fn, name, k, bin.Count))
		}
		n += bin.Count
	}
	return n
}

func mwuCheckAlternative(fn string, a Alternative) {
	if a != TwoSided && a != Greater && a != Less {
		panic(fmt.Sprintf("stat: %s: unknown Alternative %d", fn, int(a)))
	}
}

func mwuCheckMethod(fn string, m MWUMethod) {
	if m != MWUAuto && m != MWUExact && m != MWUAsymptotic {
		panic(fmt.Sprintf("stat: %s: unknown MWUMethod %d", fn, int(m)))
	}
}
