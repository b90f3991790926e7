// Package prometheus reads a run's metrics from Prometheus (or anything
// that serves its HTTP query API), interval by interval, with the official
// client (github.com/prometheus/client_golang/api).
//
// A config's `source:` names the Prometheus and the interval; each metric's
// `query:` the PromQL that reads it (collectors/prometheus/promconfig),
// with {{.Selector}} standing for a cohort's label matchers (the run's
// baseline_labels or canary_labels) and {{.Range}} for the interval.
//
// # Intervals
//
// Intervals lie on a grid fixed to the Unix epoch: (E − interval, E] for
// every multiple E of the interval. Each is read once, lag after its end,
// with instant queries at E — increase(...[{{.Range}}]) at E counts what
// happened in the interval — and becomes one batch per metric whose id is
// derived from the run, E and a hash of the metric's rendered queries
// (Result.BatchID): a retry, or a second replica reading the same interval,
// sends a batch the service already stored and is counted once. Records
// are timed at the middle of their interval, so that they fall in the
// judge's minute strata the interval covers.
//
// The first interval read is the first that starts at or after the run's
// start (FirstEnd): data from before the run are never read, and the run's
// warm-up then discards its first minutes as usual.
//
// Counter resets and new series are handled as Prometheus' increase()
// handles them: a counter that decreases is taken to have restarted from 0
// (a pod restart loses at most what it counted between its last scrape and
// the restart), and a series that starts inside an interval contributes the
// increase from its first sample (a new pod's requests before its first
// scrape are not counted; for both cohorts alike). increase() extrapolates
// to the interval's bounds, so values are not whole: counts (events, and
// cumulative bucket counts) are rounded to whole numbers, bucket counts
// made non-decreasing in le (as histogram_quantile does), and an event
// count never exceeds its exposure. Consecutive intervals therefore
// partition the counts up to Prometheus' extrapolation, as rate() does.
//
// # Metric types
//
//   - rate: count and total, one series per instance each; an instance
//     present in total but not in count (an error counter that never
//     fired, so has no series) has 0 events.
//   - distribution: buckets, one series per instance and le (classic
//     histograms), or one native histogram per instance; optionally sum,
//     with which the judge knows the mean exactly (without it, observations
//     in the +Inf bucket leave the mean unbounded and the metric can never
//     pass); scale multiplies bounds and sums (1000: seconds to ms).
//   - mean: count and sum per instance; each instance's interval mean,
//     sum/count, is one observation (the judge then compares the means of
//     instance-intervals).
//
// Errors are *Error, of kind ErrUnreachable, ErrBadQuery or ErrNoData.
package prometheus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/collectors/prometheus/promconfig"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// maxRangePoints bounds the points of one range query (Prometheus refuses
// more than 11,000 per series).
const maxRangePoints = 10_000

// Metric is one metric to read: its name and type in the config, and its
// queries.
type Metric struct {
	Name  string
	Type  analysis.MetricType
	Query promconfig.Query
}

// Target is what one run reads from Prometheus.
type Target struct {
	// RunID is the run the batches are for; it seeds their ids.
	RunID string
	// Interval and Lag are the source's (promconfig.Prometheus).
	Interval, Lag time.Duration
	// Metrics are the config's metrics that have a query.
	Metrics []Metric
	// Baseline and Canary are the cohorts' labels, the run's
	// baseline_labels and canary_labels.
	Baseline, Canary map[string]string
}

// Collector reads one run's metrics, interval by interval. It is safe for
// concurrent use.
type Collector struct {
	client   *Client
	runID    string
	interval time.Duration
	lag      time.Duration
	metrics  []metricQueries
}

// metricQueries is a metric with its queries rendered for both cohorts.
type metricQueries struct {
	Metric
	// queries[c] holds the rendered queries of cohort c, by role, in the
	// order of roles.
	queries [2][]string
	roles   []string
	// hash identifies the metric and its rendered queries in batch ids.
	hash string
}

