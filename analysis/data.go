package analysis

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
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
// bounded memory. It is not safe for concurrent use.
type Data struct {
	cfg     *Config
	metrics []MetricData
	start   [2]time.Time
	// With a config Window, the samples of the newest MaxEpochs epochs
	// (time slices of one Window on a grid fixed to the Unix epoch, so
	// that every replica and every merge order cuts them alike), and the
	// index of the first epoch that had samples.
	epochs     []epoch
	firstEpoch int64
	hasEpoch   bool
}

// MaxEpochs is the number of most recent windows whose samples a Data
// keeps apart for the window tests (see Config.Window).
const MaxEpochs = 4

// epoch holds the samples of one time slice.
type epoch struct {
	index   int64
	metrics []MetricData
}

// MetricData is the state of one metric: one accumulator per cohort.
type MetricData struct {
	Cohorts [2]CohortData
}

// CohortData holds what the tests need of one metric in one cohort. Only
// the part that matches the metric's type is used.
type CohortData struct {
	// Dist holds the observations of a distribution metric.
	Dist Dist
	// Moments holds the observations of a mean metric.
	Moments Moments
	// Count and Total are the events and exposure of a rate metric, and
	// Records the number of count records that made them.
	Count, Total float64
	Records      uint64
	// Instances summarizes the samples per instance (Record.Instance), for
	// the cluster-robust variance of DesignEffect.
	Instances Instances
	// Warmup counts samples dropped because they fell in the warm-up.
	Warmup uint64
}

// NewData returns empty Data for a normalized config.
func NewData(cfg *Config) *Data {
	return &Data{cfg: cfg, metrics: make([]MetricData, len(cfg.Metrics))}
}

// Config returns the config the Data was made for.
func (d *Data) Config() *Config { return d.cfg }

// Metric returns the state of metric i of the config.
func (d *Data) Metric(i int) *MetricData { return &d.metrics[i] }

// SetStart sets the start of a cohort, from which its warm-up is counted.
// Without it, the time of the cohort's first timed sample is its start.
func (d *Data) SetStart(c Cohort, t time.Time) { d.start[c] = t }

// Start returns the start of a cohort (zero if unknown).
func (d *Data) Start(c Cohort) time.Time { return d.start[c] }

// Errors returned by Check and Add; they are wrapped with the field.
var (
	ErrUnknownMetric = errors.New("unknown metric")
	ErrWrongKind     = errors.New("wrong kind of sample for the metric")
)

// Check validates a record against the config without adding it, so that
// a batch can be validated whole before any of it is stored. The error is
// a *FieldError naming the record's field.
func (d *Data) Check(r *Record) error {
	i := d.cfg.Metric(r.Metric)
	if i < 0 {
		return &FieldError{Field: "metric", Msg: fmt.Sprintf("%q is not a metric of config %q", r.Metric, d.cfg.Name)}
	}
	if r.Cohort > Canary {
		return &FieldError{Field: "cohort", Msg: "must be baseline or canary"}
	}
	return checkSample(&d.cfg.Metrics[i], r)
}

func checkSample(m *Metric, r *Record) error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if m.Type == TypeRate {
		switch {
		case !r.IsCount:
			return &FieldError{Field: "value", Msg: fmt.Sprintf("metric %q is a rate: send count and total, not value", m.Name)}
		case !finite(r.Count) || r.Count < 0 || r.Count != math.Trunc(r.Count):
			return &FieldError{Field: "count", Msg: "must be a whole number >= 0"}
		case !finite(r.Total) || r.Total < 0:
			return &FieldError{Field: "total", Msg: "must be a finite number >= 0"}
		case r.Count > r.Total:
			return &FieldError{Field: "count", Msg: fmt.Sprintf("count %v exceeds total %v", r.Count, r.Total)}
		}
		return nil
	}
	switch {
	case r.IsCount:
		return &FieldError{Field: "count", Msg: fmt.Sprintf("metric %q is a %s metric: send value, not count and total", m.Name, m.Type)}
	case !finite(r.Value):
		return &FieldError{Field: "value", Msg: "must be a finite number"}
	case m.Type == TypeDistribution && r.Value < 0:
		return &FieldError{Field: "value", Msg: fmt.Sprintf("metric %q is a distribution of non-negative quantities (latency, CPU); use type mean for signed values", m.Name)}
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
		c.Warmup++
		return nil
	}
	m := &d.cfg.Metrics[i]
	if err := addRecord(c, m, r); err != nil {
		return err
	}
	if e := d.epochOf(r.Time); e != nil {
		return addRecord(&e[i].Cohorts[r.Cohort], m, r)
	}
	return nil
}

// addRecord adds a validated record to one cohort's state.
func addRecord(c *CohortData, m *Metric, r *Record) error {
	key := InstanceKey(r.Instance)
	switch m.Type {
	case TypeRate:
		c.Count += r.Count
		c.Total += r.Total
		c.Records++
		c.Instances.Add(key, BernoulliMoments(r.Count, r.Total))
		return nil
	case TypeMean:
		c.Moments.Add(r.Value)
	default:
		if err := c.Dist.Add(r.Value); err != nil {
			return err
		}
		if r.Value > 0 {
			c.Instances.Add(key, Moments{N: 1, Mean: math.Log(r.Value)})
		}
		return nil
	}
	c.Instances.Add(key, Moments{N: 1, Mean: r.Value})
	return nil
}

