package analysis

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/canaryd/canaryd/analysis/stat"
)

// Time strata.
//
// A canary is compared with its baseline within time strata and the strata
// are combined, so that a change over time that both cohorts share (an
// error burst downstream, a slowdown, a traffic dip) cancels even when the
// canary's share of the traffic changes during the run (an Argo Rollouts
// setWeight 5 → 10 → 25 → 50%, a Flagger stepWeight, a linear ramp).
// Pooling the samples of the whole run instead compares different periods:
// the cohort with more of its traffic in the bad period looks worse
// (Simpson's paradox; see STATS-NOTES.md, "Changing traffic share").
//
// A stratum is a time slice of StratumWidth on a grid fixed to the Unix
// epoch, so that every replica, every batch split and every merge order
// cuts the samples alike. It keeps, per metric and cohort, what the tests
// need (a cell): the Moments of the values and of their logarithms, the
// events and the exposure. When a run has more than MaxStrata timed
// strata, the width doubles and neighbouring strata merge: the state is
// bounded by MaxStrata whatever the run's length or traffic, and it is
// still a function of the set of samples only (the width is the smallest
// that fits them), whatever their order. Samples without a time share one
// stratum of their own.

// StratumWidth is the width of the time strata of a run until it has more
// than MaxStrata of them.
const StratumWidth = time.Minute

// MaxStrata bounds the timed strata a Data keeps: 512 one-minute strata
// cover 8.5 hours; a longer run has 2-minute strata, and so on.
const MaxStrata = 512

// untimed is the key of the stratum of samples without a time.
const untimed = math.MinInt64

// cell is what a stratum keeps of one metric in one cohort.
type cell struct {
	// raw summarizes the values (distribution and mean metrics); for
	// histogram observations, the mean comes from the histogram's sum when
	// it has one, else from the buckets' midpoints (see slack).
	raw stat.Moments
	// log summarizes the logarithms of the positive values of a
	// distribution metric (histogram observations are left out: their
	// logarithms are not known).
	log stat.Moments
	// count and total are the events and exposure of a rate metric, and
	// records the number of count records that made them.
	count, total, records float64
	// slack bounds how far raw.N·raw.Mean may be from the true sum of the
	// values: the sum of the bucket half-widths of histogram observations
	// sent without their sum (+Inf when one lies in an unbounded bucket).
	slack float64
}

func (c *cell) merge(o *cell) {
	c.raw.Merge(o.raw)
	c.log.Merge(o.log)
	c.count += o.count
	c.total += o.total
	c.records += o.records
	c.slack += o.slack
}

func (c *cell) empty() bool {
	return c.raw.N == 0 && c.log.N == 0 && c.records == 0 && c.total == 0 && c.slack == 0
}

// stratum holds the cells of one time slice: cells[2*i+c] is metric i in
// cohort c.
type stratum struct {
	key   int64
	cells []cell
}

// start returns when the stratum begins, for a width; the zero time for the
// untimed stratum.
func (s *stratum) start(width time.Duration) time.Time {
	if s.key == untimed {
		return time.Time{}
	}
	return time.Unix(0, s.key*int64(width)).UTC()
}

// strata is the time-stratified state of a run: timed strata sorted by
// key, the untimed one first.
type strata struct {
	shift   uint8 // the width is StratumWidth << shift
	s       []stratum
	metrics int
}

func (st *strata) width() time.Duration { return StratumWidth << st.shift }

