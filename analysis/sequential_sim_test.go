package analysis

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// Seeded simulations of the sequential tests under continuous monitoring:
// judged after every batch, from the first batch (or the gate) to the end
// of the run. Type-I checks run at the least favourable null, the
// tolerance boundary, and fail when the number of runs that ever reject
// exceeds the 99.9% quantile of Binomial(runs, α): a statistical bound,
// not a timing. Power checks use a regression of twice the tolerance.

// seqAABound returns the smallest k with Pr(X ≥ k) ≤ 0.001 for
// X ~ Binomial(runs, alpha): more rejections than that are clearly above α.
func seqAABound(runs int, alpha float64) int {
	n := float64(runs)
	for k := 0; k <= runs; k++ {
		if BinomialTail(float64(k), n, alpha, Greater) <= 0.001 {
			return k
		}
	}
	return runs + 1
}

// seqCheckAA reports the false-rejection rate with its Clopper–Pearson 95%
// interval and fails above seqAABound.
func seqCheckAA(t *testing.T, name string, rejected, runs int, alpha float64) {
	t.Helper()
	lo, hi := ClopperPearson(float64(rejected), float64(runs), TwoSided, 0.95)
	bound := seqAABound(runs, alpha)
	t.Logf("%s: ever rejected %d/%d = %.3f (95%% CI %.3f–%.3f), α = %v, fail at ≥ %d", name, rejected, runs,
		float64(rejected)/float64(runs), lo, hi, alpha, bound)
	if rejected >= bound {
		t.Errorf("%s: %d/%d runs ever rejected at α = %v: clearly above α (bound %d)", name, rejected, runs, alpha, bound)
	}
}

func seqBinomDraw(rng *rand.Rand, n, p float64) float64 {
	return distuv.Binomial{N: n, P: p, Src: rng}.Rand()
}

