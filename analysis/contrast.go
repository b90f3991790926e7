package analysis

import (
	"math"

	"github.com/canaryd/canaryd/analysis/stat"
)

// Contrast is the time-stratified comparison of a canary's mean with its
// baseline's: the test of mean and distribution metrics (on the values,
// and for distributions also on their logarithms).
//
// Within each group g of time strata (strata.go) the contrast of the two
// cohorts' means is d_g(c) = x̄_g − c·ȳ_g (values) or x̄_g − ȳ_g − log c
// (logarithms, where a ratio c is a shift), x the canary and y the
// baseline. The groups are combined with the weights of the stratified
// Wilcoxon and Cochran–Mantel–Haenszel tests, which depend on the sample
// sizes only,
//
//	w_g = n_xg n_yg / (n_xg + n_yg),   D(c) = Σ w_g d_g(c) / W,   W = Σ w_g,
//
// with the variance of D(c) estimated group by group (heteroscedastic:
// each group, each cohort its own variance),
//
//	V(c) = Σ w_g² (s²_xg/n_xg + c² s²_yg/n_yg) / W²        (values; c² → 1 for logarithms),
//
// and Satterthwaite's degrees of freedom,
//
//	df = V² / Σ_g w_g⁴ [ (s²_xg/n_xg)² / (n_xg − 1) + (c² s²_yg/n_yg)² / (n_yg − 1) ] / W⁴.
//
// Under H0: mean_x,g ≤ c·mean_y,g in every group (the canary no worse than
// c times the baseline at every time), D(c) has a mean ≤ 0 whatever the
// baseline does over time and whatever each group's share of either
// cohort: a change shared by both cohorts cancels within its group.
// With one group this is Welch's test of the contrast (R's
// t.test(x, c*y), scipy's ttest_ind(x, c*y, equal_var=False)); the weights
// are van Elteren's (1960) for the stratified Wilcoxon test and Mantel and
// Haenszel's (1959) for the 2×2×K tables.
//
// A single extreme value cannot make D(c)/√V(c) large: it enters its
// group's mean and that group's variance alike, so its contribution to
// the standardized contrast is at most about one, however extreme.
//
// Values known only up to a histogram bucket and sent without the
// histogram's sum leave each group's sum uncertain by its slack (cell.slack):
// the contrast is then moved by the slack against the alternative, which
// keeps the test valid whatever the values within the buckets.
type contrast struct {
	terms []contrastTerm
	w     float64 // Σ w_g
	nx    float64 // observations of the canary
	ny    float64 // and of the baseline
	scale float64 // the largest |mean|, for the constant-data check
	logs  bool
}

// contrastTerm is one group of a contrast.
type contrastTerm struct {
	w, xbar, ybar float64
	vx, vy        float64 // variances of the means, s²/n
	nx, ny        float64
	sx, sy        float64 // slack of the means, slack/n
}

// newContrast returns the contrast of the groups on the values, or with
// logs on the logarithms of the positive values. Groups where a cohort has
// fewer than two observations are left out (they carry no variance).
func newContrast(gs []group, logs bool) contrast {
	k := contrast{logs: logs}
	for _, g := range gs {
		x, y := g[Canary].raw, g[Baseline].raw
		sx, sy := g[Canary].slack, g[Baseline].slack
		if logs {
			x, y, sx, sy = g[Canary].log, g[Baseline].log, 0, 0
		}
		if x.N < 2 || y.N < 2 {
			continue
		}
		t := contrastTerm{
			w: x.N * y.N / (x.N + y.N), xbar: x.Mean, ybar: y.Mean,
			vx: x.Variance() / x.N, vy: y.Variance() / y.N,
			nx: x.N, ny: y.N, sx: sx / x.N, sy: sy / y.N,
		}
		k.terms = append(k.terms, t)
		k.w += t.w
		k.nx += x.N
		k.ny += y.N
		k.scale = max(k.scale, math.Abs(x.Mean), math.Abs(y.Mean))
	}
	return k
}

