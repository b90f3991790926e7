package apiconv

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

func explicitProto(bounds, cum []float64, sum *float64) *canaryv1.Histogram {
	return &canaryv1.Histogram{
		Buckets: &canaryv1.Histogram_Explicit{Explicit: &canaryv1.ExplicitBuckets{UpperBounds: bounds, CumulativeCounts: cum}},
		Sum:     sum,
	}
}

func exponentialProto(e *canaryv1.ExponentialBuckets) *canaryv1.Histogram {
	return &canaryv1.Histogram{Buckets: &canaryv1.Histogram_Exponential{Exponential: e}}
}

func spans(s ...int32) []*canaryv1.BucketSpan {
	var out []*canaryv1.BucketSpan
	for i := 0; i < len(s); i += 2 {
		out = append(out, &canaryv1.BucketSpan{Offset: s[i], Length: uint32(s[i+1])})
	}
	return out
}

// distData returns Data of a config with one distribution metric, to
// check converted histograms the way the service does.
func distData(t testing.TB) *analysis.Data {
	t.Helper()
	cfg, err := analysis.ParseConfig([]byte("name: h\nmetrics:\n  - {name: latency_ms, category: performance, type: distribution}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return analysis.NewData(cfg)
}

func TestHistogramFromProto(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	sum := 12345.6
	for _, tc := range []struct {
		name string
		in   *canaryv1.Histogram
		want analysis.Histogram
	}{
		{"the issue's example", explicitProto([]float64{25, 50, inf}, []float64{310, 402, 410}, &sum),
			analysis.Histogram{Bounds: []float64{25, 50, inf}, Counts: []float64{310, 92, 8}, Sum: sum, HasSum: true}},
		{"no +Inf", explicitProto([]float64{0.1, 0.2}, []float64{0, 7}, nil),
			analysis.Histogram{Bounds: []float64{0.1, 0.2}, Counts: []float64{0, 7}}},
		{"zeros and an empty negative bucket join the first bucket", explicitProto([]float64{-1, 0, 0.5, inf}, []float64{0, 3, 10, 12}, nil),
			analysis.Histogram{Bounds: []float64{0.5, inf}, Counts: []float64{10, 2}}},
		{"only zeros", explicitProto([]float64{0}, []float64{4}, nil),
			analysis.Histogram{Bounds: []float64{zeroOnlyBound}, Counts: []float64{4}}},
		{"one span, no zero bucket", exponentialProto(&canaryv1.ExponentialBuckets{Schema: 0, PositiveSpans: spans(0, 3), PositiveCounts: []float64{1, 2, 3}}),
			// (0.5, 1], (1, 2], (2, 4], and the empty [0, 0.5] below them.
			analysis.Histogram{Bounds: []float64{0.5, 1, 2, 4}, Counts: []float64{0, 1, 2, 3}}},
		{"zero bucket and a gap to the first bucket", exponentialProto(&canaryv1.ExponentialBuckets{Schema: 0, ZeroThreshold: 0.25, ZeroCount: 5, PositiveSpans: spans(0, 3), PositiveCounts: []float64{1, 2, 3}}),
			analysis.Histogram{Bounds: []float64{0.25, 0.5, 1, 2, 4}, Counts: []float64{5, 0, 1, 2, 3}}},
		{"zeros without a zero threshold join the first bucket", exponentialProto(&canaryv1.ExponentialBuckets{Schema: 0, ZeroCount: 3, PositiveSpans: spans(0, 1), PositiveCounts: []float64{4}}),
			analysis.Histogram{Bounds: []float64{0.5, 1}, Counts: []float64{3, 4}}},
		{"two spans: the gap is one empty bucket", exponentialProto(&canaryv1.ExponentialBuckets{Schema: 0, PositiveSpans: spans(0, 1, 2, 1), PositiveCounts: []float64{4, 5}}),
			// Buckets 0, (0.5, 1], and 3, (4, 8].
			analysis.Histogram{Bounds: []float64{0.5, 1, 4, 8}, Counts: []float64{0, 4, 0, 5}}},
		{"empty buckets inside a span are left out", exponentialProto(&canaryv1.ExponentialBuckets{Schema: -1, PositiveSpans: spans(-1, 4), PositiveCounts: []float64{2, 0, 0, 1}}),
			// base 4: buckets -1 (1/16, 1/4] and 2 (4, 16].
			analysis.Histogram{Bounds: []float64{1. / 16, 1. / 4, 4, 16}, Counts: []float64{0, 2, 0, 1}}},
		{"schema 2, a zero threshold inside the first bucket", exponentialProto(&canaryv1.ExponentialBuckets{Schema: 2, ZeroThreshold: 1.1, ZeroCount: 1, PositiveSpans: spans(1, 2), PositiveCounts: []float64{6, 7}}),
			analysis.Histogram{Bounds: []float64{1.1, math.Pow(2, 0.25), math.Pow(2, 0.5)}, Counts: []float64{1, 6, 7}}},
		{"only zeros, exponential", exponentialProto(&canaryv1.ExponentialBuckets{Schema: 3, ZeroCount: 9}),
			analysis.Histogram{Bounds: []float64{zeroOnlyBound}, Counts: []float64{9}}},
		{"negative buckets with no observations", exponentialProto(&canaryv1.ExponentialBuckets{Schema: 0, ZeroThreshold: 1, ZeroCount: 2, NegativeSpans: spans(3, 2), NegativeCounts: []float64{0, 0}}),
			analysis.Histogram{Bounds: []float64{1}, Counts: []float64{2}}},
	} {
		got, err := HistogramFromProto(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(got.Bounds) != len(tc.want.Bounds) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
			continue
		}
		for i := range got.Bounds {
			if math.Abs(got.Bounds[i]-tc.want.Bounds[i]) > 1e-15*tc.want.Bounds[i] && got.Bounds[i] != tc.want.Bounds[i] {
				t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
			}
		}
		if !reflect.DeepEqual(got.Counts, tc.want.Counts) || got.Sum != tc.want.Sum || got.HasSum != tc.want.HasSum {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
		r := analysis.Record{Metric: "latency_ms", Cohort: analysis.Canary, Histogram: got}
		if err := distData(t).Check(&r); err != nil {
			t.Errorf("%s: analysis rejects the conversion %+v: %v", tc.name, got, err)
		}
	}
}

func TestHistogramFromProtoErrors(t *testing.T) {
	t.Parallel()
	inf, nan := math.Inf(1), math.NaN()
	neg, big := -1.0, math.Inf(1)
	many := make([]float64, analysis.MaxBuckets+1)
	for i := range many {
		many[i] = float64(i + 1)
	}
	for _, tc := range []struct {
		name      string
		in        *canaryv1.Histogram
		field     string
		substring string
	}{
		{"no buckets", &canaryv1.Histogram{}, "buckets", "is required"},
		{"no bounds", explicitProto(nil, nil, nil), "explicit.upper_bounds", "at least one"},
		{"too many bounds", explicitProto(many, many, nil), "explicit.upper_bounds", "more than 1024"},
		{"lengths differ", explicitProto([]float64{1, 2}, []float64{1}, nil), "explicit.cumulative_counts", "pair up"},
		{"decreasing bounds", explicitProto([]float64{1, 3, 2, inf}, []float64{1, 2, 3, 4}, nil), "explicit.upper_bounds[2]", "increase strictly"},
		{"repeated bound", explicitProto([]float64{1, 1}, []float64{1, 2}, nil), "explicit.upper_bounds[1]", "increase strictly"},
		{"+Inf not last", explicitProto([]float64{1, inf, 5}, []float64{1, 2, 3}, nil), "explicit.upper_bounds[1]", "+Inf must be the last"},
		{"NaN bound", explicitProto([]float64{nan}, []float64{1}, nil), "explicit.upper_bounds[0]", "must be a number"},
		{"-Inf bound", explicitProto([]float64{math.Inf(-1), 1}, []float64{0, 1}, nil), "explicit.upper_bounds[0]", "must be a number"},
		{"bound beyond 1e15", explicitProto([]float64{2e15}, []float64{1}, nil), "explicit.upper_bounds[0]", "up to 1e+15"},
		{"decreasing counts", explicitProto([]float64{1, 2, inf}, []float64{5, 4, 6}, nil), "explicit.cumulative_counts[1]", "cumulative and never decrease"},
		{"fractional count", explicitProto([]float64{1, inf}, []float64{0.5, 1}, nil), "explicit.cumulative_counts[0]", "whole number"},
		{"negative count", explicitProto([]float64{1}, []float64{-1}, nil), "explicit.cumulative_counts[0]", "whole number"},
		{"observations below 0", explicitProto([]float64{-0.5, 1}, []float64{2, 3}, nil), "explicit.cumulative_counts[0]", ">= 0"},
		{"negative sum", explicitProto([]float64{1}, []float64{1}, &neg), "sum", ">= 0"},
		{"infinite sum", explicitProto([]float64{1}, []float64{1}, &big), "sum", "finite"},
		{"schema beyond 20", exponentialProto(&canaryv1.ExponentialBuckets{Schema: 21}), "exponential.schema", "from -10 to 20"},
		{"schema below -10", exponentialProto(&canaryv1.ExponentialBuckets{Schema: -11}), "exponential.schema", "from -10 to 20"},
		{"negative zero threshold", exponentialProto(&canaryv1.ExponentialBuckets{ZeroThreshold: -1}), "exponential.zero_threshold", "from 0"},
		{"fractional zero count", exponentialProto(&canaryv1.ExponentialBuckets{ZeroCount: 1.5}), "exponential.zero_count", "whole number"},
		{"spans and counts differ", exponentialProto(&canaryv1.ExponentialBuckets{PositiveSpans: spans(0, 3), PositiveCounts: []float64{1, 2}}), "exponential.positive_counts", "pair up"},
		{"spans too long", exponentialProto(&canaryv1.ExponentialBuckets{PositiveSpans: spans(0, 9000)}), "exponential.positive_spans", "more than 8192"},
		{"overlapping spans", exponentialProto(&canaryv1.ExponentialBuckets{PositiveSpans: spans(0, 1, -2, 1), PositiveCounts: []float64{1, 1}}), "exponential.positive_spans[1].offset", ">= 0"},
		{"negative observations", exponentialProto(&canaryv1.ExponentialBuckets{NegativeSpans: spans(0, 2), NegativeCounts: []float64{0, 3}}), "exponential.negative_counts[1]", "below 0"},
		{"fractional bucket count", exponentialProto(&canaryv1.ExponentialBuckets{PositiveSpans: spans(0, 2), PositiveCounts: []float64{1, 0.25}}), "exponential.positive_counts[1]", "whole number"},
		{"bucket beyond 1e15", exponentialProto(&canaryv1.ExponentialBuckets{PositiveSpans: spans(60, 1), PositiveCounts: []float64{1}}), "exponential.positive_counts[0]", "beyond"},
		{"bucket inside the zero bucket", exponentialProto(&canaryv1.ExponentialBuckets{ZeroThreshold: 4, PositiveSpans: spans(1, 1), PositiveCounts: []float64{1}}), "exponential.positive_counts[0]", "within the zero bucket"},
		{"bucket below the smallest float", exponentialProto(&canaryv1.ExponentialBuckets{PositiveSpans: spans(-2000, 1), PositiveCounts: []float64{1}}), "exponential.positive_counts[0]", "within the zero bucket"},
	} {
		_, err := HistogramFromProto(tc.in)
		var fes analysis.FieldErrors
		if !errors.As(err, &fes) || len(fes) == 0 {
			t.Errorf("%s: error %v, want FieldErrors", tc.name, err)
			continue
		}
		if fes[0].Field != tc.field || !strings.Contains(fes[0].Msg, tc.substring) {
			t.Errorf("%s: first error %q: %q, want %q: …%s…", tc.name, fes[0].Field, fes[0].Msg, tc.field, tc.substring)
		}
	}
}

func TestHistogramFromBucketsNamesLe(t *testing.T) {
	t.Parallel()
	_, err := HistogramFromBuckets([]float64{25, 50, math.Inf(1)}, []float64{310, 300, 410}, nil)
	if err == nil || err.Error() != "buckets[1].count: 300 is less than the count of a lower bound (310): counts are cumulative and never decrease" {
		t.Errorf("error %v", err)
	}
	_, err = HistogramFromBuckets([]float64{50, 25}, []float64{1, 2}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "buckets[1].le: must be greater than buckets[0].le (50)") {
		t.Errorf("error %v", err)
	}
}

// TestExponentialReducesResolution checks that a histogram of more
// buckets than analysis takes is converted at a lower schema, exactly.
func TestExponentialReducesResolution(t *testing.T) {
	t.Parallel()
	counts := make([]float64, 3000)
	for i := range counts {
		counts[i] = float64(i%7 + 1)
	}
	// Schema 8: 3,000 buckets from index -1000; at schema 6 they are 750.
	h, err := HistogramFromProto(exponentialProto(&canaryv1.ExponentialBuckets{
		Schema: 8, ZeroThreshold: 0.001, ZeroCount: 4, PositiveSpans: spans(-1000, 3000), PositiveCounts: counts,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Bounds) > analysis.MaxBuckets || len(h.Bounds) < 700 {
		t.Fatalf("%d buckets", len(h.Bounds))
	}
	if got, want := total(h.Counts), total(counts)+4; got != want {
		t.Errorf("%v observations, want %v", got, want)
	}
	// The bounds are those of schema 6: 2^(j/64), from ⌈-1000/4⌉ - 1.
	if want := math.Exp2(-251.0 / 64); math.Abs(h.Bounds[1]/want-1) > 1e-12 {
		t.Errorf("first bound above the zero bucket %v, want 2^(-251/64) = %v", h.Bounds[1], want)
	}
	for k := 2; k < len(h.Bounds); k++ {
		if r := math.Log2(h.Bounds[k]/h.Bounds[k-1]) * 64; math.Abs(r-1) > 1e-9 {
			t.Fatalf("bounds %v and %v are not neighbours at schema 6", h.Bounds[k-1], h.Bounds[k])
		}
	}
	if err := distData(t).Check(&analysis.Record{Metric: "latency_ms", Histogram: h}); err != nil {
		t.Error(err)
	}
}

// TestHistogramRoundTrip checks HistogramToProto against HistogramFromProto.
func TestHistogramRoundTrip(t *testing.T) {
	t.Parallel()
	for _, h := range []*analysis.Histogram{
		{Bounds: []float64{25, 50, math.Inf(1)}, Counts: []float64{310, 92, 8}, Sum: 12345.6, HasSum: true},
		{Bounds: []float64{0.005, 0.01}, Counts: []float64{0, 0}},
	} {
		got, err := HistogramFromProto(HistogramToProto(h))
		if err != nil || !reflect.DeepEqual(got, h) {
			t.Errorf("round trip of %+v: %+v, %v", h, got, err)
		}
	}
}

// TestExponentialMatchesClientGolang observes values into client_golang's
// native histogram (Prometheus' own bucketing), copies its buckets into
// ExponentialBuckets (undoing the delta encoding), and checks that every
// bucket of the conversion holds exactly the observations that lie in it.
func TestExponentialMatchesClientGolang(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		factor, zeroThreshold float64
	}{
		{1.1, 0.001},   // schema 3
		{2, 0.0001},    // schema 0
		{1.01, 1e-6},   // schema 6
		{1.1, -1},      // NativeHistogramZeroThresholdZero: exact zeros only
		{1.002, 0.125}, // schema 8, a wide zero bucket
	} {
		rng := rand.New(rand.NewPCG(1, uint64(tc.factor*1000)))
		hist := prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "x", NativeHistogramBucketFactor: tc.factor, NativeHistogramZeroThreshold: tc.zeroThreshold,
		})
		var values []float64
		for i := 0; i < 5000; i++ {
			v := math.Exp(rng.NormFloat64()*2 - 3)
			switch i % 50 {
			case 0:
				v = 0
			case 1:
				v = math.Exp2(float64(rng.IntN(20) - 10)) // exact powers of two: the upper bounds
			}
			values = append(values, v)
			hist.Observe(v)
		}
		var m dto.Metric
		if err := hist.Write(&m); err != nil {
			t.Fatal(err)
		}
		dh := m.GetHistogram()
		e := &canaryv1.ExponentialBuckets{Schema: dh.GetSchema(), ZeroThreshold: dh.GetZeroThreshold(), ZeroCount: float64(dh.GetZeroCount())}
		for _, s := range dh.GetPositiveSpan() {
			e.PositiveSpans = append(e.PositiveSpans, &canaryv1.BucketSpan{Offset: s.GetOffset(), Length: s.GetLength()})
		}
		var abs int64
		for _, d := range dh.GetPositiveDelta() {
			abs += d
			e.PositiveCounts = append(e.PositiveCounts, float64(abs))
		}
		h, err := HistogramFromProto(exponentialProto(e))
		if err != nil {
			t.Fatalf("factor %v: %v", tc.factor, err)
		}
		for k, ub := range h.Bounds {
			lo := 0.0
			if k > 0 {
				lo = h.Bounds[k-1]
			}
			n := 0.0
			for _, v := range values {
				if (v > lo || (k == 0 && v == 0)) && v <= ub {
					n++
				}
			}
			if n != h.Counts[k] {
				t.Errorf("factor %v (schema %d): bucket (%g, %g] holds %v observations, the conversion says %v", tc.factor, e.Schema, lo, ub, n, h.Counts[k])
			}
		}
		if got := total(h.Counts); got != float64(len(values)) {
			t.Errorf("factor %v: %v observations in the conversion, want %d", tc.factor, got, len(values))
		}
	}
}

func total(cs []float64) float64 {
	s := 0.0
	for _, c := range cs {
		s += c
	}
	return s
}

// FuzzHistogramFromProto checks that whatever HistogramFromProto accepts,
// analysis accepts too, and keeps every observation.
func FuzzHistogramFromProto(f *testing.F) {
	f.Add([]byte{0, 3, 1, 10, 2, 20, 3, 30})
	f.Add([]byte{1, 0, 2, 5, 0, 3, 1, 2, 3})
	f.Add([]byte{1, 200, 0, 0, 1, 100, 4, 1, 1, 1, 1})
	d := distData(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 3 {
			return
		}
		var ph *canaryv1.Histogram
		want := 0.0
		if b[0]%2 == 0 {
			var bounds, cum []float64
			for i := 1; i+1 < len(b); i += 2 {
				bounds = append(bounds, float64(int8(b[i]))/4)
				cum = append(cum, float64(b[i+1]))
			}
			if b[len(b)-1]%3 == 0 {
				bounds = append(bounds, math.Inf(1))
				cum = append(cum, 255)
			}
			ph = explicitProto(bounds, cum, nil)
			want = cum[len(cum)-1]
		} else {
			e := &canaryv1.ExponentialBuckets{Schema: int32(int8(b[1])) % 12, ZeroThreshold: float64(b[2]) / 64, ZeroCount: float64(b[2] % 5)}
			want = e.ZeroCount
			rest := b[3:]
			for len(rest) >= 2 {
				sp := &canaryv1.BucketSpan{Offset: int32(int8(rest[0])), Length: uint32(rest[1] % 8)}
				rest = rest[2:]
				e.PositiveSpans = append(e.PositiveSpans, sp)
				for j := uint32(0); j < sp.Length; j++ {
					c := 0.0
					if len(rest) > 0 {
						c = float64(rest[0] % 4)
						rest = rest[1:]
					}
					e.PositiveCounts = append(e.PositiveCounts, c)
					want += c
				}
			}
			ph = exponentialProto(e)
		}
		if len(b) > 4 && b[4]%2 == 1 {
			s := binary.LittleEndian.Uint16(b[3:5])
			ph.Sum = ptr(float64(s))
		}
		h, err := HistogramFromProto(ph)
		if err != nil {
			return
		}
		r := analysis.Record{Metric: "latency_ms", Cohort: analysis.Baseline, Histogram: h}
		if err := d.Check(&r); err != nil {
			t.Fatalf("HistogramFromProto(%v) = %+v, which analysis rejects: %v", ph, h, err)
		}
		if got := total(h.Counts); got != want {
			t.Fatalf("HistogramFromProto(%v) = %+v: %v observations, want %v", ph, h, got, want)
		}
	})
}