func seqMedian(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestSeqRateAAContinuous: a canary whose error rate is exactly 1 ±
// tolerance times the baseline's (the boundary of the Greater and of the
// Less test), with a canary share of traffic that changes every batch (5%
// to 20%), a traffic wave and a baseline error rate that moves with time
// (shared by both cohorts), binomial errors; SeqRate judged after each of
// 60 batches.
func TestSeqRateAAContinuous(t *testing.T) {
	t.Parallel()
	runs := 500
	if testing.Short() {
		runs = 150
	}
	const alpha, tol, batches = 0.05, 0.1, 60
	for _, tc := range []struct {
		name string
		r0   float64
		alt  Alternative
	}{
		{"rate ×1.1, Greater", 1 + tol, Greater},
		{"rate ×0.9, Less", 1 - tol, Less},
	} {
		rng := rand.New(rand.NewPCG(101, 102))
		rejected := 0
		for range runs {
			s := NewSeqRate(SeqRateOptions{Rho: 0.1, Nulls: []float64{tc.r0}})
			phase := 6 * rng.Float64()
			for b := range batches {
				rho := 0.05 + 0.15*rng.Float64()
				req := math.Round(10000 * (1 + 0.5*math.Sin(float64(b)/6+phase)))
				p := 0.005 * (1 + 0.8*math.Sin(float64(b)/4+phase))
				nB, nC := math.Round(req*(1-rho)), math.Round(req*rho)
				s.Add(seqBinomDraw(rng, nB, p), nB, seqBinomDraw(rng, nC, p*tc.r0), nC)
				if s.P(tc.r0, tc.alt) <= alpha {
					rejected++
					break
				}
			}
		}
		seqCheckAA(t, tc.name+", canary 5–20% of traffic, 0.5% errors", rejected, runs, alpha)
	}
}

// TestSeqRateInstancesAA: error rates with a persistent factor per
// instance (lognormal, σ = 0.3: some hosts fail more), 5 instances per
// cohort with 1,000 requests each per batch, the canary's rate 1.1× in
// expectation over instances. SeqRate on the cohort totals treats the
// instance factors as a regression; SeqMeanInstances on per-instance
// BernoulliMoments must stay within the bound.
func TestSeqRateInstancesAA(t *testing.T) {
	t.Parallel()
	runs := 300
	if testing.Short() {
		runs = 100
	}
	const alpha, tol, sdInst, k = 0.05, 0.1, 0.3, 5
	rng := rand.New(rand.NewPCG(117, 118))
	naive, clustered := 0, 0
	for range runs {
		s := NewSeqRate(SeqRateOptions{Rho: 0.5, Nulls: []float64{1 + tol}})
		var px, py [k]float64
		for i := range k {
			px[i] = (1 + tol) * 0.01 * math.Exp(sdInst*rng.NormFloat64()-sdInst*sdInst/2)
			py[i] = 0.01 * math.Exp(sdInst*rng.NormFloat64()-sdInst*sdInst/2)
		}
		var cx, cy [k]float64 // cumulative errors per instance
		n := 0.0              // requests per instance so far
		rejN, rejC := false, false
		for range 60 {
			var bx, by float64
			for i := range k {
				ex, ey := seqBinomDraw(rng, 1000, px[i]), seqBinomDraw(rng, 1000, py[i])
				cx[i] += ex
				cy[i] += ey
				bx += ex
				by += ey
			}
			n += 1000
			s.Add(by, 1000*k, bx, 1000*k)
			rejN = rejN || s.P(1+tol, Greater) <= alpha
			xs, ys := make([]Moments, k), make([]Moments, k)
			for i := range k {
				xs[i], ys[i] = BernoulliMoments(cx[i], n), BernoulliMoments(cy[i], n)
			}
			if e, _, _ := SeqMeanInstances(xs, ys, 1+tol, Greater, alpha, 1000); e >= 1/alpha {
				rejC = true
			}
			if rejN && rejC {
				break
			}
		}
		if rejN {
			naive++
		}
		if rejC {
			clustered++
		}
	}
	lo, hi := ClopperPearson(float64(naive), float64(runs), TwoSided, 0.95)
	t.Logf("SeqRate on cohort totals ever rejected %d/%d = %.3f (95%% CI %.3f–%.3f)", naive, runs, float64(naive)/float64(runs), lo, hi)
	seqCheckAA(t, "SeqMeanInstances on per-instance error rates, 5+5 instances, σ_inst = 0.3", clustered, runs, alpha)
}

// TestSeqRatePower: a regression of twice the tolerance (r = 1.2 against
// the null r0 = 1.1) on an even split, 1% baseline errors, 20,000 requests
// per batch: detected within 60 batches in at least 90% of runs.
func TestSeqRatePower(t *testing.T) {
	t.Parallel()
	runs := 100
	if testing.Short() {
		runs = 40
	}
	const alpha, tol, batches = 0.01, 0.1, 60
	rng := rand.New(rand.NewPCG(103, 104))
	var when []float64
	for range runs {
		s := NewSeqRate(SeqRateOptions{Rho: 0.5, Nulls: []float64{1 + tol}})
		for b := range batches {
			s.Add(seqBinomDraw(rng, 10000, 0.01), 10000, seqBinomDraw(rng, 10000, 0.012), 10000)
			if s.P(1+tol, Greater) <= alpha {
				when = append(when, float64(b+1))
				break
			}
		}
	}
	t.Logf("rate r = 1.2 vs r0 = 1.1, 20k requests/batch, 1%% errors: detected %d/%d, median %v batches", len(when), runs, seqMedian(when))
	if float64(len(when)) < 0.9*float64(runs) {
		t.Errorf("detected %d/%d, want ≥ 90%%", len(when), runs)
	}
}

// TestSeqRateOneBox is the target scenario: a one-box taking
// 1,000 of 10,000 requests per minute, baseline error rate 0.5%, a 4×
// error-rate regression, judged every minute with tolerance 10%. It
// reports the minutes to rollback at α = 0.01 for one metric and at
// 0.01/5 (Bonferroni over five metrics) and requires a median of at most
// 3 minutes for both.
func TestSeqRateOneBox(t *testing.T) {
	t.Parallel()
	runs := 200
	if testing.Short() {
		runs = 60
	}
	rng := rand.New(rand.NewPCG(105, 106))
	for _, alpha := range []float64{0.01, 0.002} {
		var minutes []float64
		for range runs {
			s := NewSeqRate(SeqRateOptions{Rho: 0.1, Nulls: []float64{1.1}})
			m := 30.0
			for minute := 1; minute <= 30; minute++ {
				s.Add(seqBinomDraw(rng, 9000, 0.005), 9000, seqBinomDraw(rng, 1000, 0.02), 1000)
				if s.P(1.1, Greater) <= alpha {
					m = float64(minute)
					break
				}
			}
			minutes = append(minutes, m)
		}
		slices.Sort(minutes)
		med, p90 := minutes[len(minutes)/2], minutes[len(minutes)*9/10]
		t.Logf("one-box 4× errors, α=%v: median %v min, p90 %v min", alpha, med, p90)
		if med > 3 {
			t.Errorf("α=%v: median %v minutes to rollback, target ≤ 3", alpha, med)
		}
	}
}

// TestSeqMeanAAContinuous: canary observations are the baseline's
// distribution scaled by 1 + tolerance (so the means are exactly at the
// boundary), lognormal with σ = 1 (skewed, as revenue or latency) or
// normal, judged from the gate n0 = 100 after every batch up to 5,000
// observations per cohort, with the canary getting 10% or 50% of the
// observations.
func TestSeqMeanAAContinuous(t *testing.T) {
	t.Parallel()
	runs := 300
	if testing.Short() {
		runs = 100
	}
	const alpha, c, n0 = 0.05, 1.1, 100.0
	for _, tc := range []struct {
		name     string
		draw     func(*rand.Rand) float64
		nx, ny   int // per batch
		nBatches int
	}{
		{"lognormal σ=1, even split", func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64()) }, 50, 50, 100},
		{"lognormal σ=1, canary 10%", func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64()) }, 10, 90, 100},
		{"normal, even split", func(r *rand.Rand) float64 { return 10 + 3*r.NormFloat64() }, 50, 50, 100},
	} {
		rng := rand.New(rand.NewPCG(107, 108))
		rejected := 0
		for range runs {
			var x, y Moments
			for range tc.nBatches {
				for range tc.nx {
					x.Add(c * tc.draw(rng))
				}
				for range tc.ny {
					y.Add(tc.draw(rng))
				}
				if x.N < n0 || y.N < n0 {
					continue
				}
				if e, _, _ := SeqMean(x, y, c, Greater, alpha, n0); e >= 1/alpha {
					rejected++
					break
				}
			}
		}
		seqCheckAA(t, "mean, "+tc.name, rejected, runs, alpha)
	}
}

