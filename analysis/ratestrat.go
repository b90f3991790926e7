package analysis

import (
	"math"
	"sync"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/canaryd/canaryd/analysis/stat"
)

// StratRate is the time-stratified test of the rate ratio r = λ_C/λ_B of a
// rate metric (errors per request), conditional on each stratum's events.
//
// Within group g of time strata (strata.go), with Poisson event counts of
// means λ_g·E_B,g (baseline) and r·λ_g·E_C,g (canary) for any baseline
// rate λ_g, the canary's share of the group's N_g events is binomial,
//
//	N_C,g ~ Binomial(N_g, θ_g(r)),   θ_g(r) = ρ_g r / (1 − ρ_g + ρ_g r),   ρ_g = E_C,g / (E_B,g + E_C,g),
//
// whatever λ_g: a rate that changes over time in both cohorts (an error
// burst downstream) cancels within each group even when the canary's share
// of traffic ρ_g changes from group to group (Cochran 1954; Mantel and
// Haenszel 1959; the conditional likelihood of Lindon and Malek 2022).
// The conditional log-likelihood of u = log r is, up to a constant,
//
//	ℓ(u) = Σ_g [ N_C,g u − N_g log(1 + ρ_g (e^u − 1)) ].
//
// The anytime-valid test of H0: r ≤ r0 (Greater) mixes the likelihood
// ratios over a fixed prior π on the alternative side,
//
//	E = Σ_j π_j exp(ℓ(u0 + δ_j) − ℓ(u0)),   u0 = log r0,
//
// with π the half-normal of scale RateMixSigma on δ > 0 (δ < 0 for Less),
// discretized at rateMixNodes equal-mass points. Given the events, each
// one's likelihood ratio has conditional expectation ≤ 1 under every r on
// the null side, in whatever order they arrive and however the groups
// fill, so E is a nonnegative supermartingale and Pr(∃t: E_t ≥ 1/α) ≤ α
// (Ville). The prior is fixed: it does not depend on the data (a prior
// that followed the share of exposure, as stat.BetaMixtureLogE's does when
// applied to rates, would not be a fixed mixture once the share changes).
//
// The fixed-sample test is the exact conditional test of T = Σ N_C,g: its
// distribution given the N_g is the convolution of the groups' binomials,
// computed exactly when the events are few (≤ rateExactMax) and whole, and
// otherwise by the Lugannani–Rice saddle-point approximation with Daniels'
// second continuity correction (Daniels 1987, "Tail probability
// approximations", Int. Statist. Rev. 55; Butler 2007, "Saddlepoint
// Approximations with Applications", §1.2), accurate to about 1e-3
// relative far into the tails. With one group it is R's poisson.test
// (RateTest).
type stratRate struct {
	terms          []rateTerm
	nb, nc, eb, ec float64 // totals: events (effective) and exposures
}

type rateTerm struct {
	nb, nc float64 // events (effective: divided by the design effect)
	rho    float64 // the canary's share of the group's exposure
	eb, ec float64
}

// RateMixSigma is the scale of the half-normal prior on log(r/r0) of the
// anytime-valid rate test: half its mass lies within a ratio of
// exp(0.34·0.5) = 1.18 of the null boundary, 95% within 2.7.
const RateMixSigma = 0.5

// rateMixNodes is the number of points of the discretized prior.
const rateMixNodes = 32

// rateExactMax bounds the events of the exact convolution.
const rateExactMax = 3000

// rateMixDeltas returns the equal-mass points of the half-normal prior of
// scale RateMixSigma: σ·Φ⁻¹((1 + (j − ½)/J)/2), j = 1..J.
var rateMixDeltas = sync.OnceValue(func() []float64 { return halfNormalNodes(rateMixNodes) })

// rateCSNodes is the number of points of the prior of the confidence
// sequence the judge reports: any fixed prior gives a valid sequence, and
// the sequence is inverted by root finding, one mixture per evaluation,
// so it takes a coarser prior than the test (8 points instead of 32: the
// same interval to about 1%, a quarter of the cost).
const rateCSNodes = 8