// roles returns the queries a metric of type t runs, primary first: the
// one whose emptiness means there is no data.
func roles(m *Metric) []string {
	switch m.Type {
	case analysis.TypeRate:
		return []string{"total", "count"}
	case analysis.TypeMean:
		return []string{"count", "sum"}
	}
	if m.Query.Sum != "" {
		return []string{"buckets", "sum"}
	}
	return []string{"buckets"}
}

func (q *Metric) template(role string) string {
	switch role {
	case "count":
		return q.Query.Count
	case "total":
		return q.Query.Total
	case "buckets":
		return q.Query.Buckets
	}
	return q.Query.Sum
}

// NewCollector renders t's queries for both cohorts. It fails on labels
// that do not make a selector (Selector), identical cohort labels, an
// interval outside the source's bounds, and queries that do not fit their
// metric's type (promconfig.Query.Check).
func NewCollector(c *Client, t Target) (*Collector, error) {
	if t.Interval < promconfig.MinInterval || t.Interval > promconfig.MaxInterval || t.Interval%time.Millisecond != 0 {
		return nil, fmt.Errorf("interval %v: must be whole milliseconds from %v to %v", t.Interval, promconfig.MinInterval, promconfig.MaxInterval)
	}
	if t.Lag < 0 {
		return nil, fmt.Errorf("lag %v: must be >= 0", t.Lag)
	}
	var sel [2]string
	for i, ls := range []map[string]string{t.Baseline, t.Canary} {
		s, err := Selector(ls)
		if err != nil {
			return nil, fmt.Errorf("%s_labels: %w", analysis.Cohort(i), err)
		}
		sel[i] = s
	}
	if sel[0] == sel[1] {
		return nil, fmt.Errorf("baseline_labels and canary_labels are the same (%s): the cohorts would read the same series", sel[0])
	}
	rng := model.Duration(t.Interval).String()
	col := &Collector{client: c, runID: t.RunID, interval: t.Interval, lag: t.Lag}
	for _, m := range t.Metrics {
		var errs []string
		m.Query.Check("query", string(m.Type), func(field, format string, args ...any) {
			errs = append(errs, field+": "+fmt.Sprintf(format, args...))
		})
		if len(errs) > 0 {
			return nil, fmt.Errorf("metric %s: %s", m.Name, strings.Join(errs, "; "))
		}
		mq := metricQueries{Metric: m, roles: roles(&m)}
		h := sha256.New()
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00%g\x00", t.RunID, m.Name, m.Type, t.Interval, m.Query.Scale)
		for c := range 2 {
			for _, role := range mq.roles {
				tmpl, err := promconfig.Template(role, m.template(role))
				if err != nil {
					return nil, fmt.Errorf("metric %s: query.%s: %w", m.Name, role, err)
				}
				var b strings.Builder
				if err := tmpl.Execute(&b, promconfig.TemplateData{Selector: sel[c], Range: rng}); err != nil {
					return nil, fmt.Errorf("metric %s: query.%s: %w", m.Name, role, err)
				}
				mq.queries[c] = append(mq.queries[c], b.String())
				fmt.Fprintf(h, "%s\x00%s\x00", role, b.String())
			}
		}
		mq.hash = hex.EncodeToString(h.Sum(nil)[:8])
		col.metrics = append(col.metrics, mq)
	}
	return col, nil
}

// Interval returns the length of the intervals.
func (c *Collector) Interval() time.Duration { return c.interval }

// Lag returns how long after its end an interval is read.
func (c *Collector) Lag() time.Duration { return c.lag }

// Queries returns the rendered queries of a metric for a cohort, by role
// ("count", "total", "buckets", "sum"), for logs and status pages.
func (c *Collector) Queries(metric string, cohort analysis.Cohort) map[string]string {
	for _, m := range c.metrics {
		if m.Name == metric {
			out := map[string]string{}
			for i, role := range m.roles {
				out[role] = m.queries[cohort][i]
			}
			return out
		}
	}
	return nil
}

// align returns the latest grid point at or before t.
func (c *Collector) align(t time.Time) time.Time {
	d := int64(c.interval)
	ns := t.UnixNano()
	k := ns / d
	if ns%d < 0 {
		k--
	}
	return time.Unix(0, k*d).In(t.Location())
}