// TestSeqMeanPower: lognormal σ = 0.5, canary mean 1.2× the baseline's
// against the null 1.1×: detected within 5,000 observations per cohort
// in at least 90% of runs.
func TestSeqMeanPower(t *testing.T) {
	t.Parallel()
	runs := 100
	if testing.Short() {
		runs = 40
	}
	const alpha, n0 = 0.01, 100.0
	rng := rand.New(rand.NewPCG(109, 110))
	var when []float64
	for range runs {
		var x, y Moments
		for b := 1; b <= 100; b++ {
			for range 50 {
				x.Add(1.2 * math.Exp(0.5*rng.NormFloat64()))
				y.Add(math.Exp(0.5 * rng.NormFloat64()))
			}
			if x.N < n0 {
				continue
			}
			if e, _, _ := SeqMean(x, y, 1.1, Greater, alpha, n0); e >= 1/alpha {
				when = append(when, x.N)
				break
			}
		}
	}
	t.Logf("mean 1.2× vs 1.1×, lognormal σ=0.5: detected %d/%d, median %v per cohort", len(when), runs, seqMedian(when))
	if float64(len(when)) < 0.9*float64(runs) {
		t.Errorf("detected %d/%d, want ≥ 90%%", len(when), runs)
	}
}

// TestSeqMeanInstancesAA: requests come from instances with a persistent
// latency factor each (lognormal, σ_inst = 0.08, comparable to the 10%
// tolerance), 20 requests per instance per batch over 100 batches, the
// canary's factors times 1 + tolerance (the boundary in expectation over
// instances). SeqMean on pooled requests ignores the instances and rolls
// back far more often than α; SeqMeanInstances must stay within the bound.
func TestSeqMeanInstancesAA(t *testing.T) {
	t.Parallel()
	runs := 300
	if testing.Short() {
		runs = 100
	}
	const alpha, c, n0, sdInst = 0.05, 1.1, 100.0, 0.08
	for _, tc := range []struct {
		name   string
		kx, ky int
	}{
		{"5 canary and 5 baseline instances", 5, 5},
		{"one-box beside 9 baseline instances", 1, 9},
	} {
		rng := rand.New(rand.NewPCG(111, 112))
		naive, clustered := 0, 0
		for range runs {
			fx, fy := make([]float64, tc.kx), make([]float64, tc.ky)
			for i := range fx {
				fx[i] = c * math.Exp(sdInst*rng.NormFloat64()-sdInst*sdInst/2)
			}
			for i := range fy {
				fy[i] = math.Exp(sdInst*rng.NormFloat64() - sdInst*sdInst/2)
			}
			xs, ys := make([]Moments, tc.kx), make([]Moments, tc.ky)
			var mx, my Moments
			rejN, rejC := false, false
			for range 100 {
				for i := range xs {
					for range 20 {
						v := fx[i] * math.Exp(0.5*rng.NormFloat64())
						xs[i].Add(v)
						mx.Add(v)
					}
				}
				for i := range ys {
					for range 20 {
						v := fy[i] * math.Exp(0.5*rng.NormFloat64())
						ys[i].Add(v)
						my.Add(v)
					}
				}
				if mx.N < n0 || my.N < n0 {
					continue
				}
				if e, _, _ := SeqMean(mx, my, c, Greater, alpha, n0); e >= 1/alpha {
					rejN = true
				}
				if e, _, _ := SeqMeanInstances(xs, ys, c, Greater, alpha, n0); e >= 1/alpha {
					rejC = true
				}
				if rejN && rejC {
					break
				}
			}
			if rejN {
				naive++
			}
			if rejC {
				clustered++
			}
		}
		lo, hi := ClopperPearson(float64(naive), float64(runs), TwoSided, 0.95)
		t.Logf("%s: SeqMean on pooled requests ever rejected %d/%d = %.3f (95%% CI %.3f–%.3f)", tc.name, naive, runs,
			float64(naive)/float64(runs), lo, hi)
		seqCheckAA(t, "SeqMeanInstances, "+tc.name, clustered, runs, alpha)
	}
}

