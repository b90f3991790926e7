package stat

import (
	"errors"
	"math"
)

// Errors of Root and RootOutward.
var (
	// ErrNoSignChange: f does not change sign over the bracket (or, for
	// RootOutward, anywhere up to the limit).
	ErrNoSignChange = errors.New("stat: no sign change in the bracket")
	// ErrNaN: f returned NaN.
	ErrNaN = errors.New("stat: the function is NaN")
	// ErrNoConvergence: the iteration bound was reached (Brent's bound
	// says it cannot be; kept as a guard).
	ErrNoConvergence = errors.New("stat: root not found within the iteration bound")
)

// stallMax is the number of steps after which Root bisects if its bracket
// has not halved since (the safeguard that bounds its evaluations by a
// multiple of bisection's).
const stallMax = 4

// Root returns a root of f in the bracket [a, b] (a > b is allowed), where
// f(a) and f(b) have opposite signs or one of them is 0, by Brent's method:
// inverse quadratic interpolation and secant steps, with a bisection
// whenever they would fall outside the bracket or not shrink fast enough,
// and whenever the bracket has not halved in four steps, so that it
// converges whenever bisection does, at most five times slower.
//
// Tolerance: it stops when f(x) = 0 or f changes sign within
//
//	δ(x) = tol · max(1, |x|) + 4ε|x|,   ε = 2⁻⁵²,
//
// of the returned x: tol is absolute for |x| < 1 and relative above (the
// 4ε|x| term is the rounding of x itself). f need not be continuous: at a
// jump the result is within δ of the jump.
//
// Evaluations: the bracket at least halves every five steps, so f is
// evaluated at most 5k + 2 times, k = ⌈log₂(|b − a|/tol)⌉ the number of
// bisections that shrink the bracket below tol (Brent's method alone
// guarantees (k + 1)²; Brent 1973, §4.2). On smooth functions the
// convergence is superlinear: 5 to 15 evaluations for tol = 1e-12, where
// bisection needs about 45; on a flat root such as (x − 1)⁹ about 3k.
// ErrNoConvergence reports the bound reached, which cannot happen.
//
// Special cases:
//   - f(a) or f(b) is 0: that end is returned.
//   - f(a) and f(b) have the same sign: NaN and ErrNoSignChange.
//   - f returns NaN at any point: NaN and ErrNaN (a caller that knows what
//     NaN means — beyond an overflow, say — maps it to ±Inf first).
//   - f returns ±Inf: only its sign is used (the step is a bisection).
//
// Root panics if a or b is not finite or tol is not positive and finite.
//
// References: Brent (1973), "Algorithms for Minimization without
// Derivatives", Prentice-Hall, chapter 4 (the procedure zero); Press,
// Teukolsky, Vetterling and Flannery, "Numerical Recipes", 3rd ed., §9.3;
// R's uniroot and scipy's brentq implement the same method.
func Root(f func(float64) float64, a, b, tol float64) (float64, error) {
	if !finite(a) || !finite(b) {
		panic("stat: Root: the bracket must be finite")
	}
	if !(tol > 0) || math.IsInf(tol, 1) {
		panic("stat: Root: tol must be positive and finite")
	}
	return root(f, a, b, f(a), f(b), tol)
}

// root is Root with f(a) and f(b) given.
func root(f func(float64) float64, a, b, fa, fb, tol float64) (float64, error) {
	switch {
	case math.IsNaN(fa) || math.IsNaN(fb):
		return math.NaN(), ErrNaN
	case fa == 0:
		return a, nil
	case fb == 0:
		return b, nil
	case (fa > 0) == (fb > 0):
		return math.NaN(), ErrNoSignChange
	}
	// k bisections would shrink the bracket below tol (capped where
	// |b − a|/tol overflows); the bracket halves every stallMax + 1 steps.
	k := math.Min(math.Max(math.Ceil(math.Log2(math.Abs(b/2-a/2)/tol))+1, 0), 2200)
	maxIter := (stallMax + 1) * (int(k) + 2)
	c, fc := a, fa
	d := b - a
	e := d
	mark, stalled := math.Abs(b-a), 0
	for range maxIter {
		if (fb > 0) == (fc > 0) {
			c, fc = a, fa
			d = b - a
			e = d
		}
		if math.Abs(fc) < math.Abs(fb) {
			a, b, c = b, c, b
			fa, fb, fc = fb, fc, fb
		}
		t := 2*dblEpsilon*math.Abs(b) + 0.5*tol*math.Max(1, math.Abs(b))
		m := 0.5 * (c - b)
		if math.Abs(m) <= t || fb == 0 {
			return b, nil
		}
		if w := math.Abs(c - b); w <= mark/2 {
			mark, stalled = w, 0
		} else {
			stalled++
		}
		if stalled < stallMax && math.Abs(e) >= t && math.Abs(fa) > math.Abs(fb) && !math.IsInf(fa, 0) && !math.IsInf(fc, 0) {
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
			// Accept the step only if it falls well inside the bracket and
			// is less than half the step before last; otherwise bisect.
			if 2*p < math.Min(3*m*q-math.Abs(t*q), math.Abs(e*q)) {
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
		fb = f(b)
		if math.IsNaN(fb) {
			return math.NaN(), ErrNaN
		}
	}
	return b, ErrNoConvergence
}

// RootOutward returns the first root of f on the ray from x0 in the
// direction of step: it evaluates f at x0 + step, x0 + 2·step,
// x0 + 4·step, … (the last at x0 + limit·sign(step)) until f has the other
// sign than f(x0), then refines the bracket so found with Root to its
// tolerance tol. A root of a function that crosses zero more than once
// between two of those points may be missed.
//
// Special cases: f(x0) = 0 returns x0; f keeping the sign of f(x0) up to
// the limit returns x0 + limit·sign(step) and ErrNoSignChange; f NaN at a
// point visited returns NaN and ErrNaN.
//
// RootOutward panics if x0 is not finite, step is 0 or not finite, limit
// is less than |step| or not finite, or tol is not positive and finite.
func RootOutward(f func(float64) float64, x0, step, limit, tol float64) (float64, error) {
	if !finite(x0) || step == 0 || !finite(step) || !(limit >= math.Abs(step)) || math.IsInf(limit, 1) {
		panic("stat: RootOutward: need finite x0, step ≠ 0 finite and |step| ≤ limit finite")
	}
	if !(tol > 0) || math.IsInf(tol, 1) {
		panic("stat: RootOutward: tol must be positive and finite")
	}
	return rootOutward(f, x0, f(x0), step, limit, tol)
}

// rootOutward is RootOutward with f(x0) = f0 given.
func rootOutward(f func(float64) float64, x0, f0, step, limit, tol float64) (float64, error) {
	switch {
	case math.IsNaN(f0):
		return math.NaN(), ErrNaN
	case f0 == 0:
		return x0, nil
	}
	dir, s := math.Copysign(1, step), math.Abs(step)
	inner, fi := x0, f0
	for {
		outer := x0 + dir*s
		v := f(outer)
		switch {
		case math.IsNaN(v):
			return math.NaN(), ErrNaN
		case v == 0 || (v > 0) != (f0 > 0):
			return root(f, inner, outer, fi, v, tol)
		case s >= limit:
			return outer, ErrNoSignChange
		}
		inner, fi = outer, v
		s = math.Min(2*s, limit)
	}
}
