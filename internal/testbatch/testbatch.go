// Package testbatch makes the synthetic runs of the server's and the
// daemon's tests: a config with a metric of each type and batches of
// lognormal latencies, error counts and order values for it.
package testbatch

import (
	"fmt"
	"math"
	"math/rand/v2"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

func ptr[T any](v T) *T { return &v }

// Config has one metric of each type, sized so that the synthetic data of
// Make pass their gates with a few thousand observations.
func Config(name string) *canaryv1.CanaryConfig {
	return &canaryv1.CanaryConfig{
		Name: name,
		Metrics: []*canaryv1.MetricConfig{
			{
				Name: "latency_ms", Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
				Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION, Critical: ptr(true),
				MinSamples: ptr(uint64(200)), Unit: "ms",
			},
			{
				Name: "errors", Category: canaryv1.MetricCategory_METRIC_CATEGORY_STABILITY,
				Type: canaryv1.MetricType_METRIC_TYPE_RATE, Tolerance: ptr(0.5), MinTotal: ptr(1000.0),
			},
			{
				Name: "order_value", Category: canaryv1.MetricCategory_METRIC_CATEGORY_BUSINESS,
				Type: canaryv1.MetricType_METRIC_TYPE_MEAN, MinSamples: ptr(uint64(100)),
			},
		},
	}
}

// Scenario describes synthetic data: the canary's latency factor and
// error rate factor, and observations per cohort and batch.
type Scenario struct {
	Latency, Errors float64
	N               int
}

// Make returns a batch of synthetic data for both cohorts of Config's
// metrics: per cohort a column of N latencies (lognormal, median 80 ms
// times the factor, log-sd 0.4), an error count of 50,000 requests (0.5%
// times the factor) and N/10 order values (normal, 50 ± 10).
func Make(rng *rand.Rand, runID, batchID string, sc Scenario) *canaryv1.Batch {
	b := &canaryv1.Batch{RunId: runID, BatchId: batchID}
	for _, c := range []canaryv1.Cohort{canaryv1.Cohort_COHORT_BASELINE, canaryv1.Cohort_COHORT_CANARY} {
		lat, errf := 1.0, 1.0
		if c == canaryv1.Cohort_COHORT_CANARY {
			lat, errf = sc.Latency, sc.Errors
		}
		vals := make([]float64, sc.N)
		for i := range vals {
			vals[i] = lat * 80 * math.Exp(0.4*rng.NormFloat64())
		}
		b.Columns = append(b.Columns, &canaryv1.MetricColumn{Metric: "latency_ms", Cohort: c, Values: vals})
		total := 50_000.0
		count := math.Round(total * 0.005 * errf * (1 + 0.05*rng.NormFloat64()))
		b.Samples = append(b.Samples, &canaryv1.Sample{
			Metric: "errors", Cohort: c,
			Observation: &canaryv1.Sample_Counts{Counts: &canaryv1.Counts{Count: count, Total: total}},
		})
		for range sc.N / 10 {
			b.Samples = append(b.Samples, &canaryv1.Sample{
				Metric: "order_value", Cohort: c,
				Observation: &canaryv1.Sample_Value{Value: 50 + 10*rng.NormFloat64()},
			})
		}
	}
	return b
}

// IDs returns n batch ids: prefix-0000, prefix-0001, ...
func IDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return ids
}
