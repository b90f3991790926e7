package analysis

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// seqVectors is testdata/sequential_vectors.json, written by
// testdata/gen/sequential.py (scipy 1.10, numpy 1.24; see that script).
type seqVectors struct {
	RateMixture []struct {
		CountB, CountC, Rho, K, R0 float64
		Alt                        string
		E                          rwNum
		CS05, CS01                 [2]rwNum
	} `json:"rate_mixture"`
	RateBoundary []struct {
		CountB, CountC, Rho, K, R0 float64
		Alt                        string
		E                          rwNum
	} `json:"rate_boundary"`
	MeanMSPRT []struct {
		X, Y      [3]float64
		C         float64
		Alt       string
		Alpha, N0 float64
		E, Lo, Hi rwNum
	} `json:"mean_msprt"`
	DKW []struct {
		T, Alpha, Tmin float64
		Eps            rwNum
	} `json:"dkw"`
	Quantile []struct {
		X, Y                []float64
		QuantileP           float64 `json:"quantile_p"`
		C                   float64
		Alt                 string
		Alpha, Tmin, Relerr float64
		PValue              rwNum `json:"P"`
		Lower, Upper        rwNum
	} `json:"quantile"`
}

func loadSeqVectors(t *testing.T) *seqVectors {
	t.Helper()
	var v seqVectors
	rwLoad(t, "sequential_vectors.json", &v)
	if len(v.RateMixture) == 0 || len(v.MeanMSPRT) == 0 || len(v.DKW) == 0 || len(v.Quantile) == 0 {
		t.Fatal("sequential_vectors.json: missing sections")
	}
	return &v
}

func seqAltOf(t *testing.T, s string) Alternative {
	t.Helper()
	switch s {
	case "two.sided":
		return TwoSided
	case "greater":
		return Greater
	case "less":
		return Less
	}
	t.Fatalf("unknown alternative %q", s)
	return 0
}

// TestRateMixtureNotes checks the sanity figures of STATS-NOTES.md
// (ρ_B = 0.1, k = 100, two-sided at r = 1; 95% sequence), which the notes
// give to three figures.
func TestRateMixtureNotes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		nB, nC, e, lo, hi float64
	}{
		{90, 25, 31.2, 1.03, 5.33},
		{900, 130, 7.7, 0.97, 1.71},
	} {
		e := RateMixtureEValue(tc.nB, tc.nC, 0.1, 100, 1, TwoSided)
		lo, hi := RateMixtureCS(tc.nB, tc.nC, 0.1, 100, 0.05)
		if math.Abs(e-tc.e) > 0.05 || math.Abs(lo-tc.lo) > 0.005 || math.Abs(hi-tc.hi) > 0.005 {
			t.Errorf("N_A=%v N_B=%v: E=%.4f CS=[%.4f, %.4f], notes E≈%v CS≈[%v, %v]", tc.nB, tc.nC, e, lo, hi, tc.e, tc.lo, tc.hi)
		}
	}
}

// TestRateMixtureVectors compares RateMixtureEValue and RateMixtureCS with
// scipy (betaln, beta.logsf/logcdf, brentq): 1e-9 relative.
func TestRateMixtureVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range loadSeqVectors(t).RateMixture {
		alt := seqAltOf(t, tc.Alt)
		e := RateMixtureEValue(tc.CountB, tc.CountC, tc.Rho, tc.K, tc.R0, alt)
		if !rwClose(e, float64(tc.E), 1e-9) {
			t.Errorf("E(%v, %v, ρ=%v, k=%v, r0=%v, %v) = %.12g, scipy %.12g", tc.CountB, tc.CountC, tc.Rho, tc.K, tc.R0, tc.Alt, e, float64(tc.E))
		}
		for _, cs := range []struct {
			alpha float64
			want  [2]rwNum
		}{{0.05, tc.CS05}, {0.01, tc.CS01}} {
			lo, hi := RateMixtureCS(tc.CountB, tc.CountC, tc.Rho, tc.K, cs.alpha)
			if !rwClose(lo, float64(cs.want[0]), 1e-9) || !rwClose(hi, float64(cs.want[1]), 1e-9) {
				t.Errorf("CS(%v, %v, ρ=%v, k=%v, α=%v) = [%.12g, %.12g], scipy [%.12g, %.12g]", tc.CountB, tc.CountC, tc.Rho, tc.K, cs.alpha,
					lo, hi, float64(cs.want[0]), float64(cs.want[1]))
			}
		}
	}
}

