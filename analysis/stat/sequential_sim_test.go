package stat

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

// TestMixtureSPRTAAContinuous: canary observations are the baseline's
// distribution scaled by 1 + tolerance (so the means are exactly at the
// boundary), lognormal with σ = 1 (skewed, as revenue or latency) or
// normal, judged from the gate n0 = 100 after every batch up to 5,000
// observations per cohort, with the canary getting 10% or 50% of the
// observations.
func TestMixtureSPRTAAContinuous(t *testing.T) {
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
				d, v, sz2, scale := msprtOf(x, y, c)
				if MixtureSPRT(d, v, sz2, scale, Greater, alpha, n0) >= 1/alpha {
					rejected++
					break
				}
			}
		}
		seqCheckAA(t, "mean, "+tc.name, rejected, runs, alpha)
	}
}

// TestMixtureSPRTPower: lognormal σ = 0.5, canary mean 1.2× the baseline's
// against the null 1.1×: detected within 5,000 observations per cohort
// in at least 90% of runs.
func TestMixtureSPRTPower(t *testing.T) {
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
			d, v, sz2, scale := msprtOf(x, y, 1.1)
			if MixtureSPRT(d, v, sz2, scale, Greater, alpha, n0) >= 1/alpha {
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

// TestBetaMixtureAAContinuous: the beta-mixture e-value of a rate ratio
// (the canary's events out of both cohorts', the prior Beta(k p0,
// k (1 − p0)) centred at the null p0, k = 20 as the judge's sample-ratio
// check uses it) on a canary whose error rate is exactly at the boundary
// 1 ± tolerance, with a constant canary share (so that the canary's share
// of events is binomial with p0) and a baseline error rate that moves
// with time (shared by both cohorts), judged after each of 60 batches on
// the cumulative counts.
func TestBetaMixtureAAContinuous(t *testing.T) {
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
		p0 := tc.rho * tc.r0 / (1 - tc.rho + tc.rho*tc.r0)
		rejected := 0
		for range runs {
			var cb, cc float64
			phase := 6 * rng.Float64()
			for b := range batches {
				p := 0.005 * (1 + 0.8*math.Sin(float64(b)/4+phase))
				nB, nC := math.Round(2000*(1-tc.rho)), math.Round(2000*tc.rho)
				cb += seqBinomDraw(rng, nB, p)
				cc += seqBinomDraw(rng, nC, p*tc.r0)
				if BetaMixtureLogE(cc, cb, p0, 20*p0, 20*(1-p0), tc.alt) >= math.Log(1/alpha) {
					rejected++
					break
				}
			}
		}
		seqCheckAA(t, tc.name, rejected, runs, alpha)
	}
}

func seqMedian(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