// FirstEnd returns the end of the first interval that starts at or after
// the run's start.
func (c *Collector) FirstEnd(runStart time.Time) time.Time {
	s := c.align(runStart)
	if s.Before(runStart) {
		s = s.Add(c.interval)
	}
	return s.Add(c.interval)
}

// LatestEnd returns the end of the latest interval that can be read at
// now: the last grid point E with E + lag <= now.
func (c *Collector) LatestEnd(now time.Time) time.Time { return c.align(now.Add(-c.lag)) }

// Result is one interval of one metric: its records, or why they could
// not be read.
type Result struct {
	Metric string
	// Start and End bound the interval (Start, End].
	Start, End time.Time
	// Records are the interval's samples of both cohorts, one per instance
	// (and cohort), in a canonical order; empty when Err is set.
	Records []analysis.Record
	// RunID and BatchID identify the interval's batch: the same run, metric,
	// queries and interval always give the same id.
	RunID, BatchID string
	// Err is an *Error when the interval could not be read; nothing of it
	// should then be ingested (a later read gets the whole interval under
	// the same batch id).
	Err error
}

// Batch returns the batch of a result without error, with one sample per
// record (a histogram in its explicit form); nil when r.Err is set.
func (r *Result) Batch() *canaryv1.Batch {
	if r.Err != nil {
		return nil
	}
	b := &canaryv1.Batch{RunId: r.RunID, BatchId: r.BatchID}
	for i := range r.Records {
		rec := &r.Records[i]
		s := &canaryv1.Sample{Metric: rec.Metric, Cohort: apiconv.CohortToProto(rec.Cohort), Time: timestamppb.New(rec.Time), Instance: rec.Instance}
		switch {
		case rec.IsCount:
			s.Observation = &canaryv1.Sample_Counts{Counts: &canaryv1.Counts{Count: rec.Count, Total: rec.Total}}
		case rec.Histogram != nil:
			s.Observation = &canaryv1.Sample_Histogram{Histogram: apiconv.HistogramToProto(rec.Histogram)}
		default:
			s.Observation = &canaryv1.Sample_Value{Value: rec.Value}
		}
		b.Samples = append(b.Samples, s)
	}
	return b
}

// batchID is the id of the batch of metric m's interval ending at end.
func (c *Collector) batchID(m *metricQueries, end time.Time) string {
	return fmt.Sprintf("prom-%d-%s", end.UnixMilli(), m.hash)
}

// Collect reads the interval ending at end (a grid point: LatestEnd,
// FirstEnd, or one of them plus whole intervals) for every metric, with
// instant queries, and returns one Result per metric, in the target's
// order.
func (c *Collector) Collect(ctx context.Context, end time.Time) []Result {
	out := make([]Result, len(c.metrics))
	for i := range c.metrics {
		out[i] = c.CollectMetric(ctx, i, end)
	}
	return out
}

// Metrics returns the names of the metrics read, in the target's order:
// CollectMetric's indexes.
func (c *Collector) Metrics() []string {
	out := make([]string, len(c.metrics))
	for i := range c.metrics {
		out[i] = c.metrics[i].Name
	}
	return out
}

// QueryCount returns the number of queries one interval of metric i takes
// (both cohorts).
func (c *Collector) QueryCount(i int) int { return 2 * len(c.metrics[i].roles) }

// CollectMetric reads the interval ending at end of metric i (an index of
// Metrics), as Collect does: the puller reads each metric on its own, so
// that one that fails does not hold the others back.
func (c *Collector) CollectMetric(ctx context.Context, i int, end time.Time) Result {
	m := &c.metrics[i]
	out := c.result(m, end)
	var vecs [2][]model.Vector
	for co := range 2 {
		for j, q := range m.queries[co] {
			v, _, err := c.client.Query(ctx, q, end)
			if err == nil {
				var vec model.Vector
				if vec, err = asVector(v); err != nil {
					out.Err = &Error{Kind: ErrBadQuery, Metric: m.Name, Query: m.roles[j], Cohort: analysis.Cohort(co).String(), Err: err}
					return out
				}
				vecs[co] = append(vecs[co], vec)
				continue
			}
			out.Err = c.queryError(ctx, m, j, co, err)
			return out
		}
	}
	out.Records, out.Err = m.records(vecs, out.Start.Add(c.interval/2))
	return out
}

