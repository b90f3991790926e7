package analysis

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseConfigExample(t *testing.T) {
	src, err := os.ReadFile("../examples/canary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "checkout-api" || cfg.Warmup != 5*time.Minute || cfg.Confidence != 0.99 || cfg.Power != 0.8 {
		t.Errorf("top level = %+v", cfg)
	}
	if len(cfg.Metrics) != 4 {
		t.Fatalf("%d metrics, want 4", len(cfg.Metrics))
	}
	lat, errs := cfg.Metrics[0], cfg.Metrics[1]
	if lat.Type != TypeDistribution || lat.MinSamples != 200 || !lat.Critical || lat.DetectableEffect != 0.10 {
		t.Errorf("latency = %+v", lat)
	}
	if errs.Type != TypeRate || errs.MinTotal != 2000 || errs.Tolerance != 0.2 || errs.ExposureUnit != "requests" {
		t.Errorf("errors = %+v", errs)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
name: x
metrics:
  - {name: lat, category: performance, type: distribution}
  - {name: conv, category: business, type: rate}
  - {name: err, category: stability, type: rate, tolerance: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Confidence != DefaultConfidence || cfg.Power != DefaultPower || cfg.Warmup != 0 {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	lat, conv, e := cfg.Metrics[0], cfg.Metrics[1], cfg.Metrics[2]
	if lat.BadDirection != Increase || lat.Tolerance != DefaultTolerance || lat.MinSamples != DefaultMinSamples || lat.DetectableEffect != DefaultTolerance {
		t.Errorf("lat defaults: %+v", lat)
	}
	if conv.BadDirection != Decrease || conv.MinTotal != DefaultMinTotal {
		t.Errorf("business metric must default to bad_direction decrease: %+v", conv)
	}
	if e.Tolerance != 0 || e.DetectableEffect != DefaultDetectableEffect {
		t.Errorf("tolerance 0 must be kept and detectable_effect defaulted: %+v", e)
	}
}

func TestParseConfigErrors(t *testing.T) {
	const head = "name: x\nmetrics:\n"
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown top field", "name: x\nconfidance: 0.9\nmetrics: [{name: a, category: stability, type: rate}]", "confidance: unknown field"},
		{"unknown metric field", head + "  - {name: a, category: stability, type: rate, tolerence: 0.1}", "metrics[0].tolerence: unknown field"},
		{"negative tolerance", head + "  - {name: a, category: stability, type: rate}\n  - {name: b, category: stability, type: rate, tolerance: -0.1}", "metrics[1].tolerance: must be >= 0"},
		{"decrease tolerance >= 1", head + "  - {name: a, category: business, type: rate, tolerance: 1}", "metrics[0].tolerance: must be < 1"},
		{"min_samples on rate", head + "  - {name: a, category: stability, type: rate, min_samples: 10}", "metrics[0].min_samples: applies to distribution and mean"},
		{"min_total on distribution", head + "  - {name: a, category: performance, type: distribution, min_total: 10}", "metrics[0].min_total: applies to rate"},
		{"min_samples too small", head + "  - {name: a, category: performance, type: distribution, min_samples: 1}", "metrics[0].min_samples: must be >= 2"},
		{"negative min_samples", head + "  - {name: a, category: performance, type: distribution, min_samples: -5}", "metrics[0].min_samples: must be >= 2"},
		{"bad type", head + "  - {name: a, category: performance, type: histogram}", "metrics[0].type: must be distribution, rate or mean"},
		{"missing type", head + "  - {name: a, category: performance}", "metrics[0].type: is required"},
		{"bad category", head + "  - {name: a, category: perf, type: mean}", "metrics[0].category: must be"},
		{"bad direction", head + "  - {name: a, category: performance, type: mean, bad_direction: up}", "metrics[0].bad_direction: must be"},
		{"duplicate metric", head + "  - {name: a, category: stability, type: rate}\n  - {name: a, category: stability, type: rate}", "metrics[1].name: \"a\" is also the name of metrics[0]"},
		{"no metrics", "name: x\n", "metrics: at least one metric"},
		{"bad name", "name: 'a b'\nmetrics: [{name: a, category: stability, type: rate}]", "name: must be"},
		{"confidence out of range", "name: x\nconfidence: 1\nmetrics: [{name: a, category: stability, type: rate}]", "confidence: must be in [0.5, 1)"},
		{"power as string", "name: x\npower: high\nmetrics: [{name: a, category: stability, type: rate}]", "power: must be a finite number"},
		{"nan tolerance", head + "  - {name: a, category: stability, type: rate, tolerance: .nan}", "metrics[0].tolerance: must be a finite number"},
		{"bad warmup", "name: x\nwarmup: 5 minutes\nmetrics: [{name: a, category: stability, type: rate}]", "warmup: must be a duration"},
		{"negative warmup", "name: x\nwarmup: -5m\nmetrics: [{name: a, category: stability, type: rate}]", "warmup: must be >= 0"},
		{"critical not bool", head + "  - {name: a, category: stability, type: rate, critical: yes please}", "metrics[0].critical: must be true or false"},
		{"metrics not a list", "name: x\nmetrics: {a: 1}", "metrics: must be a list"},
		{"exposure_unit on mean", head + "  - {name: a, category: business, type: mean, exposure_unit: orders}", "metrics[0].exposure_unit: applies to rate"},
		{"not yaml", "name: [", "parse config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	if src, err := os.ReadFile("../examples/canary.yaml"); err == nil {
		f.Add(src)
	}
	f.Add([]byte("name: x\nmetrics: [{name: a, category: stability, type: rate}]"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := ParseConfig(src)
		if err != nil {
			return
		}
		// A config that parses is normalized and valid.
		if err := cfg.Normalize(); err != nil {
			t.Fatalf("parsed config does not validate again: %v", err)
		}
	})
}
