package stat

import (
	"fmt"
	"math"
	"testing"
)

// studentVectors is testdata/student_vectors.json, written by
// testdata/gen/rate_student.py: R 4.2's pt and qt (upper tail) and the same
// quantities to 40 digits with mpmath.
type studentVectors struct {
	Tolerance struct {
		RelR      float64 `json:"rel_r"`
		RelMpmath float64 `json:"rel_mpmath"`
		Note      string  `json:"note"`
	} `json:"tolerance"`
	PT []struct {
		T, DF     float64
		R, Mpmath rwNum
		ROK       bool `json:"r_ok"`
	} `json:"pt"`
	QT []struct {
		P, DF     float64
		R, Mpmath rwNum
		ROK       bool `json:"r_ok"`
	} `json:"qt"`
}

// TestStudentVectors compares StudentUpper with R's pt(t, df, lower.tail =
// FALSE) and StudentUpperQuantile with qt(p, df, lower.tail = FALSE), from df = 1 to
// 1e9 and tails down to 1e-300, and both with mpmath, to the tolerances
// the vectors record (R only where R itself agrees with mpmath: its qt
// loses digits below p = 1e-200 for few degrees of freedom).
func TestStudentVectors(t *testing.T) {
	t.Parallel()
	var v studentVectors
	rwLoad(t, "student_vectors.json", &v)
	if len(v.PT) < 200 || len(v.QT) < 200 {
		t.Fatalf("only %d pt and %d qt cases", len(v.PT), len(v.QT))
	}
	tol := v.Tolerance
	worst := [2]float64{}
	for _, c := range v.PT {
		got := StudentUpper(c.T, c.DF)
		if c.ROK && !rwClose(got, float64(c.R), tol.RelR) || !rwClose(got, float64(c.Mpmath), tol.RelMpmath) {
			t.Errorf("Pr(T > %g; df %g) = %.17g, R %.17g, mpmath %.17g", c.T, c.DF, got, float64(c.R), float64(c.Mpmath))
		}
		worst[0] = max(worst[0], math.Abs(got-float64(c.Mpmath))/float64(c.Mpmath))
	}
	for _, c := range v.QT {
		got := StudentUpperQuantile(c.P, c.DF)
		want := float64(c.Mpmath)
		if c.ROK && !rwClose(got, float64(c.R), tol.RelR) || !rwClose(got, want, tol.RelMpmath) {
			t.Errorf("upper %g quantile (df %g) = %.17g, R %.17g, mpmath %.17g", c.P, c.DF, got, float64(c.R), want)
		}
		if want != 0 {
			worst[1] = max(worst[1], math.Abs(got-want)/math.Abs(want))
		}
	}
	t.Logf("largest relative error against mpmath: pt %.2g, qt %.2g", worst[0], worst[1])
}

// BenchmarkStudent times the upper tail and the upper quantile at the
// degrees of freedom of small and large samples, at a one-sided level of
// 0.25% (a 99% two-sided interval, Holm's first step over four metrics).
func BenchmarkStudent(b *testing.B) {
	for _, df := range []float64{3, 30, 2000, 1e5} {
		b.Run(fmt.Sprintf("Upper/df=%g", df), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				StudentUpper(3.1, df)
			}
		})
		b.Run(fmt.Sprintf("UpperQuantile/df=%g", df), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				StudentUpperQuantile(0.0025, df)
			}
		})
	}
}