func (c *Collector) result(m *metricQueries, end time.Time) Result {
	return Result{Metric: m.Name, Start: end.Add(-c.interval), End: end, RunID: c.runID, BatchID: c.batchID(m, end)}
}

// queryError wraps the error of query j of cohort co.
func (c *Collector) queryError(ctx context.Context, m *metricQueries, j, co int, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", m.Name, ctx.Err())
	}
	return &Error{Kind: classify(err), Metric: m.Name, Query: m.roles[j], Cohort: analysis.Cohort(co).String(), Err: err}
}

func asVector(v model.Value) (model.Vector, error) {
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("returned a %s, not an instant vector (one series per instance)", v.Type())
	}
	return vec, nil
}

// CollectRange reads every interval that lies within [start, end] — from
// FirstEnd(start) to the last grid point at or before end — for every
// metric, with range queries (step: the interval; at most 10,000 intervals
// per query), and returns the Results by interval, then metric. It is the
// offline form of Collect: the same intervals, records and batch ids.
func (c *Collector) CollectRange(ctx context.Context, start, end time.Time) []Result {
	first, last := c.FirstEnd(start), c.align(end)
	if last.Before(first) {
		return nil
	}
	n := int(last.Sub(first)/c.interval) + 1
	out := make([]Result, 0, n*len(c.metrics))
	for i := 0; i < n; i++ {
		e := first.Add(time.Duration(i) * c.interval)
		for j := range c.metrics {
			out = append(out, c.result(&c.metrics[j], e))
		}
	}
	for chunk := 0; chunk < n; chunk += maxRangePoints {
		steps := min(maxRangePoints, n-chunk)
		r := v1.Range{Start: first.Add(time.Duration(chunk) * c.interval), Step: c.interval}
		r.End = r.Start.Add(time.Duration(steps-1) * c.interval)
		for j := range c.metrics {
			m := &c.metrics[j]
			// vecs[k][co][role] is the vector at step k.
			vecs := make([][2][]model.Vector, steps)
			var err error
			for co := 0; co < 2 && err == nil; co++ {
				for qi, q := range m.queries[co] {
					var v model.Value
					if v, _, err = c.client.QueryRange(ctx, q, r); err != nil {
						err = c.queryError(ctx, m, qi, co, err)
						break
					}
					mat, ok := v.(model.Matrix)
					if !ok {
						err = &Error{Kind: ErrBadQuery, Metric: m.Name, Query: m.roles[qi], Cohort: analysis.Cohort(co).String(), Err: fmt.Errorf("returned a %s, not a range vector", v.Type())}
						break
					}
					for k := range vecs {
						vecs[k][co] = append(vecs[k][co], nil)
					}
					for _, ss := range mat {
						for _, p := range ss.Values {
							if k, ok := stepIndex(r.Start, p.Timestamp.Time(), c.interval, steps); ok {
								vecs[k][co][qi] = append(vecs[k][co][qi], &model.Sample{Metric: ss.Metric, Value: p.Value, Timestamp: p.Timestamp})
							}
						}
						for _, p := range ss.Histograms {
							if k, ok := stepIndex(r.Start, p.Timestamp.Time(), c.interval, steps); ok {
								vecs[k][co][qi] = append(vecs[k][co][qi], &model.Sample{Metric: ss.Metric, Histogram: p.Histogram, Timestamp: p.Timestamp})
							}
						}
					}
				}
			}
			for k := 0; k < steps; k++ {
				res := &out[(chunk+k)*len(c.metrics)+j]
				if err != nil {
					res.Err = err
					continue
				}
				res.Records, res.Err = m.records(vecs[k], res.Start.Add(c.interval/2))
			}
		}
	}
	return out
}

// stepIndex returns the index of the step at t of a range query that
// starts at start with the given step, or false when t is not one.
func stepIndex(start, t time.Time, step time.Duration, n int) (int, bool) {
	d := t.Sub(start)
	if d < 0 || d%step != 0 {
		return 0, false
	}
	k := int(d / step)
	return k, k < n
}
