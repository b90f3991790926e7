package analysis

import "math"

// findRoot returns a root of f in the bracket [a, b], where f(a) and f(b)
// have opposite signs (or one is 0), to within tol·max(1, |x|) (absolute
// for |x| < 1), by Brent's method: inverse quadratic interpolation and
// secant steps, falling back to bisection whenever they would not shrink
// the bracket fast enough, so it converges whenever bisection does, in at
// most about (log₂((b − a)/tol))² evaluations and usually far fewer.
// NaN values of f count as positive (they push the bracket away). It
// returns NaN if the bracket holds no sign change.
//
// Reference: Brent (1973), "Algorithms for Minimization without
// Derivatives", chapter 4 (the zero procedure); Press et al., "Numerical
// Recipes", 3rd ed., §9.3.
func findRoot(f func(float64) float64, a, b, tol float64) float64 {
	sign := func(v float64) float64 {
		if math.IsNaN(v) {
			return 1
		}
		return v
	}
	fa, fb := sign(f(a)), sign(f(b))
	switch {
	case fa == 0:
		return a
	case fb == 0:
		return b
	case (fa > 0) == (fb > 0):
		return math.NaN()
	}
	c, fc := a, fa
	d := b - a
	e := d
	for range 200 {
		if (fb > 0) == (fc > 0) {
			c, fc = a, fa
			d = b - a
			e = d
		}
		if math.Abs(fc) < math.Abs(fb) {
			a, b, c = b, c, b
			fa, fb, fc = fb, fc, fb
		}
		t := 2*dblEpsilon*math.Abs(b) + 0.5*tol*max(1, math.Abs(b))
		m := 0.5 * (c - b)
		if math.Abs(m) <= t || fb == 0 {
			return b
		}
		if math.Abs(e) >= t && math.Abs(fa) > math.Abs(fb) {
			// Interpolation: secant if a == c, else inverse quadratic.
			s := fb / fa
			var p, q float64
			if a == c {
				p, q = 2*m*s, 1-s
			} else {
				qq, r := fa/fc, fb/fc
				p = s * (2*m*qq*(qq-r) - (b-a)*(r-1))
				q = (qq - 1) * (r - 1) * (s - 1)
			}
			if p > 0 {
				q = -q
			} else {
				p = -p
			}
			if 2*p < min(3*m*q-math.Abs(t*q), math.Abs(e*q)) {
				e, d = d, p/q
			} else {
				d, e = m, m
			}
		} else {
			d, e = m, m
		}
		a, fa = b, fb
		if math.Abs(d) > t {
			b += d
		} else {
			b += math.Copysign(t, m)
		}
		fb = sign(f(b))
	}
	return b
}

// rootOutward returns the root of f on the ray from x0 in direction dir
// (±1), where f(x0) < 0 and f increases along the ray, bracketing it by
// doubling steps before findRoot; it returns x0 + dir·maxStep when f stays
// negative that far.
func rootOutward(f func(float64) float64, x0, dir, maxStep, tol float64) float64 {
	inner, step := x0, 1.0/16
	for {
		outer := x0 + dir*step
		if v := f(outer); !(v < 0) {
			return findRoot(f, inner, outer, tol)
		}
		if step >= maxStep {
			return outer
		}
		inner = outer
		step = min(2*step, maxStep)
	}
}
