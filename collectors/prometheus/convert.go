package prometheus

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
)

// records converts the vectors of both cohorts (in the order of the
// metric's roles) into records timed at, one per instance and cohort, in
// the order of cohorts, then instances.
func (m *metricQueries) records(vecs [2][]model.Vector, at time.Time) ([]analysis.Record, error) {
	var out []analysis.Record
	for co := range 2 {
		cohort := analysis.Cohort(co)
		if len(vecs[co][0]) == 0 {
			return nil, &Error{Kind: ErrNoData, Metric: m.Name, Query: m.roles[0], Cohort: cohort.String(),
				Err: fmt.Errorf("no series for %s", strings.TrimSpace(m.queries[co][0]))}
		}
		var recs []analysis.Record
		var role string
		var err error
		switch m.Type {
		case analysis.TypeRate:
			recs, role, err = rateRecords(vecs[co][0], vecs[co][1])
		case analysis.TypeMean:
			recs, role, err = meanRecords(vecs[co][0], vecs[co][1], scale(m.Query.Scale))
		default:
			var sums model.Vector
			if len(vecs[co]) > 1 {
				sums = vecs[co][1]
			}
			recs, role, err = distributionRecords(vecs[co][0], sums, scale(m.Query.Scale))
		}
		if err != nil {
			return nil, &Error{Kind: ErrBadQuery, Metric: m.Name, Query: role, Cohort: cohort.String(), Err: err}
		}
		for i := range recs {
			recs[i].Metric, recs[i].Cohort, recs[i].Time = m.Name, cohort, at
		}
		out = append(out, recs...)
	}
	return out, nil
}

func scale(s float64) float64 {
	if s == 0 {
		return 1
	}
	return s
}

// instanceOf is the instance a series belongs to: its instance label.
func instanceOf(m model.Metric) string { return string(m[model.InstanceLabel]) }

// sumByInstance adds up the values of a vector's series per instance.
func sumByInstance(vec model.Vector) (map[string]float64, error) {
	out := make(map[string]float64, len(vec))
	for _, s := range vec {
		if s.Histogram != nil {
			return nil, fmt.Errorf("returned a native histogram for %s, where a number was expected", s.Metric)
		}
		v := float64(s.Value)
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, fmt.Errorf("returned %v for %s: counts and sums of non-negative values are finite and >= 0", v, s.Metric)
		}
		out[instanceOf(s.Metric)] += v
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// rateRecords makes one count record per instance with exposure: events
// rounded to whole numbers, at most the exposure; an instance without an
// event series has none.
func rateRecords(totals, counts model.Vector) ([]analysis.Record, string, error) {
	tot, err := sumByInstance(totals)
	if err != nil {
		return nil, "total", err
	}
	cnt, err := sumByInstance(counts)
	if err != nil {
		return nil, "count", err
	}
	for inst := range cnt {
		if _, ok := tot[inst]; !ok {
			return nil, "count", fmt.Errorf("has instance %q, which the total query lacks: events without an exposure", inst)
		}
	}
	var out []analysis.Record
	for _, inst := range sortedKeys(tot) {
		total, count := tot[inst], math.Round(cnt[inst])
		if count > total {
			count = math.Floor(total)
		}
		if total == 0 {
			continue // an idle instance adds nothing
		}
		out = append(out, analysis.Record{IsCount: true, Count: count, Total: total, Instance: inst})
	}
	return out, "", nil
}

// meanRecords makes one observation per instance with observations: the
// instance's mean over the interval, scaled.
func meanRecords(counts, sums model.Vector, scale float64) ([]analysis.Record, string, error) {
	cnt, err := sumByInstance(counts)
	if err != nil {
		return nil, "count", err
	}
	sum, err := sumByInstance(sums)
	if err != nil {
		return nil, "sum", err
	}
	var out []analysis.Record
	for _, inst := range sortedKeys(cnt) {
		n := cnt[inst]
		if n < 0.5 {
			continue // no observation in the interval
		}
		s, ok := sum[inst]
		if !ok {
			return nil, "sum", fmt.Errorf("lacks instance %q, which has %v observations", inst, n)
		}
		out = append(out, analysis.Record{Value: s * scale / n, Instance: inst})
	}
	return out, "", nil
}

// cumulative is a histogram being assembled: cumulative counts by bound.
type cumulative struct {
	counts map[float64]float64
	sum    *float64
}

// distributionRecords makes one histogram record per instance with
// observations, from classic (series by le) or native histograms.
func distributionRecords(buckets, sums model.Vector, scale float64) ([]analysis.Record, string, error) {
	hists := map[string]*cumulative{}
	get := func(inst string) *cumulative {
		h := hists[inst]
		if h == nil {
			h = &cumulative{counts: map[float64]float64{}}
			hists[inst] = h
		}
		return h
	}
	native := map[string]bool{}
	for _, s := range buckets {
		inst := instanceOf(s.Metric)
		if s.Histogram != nil {
			if native[inst] || hists[inst] != nil {
				return nil, "buckets", fmt.Errorf("returned several histograms for instance %q: aggregate by instance", inst)
			}
			native[inst] = true
			h := get(inst)
			if err := addNative(h, s.Histogram); err != nil {
				return nil, "buckets", fmt.Errorf("instance %q: %w", inst, err)
			}
			continue
		}
		if native[inst] {
			return nil, "buckets", fmt.Errorf("returned both native and classic histograms for instance %q", inst)
		}
		le, ok := s.Metric[model.BucketLabel]
		if !ok {
			return nil, "buckets", fmt.Errorf("returned %s without an le label: bucket series are aggregated by (le, instance)", s.Metric)
		}
		bound, err := parseLe(string(le))
		if err != nil {
			return nil, "buckets", fmt.Errorf("%s: %w", s.Metric, err)
		}
		v := float64(s.Value)
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, "buckets", fmt.Errorf("returned %v for %s: bucket counts are finite and >= 0", v, s.Metric)
		}
		get(inst).counts[bound] += v
	}
	if sums != nil {
		sum, err := sumByInstance(sums)
		if err != nil {
			return nil, "sum", err
		}
		for inst, s := range sum {
			if h := hists[inst]; h != nil {
				s := s
				h.sum = &s
			}
		}
	}
	var out []analysis.Record
	for _, inst := range sortedKeys(hists) {
		h, err := hists[inst].histogram(scale)
		if err != nil {
			return nil, "buckets", fmt.Errorf("instance %q: %w", inst, err)
		}
		if h == nil {
			continue // no observation in the interval
		}
		out = append(out, analysis.Record{Histogram: h, Instance: inst})
	}
	return out, "", nil
}

