package server

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// checkID returns what is wrong with a required id, or "".
func checkID(id string) string {
	switch {
	case id == "":
		return "is required"
	case len(id) > maxIDLen:
		return fmt.Sprintf("is %d bytes, more than %d", len(id), maxIDLen)
	}
	return ""
}

// validator checks the samples and columns of one batch against a config.
type validator struct {
	cfg     *analysis.Config
	metrics map[string]int
	check   *analysis.Data // for Check, which adds nothing
	at      time.Time      // receive time, for samples without one
	vs      []*errdetails.BadRequest_FieldViolation
	// Samples must be timed in [from, until]: the run's start and the
	// present, widened by the clock-skew allowance.
	from, until time.Time
	start       time.Time // the run's start, for the warm-up
}

func (v *validator) bad(field, format string, args ...any) {
	if len(v.vs) < maxViolations {
		v.vs = append(v.vs, violation(field, format, args...))
	}
}

func (v *validator) full() bool { return len(v.vs) >= maxViolations }

// when returns the time of an observation: its own, or the receive time;
// a time outside [from, until] is reported.
func (v *validator) when(ts *timestamppb.Timestamp, field string) (time.Time, bool) {
	if ts == nil {
		return v.at, true
	}
	if err := ts.CheckValid(); err != nil {
		v.bad(field, "must be a valid timestamp: %v", err)
		return time.Time{}, false
	}
	t := ts.AsTime()
	switch {
	case t.Before(v.from):
		v.bad(field, "is %s, before the run's start %s less the clock-skew allowance of %s (a skewed clock?)",
			t.Format(time.RFC3339), v.start.Format(time.RFC3339), v.until.Sub(v.at))
		return t, false
	case t.After(v.until):
		v.bad(field, "is %s, later than the server's clock %s plus the clock-skew allowance of %s (a skewed clock?)",
			t.Format(time.RFC3339), v.at.Format(time.RFC3339), v.until.Sub(v.at))
		return t, false
	}
	return t, true
}

// metric resolves a metric and cohort, reporting unknown ones.
func (v *validator) metric(path, name string, pc canaryv1.Cohort) (int, analysis.Cohort, bool) {
	i, ok := v.metrics[name]
	if !ok {
		if name == "" {
			v.bad(path+".metric", "is required")
		} else {
			v.bad(path+".metric", "%s is not a metric of config %q", quoteShort(name), v.cfg.Name)
		}
	}
	c, cok := apiconv.CohortFromProto(pc)
	if !cok {
		v.bad(path+".cohort", "must be COHORT_BASELINE or COHORT_CANARY (got %v)", pc)
	}
	return i, c, ok && cok
}

func (v *validator) batch(pb *canaryv1.Batch) {
	for i, smp := range pb.GetSamples() {
		if v.full() {
			return
		}
		v.sample(fmt.Sprintf("batch.samples[%d]", i), smp)
	}
	for j, col := range pb.GetColumns() {
		if v.full() {
			return
		}
		v.column(fmt.Sprintf("batch.columns[%d]", j), col)
	}
}

// record returns the analysis record of a sample.
func sampleRecord(smp *canaryv1.Sample, c analysis.Cohort, t time.Time) (analysis.Record, error) {
	r := analysis.Record{Metric: smp.GetMetric(), Cohort: c, Time: t, Instance: smp.GetInstance()}
	switch o := smp.GetObservation().(type) {
	case *canaryv1.Sample_Value:
		r.Value = o.Value
	case *canaryv1.Sample_Counts:
		r.IsCount, r.Count, r.Total = true, o.Counts.GetCount(), o.Counts.GetTotal()
	case *canaryv1.Sample_Histogram:
		h, err := apiconv.HistogramFromProto(o.Histogram)
		if err != nil {
			return r, err
		}
		r.Histogram = h
	}
	return r, nil
}

