// Package apiconv holds the conversions between the canary.v1 API
// (package canaryv1) and the analysis package: configs both ways, the enums
// both ways, and verdicts both ways. The service and canaryctl share them,
// so that a config or a verdict means the same on both sides of the wire.
package apiconv

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// ConfigFromProto turns an API config into a normalized analysis.Config.
// Absent optional fields become the markers analysis.Config.Normalize
// replaces by its defaults, so a proto config and a YAML config that leave
// out the same fields get the same defaults. A resolved config (one made
// by ConfigToProto) converts back to the config it was made from.
//
// Normalize reads a zero confidence, power, min_samples or
// detectable_effect as "left out"; the API documents those fields as
// optional with presence, so an explicit zero is an error here rather than a
// silent default. The error is an analysis.FieldErrors that lists every
// problem, each naming its field relative to the config
// ("metrics[1].tolerance").
func ConfigFromProto(pc *canaryv1.CanaryConfig) (*analysis.Config, error) {
	var errs analysis.FieldErrors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &analysis.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	cfg := &analysis.Config{Name: pc.GetName()}
	if w := pc.GetWarmup(); w != nil {
		if err := w.CheckValid(); err != nil {
			bad("warmup", "must be a valid duration: %v", err)
		} else {
			cfg.Warmup = w.AsDuration()
		}
	}
	if w := pc.GetWindow(); w != nil {
		if err := w.CheckValid(); err != nil {
			bad("window", "must be a valid duration: %v", err)
		} else {
			cfg.Window = w.AsDuration()
		}
	}
	if pc.Confidence != nil {
		if cfg.Confidence = pc.GetConfidence(); cfg.Confidence == 0 {
			bad("confidence", "must be in [0.5, 1) (got 0)")
		}
	}
	if pc.Power != nil {
		if cfg.Power = pc.GetPower(); cfg.Power == 0 {
			bad("power", "must be in [0.5, 1) (got 0)")
		}
	}
	if t := pc.GetTraffic(); t != nil {
		cfg.Traffic = analysis.TrafficCheck{Metric: t.GetMetric(), Tolerance: t.GetTolerance(), Disabled: t.GetDisabled()}
		if t.Critical != nil {
			cfg.Traffic.Critical = ptr(t.GetCritical())
		}
	}
	cfg.Metrics = make([]analysis.Metric, len(pc.GetMetrics()))
	for i, pm := range pc.GetMetrics() {
		path := fmt.Sprintf("metrics[%d]", i)
		m := analysis.UnsetMetric()
		m.Name = pm.GetName()
		m.Category = CategoryFromProto(pm.GetCategory())
		m.Type = TypeFromProto(pm.GetType())
		m.BadDirection = DirectionFromProto(pm.GetBadDirection())
		if pm.Tolerance != nil {
			m.Tolerance = pm.GetTolerance()
			if math.IsNaN(m.Tolerance) {
				bad(path+".tolerance", "must be a number >= 0 (got NaN)")
			}
		}
		m.Critical = pm.GetCritical()
		if pm.MinSamples != nil {
			switch v := pm.GetMinSamples(); {
			case v < 2:
				bad(path+".min_samples", "must be >= 2 (got %d)", v)
			case v > math.MaxInt32:
				bad(path+".min_samples", "must be at most %d (got %d)", math.MaxInt32, v)
			default:
				m.MinSamples = int(v)
			}
		}
		if pm.MinTotal != nil {
			m.MinTotal = pm.GetMinTotal()
			if math.IsNaN(m.MinTotal) {
				bad(path+".min_total", "must be a number >= 0 (got NaN)")
			}
		}
		if pm.DetectableEffect != nil {
			if m.DetectableEffect = pm.GetDetectableEffect(); !(m.DetectableEffect > 0) {
				bad(path+".detectable_effect", "must be > 0 (got %v)", m.DetectableEffect)
			}
		}
		m.Unit = pm.GetUnit()
		m.ExposureUnit = pm.GetExposureUnit()
		cfg.Metrics[i] = m
	}
	// Normalize reports the remaining problems; report ours with them.
	if err := cfg.Normalize(); err != nil {
		var nerrs analysis.FieldErrors
		if !errors.As(err, &nerrs) {
			return nil, err
		}
		errs = append(errs, nerrs...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// ConfigToProto returns the API form of a normalized config: every default
// applied, and every optional field that applies to the metric's type
// present (min_samples for distribution and mean metrics, min_total for rate
// metrics), so that ConfigFromProto(ConfigToProto(c)) equals c.
func ConfigToProto(c *analysis.Config) *canaryv1.CanaryConfig {
	pc := &canaryv1.CanaryConfig{
		Name:       c.Name,
		Confidence: ptr(c.Confidence),
		Power:      ptr(c.Power),
		Metrics:    make([]*canaryv1.MetricConfig, len(c.Metrics)),
	}
	if c.Warmup != 0 {
		pc.Warmup = durationpb.New(c.Warmup)
	}
	if c.Window != 0 {
		pc.Window = durationpb.New(c.Window)
	}
	pc.Traffic = &canaryv1.TrafficCheck{Metric: c.Traffic.Metric, Tolerance: ptr(c.Traffic.Tolerance), Disabled: c.Traffic.Disabled}
	if c.Traffic.Critical != nil {
		pc.Traffic.Critical = ptr(*c.Traffic.Critical)
	}
	for i := range c.Metrics {
		m := &c.Metrics[i]
		pm := &canaryv1.MetricConfig{
			Name:             m.Name,
			Category:         CategoryToProto(m.Category),
			Type:             TypeToProto(m.Type),
			BadDirection:     DirectionToProto(m.BadDirection),
			Tolerance:        ptr(m.Tolerance),
			Critical:         ptr(m.Critical),
			DetectableEffect: ptr(m.DetectableEffect),
			Unit:             m.Unit,
			ExposureUnit:     m.ExposureUnit,
		}
		if m.Type == analysis.TypeRate {
			pm.MinTotal = ptr(m.MinTotal)
		} else {
			pm.MinSamples = ptr(uint64(m.MinSamples))
		}
		pc.Metrics[i] = pm
	}
	return pc
}

func ptr[T any](v T) *T { return &v }