// TestRateBoundaryVectors compares RateBoundaryEValue, the closed form,
// with scipy's numerical integration of the likelihood ratio over the
// truncated prior (integrate.quad at 1e-12): 1e-8 relative.
func TestRateBoundaryVectors(t *testing.T) {
	t.Parallel()
	v := loadSeqVectors(t).RateBoundary
	if len(v) == 0 {
		t.Fatal("sequential_vectors.json: no rate_boundary section")
	}
	for _, tc := range v {
		e := RateBoundaryEValue(tc.CountB, tc.CountC, tc.Rho, tc.K, tc.R0, seqAltOf(t, tc.Alt))
		if !rwClose(e, float64(tc.E), 1e-8) {
			t.Errorf("E(%v, %v, ρ=%v, k=%v, r0=%v, %v) = %.12g, scipy %.12g", tc.CountB, tc.CountC, tc.Rho, tc.K, tc.R0, tc.Alt, e, float64(tc.E))
		}
	}
}

// TestSeqRateMatchesClosedForm feeds the counts of the scipy cases to a
// SeqRate in batches at the prior's exposure share: its grid mixture must
// agree with the closed form (quadrature error, 2e-3 relative, or absolute
// below 1, where only the prior's tail at the boundary counts), and its
// sequence must contain the exact one and exceed it by at most one node.
func TestSeqRateMatchesClosedForm(t *testing.T) {
	t.Parallel()
	for _, tc := range loadSeqVectors(t).RateMixture {
		if tc.CountB+tc.CountC == 0 || tc.R0 <= 0 {
			continue
		}
		alt := seqAltOf(t, tc.Alt)
		s := NewSeqRate(SeqRateOptions{Rho: tc.Rho, K: tc.K, Nulls: []float64{tc.R0}})
		// Five unequal batches, each at the share ρ.
		for i, f := range []float64{0.1, 0.3, 0.05, 0.25, 0.3} {
			exp := 1000 * float64(i+1)
			if err := s.Add(tc.CountB*f, exp*(1-tc.Rho), tc.CountC*f, exp*tc.Rho); err != nil {
				t.Fatal(err)
			}
		}
		got, want := s.EValue(tc.R0, alt), float64(tc.E)
		if math.Abs(got-want) > 2e-3*math.Max(want, 1) {
			t.Errorf("%v/%v ρ=%v k=%v r0=%v %v: grid E=%.6g, closed form %.6g", tc.CountB, tc.CountC, tc.Rho, tc.K, tc.R0, tc.Alt, got, want)
		}
		lo, hi := s.CS(0.05)
		wlo, whi := float64(tc.CS05[0]), float64(tc.CS05[1])
		if lo > wlo || hi < whi || (wlo > 0 && lo < wlo*math.Exp(-0.25)) || (!math.IsInf(whi, 1) && hi > whi*math.Exp(0.25)) {
			t.Errorf("%v/%v: grid CS [%.4g, %.4g] does not enclose closely the exact [%.4g, %.4g]", tc.CountB, tc.CountC, lo, hi, wlo, whi)
		}
		// Inner nodes are 1% apart.
		if wlo > 0.25 && whi < 4.4 && (lo < wlo*math.Exp(-0.0101) || hi > whi*math.Exp(0.0101)) {
			t.Errorf("%v/%v: grid CS [%.5g, %.5g] more than one node outside [%.5g, %.5g]", tc.CountB, tc.CountC, lo, hi, wlo, whi)
		}
	}
}