// epochOf returns the per-epoch state of the epoch holding t, creating it
// if needed, or nil when the config has no window, t is zero, or the
// epoch is older than the MaxEpochs newest.
func (d *Data) epochOf(t time.Time) []MetricData {
	if d.cfg.Window <= 0 || t.IsZero() {
		return nil
	}
	ns, w := t.UnixNano(), int64(d.cfg.Window)
	idx := ns / w
	if ns%w < 0 {
		idx-- // floor for times before 1970
	}
	return d.epoch(idx)
}

// noteEpoch records that epoch idx had samples.
func (d *Data) noteEpoch(idx int64) {
	if !d.hasEpoch || idx < d.firstEpoch {
		d.firstEpoch, d.hasEpoch = idx, true
	}
}

// epoch returns the state of epoch idx (see epochOf).
func (d *Data) epoch(idx int64) []MetricData {
	d.noteEpoch(idx)
	i, ok := slices.BinarySearchFunc(d.epochs, idx, func(e epoch, k int64) int { return cmp.Compare(e.index, k) })
	if ok {
		return d.epochs[i].metrics
	}
	if len(d.epochs) == MaxEpochs {
		if i == 0 {
			return nil // older than every epoch kept
		}
		d.epochs = slices.Delete(d.epochs, 0, 1)
		i--
	}
	d.epochs = slices.Insert(d.epochs, i, epoch{index: idx, metrics: make([]MetricData, len(d.metrics))})
	return d.epochs[i].metrics
}

// Window is the data of one window test: the samples since the start of
// an epoch.
type Window struct {
	// Start is when the window began; Index counts the windows since the
	// first epoch with samples (1 for the second epoch).
	Start time.Time
	Index int64
	data  []MetricData
}

// Metric returns the window's state of metric i.
func (w *Window) Metric(i int) *MetricData { return &w.data[i] }

// Windows returns the window tests' data: for each kept epoch after the
// run's first, the samples from its start on. It is empty unless the
// config has a Window.
func (d *Data) Windows() []Window {
	var out []Window
	acc := make([]MetricData, len(d.metrics))
	for k := len(d.epochs) - 1; k >= 0; k-- {
		e := &d.epochs[k]
		for i := range acc {
			acc[i].merge(&e.metrics[i])
		}
		if e.index <= d.firstEpoch {
			break
		}
		w := Window{Start: time.Unix(0, e.index*int64(d.cfg.Window)).UTC(), Index: e.index - d.firstEpoch,
			data: make([]MetricData, len(acc))}
		for i := range acc {
			w.data[i].merge(&acc[i])
		}
		out = append(out, w)
	}
	return out
}

// AddValues adds already validated observations of metric i (a
// distribution or mean metric), taken at t by one instance, to cohort c;
// it is the fast path of the columnar ingest and skips the warm-up check,
// which the caller does.
func (d *Data) AddValues(i int, c Cohort, instance string, t time.Time, vs []float64) error {
	if err := addValues(&d.metrics[i].Cohorts[c], &d.cfg.Metrics[i], instance, vs); err != nil {
		return err
	}
	if e := d.epochOf(t); e != nil {
		return addValues(&e[i].Cohorts[c], &d.cfg.Metrics[i], instance, vs)
	}
	return nil
}

func addValues(cd *CohortData, m *Metric, instance string, vs []float64) error {
	if m.Type == TypeMean {
		bm := momentsOf(vs)
		cd.Moments.Merge(bm)
		cd.Instances.Add(InstanceKey(instance), bm)
		return nil
	}
	for i, v := range vs {
		if err := cd.Dist.Add(v); err != nil {
			cd.Instances.Add(InstanceKey(instance), logMomentsOf(vs[:i]))
			return err
		}
	}
	cd.Instances.Add(InstanceKey(instance), logMomentsOf(vs))
	return nil
}

// logMomentsOf returns the Moments of the logarithms of the positive
// values of vs, in one pass with the data shifted by the first logarithm
// (the shifted-data algorithm: Chan, Golub and LeVeque 1983, §3), which
// keeps the precision of the variance since log values vary little
// around their shift.
func logMomentsOf(vs []float64) Moments {
	var n, s, ss, k float64
	for _, v := range vs {
		if !(v > 0) {
			continue
		}
		l := math.Log(v)
		if n == 0 {
			k = l
		}
		d := l - k
		n++
		s += d
		ss += d * d
	}
	if n == 0 {
		return Moments{}
	}
	return Moments{N: n, Mean: k + s/n, M2: max(0, ss-s*s/n)}
}

// momentsOf returns the Moments of vs by the corrected two-pass algorithm
// (Chan, Golub and LeVeque 1983, eq. 1.7): the mean, then the squared
// deviations from it, less the rounding error of the mean. It has no
// division per value, unlike Moments.Add, and is as accurate.
func momentsOf(vs []float64) Moments {
	if len(vs) == 0 {
		return Moments{}
	}
	n := float64(len(vs))
	s := 0.0
	for _, v := range vs {
		s += v
	}
	mean := s / n
	var m2, c float64
	for _, v := range vs {
		d := v - mean
		m2 += d * d
		c += d
	}
	return Moments{N: n, Mean: mean + c/n, M2: max(0, m2-c*c/n)}
}

// InWarmup reports whether a sample of cohort c taken at t falls in the
// warm-up. The first timed sample of a cohort without a start sets it.
func (d *Data) inWarmup(c Cohort, t time.Time) bool {
	if t.IsZero() || d.cfg.Warmup == 0 {
		return false
	}
	if d.start[c].IsZero() {
		d.start[c] = t
	}
	return t.Before(d.start[c].Add(d.cfg.Warmup))
}
