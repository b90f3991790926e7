package server

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// configFromProto turns an API config into a normalized analysis.Config.
// Absent optional fields become the markers analysis.Config.Normalize
// replaces by its defaults, so a proto config and a YAML config that leave
// out the same fields get the same defaults.
//
// Normalize reads a zero confidence, power, min_samples or
// detectable_effect as "left out"; the API documents those fields as
// optional with presence, so an explicit zero is an error here rather than a
// silent default. The returned analysis.FieldErrors name fields relative to
// the config ("metrics[1].tolerance").
func configFromProto(pc *canaryv1.CanaryConfig) (*analysis.Config, error) {
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
	cfg.Metrics = make([]analysis.Metric, len(pc.GetMetrics()))
	for i, pm := range pc.GetMetrics() {
		path := fmt.Sprintf("metrics[%d]", i)
		m := analysis.UnsetMetric()
		m.Name = pm.GetName()
		m.Category = categoryFromProto(pm.GetCategory())
		m.Type = typeFromProto(pm.GetType())
		m.BadDirection = directionFromProto(pm.GetBadDirection())
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
		if !asFieldErrors(err, &nerrs) {
			return nil, err
		}
		errs = append(errs, nerrs...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// configToProto returns the API form of a normalized config: every default
// applied, and every optional field that applies to the metric's type
// present (min_samples for distribution and mean metrics, min_total for rate
// metrics), so that configFromProto(configToProto(c)) equals c.
func configToProto(c *analysis.Config) *canaryv1.CanaryConfig {
	pc := &canaryv1.CanaryConfig{
		Name:       c.Name,
		Confidence: ptr(c.Confidence),
		Power:      ptr(c.Power),
		Metrics:    make([]*canaryv1.MetricConfig, len(c.Metrics)),
	}
	if c.Warmup != 0 {
		pc.Warmup = durationpb.New(c.Warmup)
	}
	for i := range c.Metrics {
		m := &c.Metrics[i]
		pm := &canaryv1.MetricConfig{
			Name:             m.Name,
			Category:         categoryToProto(m.Category),
			Type:             typeToProto(m.Type),
			BadDirection:     directionToProto(m.BadDirection),
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

// Enum mappings. An UNSPECIFIED value maps to "" (which Normalize defaults
// or reports as required); a value this server does not know maps to a
// string Normalize rejects, naming the number.

func categoryFromProto(c canaryv1.MetricCategory) analysis.Category {
	switch c {
	case canaryv1.MetricCategory_METRIC_CATEGORY_UNSPECIFIED:
		return ""
	case canaryv1.MetricCategory_METRIC_CATEGORY_STABILITY:
		return analysis.Stability
	case canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE:
		return analysis.Performance
	case canaryv1.MetricCategory_METRIC_CATEGORY_BUSINESS:
		return analysis.Business
	}
	return analysis.Category(fmt.Sprintf("category %d", c))
}

func categoryToProto(c analysis.Category) canaryv1.MetricCategory {
	switch c {
	case analysis.Stability:
		return canaryv1.MetricCategory_METRIC_CATEGORY_STABILITY
	case analysis.Performance:
		return canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE
	case analysis.Business:
		return canaryv1.MetricCategory_METRIC_CATEGORY_BUSINESS
	}
	return canaryv1.MetricCategory_METRIC_CATEGORY_UNSPECIFIED
}

func typeFromProto(t canaryv1.MetricType) analysis.MetricType {
	switch t {
	case canaryv1.MetricType_METRIC_TYPE_UNSPECIFIED:
		return ""
	case canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION:
		return analysis.TypeDistribution
	case canaryv1.MetricType_METRIC_TYPE_RATE:
		return analysis.TypeRate
	case canaryv1.MetricType_METRIC_TYPE_MEAN:
		return analysis.TypeMean
	}
	return analysis.MetricType(fmt.Sprintf("type %d", t))
}

func typeToProto(t analysis.MetricType) canaryv1.MetricType {
	switch t {
	case analysis.TypeDistribution:
		return canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION
	case analysis.TypeRate:
		return canaryv1.MetricType_METRIC_TYPE_RATE
	case analysis.TypeMean:
		return canaryv1.MetricType_METRIC_TYPE_MEAN
	}
	return canaryv1.MetricType_METRIC_TYPE_UNSPECIFIED
}

func directionFromProto(d canaryv1.BadDirection) analysis.Direction {
	switch d {
	case canaryv1.BadDirection_BAD_DIRECTION_UNSPECIFIED:
		return ""
	case canaryv1.BadDirection_BAD_DIRECTION_INCREASE:
		return analysis.Increase
	case canaryv1.BadDirection_BAD_DIRECTION_DECREASE:
		return analysis.Decrease
	case canaryv1.BadDirection_BAD_DIRECTION_BOTH:
		return analysis.Both
	}
	return analysis.Direction(fmt.Sprintf("direction %d", d))
}

func directionToProto(d analysis.Direction) canaryv1.BadDirection {
	switch d {
	case analysis.Increase:
		return canaryv1.BadDirection_BAD_DIRECTION_INCREASE
	case analysis.Decrease:
		return canaryv1.BadDirection_BAD_DIRECTION_DECREASE
	case analysis.Both:
		return canaryv1.BadDirection_BAD_DIRECTION_BOTH
	}
	return canaryv1.BadDirection_BAD_DIRECTION_UNSPECIFIED
}

func decisionToProto(d analysis.Decision) canaryv1.Decision {
	switch d {
	case analysis.Promote:
		return canaryv1.Decision_DECISION_PROMOTE
	case analysis.Hold:
		return canaryv1.Decision_DECISION_HOLD
	case analysis.Rollback:
		return canaryv1.Decision_DECISION_ROLLBACK
	}
	return canaryv1.Decision_DECISION_UNSPECIFIED
}

func outcomeToProto(o analysis.Outcome) canaryv1.MetricOutcome {
	switch o {
	case analysis.OutcomePass:
		return canaryv1.MetricOutcome_METRIC_OUTCOME_PASS
	case analysis.OutcomeHold:
		return canaryv1.MetricOutcome_METRIC_OUTCOME_HOLD
	case analysis.OutcomeRegression:
		return canaryv1.MetricOutcome_METRIC_OUTCOME_REGRESSION
	case analysis.OutcomeNoData:
		return canaryv1.MetricOutcome_METRIC_OUTCOME_NO_DATA
	}
	return canaryv1.MetricOutcome_METRIC_OUTCOME_UNSPECIFIED
}

func cohortFromProto(c canaryv1.Cohort) (analysis.Cohort, bool) {
	switch c {
	case canaryv1.Cohort_COHORT_BASELINE:
		return analysis.Baseline, true
	case canaryv1.Cohort_COHORT_CANARY:
		return analysis.Canary, true
	}
	return 0, false
}

// verdictToProto returns the API form of a verdict of run r. The caller sets
// Time, Final, RunState and Sequence.
func verdictToProto(v *analysis.Verdict, r *canaryv1.Run) *canaryv1.Verdict {
	pv := &canaryv1.Verdict{
		RunId:           r.GetId(),
		Service:         r.GetService(),
		Stage:           r.GetStage(),
		Decision:        decisionToProto(v.Decision),
		Reason:          v.Reason,
		DecidingMetrics: append([]string{}, v.Deciding...),
		ConfigName:      r.GetConfigName(),
		ConfigVersion:   r.GetConfigVersion(),
		Confidence:      v.Confidence,
		Metrics:         make([]*canaryv1.MetricResult, len(v.Metrics)),
	}
	for i := range v.Metrics {
		pv.Metrics[i] = metricResultToProto(&v.Metrics[i])
	}
	return pv
}

func metricResultToProto(m *analysis.MetricResult) *canaryv1.MetricResult {
	pm := &canaryv1.MetricResult{
		Name:           m.Name,
		Category:       categoryToProto(m.Category),
		Type:           typeToProto(m.Type),
		BadDirection:   directionToProto(m.BadDirection),
		Tolerance:      m.Tolerance,
		Critical:       m.Critical,
		Outcome:        outcomeToProto(m.Outcome),
		Baseline:       summaryToProto(m.Type, &m.Baseline),
		Canary:         summaryToProto(m.Type, &m.Canary),
		PValue:         m.P,
		AdjustedPValue: m.AdjustedP,
		Test:           m.Test,
		Reason:         m.Reason,
		Gate: &canaryv1.Gate{
			Ready:        m.Gate.Ready,
			FloorMet:     m.Gate.FloorMet,
			PowerMet:     m.Gate.PowerMet,
			NeedBaseline: float64(m.Gate.NeedBaseline),
			NeedCanary:   float64(m.Gate.NeedCanary),
			Unit:         m.Gate.Unit,
		},
	}
	if e := m.Effect; !math.IsNaN(float64(e.Estimate)) {
		pm.Effect = &canaryv1.Effect{
			Estimate:   float64(e.Estimate),
			Lower:      float64(e.Lower),
			Upper:      float64(e.Upper),
			Confidence: e.ConfLevel,
		}
	}
	return pm
}

// summaryToProto keeps the statistics that apply to the metric's type and
// were computed (a cohort without observations has no median).
func summaryToProto(t analysis.MetricType, s *analysis.Summary) *canaryv1.CohortSummary {
	ps := &canaryv1.CohortSummary{WarmupExcluded: s.Warmup}
	opt := func(v float64) *float64 {
		if math.IsNaN(v) {
			return nil
		}
		return &v
	}
	switch t {
	case analysis.TypeRate:
		ps.Count, ps.Total = s.Count, s.Total
		if s.Total > 0 {
			ps.Rate = opt(s.Rate)
		}
	case analysis.TypeMean:
		ps.N = uint64(s.N)
		if s.N > 0 {
			ps.Mean = opt(s.Mean)
		}
		if s.N > 1 {
			ps.Stddev = opt(s.SD)
		}
	default:
		ps.N = uint64(s.N)
		if s.N > 0 {
			ps.Median, ps.P99, ps.Mean = opt(s.Median), opt(s.P99), opt(s.Mean)
		}
	}
	return ps
}