// TestSeqQuantileAAContinuous: canary observations are the baseline's
// scaled by 1 + tolerance (every quantile at the boundary), lognormal
// σ = 0.5, batches of 150 per cohort up to 4,500, judged on the median
// and the p90 together (the minimum of their P) from MinN = 100.
func TestSeqQuantileAAContinuous(t *testing.T) {
	t.Parallel()
	runs := 120
	if testing.Short() {
		runs = 40
	}
	const alpha, c = 0.05, 1.1
	rng := rand.New(rand.NewPCG(113, 114))
	rejected := 0
	for range runs {
		var x, y Dist
		for range 30 {
			for range 150 {
				x.Add(c * 80 * math.Exp(0.5*rng.NormFloat64()))
				y.Add(80 * math.Exp(0.5*rng.NormFloat64()))
			}
			opts := SeqQuantileOptions{Alternative: Greater, MinN: 100}
			if !x.Exact() || !y.Exact() {
				opts.RelErr = DistBinRelErr
			}
			xb, yb := x.Bins(), y.Bins()
			p := math.Min(SeqQuantileTest(xb, yb, 0.5, c, opts).P, SeqQuantileTest(xb, yb, 0.9, c, opts).P)
			if p <= alpha {
				rejected++
				break
			}
		}
	}
	seqCheckAA(t, "quantiles p50+p90, lognormal σ=0.5 ×1.1", rejected, runs, alpha)
}

