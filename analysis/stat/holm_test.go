package stat

import (
	"math"
	"testing"
)

func TestHolm(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		ps, want []float64
	}{
		// R 4.2: p.adjust(c(0.01, 0.04, 0.03, 0.005, 0.5), "holm")
		{[]float64{0.01, 0.04, 0.03, 0.005, 0.5}, []float64{0.04, 0.09, 0.09, 0.025, 0.5}},
		// R 4.2: p.adjust(c(0.3, 0.3, 0.01), "holm"): ties keep their order.
		{[]float64{0.3, 0.3, 0.01}, []float64{0.6, 0.6, 0.03}},
		{[]float64{0.7}, []float64{0.7}},
		{nil, []float64{}},
	} {
		got := Holm(c.ps)
		if len(got) != len(c.want) {
			t.Fatalf("Holm(%v) = %v, want %v", c.ps, got, c.want)
		}
		for i := range c.want {
			if math.Abs(got[i]-c.want[i]) > 1e-12 {
				t.Fatalf("Holm(%v) = %v, want %v", c.ps, got, c.want)
			}
		}
	}
}