// keyOf returns the stratum key of a time at the current width.
func (st *strata) keyOf(t time.Time) int64 {
	if t.IsZero() {
		return untimed
	}
	return floorDiv(t.UnixNano(), int64(st.width()))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// cells returns the cells of metric i in the stratum of t, creating it.
func (st *strata) cells(t time.Time, i int) *[2]cell {
	k := st.keyOf(t)
	j, ok := slices.BinarySearchFunc(st.s, k, func(s stratum, k int64) int { return cmp.Compare(s.key, k) })
	if !ok {
		st.s = slices.Insert(st.s, j, stratum{key: k, cells: make([]cell, 2*st.metrics)})
		if st.timed() > MaxStrata {
			st.coarsen(st.shift + 1)
			return st.cells(t, i)
		}
	}
	return (*[2]cell)(st.s[j].cells[2*i : 2*i+2])
}

// timed returns the number of timed strata.
func (st *strata) timed() int {
	if len(st.s) > 0 && st.s[0].key == untimed {
		return len(st.s) - 1
	}
	return len(st.s)
}

// coarsen doubles the width until shift, merging the strata that fall in
// one, and further while there are more than MaxStrata.
func (st *strata) coarsen(shift uint8) {
	for st.shift < shift || st.timed() > MaxStrata {
		st.shift++
		out := st.s[:0]
		for _, s := range st.s {
			if s.key != untimed {
				s.key >>= 1 // floor division by 2, negative keys included
			}
			if n := len(out); n > 0 && out[n-1].key == s.key {
				for c := range s.cells {
					out[n-1].cells[c].merge(&s.cells[c])
				}
				continue
			}
			out = append(out, s)
		}
		clear(st.s[len(out):])
		st.s = out
	}
}

// merge adds the strata of o, which must have as many metrics.
func (st *strata) merge(o *strata) {
	if len(o.s) == 0 {
		return
	}
	if o.shift > st.shift {
		st.coarsen(o.shift)
	}
	for _, os := range o.s {
		k := os.key
		if k != untimed {
			k >>= st.shift - o.shift
		}
		j, ok := slices.BinarySearchFunc(st.s, k, func(s stratum, k int64) int { return cmp.Compare(s.key, k) })
		if !ok {
			st.s = slices.Insert(st.s, j, stratum{key: k, cells: make([]cell, 2*st.metrics)})
		}
		for c := range os.cells {
			st.s[j].cells[c].merge(&os.cells[c])
		}
	}
	if st.timed() > MaxStrata {
		st.coarsen(st.shift)
	}
}

// group is the cells of one metric in consecutive strata, pooled: the unit
// within which the tests compare the cohorts.
type group [2]cell

// groups returns the strata of metric i from the time from on (every
// stratum, the untimed one included, when from is zero), pooled into
// groups of consecutive strata in which both cohorts have enough data for
// the metric's test: a rate metric exposure in both cohorts, a mean or
// distribution metric at least two observations in both (for a variance).
// Strata where one cohort has nothing carry no information and pool with
// their neighbours; what is left at the end joins the last group. The
// pooling depends on the sample sizes and exposures only, never on the
// values, so the tests that condition on them stay valid.
func (st *strata) groups(i int, m *Metric, from time.Time) []group {
	var out []group
	var cur group
	pending := false
	enough := func(g *group) bool {
		b, c := &g[Baseline], &g[Canary]
		if m.Type == TypeRate {
			return b.total > 0 && c.total > 0
		}
		return b.raw.N >= 2 && c.raw.N >= 2
	}
	fromKey := int64(math.MinInt64)
	if !from.IsZero() {
		fromKey = st.keyOf(from)
	}
	for j := range st.s {
		s := &st.s[j]
		if !from.IsZero() && (s.key == untimed || s.key < fromKey) {
			continue
		}
		cs := s.cells[2*i : 2*i+2]
		if cs[0].empty() && cs[1].empty() {
			continue
		}
		cur[0].merge(&cs[0])
		cur[1].merge(&cs[1])
		pending = true
		if enough(&cur) {
			out = append(out, cur)
			cur, pending = group{}, false
		}
	}
	if pending {
		if n := len(out); n > 0 {
			out[n-1][0].merge(&cur[0])
			out[n-1][1].merge(&cur[1])
		} else {
			out = append(out, cur)
		}
	}
	return out
}

// newest returns the start of the newest timed stratum (zero if none).
func (st *strata) newest() time.Time {
	if st.timed() == 0 {
		return time.Time{}
	}
	return st.s[len(st.s)-1].start(st.width())
}

// oldest returns the start of the oldest timed stratum (zero if none).
func (st *strata) oldest() time.Time {
	for j := range st.s {
		if st.s[j].key != untimed {
			return st.s[j].start(st.width())
		}
	}
	return time.Time{}
}
