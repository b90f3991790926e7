package canaryv1_test

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestBatchRoundTrip checks that a batch mixing records and columns survives
// proto.Marshal and proto.Unmarshal unchanged.
func TestBatchRoundTrip(t *testing.T) {
	t.Parallel()
	at := timestamppb.New(time.Date(2026, 11, 22, 10, 0, 5, 0, time.UTC))
	in := &canaryv1.Batch{
		RunId:   "run-1",
		BatchId: "b-000001",
		Samples: []*canaryv1.Sample{
			{
				Metric:      "latency_ms",
				Cohort:      canaryv1.Cohort_COHORT_CANARY,
				Observation: &canaryv1.Sample_Value{Value: 87.5},
				Time:        at,
				Instance:    "pod-7",
			},
			{
				Metric:      "errors",
				Cohort:      canaryv1.Cohort_COHORT_BASELINE,
				Observation: &canaryv1.Sample_Counts{Counts: &canaryv1.Counts{Count: 3, Total: 1000}},
			},
			{
				Metric: "latency_ms",
				Cohort: canaryv1.Cohort_COHORT_CANARY,
				Observation: &canaryv1.Sample_Histogram{Histogram: &canaryv1.Histogram{
					Buckets: &canaryv1.Histogram_Explicit{Explicit: &canaryv1.ExplicitBuckets{
						UpperBounds: []float64{25, 50, math.Inf(1)}, CumulativeCounts: []float64{310, 402, 410},
					}},
					Sum: proto.Float64(12345.6),
				}},
				Instance: "pod-a",
			},
		},
		Columns: []*canaryv1.MetricColumn{
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Values: []float64{1, 2.5, math.MaxFloat64, 0}},
			{Metric: "errors", Cohort: canaryv1.Cohort_COHORT_CANARY, Counts: []float64{0, 1}, Totals: []float64{100, 200}, Time: at},
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Histograms: []*canaryv1.Histogram{
				{Buckets: &canaryv1.Histogram_Exponential{Exponential: &canaryv1.ExponentialBuckets{
					Schema: -2, ZeroThreshold: 1e-3, ZeroCount: 2,
					PositiveSpans:  []*canaryv1.BucketSpan{{Offset: -3, Length: 2}, {Offset: 4, Length: 1}},
					PositiveCounts: []float64{1, 0, 7},
				}}},
			}},
		},
	}
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	out := new(canaryv1.Batch)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if !proto.Equal(in, out) {
		t.Errorf("round trip changed the batch:\n in: %v\nout: %v", in, out)
	}
	if got := out.GetSamples()[1].GetCounts().GetTotal(); got != 1000 {
		t.Errorf("samples[1].counts.total = %v, want 1000", got)
	}
}

// TestColumnEncodingSize checks the compact form's promise: 10,000
// observations in one column encode in about 80 KB (8 bytes a value, packed),
// and decode to the same values.
func TestColumnEncodingSize(t *testing.T) {
	t.Parallel()
	const n = 10_000
	values := make([]float64, n)
	for i := range values {
		values[i] = 50 + float64(i%997)*0.125 // deterministic, non-trivial mantissas
	}
	in := &canaryv1.Batch{
		RunId:   "01JD5Z8W3K9X2M4N6P8Q0R2S4T",
		BatchId: "000000000042",
		Columns: []*canaryv1.MetricColumn{{
			Metric:   "latency_ms",
			Cohort:   canaryv1.Cohort_COHORT_CANARY,
			Values:   values,
			Instance: "checkout-api-canary-0",
		}},
	}
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	// Payload 8n bytes; everything else (ids, names, tags, lengths) is small.
	const payload, maxOverhead = 8 * n, 128
	if len(b) < payload || len(b) > payload+maxOverhead {
		t.Errorf("batch of %d values encodes in %d bytes, want %d..%d", n, len(b), payload, payload+maxOverhead)
	}
	t.Logf("batch of %d values: %d bytes (%.2f bytes/value)", n, len(b), float64(len(b))/n)

	out := new(canaryv1.Batch)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	got := out.GetColumns()[0].GetValues()
	if len(got) != n {
		t.Fatalf("decoded %d values, want %d", len(got), n)
	}
	for i := range got {
		if got[i] != values[i] {
			t.Fatalf("values[%d] = %v, want %v", i, got[i], values[i])
		}
	}
}

// BenchmarkColumnUnmarshal measures decoding a batch of one 10,000-value
// column, the unit of the ingest stream.
func BenchmarkColumnUnmarshal(b *testing.B) {
	values := make([]float64, 10_000)
	for i := range values {
		values[i] = float64(i) * 0.5
	}
	buf, err := proto.Marshal(&canaryv1.Batch{
		RunId: "run", BatchId: "1",
		Columns: []*canaryv1.MetricColumn{{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Values: values}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var out canaryv1.Batch
		if err := proto.Unmarshal(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}
