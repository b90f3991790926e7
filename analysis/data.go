package analysis

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/canaryd/canaryd/analysis/stat"
)

// Cohort is the side of the comparison an observation belongs to.
type Cohort uint8

// The two cohorts.
const (
	Baseline Cohort = iota
	Canary
)

// String returns "baseline" or "canary".
func (c Cohort) String() string {
	if c == Canary {
		return "canary"
	}
	return "baseline"
}

// ParseCohort parses "baseline" or "canary".
func ParseCohort(s string) (Cohort, error) {
	switch s {
	case "baseline":
		return Baseline, nil
	case "canary":
		return Canary, nil
	}
	return 0, fmt.Errorf("cohort must be baseline or canary (got %q)", s)
}

// Record is one sample of a metric: either one observation (Value), or
// Count events out of an exposure Total (errors out of requests).
type Record struct {
	Metric string
	Cohort Cohort
	// IsCount selects Count/Total over Value.
	IsCount bool
	Value   float64
	Count   float64
	Total   float64
	// Time is when the sample was taken; zero when unknown, in which case
	// the warm-up cannot exclude it.
	Time time.Time
	// Instance optionally names the host or pod that produced the sample.
	Instance string
	// Histogram, when set, makes the record many observations of a
	// distribution metric known only up to buckets (a Prometheus or
	// OpenTelemetry histogram over an interval); Value is then unused.
	Histogram *Histogram
}

// Histogram is a set of observations known only up to buckets: Counts[i]
// observations lie in (Bounds[i−1], Bounds[i]] (the first bucket from 0),
// as Prometheus classic histograms (after differencing their cumulative
// `le` counts), OpenTelemetry explicit-bucket histograms and native
// (exponential) histograms deliver them. The last bound may be +Inf.
type Histogram struct {
	// Bounds are the buckets' upper bounds, strictly increasing, > 0.
	Bounds []float64
	// Counts are the observations per bucket (not cumulative), whole and
	// >= 0; the same length as Bounds.
	Counts []float64
	// Sum is the sum of the observations when HasSum (a histogram's _sum):
	// with it the mean is known exactly, which the judge's mean test uses.
	Sum    float64
	HasSum bool
}

// Data accumulates the samples of one run, per metric and cohort, in
// bounded memory: the whole run's summaries (for reports) and the time
// strata the tests compare within (strata.go). It is not safe for
// concurrent use.
//
// Data is a function of the set of samples added to it: merging deltas in
// any order, splitting them differently, or adding the same samples one by
// one gives the same Data (up to the rounding of floating-point sums), so
// that a run's verdict does not depend on the order in which its batches
// arrive. The warm-up therefore starts at an explicit start (SetStart: the
// run's creation, or for a finished data set its first sample), never at
// whichever sample happens to come first.
type Data struct {
	cfg     *Config
	metrics []MetricData
	start   [2]time.Time
	strata  strata
	names   instanceNames // for reports: the judge keeps slots
}

// MetricData is the whole-run state of one metric: one accumulator per
// cohort.
type MetricData struct {
	Cohorts [2]CohortData
}

// CohortData holds the whole-run summaries of one metric in one cohort.
// Only the part that matches the metric's type is used.
type CohortData struct {
	// Dist holds the observations of a distribution metric, for its
	// quantiles (reports, plots); the tests use the strata.
	Dist Dist
	// Moments summarizes the values of a distribution or mean metric.
	Moments stat.Moments
	// Count and Total are the events and exposure of a rate metric, and
	// Records the number of count records that made them.
	Count, Total float64
	Records      uint64
	// Instances summarizes the samples per instance (Record.Instance), for
	// the cluster-robust variance of DesignEffect: Moments of the values
	// (mean, distribution) or BernoulliMoments (rate); LogInstances the
	// Moments of the logarithms of a distribution's positive values.
	Instances    Instances
	LogInstances Instances
	// Warmup counts samples dropped because they fell in the warm-up.
	Warmup uint64
	// Censored counts the observations known only up to a histogram
	// bucket, and NonInteger the positive observations that are not whole
	// numbers: the tests on the logarithm of a distribution are biased on
	// coarse values (see evalDistribution).
	Censored   uint64
	NonInteger uint64
}

// NewData returns empty Data for a normalized config.
func NewData(cfg *Config) *Data {
	return &Data{cfg: cfg, metrics: make([]MetricData, len(cfg.Metrics)), strata: strata{metrics: len(cfg.Metrics)}}
}

// Config returns the config the Data was made for.
func (d *Data) Config() *Config { return d.cfg }

