package apiconv

import (
	"errors"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// exampleConfig is the config of examples/canary.yaml: every type of
// metric, every optional field given.
func exampleConfig(t testing.TB) *analysis.Config {
	t.Helper()
	src, err := os.ReadFile("../../examples/canary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := analysis.ParseConfig(src)
	if err != nil {
		t.Fatalf("examples/canary.yaml: %v", err)
	}
	return cfg
}

// sparseConfig leaves out every optional field.
func sparseConfig() *canaryv1.CanaryConfig {
	return &canaryv1.CanaryConfig{
		Name: "sparse",
		Metrics: []*canaryv1.MetricConfig{
			{Name: "latency_ms", Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE, Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION},
			{Name: "errors", Category: canaryv1.MetricCategory_METRIC_CATEGORY_STABILITY, Type: canaryv1.MetricType_METRIC_TYPE_RATE},
			{Name: "order_value", Category: canaryv1.MetricCategory_METRIC_CATEGORY_BUSINESS, Type: canaryv1.MetricType_METRIC_TYPE_MEAN},
		},
	}
}

const sparseYAML = `
name: sparse
metrics:
  - {name: latency_ms, category: performance, type: distribution}
  - {name: errors, category: stability, type: rate}
  - {name: order_value, category: business, type: mean}
`

// TestConfigRoundTrip: the API form of a parsed config converts back to
// the same config, and is a fixed point of the two conversions (so that
// re-putting a stored config is idempotent).
func TestConfigRoundTrip(t *testing.T) {
	t.Parallel()
	cfg := exampleConfig(t)
	pc := ConfigToProto(cfg)
	got, err := ConfigFromProto(pc)
	if err != nil {
		t.Fatalf("resolved config rejected: %v\n%v", err, pc)
	}
	if !reflect.DeepEqual(got, cfg) {
		t.Errorf("round trip changed the config:\ngot  %+v\nwant %+v", got, cfg)
	}
	if pc2 := ConfigToProto(got); !proto.Equal(pc, pc2) {
		t.Errorf("not a fixed point:\n%v\n%v", pc, pc2)
	}
}

// TestConfigFromProtoDefaults: a proto config and a YAML config that leave
// out the same fields get the same defaults.
func TestConfigFromProtoDefaults(t *testing.T) {
	t.Parallel()
	want, err := analysis.ParseConfig([]byte(sparseYAML))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ConfigFromProto(sparseConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestConfigFromProtoErrors: every problem is a field error naming the
// field, those of Normalize with those of the conversion.
func TestConfigFromProtoErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*canaryv1.CanaryConfig)
		// want maps each field that must be reported to a part of its
		// message.
		want map[string]string
	}{
		{"explicit zero confidence", func(c *canaryv1.CanaryConfig) { c.Confidence = ptr(0.0) },
			map[string]string{"confidence": "got 0"}},
		{"explicit zero power", func(c *canaryv1.CanaryConfig) { c.Power = ptr(0.0) },
			map[string]string{"power": "got 0"}},
		{"invalid warmup", func(c *canaryv1.CanaryConfig) { c.Warmup = &durationpb.Duration{Seconds: 1, Nanos: -1} },
			map[string]string{"warmup": "valid duration"}},
		{"invalid window", func(c *canaryv1.CanaryConfig) { c.Window = &durationpb.Duration{Seconds: 1, Nanos: -1} },
			map[string]string{"window": "valid duration"}},
		{"window too short", func(c *canaryv1.CanaryConfig) { c.Window = durationpb.New(time.Millisecond) },
			map[string]string{"window": "at least 1s"}},
		{"NaN tolerance", func(c *canaryv1.CanaryConfig) { c.Metrics[0].Tolerance = ptr(math.NaN()) },
			map[string]string{"metrics[0].tolerance": "NaN"}},
		{"min_samples 1", func(c *canaryv1.CanaryConfig) { c.Metrics[0].MinSamples = ptr(uint64(1)) },
			map[string]string{"metrics[0].min_samples": ">= 2"}},
		{"min_samples too large", func(c *canaryv1.CanaryConfig) { c.Metrics[2].MinSamples = ptr(uint64(math.MaxInt32 + 1)) },
			map[string]string{"metrics[2].min_samples": "at most"}},
		{"NaN min_total", func(c *canaryv1.CanaryConfig) { c.Metrics[1].MinTotal = ptr(math.NaN()) },
			map[string]string{"metrics[1].min_total": "NaN"}},
		{"explicit zero detectable_effect", func(c *canaryv1.CanaryConfig) { c.Metrics[1].DetectableEffect = ptr(0.0) },
			map[string]string{"metrics[1].detectable_effect": "> 0"}},
		{"unknown category", func(c *canaryv1.CanaryConfig) { c.Metrics[0].Category = 7 },
			map[string]string{"metrics[0].category": `"category 7"`}},
		{"unspecified type", func(c *canaryv1.CanaryConfig) { c.Metrics[2].Type = canaryv1.MetricType_METRIC_TYPE_UNSPECIFIED },
			map[string]string{"metrics[2].type": "required"}},
		{"ours and Normalize's together", func(c *canaryv1.CanaryConfig) { c.Name, c.Power = "", ptr(0.0) },
			map[string]string{"name": "must be", "power": "got 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pc := sparseConfig()
			tt.edit(pc)
			cfg, err := ConfigFromProto(pc)
			var fes analysis.FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("got %v, %v; want field errors", cfg, err)
			}
			got := map[string]string{}
			for _, fe := range fes {
				got[fe.Field] = fe.Msg
			}
			if len(got) != len(tt.want) {
				t.Errorf("fields %v, want those of %v", got, tt.want)
			}
			for field, part := range tt.want {
				if msg, ok := got[field]; !ok || !strings.Contains(msg, part) {
					t.Errorf("%s: got %q, want a message with %q (all: %v)", field, msg, part, err)
				}
			}
		})
	}
}

// FuzzConfigFromProto: any config either is rejected with field errors or
// normalizes to a fixed point of ConfigToProto/ConfigFromProto.
func FuzzConfigFromProto(f *testing.F) {
	for _, pc := range []*canaryv1.CanaryConfig{sparseConfig(), ConfigToProto(exampleConfig(f))} {
		raw, err := proto.Marshal(pc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		pc := new(canaryv1.CanaryConfig)
		if proto.Unmarshal(raw, pc) != nil {
			return
		}
		cfg, err := ConfigFromProto(pc)
		if err != nil {
			var fes analysis.FieldErrors
			if !errors.As(err, &fes) || len(fes) == 0 {
				t.Fatalf("not a field error: %v", err)
			}
			return
		}
		p1 := ConfigToProto(cfg)
		cfg2, err := ConfigFromProto(p1)
		if err != nil {
			t.Fatalf("normalized config rejected: %v\n%v", err, p1)
		}
		if p2 := ConfigToProto(cfg2); !proto.Equal(p1, p2) {
			t.Fatalf("not a fixed point:\n%v\n%v", p1, p2)
		}
	})
}
