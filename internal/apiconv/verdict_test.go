package apiconv

import (
	"math"
	"reflect"
	"testing"

	"github.com/canaryd/canaryd/analysis"
)

// testVerdict has a metric of each type, whose summaries hold the
// statistics of the type, and effects and gates with ±Inf in them. Between
// them, the metrics set every field of the verdict types (see
// TestVerdictFixtureCoversEveryField).
func testVerdict() *analysis.Verdict {
	inf := analysis.Float(math.Inf(1))
	return &analysis.Verdict{
		Decision:   analysis.Rollback,
		Reason:     "latency_ms regressed",
		Deciding:   []string{"latency_ms"},
		Config:     "checkout-api",
		Confidence: 0.99,
		Metrics: []analysis.MetricResult{
			{
				Name: "latency_ms", Category: analysis.Performance, Type: analysis.TypeDistribution,
				BadDirection: analysis.Increase, Tolerance: 0.1, Critical: true, Outcome: analysis.OutcomeRegression,
				Baseline: analysis.Summary{N: 1200, Median: 81.5, P99: 240, Mean: 90.25, Warmup: 40, Instances: 9, NonZero: 1},
				Canary:   analysis.Summary{N: 1180, Median: 95, P99: 310, Mean: 104.5, Warmup: 38, NonZero: 0.98},
				Effect:   analysis.Effect{Estimate: 1.17, Lower: 1.12, Upper: inf, ConfLevel: 0.99, Kind: analysis.KindGeoMeanRatio},
				Effects: []analysis.Effect{
					{Estimate: 1.17, Lower: 1.12, Upper: inf, ConfLevel: 0.99, Kind: analysis.KindGeoMeanRatio},
					{Estimate: 1.2, Lower: 1.1, Upper: 1.3, ConfLevel: 0.99, Kind: analysis.KindMeanRatio},
				},
				Superiority: 0.62, PromoteP: 1,
				P: 1e-9, AdjustedP: 3e-9, Test: "stratified contrasts",
				Gate:   analysis.Gate{Ready: true, FloorMet: true, EvidenceMet: true, Unit: "samples"},
				Reason: "17% slower",
			},
			{
				Name: "errors", Category: analysis.Stability, Type: analysis.TypeRate,
				BadDirection: analysis.Both, Tolerance: 0.2, Outcome: analysis.OutcomeHold,
				Baseline: analysis.Summary{Total: 50000, Warmup: 3},
				Canary:   analysis.Summary{Count: 4, Total: 48000, Rate: 4.0 / 48000},
				Effect:   analysis.Effect{Estimate: inf, Lower: 0.8, Upper: inf, ConfLevel: 0.99},
				P:        0.2, AdjustedP: 0.6, PromoteP: 0.5, Test: "exact-rate-ratio",
				Gate:   analysis.Gate{FloorMet: true, NeedBaseline: inf, NeedCanary: inf, Unit: "requests"},
				Reason: "no baseline events",
			},
			{
				Name: "order_value", Category: analysis.Business, Type: analysis.TypeMean,
				BadDirection: analysis.Decrease, Outcome: analysis.OutcomePass,
				Baseline: analysis.Summary{N: 500, Mean: 42.5, SD: 12.25},
				Canary:   analysis.Summary{N: 480, Mean: 41.75, SD: 11.5, Warmup: 7},
				Effect:   analysis.Effect{Estimate: 0.98, Lower: -inf, Upper: 1.05, ConfLevel: 0.95},
				P:        1, AdjustedP: 1, Test: "welch-t",
				Gate:   analysis.Gate{NeedBaseline: 120, NeedCanary: 80.5, Unit: "orders"},
				Reason: "within tolerance",
			},
		},
	}
}

// TestVerdictRoundTrip: a verdict comes back from its API form unchanged,
// ±Inf included.
func TestVerdictRoundTrip(t *testing.T) {
	t.Parallel()
	want := testVerdict()
	got := VerdictFromProto(VerdictToProto(want))
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("round trip changed the verdict:\ngot  %+v\nwant %+v", got, *want)
	}
}

// TestVerdictFixtureCoversEveryField: a field added to the verdict types
// must be set in testVerdict, so that TestVerdictRoundTrip fails until the
// conversions carry it.
func TestVerdictFixtureCoversEveryField(t *testing.T) {
	t.Parallel()
	set := map[string]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				name := v.Type().Name() + "." + v.Type().Field(i).Name
				set[name] = set[name] || !v.Field(i).IsZero()
				walk(v.Field(i))
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		}
	}
	walk(reflect.ValueOf(*testVerdict()))
	for name, ok := range set {
		if !ok {
			t.Errorf("no metric of testVerdict sets %s", name)
		}
	}
}

// TestVerdictToProtoLeavesOut: what the API form does not carry comes
// back as documented: an effect that was not estimated as NaN with no
// confidence level, statistics that were not computed or do not apply to
// the type as zero, an absent gate as the zero Gate.
func TestVerdictToProtoLeavesOut(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	in := analysis.MetricResult{
		Name: "latency_ms", Category: analysis.Performance, Type: analysis.TypeDistribution,
		Outcome:  analysis.OutcomeNoData,
		Baseline: analysis.Summary{Median: nan, P99: nan, Mean: nan, SD: 3, Rate: 1},
		Canary:   analysis.Summary{N: 10, Median: nan, P99: 5, Mean: 4},
		Effect:   analysis.Effect{Estimate: analysis.Float(nan), Lower: analysis.Float(nan), Upper: analysis.Float(nan), ConfLevel: 0.99},
	}
	pm := MetricResultToProto(&in)
	if pm.GetEffect() != nil {
		t.Errorf("effect of NaN: got %v, want none", pm.GetEffect())
	}
	pm.Gate = nil
	got := MetricResultFromProto(pm)
	if e := got.Effect; !math.IsNaN(float64(e.Estimate)) || !math.IsNaN(float64(e.Lower)) || !math.IsNaN(float64(e.Upper)) || e.ConfLevel != 0 {
		t.Errorf("effect: got %+v, want NaN and no confidence level", e)
	}
	if want := (analysis.Summary{}); got.Baseline != want {
		t.Errorf("baseline: got %+v, want %+v", got.Baseline, want)
	}
	if want := (analysis.Summary{N: 10, P99: 5, Mean: 4}); got.Canary != want {
		t.Errorf("canary: got %+v, want %+v", got.Canary, want)
	}
	if got.Gate != (analysis.Gate{}) {
		t.Errorf("gate: got %+v, want zero", got.Gate)
	}
}