var rateCSDeltas = sync.OnceValue(func() []float64 { return halfNormalNodes(rateCSNodes) })

// halfNormalNodes returns n equal-mass points of the half-normal of scale
// RateMixSigma: σ·Φ⁻¹((1 + (j − ½)/n)/2), j = 1..n.
func halfNormalNodes(n int) []float64 {
	out := make([]float64, n)
	for j := range out {
		q := (1 + (float64(j)+0.5)/float64(n)) / 2
		out[j] = RateMixSigma * distuv.UnitNormal.Quantile(q)
	}
	return out
}

// newStratRate returns the stratified rate data of the groups, with the
// events divided by the design effect phi. Groups without exposure in a
// cohort carry no information and are left out.
func newStratRate(gs []group, phi float64) stratRate {
	var s stratRate
	for _, g := range gs {
		b, c := &g[Baseline], &g[Canary]
		if !(b.total > 0 && c.total > 0) {
			continue
		}
		t := rateTerm{nb: b.count / phi, nc: c.count / phi, eb: b.total, ec: c.total}
		t.rho = c.total / (b.total + c.total)
		s.terms = append(s.terms, t)
		s.nb += t.nb
		s.nc += t.nc
		s.eb += t.eb
		s.ec += t.ec
	}
	return s
}

func (s *stratRate) ok() bool { return len(s.terms) > 0 }

// logLik returns ℓ(u) (without its constant).
func (s *stratRate) logLik(u float64) float64 {
	em := math.Expm1(u)
	l := s.nc * u
	for _, t := range s.terms {
		if n := t.nb + t.nc; n > 0 {
			l -= n * math.Log1p(t.rho*em)
		}
	}
	return l
}

// mixtureE returns the e-value of H0: r ≤ r0 (Greater), r ≥ r0 (Less) or
// r = r0 (TwoSided, the prior split evenly between both sides).
func (s *stratRate) mixtureE(r0 float64, alt stat.Alternative) float64 {
	return s.mixtureWith(rateMixDeltas(), r0, alt)
}

// mixtureWith is mixtureE with the prior's points ds.
func (s *stratRate) mixtureWith(ds []float64, r0 float64, alt stat.Alternative) float64 {
	u0 := math.Log(r0)
	l0 := s.logLik(u0)
	w := 1 / float64(len(ds))
	sum := 0.0
	for _, d := range ds {
		switch alt {
		case stat.Greater:
			sum += w * math.Exp(s.logLik(u0+d)-l0)
		case stat.Less:
			sum += w * math.Exp(s.logLik(u0-d)-l0)
		default:
			sum += w / 2 * (math.Exp(s.logLik(u0+d)-l0) + math.Exp(s.logLik(u0-d)-l0))
		}
	}
	return sum
}

// seqP returns the anytime-valid p-value min(1, 1/E).
func (s *stratRate) seqP(r0 float64, alt stat.Alternative) float64 {
	if !s.ok() || s.nb+s.nc == 0 {
		return 1
	}
	e := s.mixtureE(r0, alt)
	if math.IsNaN(e) {
		return 1
	}
	return min(1, 1/e)
}

// mle returns the conditional maximum-likelihood ratio: the r with
// Σ N_g θ_g(r) = Σ N_C,g (0 when the canary has no events, +Inf when the
// baseline has none, 1 without events).
func (s *stratRate) mle() float64 {
	switch {
	case s.nb+s.nc == 0:
		return 1
	case s.nc == 0:
		return 0
	case s.nb == 0:
		return math.Inf(1)
	}
	f := func(u float64) float64 { // Σ N θ(u) − T, increasing in u
		em := math.Expm1(u)
		v := -s.nc
		for _, t := range s.terms {
			v += (t.nb + t.nc) * t.rho * (1 + em) / (1 + t.rho*em)
		}
		return v
	}
	u, err := stat.Root(f, -40, 40, 1e-12)
	if err != nil { // f is finite and increasing from −T < 0 to Σ N − T > 0
		return math.NaN()
	}
	return math.Exp(u)
}

