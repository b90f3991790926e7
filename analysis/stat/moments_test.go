package stat

import (
	"math"
	"math/rand/v2"
	"testing"
)

// momentsVectors is testdata/moments_vectors.json, written by
// testdata/gen/rate_student.py: R's mean and var of seeded samples.
type momentsVectors struct {
	Tolerance struct {
		Rel float64 `json:"rel"`
	} `json:"tolerance"`
	Samples map[string][]float64 `json:"samples"`
	Moments []struct {
		Sample       string
		N, Mean, Var rwNum
	} `json:"moments"`
}

// rwMoments accumulates a sample with Moments.Add.
func rwMoments(xs []float64) Moments {
	var m Moments
	for _, x := range xs {
		m.Add(x)
	}
	return m
}

// TestMomentsVectors compares Moments.Add with R's mean and var on the
// samples of testdata/moments_vectors.json (1e-12 relative).
func TestMomentsVectors(t *testing.T) {
	t.Parallel()
	var v momentsVectors
	rwLoad(t, "moments_vectors.json", &v)
	if len(v.Moments) == 0 {
		t.Fatal("no moments")
	}
	for _, s := range v.Moments {
		m := rwMoments(v.Samples[s.Sample])
		if m.N != float64(s.N) || !rwClose(m.Mean, float64(s.Mean), v.Tolerance.Rel) ||
			!rwClose(m.Variance(), float64(s.Var), v.Tolerance.Rel) {
			t.Errorf("%s: got n=%g mean=%.17g var=%.17g, R n=%g mean=%.17g var=%.17g", s.Sample,
				m.N, m.Mean, m.Variance(), float64(s.N), float64(s.Mean), float64(s.Var))
		}
	}
}

// TestMomentsHand checks small samples worked out by hand.
func TestMomentsHand(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		xs             []float64
		n, mean, m2, v float64
	}{
		{nil, 0, 0, 0, 0},
		{[]float64{7}, 1, 7, 0, 0},
		{[]float64{1, 2, 3, 4}, 4, 2.5, 5, 5.0 / 3},
		{[]float64{2, 4, 4, 4, 5, 5, 7, 9}, 8, 5, 32, 32.0 / 7},
		// A large mean with a small spread: the naive Σx² − n x̄² would
		// lose every digit here.
		{[]float64{1e9 + 4, 1e9 + 7, 1e9 + 13, 1e9 + 16}, 4, 1e9 + 10, 90, 30},
	} {
		m := rwMoments(c.xs)
		if m.N != c.n || m.Mean != c.mean || !rwClose(m.M2, c.m2, 1e-15) || !rwClose(m.Variance(), c.v, 1e-15) {
			t.Errorf("%v: got %+v (var %g), want n=%g mean=%g M2=%g var=%g", c.xs, m, m.Variance(), c.n, c.mean, c.m2, c.v)
		}
	}
}

// TestMomentsMerge checks that merging shards gives the moments of the
// whole sample, whatever the split, including empty shards.
func TestMomentsMerge(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	xs := make([]float64, 1000)
	for i := range xs {
		xs[i] = 1e6 + 50*rng.NormFloat64()
	}
	all := rwMoments(xs)
	for trial := range 50 {
		var merged Moments
		for lo := 0; lo < len(xs); {
			hi := min(lo+rng.IntN(100), len(xs)) // possibly an empty shard
			merged.Merge(rwMoments(xs[lo:hi]))
			if hi == lo {
				hi++
				merged.Merge(rwMoments(xs[lo:hi]))
			}
			lo = hi
		}
		if merged.N != all.N || !rwClose(merged.Mean, all.Mean, 1e-15) || !rwClose(merged.M2, all.M2, 1e-11) {
			t.Fatalf("trial %d: merged %+v, all %+v", trial, merged, all)
		}
	}
	// Merging into and from empty accumulators.
	var e Moments
	e.Merge(all)
	if e != all {
		t.Errorf("empty.Merge: %+v", e)
	}
	e.Merge(Moments{})
	if e != all {
		t.Errorf("Merge(empty): %+v", e)
	}
	if math.IsNaN(all.Variance()) {
		t.Error("NaN variance")
	}
}

// TestBernoulliMoments checks the moments of 0/1 observations.
func TestBernoulliMoments(t *testing.T) {
	t.Parallel()
	if m := BernoulliMoments(5, 1000); m.N != 1000 || m.Mean != 0.005 || !rwClose(m.Variance(), 0.005*0.995*1000/999, 1e-12) {
		t.Errorf("BernoulliMoments(5, 1000) = %+v", m)
	}
	if m := BernoulliMoments(0, 0); m != (Moments{}) {
		t.Errorf("BernoulliMoments(0, 0) = %+v", m)
	}
}

// TestMomentsOf checks the batch moments against Welford's updates, on
// data with a large mean (where a naive sum of squares cancels).
func TestMomentsOf(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(4, 4))
	for _, n := range []int{0, 1, 2, 17, 10000} {
		vs := make([]float64, n)
		var w Moments
		for i := range vs {
			vs[i] = 1e9 + rng.NormFloat64()
			w.Add(vs[i])
		}
		got := MomentsOf(vs)
		if got.N != w.N || math.Abs(got.Mean-w.Mean) > 1e-15*math.Abs(w.Mean) || math.Abs(got.M2-w.M2) > 1e-6*math.Max(1, w.M2) {
			t.Errorf("n=%d: %+v, Welford %+v", n, got, w)
		}
	}
}

// TestLogMomentsOf checks the moments of log values against Welford's
// updates, zeros left out.
func TestLogMomentsOf(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(6, 6))
	vs := []float64{0, 0}
	var w Moments
	for range 5000 {
		v := 1e6 * math.Exp(0.5*rng.NormFloat64())
		vs = append(vs, v, 0, math.NaN(), -v)
		w.Add(math.Log(v))
	}
	got := LogMomentsOf(vs)
	if got.N != w.N || math.Abs(got.Mean-w.Mean) > 1e-13*math.Abs(w.Mean) || math.Abs(got.M2-w.M2) > 1e-10*w.M2 {
		t.Errorf("%+v, Welford %+v", got, w)
	}
	if m := LogMomentsOf([]float64{0, 0}); m != (Moments{}) {
		t.Errorf("zeros only: %+v", m)
	}
}