// ok reports whether the contrast can be tested.
func (k *contrast) ok() bool { return len(k.terms) > 0 && k.w > 0 }

// at returns D(c), V(c) (before the design effect), the Satterthwaite
// degrees of freedom, the per-observation variance of the contrast (for
// the mixture SPRT's tuning) and the slack of D(c): the most by which the
// true contrast can exceed D(c) or fall below it.
func (k *contrast) at(c float64) (d, v, df, sz2, slack float64) {
	var sd, sv, sdf, sx2, sy2, nx, ny float64
	cc := c * c
	if k.logs {
		cc = 1
	}
	for _, t := range k.terms {
		dg := t.xbar - c*t.ybar
		if k.logs {
			dg = t.xbar - t.ybar - math.Log(c)
		}
		sd += t.w * dg
		ax, ay := t.w*t.w*t.vx, t.w*t.w*cc*t.vy
		sv += ax + ay
		sdf += ax*ax/(t.nx-1) + ay*ay/(t.ny-1)
		slack += t.w * (t.sx + c*t.sy)
		sx2 += t.vx * t.nx * t.nx
		sy2 += t.vy * t.ny * t.ny
		nx += t.nx
		ny += t.ny
	}
	w2 := k.w * k.w
	d, v, slack = sd/k.w, sv/w2, slack/k.w
	df = math.Inf(1)
	if sdf > 0 {
		df = sv * sv / sdf
		if !(df > 0) || math.IsInf(df, 1) { // the squares overflowed
			df = k.scaledDF(cc)
		}
	}
	// Pooled per-observation variances of each cohort (Σ s²·(n−1) / Σ (n−1)
	// would need M2; s²·n ≈ M2 for the group sizes here).
	sz2 = sx2/nx + cc*sy2/ny
	return d, v, df, sz2, slack
}

// scaledDF returns the Welch–Satterthwaite degrees of freedom of at,
// (Σ a)² / Σ a²/(n − 1) over the variance components a, with every a
// divided by the largest first, for components whose squares overflow
// (a ratio c of 10⁷⁷ on values: (c²·s²)² is beyond the largest float).
// When even those are not finite (an infinite component), it returns the
// smallest n − 1: the lower bound of Satterthwaite's df, the conservative
// choice (Satterthwaite 1946, "An approximate distribution of estimates of
// variance components", Biometrics Bulletin 2, 110–114).
func (k *contrast) scaledDF(cc float64) float64 {
	var m float64
	for _, t := range k.terms {
		m = max(m, t.w*t.w*t.vx, t.w*t.w*cc*t.vy)
	}
	var sv, sdf float64
	lo := math.Inf(1)
	for _, t := range k.terms {
		ax, ay := t.w*t.w*t.vx/m, t.w*t.w*cc*t.vy/m
		sv += ax + ay
		sdf += ax*ax/(t.nx-1) + ay*ay/(t.ny-1)
		lo = min(lo, t.nx-1, t.ny-1)
	}
	if df := sv * sv / sdf; df > 0 && !math.IsInf(df, 1) {
		return df
	}
	if !(lo >= 1) {
		return 1
	}
	return lo
}