// thetas returns θ_g(r) and N_g of every group.
func (s *stratRate) thetas(r float64) (th, n []float64) {
	th, n = make([]float64, len(s.terms)), make([]float64, len(s.terms))
	for i, t := range s.terms {
		th[i] = t.rho * r / (1 - t.rho + t.rho*r)
		if math.IsNaN(th[i]) { // r = +Inf
			th[i] = 1
		}
		n[i] = t.nb + t.nc
	}
	return th, n
}

// tail returns P(T ≥ t) (upper) or P(T ≤ t) at ratio r.
func (s *stratRate) tail(r float64, upper bool) float64 {
	th, n := s.thetas(r)
	t := s.nc
	if !upper {
		// P(T ≤ t) = P(T' ≥ N − t), T' the baseline's events.
		for i := range th {
			th[i] = 1 - th[i]
		}
		t = s.nb
	}
	return binomSumUpper(t, th, n)
}

// fixedP returns the fixed-sample p-value of H0: r ≤ r0 (Greater) or
// r ≥ r0 (Less).
func (s *stratRate) fixedP(r0 float64, alt stat.Alternative) float64 {
	if !s.ok() || s.nb+s.nc == 0 {
		return 1
	}
	if len(s.terms) == 1 {
		t := s.terms[0]
		return stat.RateTest(t.nb, t.eb, t.nc, t.ec, r0, alt, 0.95).P
	}
	return min(1, s.tail(r0, alt == stat.Greater))
}

// ci returns the two-sided interval of the ratio at level confLevel: with
// seq the confidence sequence {r : E_TwoSided(r) < 1/α}, otherwise the
// exact (or saddle-point) conditional interval, each end at α/2.
func (s *stratRate) ci(confLevel float64, seq bool) (lo, hi float64) {
	inf := math.Inf(1)
	alpha := 1 - confLevel
	if !s.ok() || s.nb+s.nc == 0 {
		return 0, inf
	}
	if !seq && len(s.terms) == 1 {
		t := s.terms[0]
		res := stat.RateTest(t.nb, t.eb, t.nc, t.ec, 1, stat.TwoSided, confLevel)
		return res.Lower, res.Upper
	}
	// Start from the MLE (clamped to the data's range when it is 0 or ∞).
	u0 := math.Log(s.mle())
	u0 = max(-30, min(30, u0))
	var g func(u float64) float64 // < 0 inside the interval
	if seq {
		la := math.Log(1 / alpha)
		g = func(u float64) float64 {
			return math.Log(s.mixtureWith(rateCSDeltas(), math.Exp(u), stat.TwoSided)) - la
		}
	} else {
		la := math.Log(alpha / 2)
		g = func(u float64) float64 {
			up, down := s.tail(math.Exp(u), true), s.tail(math.Exp(u), false)
			return la - math.Log(min(up, down))
		}
	}
	if !(g(u0) < 0) {
		return math.Exp(u0), math.Exp(u0)
	}
	// NaN far out (the likelihood overflows) lies outside the interval.
	h := func(u float64) float64 {
		if v := g(u); !math.IsNaN(v) {
			return v
		}
		return math.Inf(1)
	}
	lo, hi = 0, inf
	if s.nc > 0 {
		if u, err := stat.RootOutward(h, u0, -1.0/16, 64, 1e-7); err == nil {
			lo = math.Exp(u)
		}
	}
	if s.nb > 0 {
		if u, err := stat.RootOutward(h, u0, 1.0/16, 64, 1e-7); err == nil {
			hi = math.Exp(u)
		}
	}
	return lo, hi
}

