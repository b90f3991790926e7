package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// The helpers of this package's tests, which run the whole process (Run)
// on loopback ports: the handlers' own suite is in package server.

// testTimeout bounds every test's calls.
const testTimeout = 60 * time.Second

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func ptr[T any](v T) *T { return &v }

// exampleYAML is a config as an operator writes it.
const exampleYAML = `# the checkout config
name: checkout
metrics:
  - name: latency_ms
    category: performance
    type: distribution
  - name: errors
    category: stability
    type: rate
`

// testConfig has one metric of each type.
func testConfig(name string) *canaryv1.CanaryConfig {
	return &canaryv1.CanaryConfig{
		Name: name,
		Metrics: []*canaryv1.MetricConfig{
			{
				Name: "latency_ms", Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
				Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION, Critical: ptr(true), MinSamples: ptr(uint64(200)), Unit: "ms",
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

// scenario describes synthetic data: the canary's latency factor and error
// rate factor, and observations per cohort and batch.
type scenario struct {
	latency, errors float64
	n               int
}

// makeBatch returns a batch of synthetic data for both cohorts of
// testConfig's metrics.
func makeBatch(rng *rand.Rand, runID, batchID string, sc scenario) *canaryv1.Batch {
	b := &canaryv1.Batch{RunId: runID, BatchId: batchID}
	for _, c := range []canaryv1.Cohort{canaryv1.Cohort_COHORT_BASELINE, canaryv1.Cohort_COHORT_CANARY} {
		lat, errf := 1.0, 1.0
		if c == canaryv1.Cohort_COHORT_CANARY {
			lat, errf = sc.latency, sc.errors
		}
		vals := make([]float64, sc.n)
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
		for range sc.n / 10 {
			b.Samples = append(b.Samples, &canaryv1.Sample{
				Metric: "order_value", Cohort: c,
				Observation: &canaryv1.Sample_Value{Value: 50 + 10*rng.NormFloat64()},
			})
		}
	}
	return b
}

func seqIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return ids
}

// wantCode checks err's code and, when field is set, that a BadRequest
// field violation names it.
func wantCode(t testing.TB, err error, code codes.Code, field string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a status", err)
	}
	if st.Code() != code {
		t.Fatalf("code = %v (%s), want %v", st.Code(), st.Message(), code)
	}
	if field == "" {
		return
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return
				}
			}
		}
	}
	t.Fatalf("no field violation names %q (message %q)", field, st.Message())
}

func contains(xs []string, x string) bool { return slices.Contains(xs, x) }

func sha(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// startRun serves Run with opts on free loopback ports (and a store in a
// temporary directory unless opts names one) until the test ends, and
// returns the gRPC and HTTP addresses.
func startRun(t testing.TB, opts Options) (grpcAddr, httpAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	errc := make(chan error, 1)
	opts.GRPCAddr, opts.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	if opts.Store == "" {
		opts.Store = filepath.Join(t.TempDir(), "canaryd.db")
	}
	opts.Ready = func(g, h string) { ready <- [2]string{g, h} }
	go func() { errc <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("run did not stop")
		}
	})
	select {
	case a := <-ready:
		return a[0], a[1]
	case err := <-errc:
		t.Fatalf("run: %v", err)
	case <-time.After(testTimeout):
		t.Fatal("not ready in time")
	}
	return "", ""
}
