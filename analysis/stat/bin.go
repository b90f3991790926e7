package stat

// Bin is one distinct value, or one histogram bin represented by its
// midpoint, together with the number of observations it holds: a weighted
// observation. The rank-based tests take samples as slices of Bins sorted
// by Value ascending, with distinct Values and positive Counts; a raw
// sample is the special case where every Count is 1 (or counts ties).
type Bin struct {
	Value float64
	Count float64
}

// Alternative names the alternative hypothesis of a test, as R and scipy
// name it.
type Alternative int

const (
	// TwoSided is R's "two.sided": the location of x differs from y's.
	TwoSided Alternative = iota
	// Greater is R's "greater": x is shifted to the right of y.
	Greater
	// Less is R's "less": x is shifted to the left of y.
	Less
)

// String returns R's name for the alternative.
func (a Alternative) String() string {
	switch a {
	case TwoSided:
		return "two.sided"
	case Greater:
		return "greater"
	case Less:
		return "less"
	}
	return "unknown"
}

// mustAlternative panics, naming fn, unless alt is a known alternative.
func mustAlternative(fn string, alt Alternative) {
	if alt != TwoSided && alt != Greater && alt != Less {
		panic("stat: " + fn + ": unknown alternative")
	}
}
