package stat

import "testing"

// BenchmarkMixtureSPRT measures the one-sided MixtureSPRT, its radius and
// its boundary.
func BenchmarkMixtureSPRT(b *testing.B) {
	d, v, sz2, scale := msprtOf(Moments{N: 5000, Mean: 104, M2: 4999 * 900}, Moments{N: 45000, Mean: 100, M2: 44999 * 800}, 1.1)
	b.Run("EValue", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			MixtureSPRT(d, v, sz2, scale, Greater, 0.01, 100)
		}
	})
	b.Run("Radius", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			MixtureSPRTRadius(v, sz2, 0.01, 100)
		}
	})
	b.Run("Boundary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			MixtureSPRTBoundary(0.01)
		}
	})
}
