package analysis

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/canaryd/canaryd/analysis/stat"
)

func TestDistExactUntilCap(t *testing.T) {
	var d Dist
	vals := []float64{3, 1, 2, 2, 0}
	for _, v := range vals {
		if err := d.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	want := []stat.Bin{{Value: 0, Count: 1}, {Value: 1, Count: 1}, {Value: 2, Count: 2}, {Value: 3, Count: 1}}
	if got := d.Bins(); !slices.Equal(got, want) {
		t.Errorf("Bins() = %v, want %v", got, want)
	}
	if !d.Exact() || d.N() != 5 || d.Min() != 0 || d.Max() != 3 || d.Mean() != 1.6 {
		t.Errorf("exact=%v n=%d min=%v max=%v mean=%v", d.Exact(), d.N(), d.Min(), d.Max(), d.Mean())
	}
	if q := d.Quantile(0.5); q != 2 {
		t.Errorf("median = %v, want 2", q)
	}
}

func TestDistRejectsBadValues(t *testing.T) {
	var d Dist
	for _, v := range []float64{-1, math.NaN(), math.Inf(1), math.Inf(-1)} {
		if err := d.Add(v); err == nil {
			t.Errorf("Add(%v) accepted", v)
		}
	}
	if d.N() != 0 {
		t.Errorf("rejected values were counted: n=%d", d.N())
	}
}

// TestDistBinnedResolution checks the documented resolution: every value's
// bin midpoint is within 0.4% of it, and order is preserved.
func TestDistBinnedResolution(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var d Dist
	for range ExactCap + 1 {
		d.Add(rng.Float64())
	}
	if d.Exact() {
		t.Fatal("still exact past ExactCap")
	}
	for range 100000 {
		v := math.Exp(rng.NormFloat64() * 10)
		m := binValue(binIndex(v))
		if rel := math.Abs(m-v) / v; rel > 1.0/256+1e-12 {
			t.Fatalf("value %v in bin with midpoint %v: relative error %v", v, m, rel)
		}
	}
	for i := int32(1000); i < 2046<<subBinBits; i += 997 {
		if !(binValue(i) < binValue(i+1)) {
			t.Fatalf("bin %d midpoint not below bin %d", i, i+1)
		}
	}
}

func TestDistQuantileBinned(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var d Dist
	raw := make([]float64, 200000)
	for i := range raw {
		raw[i] = 80 * math.Exp(0.5*rng.NormFloat64())
		d.Add(raw[i])
	}
	slices.Sort(raw)
	for _, p := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		want := raw[int(math.Ceil(p*float64(len(raw))))-1]
		got := d.Quantile(p)
		if math.Abs(got-want)/want > 0.004 {
			t.Errorf("Quantile(%v) = %v, want %v within 0.4%%", p, got, want)
		}
	}
	var total float64
	for _, b := range d.Bins() {
		total += b.Count
	}
	if total != 200000 {
		t.Errorf("bins hold %v observations, want 200000", total)
	}
}

// TestDistBounded checks that the state stays within 64 KiB however many
// observations and however wide their range.
func TestDistBounded(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var d Dist
	for range 1_000_000 {
		d.Add(math.Exp(rng.NormFloat64() * 40)) // spans far more than 64 octaves
	}
	if s := d.Size(); s > 64<<10+64 {
		t.Errorf("state is %d bytes, want <= 64 KiB", s)
	}
	if len(d.counts) > MaxBins {
		t.Errorf("%d bins, want <= %d", len(d.counts), MaxBins)
	}
	var total float64
	bins := d.Bins()
	for _, b := range bins {
		total += b.Count
	}
	if total != 1_000_000 {
		t.Errorf("bins hold %v observations, want 1e6", total)
	}
	// Values beyond the fixed grid are counted in the under- and overflow
	// bins, represented by the extremes.
	if d.under == 0 || d.over == 0 || bins[0].Value != d.Min() || bins[len(bins)-1].Value != d.Max() {
		t.Errorf("under %d over %d, ends %v %v, min %v max %v", d.under, d.over, bins[0], bins[len(bins)-1], d.Min(), d.Max())
	}
}

// TestDistExtremeValue checks that one absurd value leaves the bins of the
// others alone: the grid is fixed, it does not follow a cohort's maximum.
func TestDistExtremeValue(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	var a, b Dist
	for range 10000 {
		v := 80 * math.Exp(0.5*rng.NormFloat64())
		a.Add(v)
		b.Add(v)
	}
	b.Add(1e15)
	b.Add(1e-300)
	qa, qb := a.Quantile(0.5), b.Quantile(0.5)
	if qa != qb || a.Quantile(0.99) != b.Quantile(0.99) {
		t.Errorf("p50 %v vs %v, p99 %v vs %v after two extreme values", qa, qb, a.Quantile(0.99), b.Quantile(0.99))
	}
	if b.Quantile(1) != 1e15 || b.Quantile(0) != 1e-300 {
		t.Errorf("extremes %v %v", b.Quantile(0), b.Quantile(1))
	}
}

func TestDistMergeAndMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 10, ExactCap, 3 * ExactCap} {
		var a, b, all Dist
		for i := range n {
			v := rng.ExpFloat64() * 100
			if i%3 == 0 {
				v = 0
			}
			all.Add(v)
			if i%2 == 0 {
				a.Add(v)
			} else {
				b.Add(v)
			}
		}
		a.Merge(&b)
		if a.N() != all.N() || a.Min() != all.Min() || a.Max() != all.Max() {
			t.Errorf("n=%d: merged n/min/max differ", n)
		}
		if all.Exact() == a.Exact() && !slices.Equal(a.Bins(), all.Bins()) {
			t.Errorf("n=%d: merged bins differ from adding all", n)
		}
		buf, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var c Dist
		if err := c.UnmarshalBinary(buf); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !slices.Equal(c.Bins(), a.Bins()) || c.N() != a.N() || c.Mean() != a.Mean() {
			t.Errorf("n=%d: round trip changed the dist", n)
		}
		for cut := 0; cut < len(buf); cut += 1 + len(buf)/200 {
			var e Dist
			if e.UnmarshalBinary(buf[:cut]) == nil && cut < len(buf) {
				t.Errorf("n=%d: truncated input (%d of %d bytes) decoded without error", n, cut, len(buf))
				break
			}
		}
	}
}

func BenchmarkDistAdd(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	vals := make([]float64, 1<<16)
	for i := range vals {
		vals[i] = 80 * math.Exp(0.5*rng.NormFloat64())
	}
	var d Dist
	for range ExactCap + 1 {
		d.Add(1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d.Add(vals[i&(len(vals)-1)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mobs/s")
}

// TestDistBinsMatchBruteForce compares the dense bins, grown in both
// directions in random order, with a map of bin counts.
func TestDistBinsMatchBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for trial := range 20 {
		var d Dist
		want := map[float64]float64{}
		for range ExactCap + 1 + rng.IntN(20000) {
			v := math.Exp(rng.NormFloat64() * 0.2 * float64(1+trial)) // within the grid
			if rng.IntN(50) == 0 {
				v = 0
			}
			d.Add(v)
			if v == 0 {
				want[0]++
			} else if v < BinLow || v >= BinHigh {
				t.Fatalf("trial %d: %v outside the grid", trial, v)
			} else {
				want[binValue(binIndex(v))]++
			}
		}
		got := d.Bins()
		if len(got) != len(want) {
			t.Fatalf("trial %d: %d bins, want %d", trial, len(got), len(want))
		}
		for _, b := range got {
			if want[b.Value] != b.Count {
				t.Fatalf("trial %d: bin %v holds %v, want %v", trial, b.Value, b.Count, want[b.Value])
			}
		}
	}
}

func TestRebin(t *testing.T) {
	in := []stat.Bin{{Value: 0, Count: 2}, {Value: 1, Count: 1}, {Value: 1.001, Count: 1}, {Value: 1.5, Count: 1}, {Value: 100, Count: 3}}
	got := rebin(in)
	var total float64
	for i, b := range got {
		total += b.Count
		if i > 0 && !(got[i-1].Value < b.Value) {
			t.Fatalf("rebin not strictly sorted: %v", got)
		}
	}
	if total != 8 || len(got) != 4 || got[0] != (stat.Bin{Value: 0, Count: 2}) || got[1].Count != 2 {
		t.Errorf("rebin(%v) = %v: want zeros kept and 1, 1.001 merged", in, got)
	}
	if again := rebin(got); !slices.Equal(again, got) {
		t.Errorf("rebin is not idempotent: %v then %v", got, again)
	}
}

// TestDistBinsIncrementalSort interleaves Add, Merge and Bins and compares
// with sorting everything from scratch.
func TestDistBinsIncrementalSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	var d Dist
	var all []float64
	for round := range 200 {
		for range rng.IntN(30) {
			v := float64(rng.IntN(50)) // heavy ties
			d.Add(v)
			all = append(all, v)
		}
		if round%7 == 0 {
			var o Dist
			for range 5 {
				v := rng.Float64() * 50
				o.Add(v)
				all = append(all, v)
			}
			d.Merge(&o)
		}
		want := slices.Clone(all)
		slices.Sort(want)
		var flat []float64
		for _, b := range d.Bins() {
			for range int(b.Count) {
				flat = append(flat, b.Value)
			}
		}
		if !slices.Equal(flat, want) {
			t.Fatalf("round %d: bins do not hold the sorted values", round)
		}
	}
}