func parseLe(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("le=%q is not a number", s)
	}
	return v, nil
}

// addNative adds a native histogram's buckets, as the API gives them
// (lower, upper, count; the zero bucket spanning 0), to h as cumulative
// counts: each bucket adds its upper bound, and a gap before a bucket adds
// its lower bound, so that the explicit buckets stay as tight as the
// native ones.
func addNative(h *cumulative, sh *model.SampleHistogram) error {
	bs := append(model.HistogramBuckets(nil), sh.Buckets...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].Upper < bs[j].Upper })
	covered, total := 0.0, 0.0
	for _, b := range bs {
		lo, hi, n := float64(b.Lower), float64(b.Upper), float64(b.Count)
		switch {
		case n == 0:
			continue
		case math.IsNaN(n) || n < 0:
			return fmt.Errorf("bucket %v holds %v observations", b, n)
		case hi < 0 || (hi == 0 && lo < 0 && b.Boundaries != 0 && b.Boundaries != 3):
			return fmt.Errorf("bucket %v holds %v negative observations: a distribution metric's values are >= 0", b, n)
		}
		if lo > covered {
			h.counts[lo] = total // an empty gap
		}
		total += n
		h.counts[max(hi, 0)] = total
		covered = max(covered, hi)
	}
	if h.sum == nil && !math.IsNaN(float64(sh.Sum)) {
		s := max(0, float64(sh.Sum))
		h.sum = &s
	}
	return nil
}

// histogram returns the analysis form of h, scaled; nil when it holds no
// observation. Cumulative counts are made non-decreasing in le and
// rounded to whole numbers.
func (h *cumulative) histogram(scale float64) (*analysis.Histogram, error) {
	les := sortedBounds(h.counts)
	cum := make([]float64, len(les))
	run := 0.0
	for k, le := range les {
		run = max(run, h.counts[le])
		cum[k] = math.Round(run)
	}
	if len(cum) == 0 || cum[len(cum)-1] == 0 {
		return nil, nil
	}
	for k := range les {
		les[k] *= scale
	}
	var sum *float64
	if h.sum != nil {
		s := max(0, *h.sum*scale)
		sum = &s
	}
	return apiconv.HistogramFromBuckets(les, cum, sum)
}

func sortedBounds(m map[float64]float64) []float64 {
	out := make([]float64, 0, len(m))
	for b := range m {
		out = append(out, b)
	}
	sort.Float64s(out)
	return out
}
