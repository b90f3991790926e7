package analysis

import "testing"

// BenchmarkSeqMean measures SeqMean (one-sided, with the root of its
// bound).
func BenchmarkSeqMean(b *testing.B) {
	x := Moments{N: 5000, Mean: 104, M2: 4999 * 900}
	y := Moments{N: 45000, Mean: 100, M2: 44999 * 800}
	b.Run("SeqMean", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			SeqMean(x, y, 1.1, Greater, 0.01, 100)
		}
	})
}