// histogramSize is what a histogram counts toward the batch limit: its
// buckets.
func histogramSize(h *canaryv1.Histogram) int {
	if h == nil {
		return 0
	}
	if e := h.GetExplicit(); e != nil {
		return len(e.GetUpperBounds())
	}
	return len(h.GetExponential().GetPositiveCounts()) + len(h.GetExponential().GetNegativeCounts())
}

// observations returns how many observations a record carries.
func observations(r *analysis.Record) uint64 {
	if r.Histogram == nil {
		return 1
	}
	n := 0.0
	for _, c := range r.Histogram.Counts {
		n += c
	}
	return uint64(n)
}

// histogramErrors reports the errors of a histogram's conversion under
// prefix.
func (v *validator) histogramErrors(err error, prefix string) {
	var fes analysis.FieldErrors
	if errors.As(err, &fes) {
		for _, fe := range fes {
			v.bad(prefix+"."+fe.Field, "%s", fe.Msg)
		}
		return
	}
	v.bad(prefix, "%v", err)
}

func (v *validator) sample(path string, smp *canaryv1.Sample) {
	i, c, ok := v.metric(path, smp.GetMetric(), smp.GetCohort())
	t, tok := v.when(smp.GetTime(), path+".time")
	if !ok || !tok {
		return
	}
	if smp.GetObservation() == nil {
		v.bad(path+".value", "is required: a value, counts for a rate metric, or a histogram")
		return
	}
	r, err := sampleRecord(smp, c, t)
	if err != nil {
		v.histogramErrors(err, path+".histogram")
		return
	}
	if err := v.check.Check(&r); err != nil {
		v.recordError(err, path, func(field string) string {
			switch field {
			case "count", "total":
				if v.cfg.Metrics[i].Type != analysis.TypeRate {
					return path + ".counts"
				}
				return path + ".counts." + field
			}
			return path + "." + field
		})
		return
	}
}

// recordError reports an error of analysis.Data.Check under the API path
// that field maps to.
func (v *validator) recordError(err error, path string, field func(string) string) {
	var fe *analysis.FieldError
	if errors.As(err, &fe) {
		v.bad(field(fe.Field), "%s", fe.Msg)
		return
	}
	v.bad(path, "%v", err)
}

func (v *validator) column(path string, col *canaryv1.MetricColumn) {
	i, c, ok := v.metric(path, col.GetMetric(), col.GetCohort())
	t, tok := v.when(col.GetTime(), path+".time")
	if !ok || !tok {
		return
	}
	if err := analysis.CheckInstance(col.GetInstance()); err != nil {
		v.recordError(err, path, func(field string) string { return path + "." + field })
		return
	}
	m := &v.cfg.Metrics[i]
	vals, counts, totals, hists := col.GetValues(), col.GetCounts(), col.GetTotals(), col.GetHistograms()
	if len(hists) > 0 {
		if len(vals)+len(counts)+len(totals) > 0 {
			v.bad(path+".histograms", "a column carries values, counts and totals, or histograms: not several")
			return
		}
		for k, ph := range hists {
			hp := fmt.Sprintf("%s.histograms[%d]", path, k)
			h, err := apiconv.HistogramFromProto(ph)
			if err != nil {
				v.histogramErrors(err, hp)
			} else if err := v.check.Check(&analysis.Record{Metric: m.Name, Cohort: c, Time: t, Histogram: h}); err != nil {
				v.recordError(err, hp, func(string) string { return hp })
			}
			if v.full() {
				return
			}
		}
		return
	}
	if m.Type == analysis.TypeRate {
		switch {
		case len(vals) > 0:
			v.bad(path+".values", "metric %q is a rate: send counts and totals, not values", m.Name)
			return
		case len(counts) != len(totals):
			v.bad(path+".totals", "has %d entries, counts has %d: they must pair up", len(totals), len(counts))
			return
		}
		for k := range counts {
			r := analysis.Record{Metric: m.Name, Cohort: c, IsCount: true, Count: counts[k], Total: totals[k], Time: t}
			if err := v.check.Check(&r); err != nil {
				v.recordError(err, path, func(field string) string {
					if field == "total" {
						return fmt.Sprintf("%s.totals[%d]", path, k)
					}
					return fmt.Sprintf("%s.counts[%d]", path, k)
				})
				if v.full() {
					return
				}
			}
		}
	} else {
		if len(counts) > 0 || len(totals) > 0 {
			v.bad(path+".counts", "metric %q is a %s metric: send values, not counts and totals", m.Name, m.Type)
			return
		}
		v.values(path, m.Name, c, t, vals)
	}
}