// seqRateBrute recomputes SeqRate's e-value from the batches with the
// binomial likelihood written directly (θ = ρr/(1−ρ+ρr)), on the same
// nodes and prior weights, and the same end-node weighting.
func seqRateBrute(s *SeqRate, batches [][4]float64, r0 float64, alt Alternative) float64 {
	logLik := func(r float64) float64 {
		var l float64
		for _, b := range batches {
			if b[1] == 0 || b[3] == 0 {
				continue
			}
			rho := b[3] / (b[1] + b[3])
			th := rho * r / (1 - rho + rho*r)
			l += b[2]*math.Log(th) + b[0]*math.Log(1-th)
		}
		return l
	}
	u0 := math.Log(r0)
	var num, den float64
	for i, u := range s.u {
		w := math.Exp(s.logw[i])
		switch {
		case alt == Greater && u < u0, alt == Less && u > u0:
			continue
		case alt == Greater && u == u0:
			w *= (s.u[i+1] - u) / (s.u[i+1] - s.u[i-1])
		case alt == Less && u == u0:
			w *= (u - s.u[i-1]) / (s.u[i+1] - s.u[i-1])
		}
		num += w * math.Exp(logLik(math.Exp(u))-logLik(r0))
		den += w
	}
	return num / den
}

// TestSeqRateVaryingShare checks the accumulation with a different
// exposure share in every batch against seqRateBrute (1e-9 relative), and
// P against the running maximum of EValue.
func TestSeqRateVaryingShare(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	nulls := []float64{1.1, 0.9}
	s := NewSeqRate(SeqRateOptions{Rho: 0.1, Nulls: nulls})
	var batches [][4]float64
	maxE := map[float64][3]float64{}
	for i := range 40 {
		rho := 0.05 + 0.2*rng.Float64()
		req := 1000 + 9000*rng.Float64()
		b := [4]float64{float64(rng.IntN(40)), req * (1 - rho), float64(rng.IntN(12)), req * rho}
		if i == 7 {
			b[3] = 0 // an interval without canary traffic: no information
		}
		if err := s.Add(b[0], b[1], b[2], b[3]); err != nil {
			t.Fatal(err)
		}
		batches = append(batches, b)
		for _, r0 := range nulls {
			m := maxE[r0]
			for a, alt := range []Alternative{TwoSided, Greater, Less} {
				got := s.EValue(r0, alt)
				want := seqRateBrute(s, batches, r0, alt)
				if !rwClose(got, want, 1e-9) {
					t.Fatalf("batch %d r0=%v %v: E=%.12g, direct %.12g", i, r0, alt, got, want)
				}
				m[a] = math.Max(m[a], got)
				if p, want := s.P(r0, alt), math.Min(1, 1/math.Max(1, m[a])); !rwClose(p, want, 1e-12) {
					t.Fatalf("batch %d r0=%v %v: P=%.12g, 1/max E %.12g", i, r0, alt, p, want)
				}
			}
			maxE[r0] = m
		}
	}
	if cb, eb, cc, ec, n := s.Totals(); n != 40 || cb == 0 || cc == 0 || eb == 0 || ec == 0 {
		t.Errorf("Totals = %v %v %v %v %v", cb, eb, cc, ec, n)
	}
}

// TestSeqRateBetweenNodes checks that an r0 off the grid gets a valid,
// slightly conservative e-value: at most the exact mixture over the same
// nodes, and close to it.
func TestSeqRateBetweenNodes(t *testing.T) {
	t.Parallel()
	s := NewSeqRate(SeqRateOptions{Rho: 0.2})
	batches := [][4]float64{{400, 8000, 160, 2000}, {380, 8000, 130, 2000}, {800, 16000, 250, 4000}}
	for _, b := range batches {
		s.Add(b[0], b[1], b[2], b[3])
	}
	for _, r0 := range []float64{1.0537, 1.137, 0.9234, 2.71828} {
		for _, alt := range []Alternative{Greater, Less, TwoSided} {
			got := s.EValue(r0, alt)
			// The exact e-value with ℓ(u0) computed directly, on the nodes beyond u0.
			ex := seqRateBruteOff(s, batches, r0, alt)
			if got > ex*(1+1e-9) || got < ex*0.9 {
				t.Errorf("r0=%v %v: E=%.6g, exact %.6g: want within [0.9, 1]×", r0, alt, got, ex)
			}
		}
	}
}