// Metric returns the whole-run state of metric i of the config.
func (d *Data) Metric(i int) *MetricData { return &d.metrics[i] }

// SetStart sets the start of a cohort, from which its warm-up is counted:
// the run's creation for a live run, the cohort's first sample for a
// finished data set. Without it, no sample of the cohort is in a warm-up.
// It must be set before samples are added.
func (d *Data) SetStart(c Cohort, t time.Time) { d.start[c] = t }

// Start returns the start of a cohort (zero if unknown).
func (d *Data) Start(c Cohort) time.Time { return d.start[c] }

// runStart returns the start of the run: the earlier cohort start, else
// the start of the oldest timed stratum (zero without either).
func (d *Data) runStart() time.Time {
	var t time.Time
	for _, s := range d.start {
		if !s.IsZero() && (t.IsZero() || s.Before(t)) {
			t = s
		}
	}
	if t.IsZero() {
		t = d.strata.oldest()
	}
	return t
}

// Errors returned by Check and Add; they are wrapped with the field.
var (
	ErrUnknownMetric = errors.New("unknown metric")
	ErrWrongKind     = errors.New("wrong kind of sample for the metric")
)

// Bounds on what a sample may carry. They keep every sum the judge forms
// finite (a value of 1.8e308 or an exposure of 1e308 overflowed before)
// and are far beyond any real measurement: 1e15 ms is 31,000 years, 1e15
// requests a million years of a million requests a second.
const (
	// MaxValue bounds the magnitude of values, counts, exposures,
	// histogram bounds, counts and sums.
	MaxValue = 1e15
	// MaxBuckets bounds the buckets of one histogram (OpenTelemetry's
	// exponential histograms default to 160).
	MaxBuckets = 1024
)

// Check validates a record against the config without adding it, so that
// a batch can be validated whole before any of it is stored. The error is
// a *FieldError naming the record's field (for a histogram, as
// "histogram.counts[3]").
func (d *Data) Check(r *Record) error {
	i := d.cfg.Metric(r.Metric)
	if i < 0 {
		return &FieldError{Field: "metric", Msg: fmt.Sprintf("%q is not a metric of config %q", r.Metric, d.cfg.Name)}
	}
	if r.Cohort > Canary {
		return &FieldError{Field: "cohort", Msg: "must be baseline or canary"}
	}
	if err := CheckInstance(r.Instance); err != nil {
		return err
	}
	return checkSample(&d.cfg.Metrics[i], r)
}

// CheckInstance validates an instance name (Record.Instance), for Check
// and for a column of samples that share one. The error is a *FieldError
// of the field "instance".
func CheckInstance(name string) error {
	if len(name) > MaxInstanceName || !utf8.ValidString(name) {
		return &FieldError{Field: "instance", Msg: fmt.Sprintf("must be UTF-8 of at most %d bytes (got %d bytes)", MaxInstanceName, len(name))}
	}
	return nil
}

// checkSample is the one place where a sample's numbers are validated.
func checkSample(m *Metric, r *Record) error {
	inRange := func(v float64) bool { return v >= 0 && v <= MaxValue } // false for NaN
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case m.Type == TypeRate:
		switch {
		case r.Histogram != nil:
			return bad("histogram", "metric %q is a rate: send count and total, not a histogram", m.Name)
		case !r.IsCount:
			return bad("value", "metric %q is a rate: send count and total, not value", m.Name)
		case !inRange(r.Count) || r.Count != math.Trunc(r.Count):
			return bad("count", "must be a whole number from 0 to %g", MaxValue)
		case !inRange(r.Total):
			return bad("total", "must be a number from 0 to %g", MaxValue)
		case r.Count > r.Total:
			return bad("count", "count %v exceeds total %v", r.Count, r.Total)
		}
		return nil
	case r.IsCount:
		return bad("count", "metric %q is a %s metric: send value, not count and total", m.Name, m.Type)
	case r.Histogram != nil:
		if m.Type != TypeDistribution {
			return bad("histogram", "metric %q is a %s metric: histograms are for distribution metrics", m.Name, m.Type)
		}
		return checkHistogram(r.Histogram)
	case math.IsNaN(r.Value) || math.Abs(r.Value) > MaxValue:
		return bad("value", "must be a number from %g to %g", -MaxValue, MaxValue)
	case m.Type == TypeDistribution && r.Value < 0:
		return bad("value", "metric %q is a distribution of non-negative quantities (latency, CPU); use type mean for signed values", m.Name)
	}
	return nil
}