// TestSeqQuantilePower: the canary's latency 1.2× the baseline's against
// the null 1.1× (lognormal σ = 0.5), batches of 500 per cohort up to
// 15,000 (binned past 4,096), median and p90: detected in at least 90% of
// runs. It also reports the median sample size at detection.
func TestSeqQuantilePower(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: binned Dists up to 15,000 observations")
	}
	t.Parallel()
	const runs, alpha, c = 60, 0.01, 1.1
	rng := rand.New(rand.NewPCG(115, 116))
	var when []float64
	for range runs {
		var x, y Dist
		for range 30 {
			for range 500 {
				x.Add(1.2 * 80 * math.Exp(0.5*rng.NormFloat64()))
				y.Add(80 * math.Exp(0.5*rng.NormFloat64()))
			}
			opts := SeqQuantileOptions{Alternative: Greater, MinN: 100}
			if !x.Exact() || !y.Exact() {
				opts.RelErr = DistBinRelErr
			}
			xb, yb := x.Bins(), y.Bins()
			p := math.Min(SeqQuantileTest(xb, yb, 0.5, c, opts).P, SeqQuantileTest(xb, yb, 0.9, c, opts).P)
			if p <= alpha {
				when = append(when, float64(x.N()))
				break
			}
		}
	}
	t.Logf("quantiles 1.2× vs 1.1×, lognormal σ=0.5: detected %d/%d, median %v per cohort", len(when), runs, seqMedian(when))
	if float64(len(when)) < 0.9*runs {
		t.Errorf("detected %d/%d, want ≥ 90%%", len(when), runs)
	}
}

// TestRateBoundaryAAContinuous: the judge's rate e-value (prior centred
// at the null boundary, RateBoundaryK) on a canary whose error rate is
// exactly at the boundary 1 ± tolerance, with a constant canary share (as
// the closed form assumes) and a baseline error rate that moves with time
// (shared by both cohorts), judged after each of 60 batches on the
// cumulative counts.
func TestRateBoundaryAAContinuous(t *testing.T) {
	t.Parallel()
	runs := 500
	if testing.Short() {
		runs = 150
	}
	const alpha, tol, batches = 0.05, 0.2, 60
	for _, tc := range []struct {
		name string
		rho  float64
		r0   float64
		alt  Alternative
	}{
		{"rate ×1.2, Greater, canary 50%", 0.5, 1 + tol, Greater},
		{"rate ×1.2, Greater, canary 10%", 0.1, 1 + tol, Greater},
		{"rate ×0.8, Less, canary 50%", 0.5, 1 - tol, Less},
	} {
		rng := rand.New(rand.NewPCG(201, 202))
		rejected := 0
		for range runs {
			var cb, cc float64
			phase := 6 * rng.Float64()
			for b := range batches {
				p := 0.005 * (1 + 0.8*math.Sin(float64(b)/4+phase))
				nB, nC := math.Round(2000*(1-tc.rho)), math.Round(2000*tc.rho)
				cb += seqBinomDraw(rng, nB, p)
				cc += seqBinomDraw(rng, nC, p*tc.r0)
				if RateBoundaryEValue(cb, cc, tc.rho, RateBoundaryK, tc.r0, tc.alt) >= 1/alpha {
					rejected++
					break
				}
			}
		}
		seqCheckAA(t, tc.name, rejected, runs, alpha)
	}
}