func seqRateBruteOff(s *SeqRate, batches [][4]float64, r0 float64, alt Alternative) float64 {
	logLik := func(r float64) float64 {
		var l float64
		for _, b := range batches {
			rho := b[3] / (b[1] + b[3])
			th := rho * r / (1 - rho + rho*r)
			l += b[2]*math.Log(th) + b[0]*math.Log(1-th)
		}
		return l
	}
	u0 := math.Log(r0)
	var num, den float64
	for i, u := range s.u {
		if (alt == Greater && u < u0) || (alt == Less && u > u0) {
			continue
		}
		w := math.Exp(s.logw[i])
		num += w * math.Exp(logLik(math.Exp(u))-logLik(r0))
		den += w
	}
	return num / den
}

// TestSeqRateStateRoundTrip checks MarshalBinary/UnmarshalBinary (exact,
// bounded size), Merge (the union of batches, in either split), the
// option mismatch error, and bad input.
func TestSeqRateStateRoundTrip(t *testing.T) {
	t.Parallel()
	opts := SeqRateOptions{Rho: 0.1, K: 60, Nulls: []float64{1.1}}
	all, a, b := NewSeqRate(opts), NewSeqRate(opts), NewSeqRate(opts)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 30 {
		cb, eb, cc, ec := float64(rng.IntN(50)), 9000+1000*rng.Float64(), float64(rng.IntN(9)), 1000+200*rng.Float64()
		all.Add(cb, eb, cc, ec)
		if i%3 == 0 {
			a.Add(cb, eb, cc, ec)
		} else {
			b.Add(cb, eb, cc, ec)
		}
	}
	enc, err := all.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) > 4<<10 || all.Size() > 16<<10 {
		t.Errorf("encoded %d B, in memory %d B: want ≤ 4 KiB and 16 KiB", len(enc), all.Size())
	}
	var dec SeqRate
	if err := dec.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	for _, alt := range []Alternative{TwoSided, Greater, Less} {
		if dec.EValue(1.1, alt) != all.EValue(1.1, alt) || dec.P(1.1, alt) != all.P(1.1, alt) {
			t.Errorf("%v: decoded E/P differ", alt)
		}
	}
	if l1, h1 := dec.CS(0.01); true {
		l2, h2 := all.CS(0.01)
		if l1 != l2 || h1 != h2 {
			t.Errorf("decoded CS differs")
		}
	}
	for i := 0; i < len(enc); i += 1 + i/16 {
		var d SeqRate
		if err := d.UnmarshalBinary(enc[:i]); err == nil {
			t.Fatalf("truncated input of %d bytes decoded", i)
		}
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	for _, alt := range []Alternative{TwoSided, Greater, Less} {
		if g, w := a.EValue(1.1, alt), all.EValue(1.1, alt); !rwClose(g, w, 1e-9) {
			t.Errorf("merged %v: E=%.12g, sequential %.12g", alt, g, w)
		}
	}
	if err := a.Merge(NewSeqRate(SeqRateOptions{Rho: 0.1, Nulls: []float64{1.2}})); err != ErrSeqRateMismatch {
		t.Errorf("Merge with other options: %v", err)
	}
	for _, bad := range [][4]float64{{-1, 1, 1, 1}, {1, math.NaN(), 1, 1}, {1, 1, math.Inf(1), 1}} {
		if err := a.Add(bad[0], bad[1], bad[2], bad[3]); err != ErrBadBatch {
			t.Errorf("Add%v: %v, want ErrBadBatch", bad, err)
		}
	}
}