// values checks a column of values. Check decides what is valid; to keep
// 10,000-value columns cheap it is asked about the extremes only (besides
// a scan for NaN and ±Inf), and about every value only when one of those
// fails, to name the first offending ones.
func (v *validator) values(path, metric string, c analysis.Cohort, t time.Time, vals []float64) {
	if len(vals) == 0 {
		return
	}
	lo, hi := vals[0], vals[0]
	finite := true
	for _, x := range vals {
		if x-x != 0 { // NaN or ±Inf
			finite = false
			break
		}
		lo, hi = min(lo, x), max(hi, x)
	}
	r := analysis.Record{Metric: metric, Cohort: c, Time: t}
	ok := func(x float64) bool {
		r.Value = x
		return v.check.Check(&r) == nil
	}
	if finite && ok(lo) && ok(hi) {
		return
	}
	for k, x := range vals {
		r.Value = x
		if err := v.check.Check(&r); err != nil {
			v.recordError(err, path, func(string) string { return fmt.Sprintf("%s.values[%d]", path, k) })
			if v.full() {
				return
			}
		}
	}
}

// fold builds the delta of a validated batch, with the cohorts' warm-up
// starting at the run's start.
func (v *validator) fold(pb *canaryv1.Batch) (*analysis.Data, [2]uint64, error) {
	var n [2]uint64
	d := analysis.NewData(v.cfg)
	d.SetStart(analysis.Baseline, v.start)
	d.SetStart(analysis.Canary, v.start)
	for _, smp := range pb.GetSamples() {
		c, _ := apiconv.CohortFromProto(smp.GetCohort())
		t := v.at
		if smp.GetTime() != nil {
			t = smp.GetTime().AsTime()
		}
		r, err := sampleRecord(smp, c, t)
		if err != nil {
			return nil, n, err
		}
		if err := d.Add(&r); err != nil {
			return nil, n, err
		}
		n[c] += observations(&r)
	}
	for _, col := range pb.GetColumns() {
		i := v.metrics[col.GetMetric()]
		c, _ := apiconv.CohortFromProto(col.GetCohort())
		t := v.at
		if col.GetTime() != nil {
			t = col.GetTime().AsTime()
		}
		if hists := col.GetHistograms(); len(hists) > 0 {
			for _, ph := range hists {
				h, err := apiconv.HistogramFromProto(ph)
				if err != nil {
					return nil, n, err
				}
				r := analysis.Record{Metric: col.GetMetric(), Cohort: c, Time: t, Instance: col.GetInstance(), Histogram: h}
				if err := d.Add(&r); err != nil {
					return nil, n, err
				}
				n[c] += observations(&r)
			}
			continue
		}
		if counts, totals := col.GetCounts(), col.GetTotals(); len(counts) > 0 {
			for k := range counts {
				r := analysis.Record{Metric: col.GetMetric(), Cohort: c, IsCount: true, Count: counts[k], Total: totals[k], Time: t, Instance: col.GetInstance()}
				if err := d.Add(&r); err != nil {
					return nil, n, err
				}
			}
			n[c] += uint64(len(counts))
			continue
		}
		vals := col.GetValues()
		n[c] += uint64(len(vals))
		if err := d.AddValues(i, c, col.GetInstance(), t, vals); err != nil {
			return nil, n, err
		}
	}
	return d, n, nil
}
