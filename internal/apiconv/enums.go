package apiconv

import (
	"fmt"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// The enums. From the API, an UNSPECIFIED value maps to "" (which
// analysis.Config.Normalize defaults or reports as required), and a value
// this build does not know maps to a string that names its number, such as
// "category 7": Normalize rejects it, and printed output shows it rather
// than hiding it. To the API, "" and any unknown string map to UNSPECIFIED.

// CategoryFromProto returns the analysis form of a metric category.
func CategoryFromProto(c canaryv1.MetricCategory) analysis.Category { return categories.fromProto(c) }

// CategoryToProto returns the API form of a metric category.
func CategoryToProto(c analysis.Category) canaryv1.MetricCategory { return categories.toProto(c) }

// TypeFromProto returns the analysis form of a metric type.
func TypeFromProto(t canaryv1.MetricType) analysis.MetricType { return metricTypes.fromProto(t) }

// TypeToProto returns the API form of a metric type.
func TypeToProto(t analysis.MetricType) canaryv1.MetricType { return metricTypes.toProto(t) }

// DirectionFromProto returns the analysis form of a bad direction.
func DirectionFromProto(d canaryv1.BadDirection) analysis.Direction { return directions.fromProto(d) }

// DirectionToProto returns the API form of a bad direction.
func DirectionToProto(d analysis.Direction) canaryv1.BadDirection { return directions.toProto(d) }

// DecisionFromProto returns the analysis form of a decision.
func DecisionFromProto(d canaryv1.Decision) analysis.Decision { return decisions.fromProto(d) }

// DecisionToProto returns the API form of a decision.
func DecisionToProto(d analysis.Decision) canaryv1.Decision { return decisions.toProto(d) }

// OutcomeFromProto returns the analysis form of a metric outcome.
func OutcomeFromProto(o canaryv1.MetricOutcome) analysis.Outcome { return outcomes.fromProto(o) }

// OutcomeToProto returns the API form of a metric outcome.
func OutcomeToProto(o analysis.Outcome) canaryv1.MetricOutcome { return outcomes.toProto(o) }

// CohortFromProto returns the analysis form of a cohort; ok is false for
// UNSPECIFIED and for values this build does not know.
func CohortFromProto(c canaryv1.Cohort) (_ analysis.Cohort, ok bool) {
	switch c {
	case canaryv1.Cohort_COHORT_BASELINE:
		return analysis.Baseline, true
	case canaryv1.Cohort_COHORT_CANARY:
		return analysis.Canary, true
	}
	return 0, false
}

// CohortToProto returns the API form of a cohort.
func CohortToProto(c analysis.Cohort) canaryv1.Cohort {
	if c == analysis.Canary {
		return canaryv1.Cohort_COHORT_CANARY
	}
	return canaryv1.Cohort_COHORT_BASELINE
}

// RunStateName returns the lower-case name of a run state, as the API's
// users read it in messages and tables: "running", "completed", "aborted";
// "" for UNSPECIFIED, and "state(7)" for a value this build does not know.
func RunStateName(s canaryv1.RunState) string {
	switch s {
	case canaryv1.RunState_RUN_STATE_RUNNING:
		return "running"
	case canaryv1.RunState_RUN_STATE_COMPLETED:
		return "completed"
	case canaryv1.RunState_RUN_STATE_ABORTED:
		return "aborted"
	case canaryv1.RunState_RUN_STATE_UNSPECIFIED:
		return ""
	}
	return fmt.Sprintf("state(%d)", s)
}

// The tables, one per enum: each states its mapping once, for both
// directions. They are never written to.
var (
	categories = newEnum("category", map[canaryv1.MetricCategory]analysis.Category{
		canaryv1.MetricCategory_METRIC_CATEGORY_STABILITY:   analysis.Stability,
		canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE: analysis.Performance,
		canaryv1.MetricCategory_METRIC_CATEGORY_BUSINESS:    analysis.Business,
	})
	metricTypes = newEnum("type", map[canaryv1.MetricType]analysis.MetricType{
		canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION: analysis.TypeDistribution,
		canaryv1.MetricType_METRIC_TYPE_RATE:         analysis.TypeRate,
		canaryv1.MetricType_METRIC_TYPE_MEAN:         analysis.TypeMean,
	})
	directions = newEnum("direction", map[canaryv1.BadDirection]analysis.Direction{
		canaryv1.BadDirection_BAD_DIRECTION_INCREASE: analysis.Increase,
		canaryv1.BadDirection_BAD_DIRECTION_DECREASE: analysis.Decrease,
		canaryv1.BadDirection_BAD_DIRECTION_BOTH:     analysis.Both,
	})
	decisions = newEnum("decision", map[canaryv1.Decision]analysis.Decision{
		canaryv1.Decision_DECISION_PROMOTE:  analysis.Promote,
		canaryv1.Decision_DECISION_HOLD:     analysis.Hold,
		canaryv1.Decision_DECISION_ROLLBACK: analysis.Rollback,
	})
	outcomes = newEnum("outcome", map[canaryv1.MetricOutcome]analysis.Outcome{
		canaryv1.MetricOutcome_METRIC_OUTCOME_PASS:       analysis.OutcomePass,
		canaryv1.MetricOutcome_METRIC_OUTCOME_HOLD:       analysis.OutcomeHold,
		canaryv1.MetricOutcome_METRIC_OUTCOME_REGRESSION: analysis.OutcomeRegression,
		canaryv1.MetricOutcome_METRIC_OUTCOME_NO_DATA:    analysis.OutcomeNoData,
	})
)

// enum pairs the values of an API enum with the analysis strings they
// stand for. The zero values, UNSPECIFIED and "", stand for each other and
// are not listed.
type enum[P ~int32, A ~string] struct {
	kind   string // names an unlisted value: "category 7"
	values map[P]A
}

func newEnum[P ~int32, A ~string](kind string, values map[P]A) enum[P, A] {
	return enum[P, A]{kind: kind, values: values}
}

func (e enum[P, A]) fromProto(p P) A {
	if p == 0 {
		return ""
	}
	if a, ok := e.values[p]; ok {
		return a
	}
	return A(fmt.Sprintf("%s %d", e.kind, p))
}

func (e enum[P, A]) toProto(a A) P {
	for p, s := range e.values {
		if s == a {
			return p
		}
	}
	return 0
}