// TestSeqRateEmpty checks the state before any information: E = 1, P = 1,
// the sequence unbounded, the ratio 1.
func TestSeqRateEmpty(t *testing.T) {
	t.Parallel()
	s := NewSeqRate(SeqRateOptions{Rho: 0.5, Nulls: []float64{1.1}})
	s.Add(0, 1000, 0, 1000)
	s.Add(10, 1000, 0, 0)
	for _, alt := range []Alternative{TwoSided, Greater, Less} {
		if e, p := s.EValue(1.1, alt), s.P(1.1, alt); !rwClose(e, 1, 1e-12) || p != 1 {
			t.Errorf("%v: E=%v P=%v, want 1, 1", alt, e, p)
		}
	}
	if lo, hi := s.CS(0.05); lo != 0 || !math.IsInf(hi, 1) {
		t.Errorf("CS = [%v, %v], want [0, Inf)", lo, hi)
	}
	// The baseline's 10 events of a batch without canary exposure count in
	// the totals: only the baseline saw events.
	if r := s.Ratio(); r != 0 {
		t.Errorf("Ratio = %v, want 0", r)
	}
}

// TestSeqMeanVectors compares SeqMean with the closed forms evaluated by
// scipy (norm.logcdf, brentq for the one-sided bound): 1e-9 relative, or
// 1e-9 absolute on the bounds relative to the standard error.
func TestSeqMeanVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range loadSeqVectors(t).MeanMSPRT {
		x := Moments{N: tc.X[0], Mean: tc.X[1], M2: tc.X[2]}
		y := Moments{N: tc.Y[0], Mean: tc.Y[1], M2: tc.Y[2]}
		e, lo, hi := SeqMean(x, y, tc.C, seqAltOf(t, tc.Alt), tc.Alpha, tc.N0)
		se := math.Sqrt(x.Variance()/x.N + tc.C*tc.C*y.Variance()/y.N)
		near := func(got, want float64) bool {
			return rwClose(got, want, 1e-9) || math.Abs(got-want) <= 1e-9*se
		}
		if !rwClose(e, float64(tc.E), 1e-9) || !near(lo, float64(tc.Lo)) || !near(hi, float64(tc.Hi)) {
			t.Errorf("x=%v y=%v c=%v %v α=%v: e=%.12g [%.12g, %.12g], scipy %.12g [%.12g, %.12g]", tc.X, tc.Y, tc.C, tc.Alt, tc.Alpha,
				e, lo, hi, float64(tc.E), float64(tc.Lo), float64(tc.Hi))
		}
	}
}

// TestSeqMeanDuality checks that the sequence excludes 0 exactly when
// the e-value reaches 1/α, on a sweep of contrasts.
func TestSeqMeanDuality(t *testing.T) {
	t.Parallel()
	y := Moments{N: 400, Mean: 10, M2: 399 * 4}
	for _, alt := range []Alternative{Greater, Less, TwoSided} {
		for m := 9.0; m <= 13; m += 0.01 {
			x := Moments{N: 300, Mean: m, M2: 299 * 5}
			e, lo, hi := SeqMean(x, y, 1.1, alt, 0.01, 100)
			if excl := lo > 0 || hi < 0; excl != (e >= 100) && math.Abs(math.Log(e/100)) > 1e-9 {
				t.Fatalf("%v mean %v: e=%v, interval [%v, %v]", alt, m, e, lo, hi)
			}
		}
	}
}