// binomSumUpper returns P(Σ_g X_g ≥ t) for independent X_g ~
// Binomial(n_g, θ_g): exactly by convolution when the n_g are whole and
// their sum at most rateExactMax, else by the saddle-point approximation.
func binomSumUpper(t float64, th, n []float64) float64 {
	var total float64
	whole := true
	for i := range n {
		total += n[i]
		whole = whole && n[i] == math.Trunc(n[i])
	}
	switch {
	case t <= 0:
		return 1
	case t > total+1e-9:
		return 0
	}
	if whole && total <= rateExactMax && t == math.Trunc(t) {
		pmf := []float64{1}
		for i := range n {
			pmf = convolveBinom(pmf, int(n[i]), th[i])
		}
		p := 0.0
		for k := int(t); k < len(pmf); k++ {
			p += pmf[k]
		}
		return min(1, p)
	}
	return binomSumSaddle(t, th, n, total)
}

// convolveBinom returns the convolution of pmf with Binomial(n, p).
func convolveBinom(pmf []float64, n int, p float64) []float64 {
	if n == 0 {
		return pmf
	}
	b := make([]float64, n+1)
	switch {
	case p <= 0:
		b[0] = 1
	case p >= 1:
		b[n] = 1
	default:
		lp, lq := math.Log(p), math.Log1p(-p)
		lgn, _ := math.Lgamma(float64(n + 1))
		for k := range b {
			lk, _ := math.Lgamma(float64(k + 1))
			lnk, _ := math.Lgamma(float64(n - k + 1))
			b[k] = math.Exp(lgn - lk - lnk + float64(k)*lp + float64(n-k)*lq)
		}
	}
	out := make([]float64, len(pmf)+n)
	for i, a := range pmf {
		if a == 0 {
			continue
		}
		for k, v := range b {
			out[i+k] += a * v
		}
	}
	return out
}

// binomSumSaddle is the Lugannani–Rice approximation of P(T ≥ t) for a
// sum of binomials, with Daniels' second continuity correction (the
// cumulant generating function K(s) = Σ n log(1 − θ + θ eˢ) solved at
// t − ½, and u = 2 sinh(ŝ/2) √K”(ŝ)).
func binomSumSaddle(t float64, th, n []float64, total float64) float64 {
	// All events in the canary: the exact product.
	if t >= total {
		l := 0.0
		for i := range n {
			l += n[i] * math.Log(th[i])
		}
		return math.Exp(l)
	}
	tc := t - 0.5
	k1 := func(s float64) (k, d1, d2 float64) {
		for i := range n {
			if n[i] == 0 {
				continue
			}
			a, b := math.Log1p(-th[i]), math.Log(th[i])+s
			lse := logAddExp(a, b)
			k += n[i] * lse
			q := math.Exp(b - lse) // θ eˢ / (1 − θ + θ eˢ)
			d1 += n[i] * q
			d2 += n[i] * q * (1 - q)
		}
		return k, d1, d2
	}
	_, mean, vr := k1(0)
	if !(vr > 0) {
		if mean >= t {
			return 1
		}
		return 0
	}
	normal := distuv.UnitNormal.Survival((tc - mean) / math.Sqrt(vr))
	if math.Abs(tc-mean) < 1e-3*math.Sqrt(vr) {
		return normal // near the mean, where the formula is 0/0
	}
	sh, err := stat.Root(func(s float64) float64 { _, d1, _ := k1(s); return d1 - tc }, -60, 60, 1e-13)
	if err != nil {
		return normal
	}
	k, _, d2 := k1(sh)
	w := math.Copysign(math.Sqrt(max(0, 2*(sh*tc-k))), sh)
	u := 2 * math.Sinh(sh/2) * math.Sqrt(d2)
	if w == 0 || u == 0 || math.IsNaN(w+u) {
		return normal
	}
	p := distuv.UnitNormal.Survival(w) + distuv.UnitNormal.Prob(w)*(1/u-1/w)
	return max(0, min(1, p))
}

// logAddExp returns log(eᵃ + eᵇ).
func logAddExp(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(a, -1) {
		return a
	}
	return a + math.Log1p(math.Exp(b-a))
}
