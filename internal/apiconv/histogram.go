package apiconv

import (
	"fmt"
	"math"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Histogram bounds the conversions accept beyond analysis' own.
const (
	// MinSchema and MaxSchema bound ExponentialBuckets.schema:
	// OpenTelemetry's scale goes from -10 to 20, Prometheus' schema from -4
	// to 8.
	MinSchema = -10
	MaxSchema = 20
	// MaxExponentialBuckets bounds the buckets the spans of ExponentialBuckets
	// cover. Beyond analysis.MaxBuckets once converted, the conversion
	// lowers the schema (merging neighbouring buckets) until they fit.
	MaxExponentialBuckets = 8 * analysis.MaxBuckets
	// maxHistogramErrors bounds the field errors one histogram reports.
	maxHistogramErrors = 10
)

// zeroOnlyBound is the upper bound of the one bucket of a histogram whose
// observations are all 0 and that has no bucket above 0 to hold them
// (analysis.Histogram bounds are > 0): the bucket [0, 5e-324].
const zeroOnlyBound = math.SmallestNonzeroFloat64

// HistogramFromProto converts an API histogram into the form the judge
// folds: per-bucket counts over strictly increasing upper bounds > 0.
//
// Explicit buckets are differenced (cumulative → per bucket); the
// observations at or below a bound <= 0 are zeros and join the first
// bucket above 0 (analysis' first bucket starts at 0). Exponential buckets
// get explicit bounds: bucket i of schema s has upper bound 2^(i·2^−s);
// the zero bucket becomes the bucket [0, zero_threshold] (with a zero
// threshold of 0, its observations join the first bucket above 0); empty
// buckets are left out and the gaps they leave become one empty bucket
// each, so the bounds stay tight around the observations. When that makes
// more than analysis.MaxBuckets buckets, the schema is lowered (pairs of
// neighbouring buckets merged) until they fit.
//
// Malformed input is an analysis.FieldErrors (at most 10) whose fields are
// relative to the histogram: "explicit.upper_bounds[3]",
// "explicit.cumulative_counts[2]", "exponential.schema",
// "exponential.positive_counts[5]", "sum", or "buckets" when neither form is
// set. A histogram it returns passes analysis.Data.Check for a distribution
// metric.
func HistogramFromProto(ph *canaryv1.Histogram) (*analysis.Histogram, error) {
	var errs fieldErrs
	var h *analysis.Histogram
	switch b := ph.GetBuckets().(type) {
	case *canaryv1.Histogram_Explicit:
		h = explicitHistogram(b.Explicit.GetUpperBounds(), b.Explicit.GetCumulativeCounts(), protoNames, &errs)
	case *canaryv1.Histogram_Exponential:
		h = exponentialHistogram(b.Exponential, &errs)
	default:
		errs.add("buckets", "is required: explicit or exponential buckets")
	}
	if ph.Sum != nil {
		checkSum(ph.GetSum(), "sum", h, &errs)
	}
	if len(errs) > 0 {
		return nil, analysis.FieldErrors(errs)
	}
	return h, nil
}

// HistogramFromBuckets converts the cumulative buckets of a Prometheus
// classic histogram — bucket k holds the cumulative[k] observations <=
// les[k], the `le` label — and its sum (nil when unknown) as
// HistogramFromProto converts explicit buckets. Its field errors name the
// buckets as JSON Lines records and the Prometheus collector spell them:
// "buckets[2].le", "buckets[2].count", "sum".
func HistogramFromBuckets(les, cumulative []float64, sum *float64) (*analysis.Histogram, error) {
	var errs fieldErrs
	h := explicitHistogram(les, cumulative, leNames, &errs)
	if sum != nil {
		checkSum(*sum, "sum", h, &errs)
	}
	if len(errs) > 0 {
		return nil, analysis.FieldErrors(errs)
	}
	return h, nil
}

// HistogramToProto returns the explicit API form of a histogram: its
// bounds with cumulative counts, and its sum when it has one. Converting
// it back with HistogramFromProto gives h again.
func HistogramToProto(h *analysis.Histogram) *canaryv1.Histogram {
	cum := make([]float64, len(h.Counts))
	total := 0.0
	for i, c := range h.Counts {
		total += c
		cum[i] = total
	}
	ph := &canaryv1.Histogram{Buckets: &canaryv1.Histogram_Explicit{Explicit: &canaryv1.ExplicitBuckets{
		UpperBounds:      append([]float64(nil), h.Bounds...),
		CumulativeCounts: cum,
	}}}
	if h.HasSum {
		ph.Sum = ptr(h.Sum)
	}
	return ph
}

// fieldErrs collects the field errors of one histogram, up to
// maxHistogramErrors.
type fieldErrs analysis.FieldErrors

func (es *fieldErrs) add(field, format string, args ...any) {
	if len(*es) < maxHistogramErrors {
		*es = append(*es, &analysis.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
}

// explicitNames names the fields of explicit buckets in errors.
type explicitNames struct {
	// bounds and counts name the lists; bound and count one entry.
	bounds, counts string
	bound, count   func(k int) string
}

var (
	protoNames = explicitNames{
		bounds: "explicit.upper_bounds",
		counts: "explicit.cumulative_counts",
		bound:  func(k int) string { return fmt.Sprintf("explicit.upper_bounds[%d]", k) },
		count:  func(k int) string { return fmt.Sprintf("explicit.cumulative_counts[%d]", k) },
	}
	leNames = explicitNames{
		bounds: "buckets",
		counts: "buckets",
		bound:  func(k int) string { return fmt.Sprintf("buckets[%d].le", k) },
		count:  func(k int) string { return fmt.Sprintf("buckets[%d].count", k) },
	}
)

// wholeCount reports whether c is a count analysis accepts.
func wholeCount(c float64) bool {
	return c >= 0 && c <= analysis.MaxValue && c == math.Trunc(c)
}

// explicitHistogram converts cumulative buckets; nil after an error.
func explicitHistogram(bounds, cum []float64, n explicitNames, errs *fieldErrs) *analysis.Histogram {
	switch {
	case len(bounds) == 0:
		errs.add(n.bounds, "at least one bucket is required")
		return nil
	case len(bounds) > analysis.MaxBuckets:
		errs.add(n.bounds, "%d buckets, more than %d", len(bounds), analysis.MaxBuckets)
		return nil
	case len(cum) != len(bounds):
		errs.add(n.counts, "has %d entries, %s has %d: they must pair up", len(cum), n.bounds, len(bounds))
		return nil
	}
	before := len(*errs)
	prevB, prevC := math.Inf(-1), 0.0
	for k, b := range bounds {
		switch {
		case math.IsNaN(b) || math.IsInf(b, -1) || (b > analysis.MaxValue && !math.IsInf(b, 1)):
			errs.add(n.bound(k), "must be a number up to %g, or +Inf (got %v)", analysis.MaxValue, b)
		case math.IsInf(b, 1) && k != len(bounds)-1:
			errs.add(n.bound(k), "+Inf must be the last bound")
		case !(b > prevB):
			errs.add(n.bound(k), "must be greater than %s (%v): bounds increase strictly", n.bound(k-1), prevB)
		default:
			prevB = b
		}
		switch c := cum[k]; {
		case !wholeCount(c):
			errs.add(n.count(k), "must be a whole number from 0 to %g (got %v)", analysis.MaxValue, c)
		case c < prevC:
			errs.add(n.count(k), "%v is less than the count of a lower bound (%v): counts are cumulative and never decrease", c, prevC)
		case b < 0 && c > 0:
			errs.add(n.count(k), "%v observations <= %v: a distribution metric's values are >= 0", c, b)
		default:
			prevC = c
		}
	}
	if len(*errs) > before {
		return nil
	}
	h := &analysis.Histogram{}
	below := 0.0 // observations <= the previous bound > 0
	for k, b := range bounds {
		if b <= 0 { // zeros: they join the first bucket above 0, [0, b]
			continue
		}
		h.Bounds = append(h.Bounds, b)
		h.Counts = append(h.Counts, cum[k]-below)
		below = cum[k]
	}
	if len(h.Bounds) == 0 { // every bound <= 0: only zeros
		h.Bounds, h.Counts = []float64{zeroOnlyBound}, []float64{cum[len(cum)-1]}
	}
	return h
}

// exponentialBound returns 2^(i·2^−schema), the upper bound of bucket i.
func exponentialBound(i int64, schema int32) float64 {
	return math.Exp2(float64(i) * math.Exp2(-float64(schema)))
}

// exponentialHistogram converts exponential buckets; nil after an error.
func exponentialHistogram(e *canaryv1.ExponentialBuckets, errs *fieldErrs) *analysis.Histogram {
	before := len(*errs)
	schema := e.GetSchema()
	if schema < MinSchema || schema > MaxSchema {
		errs.add("exponential.schema", "must be from %d to %d (got %d)", MinSchema, MaxSchema, schema)
	}
	zt, zc := e.GetZeroThreshold(), e.GetZeroCount()
	if !(zt >= 0 && zt <= analysis.MaxValue) {
		errs.add("exponential.zero_threshold", "must be a number from 0 to %g (got %v)", analysis.MaxValue, zt)
	}
	if !wholeCount(zc) {
		errs.add("exponential.zero_count", "must be a whole number from 0 to %g (got %v)", analysis.MaxValue, zc)
	}
	pos, neg := e.GetPositiveCounts(), e.GetNegativeCounts()
	checkSpans("exponential.positive_spans", e.GetPositiveSpans(), "exponential.positive_counts", len(pos), errs)
	checkSpans("exponential.negative_spans", e.GetNegativeSpans(), "exponential.negative_counts", len(neg), errs)
	for k, c := range neg {
		if c != 0 {
			errs.add(fmt.Sprintf("exponential.negative_counts[%d]", k), "%v observations below 0: a distribution metric's values are >= 0", c)
		}
	}
	total := zc
	for k, c := range pos {
		if !wholeCount(c) {
			errs.add(fmt.Sprintf("exponential.positive_counts[%d]", k), "must be a whole number from 0 to %g (got %v)", analysis.MaxValue, c)
		}
		total += c
	}
	if total > analysis.MaxValue {
		errs.add("exponential.positive_counts", "hold %g observations, more than %g", total, analysis.MaxValue)
	}
	if len(*errs) > before {
		return nil
	}

	// The buckets that hold observations, in increasing order.
	var full []expBucket
	k := 0
	var idx int64
	for si, sp := range e.GetPositiveSpans() {
		if si == 0 {
			idx = int64(sp.GetOffset())
		} else {
			idx += int64(sp.GetOffset())
		}
		for j := int64(0); j < int64(sp.GetLength()); j, k = j+1, k+1 {
			if pos[k] != 0 {
				full = append(full, expBucket{index: idx + j, count: pos[k], k: k})
			}
		}
		idx += int64(sp.GetLength())
	}
	for {
		h, n, err := explicitBounds(full, schema, zt, zc)
		switch {
		case err != nil:
			errs.add(err.Field, "%s", err.Msg)
			return nil
		case n <= analysis.MaxBuckets:
			return h
		case schema == MinSchema:
			errs.add("exponential.positive_counts", "%d buckets once the gaps between them are filled, more than %d even at schema %d", n, analysis.MaxBuckets, schema)
			return nil
		}
		full, schema = reduceResolution(full), schema-1
	}
}

// expBucket is a bucket of an exponential histogram that holds
// observations: its index, its count, and its place k in positive_counts.
type expBucket struct {
	index int64
	count float64
	k     int
}

// reduceResolution returns the buckets of schema s as buckets of schema
// s − 1, whose bucket j is the union of buckets 2j − 1 and 2j of schema s
// (as Prometheus' FloatHistogram.ReduceResolution merges them): exact, only
// coarser.
func reduceResolution(full []expBucket) []expBucket {
	out := full[:0]
	for _, b := range full {
		b.index = (b.index + 1) >> 1 // ⌈index/2⌉, also below 0
		if n := len(out); n > 0 && out[n-1].index == b.index {
			out[n-1].count += b.count
			continue
		}
		out = append(out, b)
	}
	return out
}

// explicitBounds turns the buckets that hold observations, with the zero
// bucket [0, zt] of zc observations, into explicit bounds: each bucket
// (base^(i−1), base^i], and one empty bucket for each gap between them. n
// is the number of buckets; h is nil when n > analysis.MaxBuckets.
func explicitBounds(full []expBucket, schema int32, zt, zc float64) (h *analysis.Histogram, n int, err *analysis.FieldError) {
	var bounds, counts []float64
	add := func(b, c float64) {
		if n++; n <= analysis.MaxBuckets {
			bounds, counts = append(bounds, b), append(counts, c)
		}
	}
	covered := 0.0 // the buckets so far cover [0, covered]
	zeros := zc    // observations of 0 not yet in a bucket
	if zt > 0 {
		add(zt, zc)
		covered, zeros = zt, 0
	}
	for _, b := range full {
		lo, hi := exponentialBound(b.index-1, schema), exponentialBound(b.index, schema)
		field := fmt.Sprintf("exponential.positive_counts[%d]", b.k)
		switch {
		case !(hi <= analysis.MaxValue):
			return nil, n, &analysis.FieldError{Field: field, Msg: fmt.Sprintf("bucket %d of schema %d, (%g, %g], lies beyond %g", b.index, schema, lo, hi, analysis.MaxValue)}
		case hi <= covered:
			return nil, n, &analysis.FieldError{Field: field, Msg: fmt.Sprintf("bucket %d of schema %d, (%g, %g], lies within the zero bucket [0, %g] (or below the smallest positive number)", b.index, schema, lo, hi, covered)}
		}
		if lo > covered { // an empty gap (it holds the zeros, if any)
			add(lo, zeros)
			zeros = 0
		}
		add(hi, b.count+zeros)
		covered, zeros = hi, 0
	}
	if n == 0 { // zero threshold 0 and no positive bucket: only zeros
		add(zeroOnlyBound, zeros)
	}
	if n > analysis.MaxBuckets {
		return nil, n, nil
	}
	return &analysis.Histogram{Bounds: bounds, Counts: counts}, n, nil
}

// checkSpans checks that spans are well formed and cover n buckets.
func checkSpans(field string, spans []*canaryv1.BucketSpan, countsField string, n int, errs *fieldErrs) {
	var buckets int64
	for i, sp := range spans {
		if i > 0 && sp.GetOffset() < 0 {
			errs.add(fmt.Sprintf("%s[%d].offset", field, i), "must be >= 0 after the first span: spans do not overlap and increase (got %d)", sp.GetOffset())
		}
		buckets += int64(sp.GetLength())
	}
	switch {
	case buckets > MaxExponentialBuckets:
		errs.add(field, "cover %d buckets, more than %d", buckets, MaxExponentialBuckets)
	case buckets != int64(n):
		errs.add(countsField, "has %d entries, the spans cover %d buckets: they must pair up", n, buckets)
	}
}

// checkSum checks the sum of a histogram's observations.
func checkSum(sum float64, field string, h *analysis.Histogram, errs *fieldErrs) {
	if !(sum >= 0 && sum <= analysis.MaxValue*analysis.MaxValue) {
		errs.add(field, "must be a finite number >= 0: the sum of observations >= 0 (got %v)", sum)
		return
	}
	if h != nil {
		h.Sum, h.HasSum = sum, true
	}
}