// TestSeqMeanSpecial covers the special cases of SeqMean's doc comment.
func TestSeqMeanSpecial(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	one := Moments{N: 1, Mean: 3}
	ok := Moments{N: 50, Mean: 3, M2: 49}
	if e, lo, hi := SeqMean(one, ok, 1, Greater, 0.05, 10); e != 1 || lo != -inf || hi != inf {
		t.Errorf("n=1: %v [%v, %v]", e, lo, hi)
	}
	if e, lo, hi := SeqMean(Moments{N: 5, Mean: math.NaN(), M2: 1}, ok, 1, Greater, 0.05, 10); e != 1 || lo != -inf || hi != inf {
		t.Errorf("NaN: %v [%v, %v]", e, lo, hi)
	}
	c1, c2 := Moments{N: 10, Mean: 5}, Moments{N: 10, Mean: 4}
	if e, lo, hi := SeqMean(c1, c2, 1.1, Greater, 0.05, 10); e != inf || math.Abs(lo-0.6) > 1e-12 || hi != inf {
		t.Errorf("constant, worse: %v [%v, %v]", e, lo, hi)
	}
	if e, _, _ := SeqMean(c1, c2, 1.1, Less, 0.05, 10); e != 1 {
		t.Errorf("constant, other side: %v", e)
	}
	if e, lo, hi := SeqMean(c1, c1, 1, TwoSided, 0.05, 10); e != 1 || lo != 0 || hi != 0 {
		t.Errorf("constant, equal: %v [%v, %v]", e, lo, hi)
	}
}

// TestSeqMeanInstances checks the clustered variance: equal to SeqMean
// without between-instance spread beyond chance, more conservative with
// it, and SeqMean's when only one instance per cohort is known.
func TestSeqMeanInstances(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	gen := func(k, n int, mean, sdInst float64) ([]Moments, Moments) {
		var out []Moments
		var all Moments
		for range k {
			f := mean * (1 + sdInst*rng.NormFloat64())
			var m Moments
			for range n {
				v := f + rng.NormFloat64()
				m.Add(v)
				all.Add(v)
			}
			out = append(out, m)
		}
		return out, all
	}
	// One per cohort: SeqMean on the merged moments.
	x1, mx1 := gen(1, 500, 10.6, 0.05)
	y1, my1 := gen(1, 500, 10, 0.05)
	e1, _, _ := SeqMeanInstances(x1, y1, 1, Greater, 0.05, 100)
	e2, _, _ := SeqMean(mx1, my1, 1, Greater, 0.05, 100)
	if !rwClose(e1, e2, 1e-12) {
		t.Errorf("one instance per cohort: %v, SeqMean %v", e1, e2)
	}
	// Large instance effects: the clustered e-value is far smaller.
	xs, mx := gen(5, 2000, 10.6, 0.05)
	ys, my := gen(5, 2000, 10, 0.05)
	ec, loc, _ := SeqMeanInstances(xs, ys, 1, Greater, 0.05, 100)
	en, lon, _ := SeqMean(mx, my, 1, Greater, 0.05, 100)
	if !(ec < en && loc < lon) {
		t.Errorf("instance effects: clustered e=%v lo=%v, naive e=%v lo=%v", ec, loc, en, lon)
	}
	// Bernoulli moments.
	if m := BernoulliMoments(5, 1000); m.N != 1000 || m.Mean != 0.005 || !rwClose(m.Variance(), 0.005*0.995*1000/999, 1e-12) {
		t.Errorf("BernoulliMoments = %+v", m)
	}
}