// p returns the p-value of H0 "canary ≤ c·baseline" (alt Greater) or
// "canary ≥ c·baseline" (Less): the fixed-sample t-test of D(c), or with
// seq the mixture SPRT (stat.MixtureSPRT's e-value of D(c), tuned for
// level alpha and n0 observations per cohort); phi is the design effect
// by which the variance is inflated. The slack moves D(c) against the
// alternative.
func (k *contrast) p(c float64, alt stat.Alternative, phi float64, seq bool, alpha, n0 float64) float64 {
	if !k.ok() {
		return 1
	}
	d, v, df, sz2, slack := k.at(c)
	if alt == stat.Greater {
		d -= slack
	} else {
		d += slack
	}
	if math.IsInf(d, 0) || math.IsNaN(d) {
		return 1
	}
	v *= phi
	if seq {
		if min(k.nx, k.ny) < n0 {
			return 1
		}
		return min(1, 1/stat.MixtureSPRT(d, v, sz2*phi, max(k.scale, math.Abs(d)), alt, alpha, n0))
	}
	se := math.Sqrt(v)
	if se <= 10*dblEpsilon*max(k.scale, 1e-300) { // essentially constant data, as in R's t.test
		if (alt == stat.Greater && d > 0) || (alt == stat.Less && d < 0) {
			return 0
		}
		return 1
	}
	t := d / se
	if alt == stat.Less {
		t = -t
	}
	return stat.StudentUpper(t, df)
}

// effect returns the ratio the contrast estimates — the ratio of the
// geometric means exp(D(1)) on logarithms, the ratio of the weighted means
// Σ w x̄ / Σ w ȳ on values — and its two-sided interval at level
// confLevel: for logarithms exp(D ± k √V), for values Fieller's interval,
// the ratios c the two-sided test of D(c) does not reject. k is Student's
// quantile at the Satterthwaite degrees of freedom, or with seq the
// half-width factor of the mixture SPRT's confidence sequence (Johari et
// al. 2022), so that the interval and the anytime-valid test agree.
func (k *contrast) effect(confLevel, phi float64, seq bool, n0 float64) (est, lo, hi float64) {
	inf := math.Inf(1)
	if !k.ok() {
		return math.NaN(), 0, inf
	}
	alpha := 1 - confLevel
	crit := func(v, df, sz2 float64) float64 {
		if seq {
			return stat.MixtureSPRTRadius(v, sz2, alpha, n0)
		}
		return stat.StudentUpperQuantile(alpha/2, df)
	}
	if k.logs {
		d, v, df, sz2, _ := k.at(1)
		v *= phi
		h := crit(v, df, sz2*phi) * math.Sqrt(v)
		return math.Exp(d), math.Exp(d - h), math.Exp(d + h)
	}
	var a, b, p, q float64
	for _, t := range k.terms {
		a += t.w * t.xbar
		b += t.w * t.ybar
		p += t.w * t.w * t.vx
		q += t.w * t.w * t.vy
	}
	w2 := k.w * k.w
	a, b, p, q = a/k.w, b/k.w, phi*p/w2, phi*q/w2
	switch {
	case b == 0 && a == 0:
		est = 1
	case b == 0:
		est = math.Copysign(inf, a)
	default:
		est = a / b
	}
	_, _, df, sz2, _ := k.at(est)
	if math.IsInf(est, 0) {
		_, _, df, sz2, _ = k.at(1)
	}
	kk := crit(p+est*est*q, df, sz2*phi)
	// (a − c b)² = k² (p + c² q): (b² − k² q) c² − 2ab c + (a² − k² p) = 0.
	qa := b*b - kk*kk*q
	if !(qa > 0) {
		return est, -inf, inf // the baseline mean is not significantly ≠ 0
	}
	disc := a*a*b*b - qa*(a*a-kk*kk*p)
	r := math.Sqrt(max(disc, 0))
	lo, hi = (a*b-r)/qa, (a*b+r)/qa
	return est, lo, hi
}

// dblEpsilon is R's .Machine$double.eps, 2⁻⁵².
const dblEpsilon = 0x1p-52

// etaFactor estimates how many times the current sample a test needs
// before its standardized statistic z reaches zNeed, if the estimate stays
// where it is (the statistic grows as the square root of the sample): the
// basis of the HOLD reasons' "about N more". It is +Inf when z ≤ 0 (the
// estimate lies on the wrong side: no amount of data would confirm it).
func etaFactor(z, zNeed float64) float64 {
	if !(z > 0) {
		return math.Inf(1)
	}
	return max(1, (zNeed/z)*(zNeed/z))
}