func checkHistogram(h *Histogram) error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: "histogram." + field, Msg: fmt.Sprintf(format, args...)}
	}
	switch n := len(h.Bounds); {
	case n == 0:
		return bad("bounds", "at least one bucket is required")
	case n > MaxBuckets:
		return bad("bounds", "%d buckets, more than %d", n, MaxBuckets)
	case len(h.Counts) != n:
		return bad("counts", "has %d entries, bounds has %d: they must pair up", len(h.Counts), n)
	}
	total := 0.0
	for k, ub := range h.Bounds {
		last := k == len(h.Bounds)-1
		switch {
		case math.IsInf(ub, 1) && last:
		case !(ub > 0 && ub <= MaxValue):
			return bad(fmt.Sprintf("bounds[%d]", k), "must be > 0 and <= %g (only the last may be +Inf)", MaxValue)
		case k > 0 && !(ub > h.Bounds[k-1]):
			return bad(fmt.Sprintf("bounds[%d]", k), "must be greater than bounds[%d]: bounds increase strictly", k-1)
		}
		c := h.Counts[k]
		if !(c >= 0 && c <= MaxValue) || c != math.Trunc(c) {
			return bad(fmt.Sprintf("counts[%d]", k), "must be a whole number from 0 to %g", MaxValue)
		}
		total += c
	}
	if total > MaxValue {
		return bad("counts", "hold %g observations, more than %g", total, MaxValue)
	}
	// Observations are at most MaxValue each: a larger sum would make a
	// mean beyond MaxValue. (At least one observation's worth, for a sum
	// whose counts were rounded down to none.)
	if h.HasSum && !(h.Sum >= 0 && h.Sum <= max(total, 1)*MaxValue) {
		return bad("sum", "must be a number from 0 to %g times the count (the sum of non-negative observations of at most %g)", MaxValue, MaxValue)
	}
	return nil
}

// Add validates a record and adds it to its metric and cohort, unless it
// falls in its cohort's warm-up. A rejected record changes nothing.
func (d *Data) Add(r *Record) error {
	if err := d.Check(r); err != nil {
		return err
	}
	i := d.cfg.Metric(r.Metric)
	c := &d.metrics[i].Cohorts[r.Cohort]
	if d.inWarmup(r.Cohort, r.Time) {
		c.Warmup += r.observations()
		return nil
	}
	m := &d.cfg.Metrics[i]
	st := &d.strata.cells(r.Time, i)[r.Cohort]
	key := InstanceKey(r.Instance)
	d.names.add(key, r.Instance)
	switch {
	case m.Type == TypeRate:
		c.Count += r.Count
		c.Total += r.Total
		c.Records++
		c.Instances.Add(key, stat.BernoulliMoments(r.Count, r.Total))
		st.count += r.Count
		st.total += r.Total
		st.records++
	case r.Histogram != nil:
		raw, slack := histogramMoments(r.Histogram)
		h := r.Histogram
		for k, n := range h.Counts {
			if n > 0 {
				lo, hi := bucketOf(h, k)
				c.Dist.AddN(bucketPoint(lo, hi), uint64(n))
			}
		}
		c.Moments.Merge(raw)
		c.Censored += uint64(raw.N)
		c.Instances.Add(key, raw)
		st.raw.Merge(raw)
		st.slack += slack
	default:
		v := r.Value
		if m.Type == TypeDistribution {
			c.Dist.Add(v)
			if v > 0 {
				l := stat.Moments{N: 1, Mean: math.Log(v)}
				c.LogInstances.Add(key, l)
				st.log.Merge(l)
			}
			if v != math.Trunc(v) {
				c.NonInteger++
			}
		}
		one := stat.Moments{N: 1, Mean: v}
		c.Moments.Merge(one)
		c.Instances.Add(key, one)
		st.raw.Merge(one)
	}
	return nil
}

// observations returns how many observations a record carries.
func (r *Record) observations() uint64 {
	if r.Histogram == nil {
		return 1
	}
	n := 0.0
	for _, c := range r.Histogram.Counts {
		n += c
	}
	return uint64(n)
}

// bucketOf returns the bounds (lo, hi] of bucket k of a histogram.
func bucketOf(h *Histogram, k int) (lo, hi float64) {
	if k > 0 {
		lo = h.Bounds[k-1]
	}
	return lo, h.Bounds[k]
}

// bucketPoint is the value a bucket's observations are represented by in
// a Dist and in the Moments: the midpoint, or the lower bound of the
// unbounded last bucket.
func bucketPoint(lo, hi float64) float64 {
	if math.IsInf(hi, 1) {
		return lo
	}
	return lo + (hi-lo)/2
}