// TestTimeUniformDKW checks the radius against confseq's unit test
// (empirical_process_lil_bound(1000, .05, 100, 0.85) = 0.08204769, stated
// to 1e-5) and the scipy vectors (1e-9 relative), and that the paper's
// closed form C = 0.8 log(1612/α) quoted in STATS-NOTES.md is wider.
func TestTimeUniformDKW(t *testing.T) {
	t.Parallel()
	if got := TimeUniformDKW(1000, 0.05, 100); math.Abs(got-0.08204769) > 1e-6 {
		t.Errorf("TimeUniformDKW(1000, .05, 100) = %.10g, confseq 0.08204769", got)
	}
	for _, tc := range loadSeqVectors(t).DKW {
		if got := TimeUniformDKW(tc.T, tc.Alpha, tc.Tmin); !rwClose(got, float64(tc.Eps), 1e-9) {
			t.Errorf("TimeUniformDKW(%v, %v, %v) = %.12g, scipy %.12g", tc.T, tc.Alpha, tc.Tmin, got, float64(tc.Eps))
		}
	}
	for _, alpha := range []float64{0.1, 0.05, 0.01, 1e-4} {
		for _, tt := range []float64{10, 1e3, 1e6} {
			closed := 0.85 * math.Sqrt((math.Log1p(math.Log(tt))+0.8*math.Log(1612/alpha))/tt)
			if got := TimeUniformDKW(tt, alpha, 1); got > closed {
				t.Errorf("t=%v α=%v: %v exceeds the closed form %v", tt, alpha, got, closed)
			}
		}
	}
	if !math.IsInf(TimeUniformDKW(99, 0.05, 100), 1) {
		t.Error("t < tMin: want +Inf")
	}
}

func seqBinsOf(vs []float64) []Bin {
	s := slices.Clone(vs)
	slices.Sort(s)
	var out []Bin
	for _, v := range s {
		if k := len(out) - 1; k >= 0 && out[k].Value == v {
			out[k].Count++
			continue
		}
		out = append(out, Bin{Value: v, Count: 1})
	}
	return out
}

// TestSeqQuantileVectors compares SeqQuantileTest with the independent
// implementation of testdata/gen/sequential.py (scipy's bounded minimizer
// and brentq for the constant of the bound): P to 1e-7 relative, the band
// exactly up to rounding.
func TestSeqQuantileVectors(t *testing.T) {
	t.Parallel()
	for i, tc := range loadSeqVectors(t).Quantile {
		res := SeqQuantileTest(seqBinsOf(tc.X), seqBinsOf(tc.Y), tc.QuantileP, tc.C, SeqQuantileOptions{
			Alternative: seqAltOf(t, tc.Alt), Alpha: tc.Alpha, MinN: tc.Tmin, RelErr: tc.Relerr,
		})
		if !rwClose(res.P, float64(tc.PValue), 1e-7) || !rwClose(res.Lower, float64(tc.Lower), 1e-12) || !rwClose(res.Upper, float64(tc.Upper), 1e-12) {
			t.Errorf("case %d (n=%d/%d p=%v c=%v %v): P=%.10g [%.10g, %.10g], scipy P=%.10g [%.10g, %.10g]", i, len(tc.X), len(tc.Y), tc.QuantileP, tc.C, tc.Alt,
				res.P, res.Lower, res.Upper, float64(tc.PValue), float64(tc.Lower), float64(tc.Upper))
		}
	}
}

// TestSeqQuantileBinned checks that the bins of a binned Dist, with
// RelErr = DistBinRelErr, never give a smaller p-value than the raw
// values, and a band that contains the raw values' band.
func TestSeqQuantileBinned(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 12))
	for _, shift := range []float64{1.0, 1.15, 1.3} {
		var dx, dy Dist
		var rx, ry []float64
		for range 6000 {
			x, y := shift*80*math.Exp(0.5*rng.NormFloat64()), 80*math.Exp(0.5*rng.NormFloat64())
			dx.Add(x)
			dy.Add(y)
			rx, ry = append(rx, x), append(ry, y)
		}
		if dx.Exact() || dy.Exact() {
			t.Fatal("want binned Dists")
		}
		for _, p := range []float64{0.5, 0.9} {
			opts := SeqQuantileOptions{Alternative: Greater, Alpha: 0.05, MinN: 100}
			raw := SeqQuantileTest(seqBinsOf(rx), seqBinsOf(ry), p, 1.1, opts)
			opts.RelErr = DistBinRelErr
			bin := SeqQuantileTest(dx.Bins(), dy.Bins(), p, 1.1, opts)
			if bin.P < raw.P || bin.Lower > raw.Lower || bin.Upper < raw.Upper {
				t.Errorf("shift %v p=%v: binned P=%v [%v, %v], raw P=%v [%v, %v]", shift, p, bin.P, bin.Lower, bin.Upper, raw.P, raw.Lower, raw.Upper)
			}
			if math.Abs(bin.Estimate/raw.Estimate-1) > 2*DistBinRelErr {
				t.Errorf("shift %v p=%v: estimate %v vs %v", shift, p, bin.Estimate, raw.Estimate)
			}
		}
	}
}

