package apiconv

import (
	"math"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// VerdictToProto returns the API form of a verdict: the judge's answer
// with its evidence, ConfigName set to v.Config. The fields that belong to
// the run rather than to the judge (RunId, Service, Stage, ConfigVersion,
// RunState, Final, Sequence, Time) are the caller's to set.
//
// VerdictFromProto(VerdictToProto(v)) equals v, except for what
// MetricResultToProto and SummaryToProto leave out.
func VerdictToProto(v *analysis.Verdict) *canaryv1.Verdict {
	pv := &canaryv1.Verdict{
		Decision:        DecisionToProto(v.Decision),
		Reason:          v.Reason,
		DecidingMetrics: append([]string{}, v.Deciding...),
		ConfigName:      v.Config,
		Confidence:      v.Confidence,
		Metrics:         make([]*canaryv1.MetricResult, len(v.Metrics)),
	}
	for i := range v.Metrics {
		pv.Metrics[i] = MetricResultToProto(&v.Metrics[i])
	}
	return pv
}

// VerdictFromProto returns the analysis form of a verdict from the API;
// Config is the verdict's config name. The run's fields are not part of an
// analysis.Verdict.
func VerdictFromProto(pv *canaryv1.Verdict) analysis.Verdict {
	v := analysis.Verdict{
		Decision:   DecisionFromProto(pv.GetDecision()),
		Reason:     pv.GetReason(),
		Deciding:   append([]string{}, pv.GetDecidingMetrics()...),
		Config:     pv.GetConfigName(),
		Confidence: pv.GetConfidence(),
		Metrics:    make([]analysis.MetricResult, len(pv.GetMetrics())),
	}
	for i, pm := range pv.GetMetrics() {
		v.Metrics[i] = MetricResultFromProto(pm)
	}
	return v
}

// MetricResultToProto returns the API form of the evidence of one metric.
// An effect that was not estimated (a NaN estimate) is left out, with its
// confidence level; ±Inf bounds are kept. The summaries are those of
// SummaryToProto.
func MetricResultToProto(m *analysis.MetricResult) *canaryv1.MetricResult {
	pm := &canaryv1.MetricResult{
		Name:           m.Name,
		Category:       CategoryToProto(m.Category),
		Type:           TypeToProto(m.Type),
		BadDirection:   DirectionToProto(m.BadDirection),
		Tolerance:      m.Tolerance,
		Critical:       m.Critical,
		Outcome:        OutcomeToProto(m.Outcome),
		Baseline:       SummaryToProto(m.Type, &m.Baseline),
		Canary:         SummaryToProto(m.Type, &m.Canary),
		PValue:         m.P,
		AdjustedPValue: m.AdjustedP,
		PromotePValue:  m.PromoteP,
		Test:           m.Test,
		Reason:         m.Reason,
		Gate: &canaryv1.Gate{
			Ready:        m.Gate.Ready,
			FloorMet:     m.Gate.FloorMet,
			EvidenceMet:  m.Gate.EvidenceMet,
			NeedBaseline: float64(m.Gate.NeedBaseline),
			NeedCanary:   float64(m.Gate.NeedCanary),
			Unit:         m.Gate.Unit,
		},
	}
	pm.Effect = effectToProto(m.Effect)
	for _, e := range m.Effects {
		if pe := effectToProto(e); pe != nil {
			pm.Effects = append(pm.Effects, pe)
		}
	}
	if !math.IsNaN(m.Superiority) && m.Superiority != 0 {
		pm.Superiority = &m.Superiority
	}
	return pm
}

// effectToProto returns the API form of an effect, nil for one that was
// not estimated (a NaN estimate).
func effectToProto(e analysis.Effect) *canaryv1.Effect {
	if math.IsNaN(float64(e.Estimate)) {
		return nil
	}
	return &canaryv1.Effect{
		Estimate:   float64(e.Estimate),
		Lower:      float64(e.Lower),
		Upper:      float64(e.Upper),
		Confidence: e.ConfLevel,
		Kind:       e.Kind,
	}
}

// effectFromProto returns the analysis form of an effect.
func effectFromProto(e *canaryv1.Effect) analysis.Effect {
	return analysis.Effect{
		Estimate:  analysis.Float(e.GetEstimate()),
		Lower:     analysis.Float(e.GetLower()),
		Upper:     analysis.Float(e.GetUpper()),
		ConfLevel: e.GetConfidence(),
		Kind:      e.GetKind(),
	}
}

// MetricResultFromProto returns the analysis form of the evidence of one
// metric. An absent effect becomes a NaN estimate and interval (with a
// zero confidence level), which the JSON of a verdict shows as null; an
// absent gate is the zero Gate.
func MetricResultFromProto(pm *canaryv1.MetricResult) analysis.MetricResult {
	m := analysis.MetricResult{
		Name:         pm.GetName(),
		Category:     CategoryFromProto(pm.GetCategory()),
		Type:         TypeFromProto(pm.GetType()),
		BadDirection: DirectionFromProto(pm.GetBadDirection()),
		Tolerance:    pm.GetTolerance(),
		Critical:     pm.GetCritical(),
		Outcome:      OutcomeFromProto(pm.GetOutcome()),
		Baseline:     SummaryFromProto(pm.GetBaseline()),
		Canary:       SummaryFromProto(pm.GetCanary()),
		Effect: analysis.Effect{
			Estimate: analysis.Float(math.NaN()),
			Lower:    analysis.Float(math.NaN()),
			Upper:    analysis.Float(math.NaN()),
		},
		P:           pm.GetPValue(),
		AdjustedP:   pm.GetAdjustedPValue(),
		PromoteP:    pm.GetPromotePValue(),
		Superiority: pm.GetSuperiority(),
		Test:        pm.GetTest(),
		Reason:      pm.GetReason(),
	}
	if e := pm.GetEffect(); e != nil {
		m.Effect = effectFromProto(e)
	}
	for _, e := range pm.GetEffects() {
		m.Effects = append(m.Effects, effectFromProto(e))
	}
	if g := pm.GetGate(); g != nil {
		m.Gate = analysis.Gate{
			Ready:        g.GetReady(),
			FloorMet:     g.GetFloorMet(),
			EvidenceMet:  g.GetEvidenceMet(),
			NeedBaseline: analysis.Float(g.GetNeedBaseline()),
			NeedCanary:   analysis.Float(g.GetNeedCanary()),
			Unit:         g.GetUnit(),
		}
	}
	return m
}

// SummaryToProto returns the API form of a cohort summary of a metric of
// type t. It keeps the statistics that apply to the type (n, median, p99
// and mean for distributions; count, total and rate for rates; n, mean and
// stddev for means; and stddev for distributions) and were computed: a NaN statistic, or one of a cohort
// without observations (a rate without exposure, a stddev of fewer than
// two), is left out.
func SummaryToProto(t analysis.MetricType, s *analysis.Summary) *canaryv1.CohortSummary {
	ps := &canaryv1.CohortSummary{WarmupExcluded: s.Warmup, Instances: uint32(s.Instances)}
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
			ps.NonZero = opt(float64(s.NonZero))
		}
		if s.N > 1 {
			ps.Stddev = opt(s.SD)
		}
	}
	return ps
}

// SummaryFromProto returns the analysis form of a cohort summary. The
// statistics the API left out are zero, which the JSON of a verdict omits.
func SummaryFromProto(ps *canaryv1.CohortSummary) analysis.Summary {
	return analysis.Summary{
		N:         float64(ps.GetN()),
		Count:     ps.GetCount(),
		Total:     ps.GetTotal(),
		Rate:      ps.GetRate(),
		Median:    ps.GetMedian(),
		P99:       ps.GetP99(),
		Mean:      ps.GetMean(),
		SD:        ps.GetStddev(),
		NonZero:   analysis.Float(ps.GetNonZero()),
		Warmup:    ps.GetWarmupExcluded(),
		Instances: int(ps.GetInstances()),
	}
}