// histogramMoments returns the Moments of the observations of a
// histogram and its slack. The mean is Sum/N when the histogram has a sum
// (then exact, and the slack is 0); otherwise the mean of the buckets'
// midpoints, and the slack Σ count·(hi − lo)/2 bounds how far N·mean is
// from the true sum (+Inf when observations lie in the unbounded bucket).
// The variance is that of the midpoints plus, within each bounded bucket,
// that of a uniform distribution over it, width²/12 (Sheppard's
// correction, the other way round: Kendall and Stuart, "The Advanced
// Theory of Statistics", vol. 1, §3.18): an estimate, where only the mean
// can be exact.
func histogramMoments(h *Histogram) (m stat.Moments, slack float64) {
	var n, s float64
	for k, c := range h.Counts {
		if c == 0 {
			continue
		}
		lo, hi := bucketOf(h, k)
		n += c
		s += c * bucketPoint(lo, hi)
		if math.IsInf(hi, 1) {
			slack = math.Inf(1)
		} else {
			slack += c * (hi - lo) / 2
		}
	}
	if n == 0 {
		return stat.Moments{}, 0
	}
	mean := s / n
	if h.HasSum {
		mean, slack = h.Sum/n, 0
	}
	var m2 float64
	for k, c := range h.Counts {
		if c == 0 {
			continue
		}
		lo, hi := bucketOf(h, k)
		d := bucketPoint(lo, hi) - mean
		m2 += c * d * d
		if !math.IsInf(hi, 1) {
			m2 += c * (hi - lo) * (hi - lo) / 12
		}
	}
	return stat.Moments{N: n, Mean: mean, M2: m2}, slack
}

// AddValues adds already validated observations of metric i (a
// distribution or mean metric), taken at t by one instance, to cohort c,
// or counts them as warm-up when t falls in the cohort's warm-up: the fast
// path of the columnar ingest.
func (d *Data) AddValues(i int, c Cohort, instance string, t time.Time, vs []float64) error {
	if len(vs) == 0 {
		return nil
	}
	cd := &d.metrics[i].Cohorts[c]
	if d.inWarmup(c, t) {
		cd.Warmup += uint64(len(vs))
		return nil
	}
	m := &d.cfg.Metrics[i]
	raw, logs, nonInt := summarize(vs, m.Type == TypeDistribution)
	key := InstanceKey(instance)
	d.names.add(key, instance)
	if m.Type == TypeDistribution {
		for _, v := range vs {
			if err := cd.Dist.Add(v); err != nil {
				return err
			}
		}
		cd.LogInstances.Add(key, logs)
		cd.NonInteger += nonInt
	}
	cd.Moments.Merge(raw)
	cd.Instances.Add(key, raw)
	st := &d.strata.cells(t, i)[c]
	st.raw.Merge(raw)
	st.log.Merge(logs)
	return nil
}

// summarize returns the Moments of vs and, with logs, of the logarithms of
// its positive values and the number of positive values that are not
// whole numbers, in one pass over the data shifted by the first value (and
// the first logarithm): the shifted-data algorithm (Chan, Golub and
// LeVeque 1983, §3), which keeps the variance's precision as long as the
// shift is a typical value, as the first value of a column is.
func summarize(vs []float64, logs bool) (raw, lm stat.Moments, nonInt uint64) {
	if len(vs) == 0 {
		return stat.Moments{}, stat.Moments{}, 0
	}
	k := vs[0]
	var s, ss float64
	if !logs {
		for _, v := range vs {
			d := v - k
			s += d
			ss += d * d
		}
	} else {
		var kl, ls, lss, ln float64
		for _, v := range vs {
			d := v - k
			s += d
			ss += d * d
			if v != math.Trunc(v) {
				nonInt++
			}
			if !(v > 0) {
				continue
			}
			l := math.Log(v)
			if ln == 0 {
				kl = l
			}
			dl := l - kl
			ln++
			ls += dl
			lss += dl * dl
		}
		if ln > 0 {
			lm = stat.Moments{N: ln, Mean: kl + ls/ln, M2: max(0, lss-ls*ls/ln)}
		}
	}
	n := float64(len(vs))
	raw = stat.Moments{N: n, Mean: k + s/n, M2: max(0, ss-s*s/n)}
	return raw, lm, nonInt
}

// inWarmup reports whether a sample of cohort c taken at t falls in the
// warm-up: the config's Warmup from the cohort's start (SetStart). Samples
// before the start count as warm-up too; without a start or a time, no
// sample does.
func (d *Data) inWarmup(c Cohort, t time.Time) bool {
	if t.IsZero() || d.cfg.Warmup == 0 || d.start[c].IsZero() {
		return false
	}
	return t.Before(d.start[c].Add(d.cfg.Warmup))
}