// TestSeqQuantileSpecial covers empty streams, streams below MinN, the
// monotonicity of P in the shift, and zeros.
func TestSeqQuantileSpecial(t *testing.T) {
	t.Parallel()
	x := []Bin{{1, 100}, {2, 100}}
	if r := SeqQuantileTest(nil, x, 0.5, 1, SeqQuantileOptions{Alternative: Greater, Alpha: 0.05}); r.P != 1 || r.Lower != 0 || !math.IsInf(r.Upper, 1) || r.Estimate != 1 {
		t.Errorf("empty: %+v", r)
	}
	if r := SeqQuantileTest(x, x, 0.5, 1, SeqQuantileOptions{Alternative: Greater, MinN: 201}); r.P != 1 {
		t.Errorf("below MinN: %+v", r)
	}
	zeros := []Bin{{0, 500}}
	if r := SeqQuantileTest([]Bin{{3, 500}}, zeros, 0.5, 1, SeqQuantileOptions{Alternative: Greater}); !math.IsInf(r.Estimate, 1) || !(r.P < 1e-6) {
		t.Errorf("baseline all zero: %+v", r)
	}
	prev := 1.0
	for _, shift := range []float64{1, 1.5, 2, 3, 5} {
		y := []Bin{{10, 300}, {20, 300}, {30, 300}}
		xs := []Bin{{10 * shift, 300}, {20 * shift, 300}, {30 * shift, 300}}
		r := SeqQuantileTest(xs, y, 0.5, 1.1, SeqQuantileOptions{Alternative: Greater})
		if r.P > prev {
			t.Errorf("shift %v: P=%v above %v at a smaller shift", shift, r.P, prev)
		}
		prev = r.P
	}
}

// FuzzSeqRateUnmarshal checks that the decoder of SeqRate's stored state
// never panics, and that what it accepts re-encodes to bytes that decode
// to the same encoding (varints may be non-minimal in the input).
func FuzzSeqRateUnmarshal(f *testing.F) {
	s := NewSeqRate(SeqRateOptions{Rho: 0.1, Nulls: []float64{1.1, 0.9}})
	s.Add(40, 9000, 9, 1000)
	enc, _ := s.MarshalBinary()
	f.Add(enc)
	f.Add(enc[:40])
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d SeqRate
		if err := d.UnmarshalBinary(b); err != nil {
			return
		}
		again, _ := d.MarshalBinary()
		var d2 SeqRate
		if err := d2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if third, _ := d2.MarshalBinary(); !slices.Equal(third, again) {
			t.Fatalf("re-encoding is not stable")
		}
		d.EValue(1.1, Greater)
		d.CS(0.05)
	})
}

// TestSeqLogNormCDF checks log Φ against scipy.stats.norm.logcdf (scipy
// 1.10) across the switch points of its three branches: 1e-12 relative.
func TestSeqLogNormCDF(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ z, want float64 }{
		{-40, -804.6084420137539},
		{-37.5, -707.6689893175072},
		{-36.9, -685.3328831653507},
		{-10, -53.23128515051248},
		{-1, -1.841021645009264},
		{0, -0.6931471805599453},
		{2, -0.023012909328963486},
		{5.5, -1.8989562646189424e-08},
		{8, -6.220960574271743e-16},
	} {
		if got := seqLogNormCDF(tc.z); !rwClose(got, tc.want, 1e-12) {
			t.Errorf("log Φ(%v) = %.17g, scipy %.17g", tc.z, got, tc.want)
		}
	}
}
