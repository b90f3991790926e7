package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// BenchmarkSeqRateAdd measures one batch into a SeqRate (385 nodes plus
// the nulls), including the update of the running maxima.
func BenchmarkSeqRateAdd(b *testing.B) {
	for _, nulls := range [][]float64{nil, {1.1}, {1.1, 0.9}} {
		b.Run(fmt.Sprintf("nulls=%d", len(nulls)), func(b *testing.B) {
			s := NewSeqRate(SeqRateOptions{Rho: 0.1, Nulls: nulls})
			b.ReportAllocs()
			for i := range b.N {
				s.Add(45+float64(i%7), 9000, 5+float64(i%3), 1000)
			}
		})
	}
}

// BenchmarkSeqRateQuery measures EValue (on a null and between nodes), P
// and CS after 1,000 batches, and the binary encoding.
func BenchmarkSeqRateQuery(b *testing.B) {
	s := NewSeqRate(SeqRateOptions{Rho: 0.1, Nulls: []float64{1.1}})
	for i := range 1000 {
		s.Add(45+float64(i%7), 9000, 5+float64(i%3), 1000)
	}
	enc, _ := s.MarshalBinary()
	b.Run("EValue/null", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			s.EValue(1.1, Greater)
		}
	})
	b.Run("EValue/between", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			s.EValue(1.1234, Greater)
		}
	})
	b.Run("P", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			s.P(1.1, Greater)
		}
	})
	b.Run("CS", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			s.CS(0.01)
		}
	})
	b.Run("MarshalBinary", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			s.MarshalBinary()
		}
		b.ReportMetric(float64(len(enc)), "bytes")
	})
	b.Run("UnmarshalBinary", func(b *testing.B) {
		b.ReportAllocs()
		var d SeqRate
		for range b.N {
			d.UnmarshalBinary(enc)
		}
	})
}

// BenchmarkRateMixture measures the closed forms at small and large counts.
func BenchmarkRateMixture(b *testing.B) {
	for _, n := range []float64{100, 1e4, 1e6} {
		b.Run(fmt.Sprintf("events=%g", n), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				RateMixtureEValue(0.88*n, 0.12*n, 0.1, 100, 1.1, Greater)
				RateMixtureCS(0.88*n, 0.12*n, 0.1, 100, 0.01)
			}
		})
	}
}

// BenchmarkSeqMean measures SeqMean (one-sided, with its bisection for the
// bound) and SeqMeanInstances over k instances per cohort.
func BenchmarkSeqMean(b *testing.B) {
	x := Moments{N: 5000, Mean: 104, M2: 4999 * 900}
	y := Moments{N: 45000, Mean: 100, M2: 44999 * 800}
	b.Run("SeqMean", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			SeqMean(x, y, 1.1, Greater, 0.01, 100)
		}
	})
	for _, k := range []int{3, 30, 300} {
		b.Run(fmt.Sprintf("SeqMeanInstances/k=%d", k), func(b *testing.B) {
			xs, ys := make([]Moments, k), make([]Moments, k)
			for i := range k {
				xs[i] = Moments{N: 500, Mean: 104 + float64(i%5), M2: 499 * 900}
				ys[i] = Moments{N: 4500, Mean: 100 + float64(i%3), M2: 4499 * 800}
			}
			b.ReportAllocs()
			for range b.N {
				SeqMeanInstances(xs, ys, 1.1, Greater, 0.01, 100)
			}
		})
	}
}

// BenchmarkSeqQuantileTest measures one test (p-value and band) on raw
// samples and on binned Dists.
func BenchmarkSeqQuantileTest(b *testing.B) {
	for _, n := range []int{1000, 4000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			var x, y Dist
			for range n {
				x.Add(84 * math.Exp(0.5*rng.NormFloat64()))
				y.Add(80 * math.Exp(0.5*rng.NormFloat64()))
			}
			xb, yb := x.Bins(), y.Bins()
			opts := SeqQuantileOptions{Alternative: Greater, Alpha: 0.01, MinN: 100}
			if !x.Exact() {
				opts.RelErr = DistBinRelErr
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				SeqQuantileTest(xb, yb, 0.9, 1.1, opts)
			}
			b.ReportMetric(float64(len(xb)), "bins")
		})
	}
}

// BenchmarkTimeUniformDKW measures the radius, dominated by solving for
// the constant C of the bound.
func BenchmarkTimeUniformDKW(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		TimeUniformDKW(1e4, 0.01, 100)
	}
}
