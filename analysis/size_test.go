package analysis

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDistSizeReport logs the in-memory and encoded size of a Dist for
// typical and extreme data (the figures of BENCHMARKS.md), and checks the
// 64 KiB bound on each.
func TestDistSizeReport(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []struct {
		name  string
		n     int
		value func() float64
	}{
		{"latency lognormal σ=0.5, 1k", 1000, func() float64 { return 80 * math.Exp(0.5*rng.NormFloat64()) }},
		{"latency lognormal σ=0.5, 1M", 1_000_000, func() float64 { return 80 * math.Exp(0.5*rng.NormFloat64()) }},
		{"integer latency 1..2000 ms, 1M", 1_000_000, func() float64 { return float64(1 + rng.IntN(2000)) }},
		{"12 decades, 1M", 1_000_000, func() float64 { return math.Pow(10, 12*rng.Float64()-6) }},
	} {
		var d Dist
		for range tc.n {
			d.Add(tc.value())
		}
		enc, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-32s bins=%5d  memory=%6d B  encoded=%6d B", tc.name, len(d.Bins()), d.Size(), len(enc))
		if d.Size() > 64<<10+64 || len(enc) > 64<<10 {
			t.Errorf("%s: state %d B, encoded %d B: over 64 KiB", tc.name, d.Size(), len(enc))
		}
	}
}
