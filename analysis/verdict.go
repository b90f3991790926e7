package analysis

import (
	"encoding/json"
	"math"
	"strconv"
)

// Decision is the answer of the judge.
type Decision string

// Decisions.
const (
	Promote  Decision = "PROMOTE"
	Hold     Decision = "HOLD"
	Rollback Decision = "ROLLBACK"
)

// Outcome is the state of one metric.
type Outcome string

// Outcomes of a metric.
const (
	// OutcomePass: the gate is met and the metric did not regress.
	OutcomePass Outcome = "pass"
	// OutcomeHold: not enough data yet to pass; it did not regress so far.
	OutcomeHold Outcome = "hold"
	// OutcomeRegression: worse than the baseline beyond the tolerance at the
	// configured family-wise confidence.
	OutcomeRegression Outcome = "regression"
	// OutcomeNoData: one cohort has no data at all. Never a pass.
	OutcomeNoData Outcome = "no_data"
)

// Verdict is the judge's answer for one run, with the evidence of every
// metric.
type Verdict struct {
	Decision Decision `json:"decision"`
	// Reason says in words why, naming the deciding metrics.
	Reason string `json:"reason"`
	// Deciding lists the metrics that decided the verdict.
	Deciding []string `json:"deciding_metrics"`
	// Config and Confidence echo what the run was judged with.
	Config     string  `json:"config"`
	Confidence float64 `json:"confidence"`
	// Metrics holds one result per metric of the config, in config order.
	Metrics []MetricResult `json:"metrics"`
}

// MetricResult is the evidence of one metric.
type MetricResult struct {
	Name         string     `json:"name"`
	Category     Category   `json:"category"`
	Type         MetricType `json:"type"`
	BadDirection Direction  `json:"bad_direction"`
	Tolerance    float64    `json:"tolerance"`
	Critical     bool       `json:"critical"`
	Outcome      Outcome    `json:"outcome"`
	Baseline     Summary    `json:"baseline"`
	Canary       Summary    `json:"canary"`
	// Effect is the canary relative to the baseline, as a ratio (1.10 is
	// 10% higher), with a two-sided confidence interval at the config's
	// confidence: the effect of the test that decided (the one with the
	// smallest p for a regression, the binding promote test otherwise).
	Effect Effect `json:"effect"`
	// Effects are the effects of every test of the metric (a distribution
	// has a ratio of geometric means and a ratio of means).
	Effects []Effect `json:"effects,omitempty"`
	// Superiority is P(canary > baseline) + ½ P(tie) for one observation
	// of each (distribution metrics): what a rank test sees, which shows a
	// change that ratios of means hide on data with many ties or zeros.
	Superiority float64 `json:"superiority,omitempty"`
	// P is the p-value of the rollback test: H0 "the canary is not worse
	// than the baseline beyond the tolerance". 1 when not tested.
	P float64 `json:"p_value"`
	// PromoteP is the p-value of the promote test: H0' "the canary is worse
	// than the baseline by the tolerance plus the detectable effect or
	// more"; the metric can pass only when PromoteP ≤ 1 − power.
	PromoteP float64 `json:"promote_p_value"`
	// AdjustedP is P after Holm's step-down adjustment over all metrics;
	// the metric regressed when AdjustedP ≤ 1 − confidence.
	AdjustedP float64 `json:"adjusted_p_value"`
	// Test names the test used.
	Test string `json:"test"`
	// Gate says whether enough data were seen, and what is missing.
	Gate Gate `json:"gate"`
	// Reason says in words what the metric shows.
	Reason string `json:"reason"`
}

// Summary describes one cohort of one metric.
type Summary struct {
	// N is the number of observations (distribution and mean metrics).
	N float64 `json:"n,omitempty"`
	// Count and Total are the events and exposure (rate metrics), and Rate
	// their ratio.
	Count float64 `json:"count,omitempty"`
	Total float64 `json:"total,omitempty"`
	Rate  float64 `json:"rate,omitempty"`
	// Median and P99 describe a distribution metric; Mean and SD a mean
	// metric (Mean is also given for distributions).
	Median float64 `json:"median,omitempty"`
	P99    float64 `json:"p99,omitempty"`
	Mean   float64 `json:"mean,omitempty"`
	SD     float64 `json:"sd,omitempty"`
	// NonZero is the share of a distribution's observations that are not
	// 0 (NaN when there are none).
	NonZero Float `json:"non_zero,omitempty"`
	// Warmup counts samples excluded by the warm-up.
	Warmup uint64 `json:"warmup_excluded,omitempty"`
	// Instances is the number of instances the samples came from (samples
	// without an instance count as one).
	Instances int `json:"instances,omitempty"`
}

// Effect is a ratio of the canary to the baseline with its interval.
type Effect struct {
	Estimate  Float   `json:"estimate"`
	Lower     Float   `json:"lower"`
	Upper     Float   `json:"upper"`
	ConfLevel float64 `json:"conf_level"`
	// Kind says what the ratio is: KindGeoMeanRatio, KindMeanRatio,
	// KindRateRatio or KindShareRatio.
	Kind string `json:"kind,omitempty"`
}

// Gate reports what a metric needs before it can pass.
type Gate struct {
	// Ready is true when the floor and the evidence requirement are met.
	Ready bool `json:"ready"`
	// FloorMet is true when both cohorts reached min_samples / min_total.
	FloorMet bool `json:"floor_met"`
	// EvidenceMet is true when the promote test passed: the data show the
	// canary is not worse than the tolerance plus the detectable effect,
	// at confidence power (MetricResult.PromoteP ≤ 1 − power).
	EvidenceMet bool `json:"evidence_met"`
	// NeedBaseline and NeedCanary estimate the observations (or exposure,
	// for rates) still missing in each cohort, if the estimate stays where
	// it is: to reach the floor and for the promote test to pass; +Inf when
	// no amount of data would (the estimate is beyond the tolerance plus
	// the detectable effect, or there are no events).
	NeedBaseline Float `json:"need_baseline"`
	NeedCanary   Float `json:"need_canary"`
	// Unit is what NeedBaseline and NeedCanary count.
	Unit string `json:"unit"`
}

// Float is a float64 that encodes ±Inf as the JSON strings "+Inf" and
// "-Inf", and NaN as null, where encoding/json would fail.
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte("null"), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "null":
		*f = Float(math.NaN())
		return nil
	case `"+Inf"`:
		*f = Float(math.Inf(1))
		return nil
	case `"-Inf"`:
		*f = Float(math.Inf(-1))
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// ExitCode maps a decision to the documented exit codes of canaryctl:
// 0 PROMOTE, 10 HOLD, 20 ROLLBACK (1 and 2 are errors).
func (d Decision) ExitCode() int {
	switch d {
	case Promote:
		return 0
	case Hold:
		return 10
	case Rollback:
		return 20
	}
	return 1
}
