package main

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// The service speaks canaryv1; canaryctl prints what it gets in the shapes
// of `canaryctl analyze`: a verdict from the service is an analysis.Verdict
// (the same table, and JSON with the same top-level "decision" and
// "metrics") plus the run it belongs to. The conversions are those of
// internal/apiconv, which the service uses too. Enums print as the YAML
// config spells them (PROMOTE, distribution, increase, pass...), and a
// value this client does not know as its number ("category 7").

// verdictJSON is the JSON of a verdict from the service: the fields of
// `canaryctl analyze -o json`, preceded by those of the run.
type verdictJSON struct {
	RunID         string     `json:"run_id"`
	Service       string     `json:"service"`
	Stage         string     `json:"stage"`
	ConfigVersion uint32     `json:"config_version"`
	RunState      string     `json:"run_state"`
	Final         bool       `json:"final"`
	Sequence      uint64     `json:"sequence"`
	Time          *time.Time `json:"time,omitempty"`
	analysis.Verdict
}

// newVerdictJSON converts a verdict from the service.
func newVerdictJSON(pv *canaryv1.Verdict) *verdictJSON {
	if pv == nil {
		return nil
	}
	return &verdictJSON{
		RunID:         pv.GetRunId(),
		Service:       pv.GetService(),
		Stage:         pv.GetStage(),
		ConfigVersion: pv.GetConfigVersion(),
		RunState:      apiconv.RunStateName(pv.GetRunState()),
		Final:         pv.GetFinal(),
		Sequence:      pv.GetSequence(),
		Time:          timePtr(pv.GetTime()),
		Verdict:       apiconv.VerdictFromProto(pv),
	}
}

// parseDecision parses a --decision flag: PROMOTE, HOLD or ROLLBACK, in
// any case.
func parseDecision(s string) (canaryv1.Decision, error) {
	switch strings.ToUpper(s) {
	case "":
		return canaryv1.Decision_DECISION_UNSPECIFIED, nil
	case "PROMOTE":
		return canaryv1.Decision_DECISION_PROMOTE, nil
	case "HOLD":
		return canaryv1.Decision_DECISION_HOLD, nil
	case "ROLLBACK":
		return canaryv1.Decision_DECISION_ROLLBACK, nil
	}
	return 0, fmt.Errorf("must be PROMOTE, HOLD or ROLLBACK (got %q)", s)
}

// parseState parses a --state flag.
func parseState(s string) (canaryv1.RunState, error) {
	switch strings.ToLower(s) {
	case "":
		return canaryv1.RunState_RUN_STATE_UNSPECIFIED, nil
	case "running":
		return canaryv1.RunState_RUN_STATE_RUNNING, nil
	case "completed":
		return canaryv1.RunState_RUN_STATE_COMPLETED, nil
	case "aborted":
		return canaryv1.RunState_RUN_STATE_ABORTED, nil
	}
	return 0, fmt.Errorf("must be running, completed or aborted (got %q)", s)
}

// configJSON is the JSON of a config: the YAML schema, key for key.
type configJSON struct {
	Name       string       `json:"name"`
	Warmup     string       `json:"warmup,omitempty"`
	Window     string       `json:"window,omitempty"`
	Confidence float64      `json:"confidence"`
	Power      float64      `json:"power"`
	Metrics    []metricJSON `json:"metrics"`
}

type metricJSON struct {
	Name             string              `json:"name"`
	Category         analysis.Category   `json:"category"`
	Type             analysis.MetricType `json:"type"`
	BadDirection     analysis.Direction  `json:"bad_direction,omitempty"`
	Tolerance        *float64            `json:"tolerance,omitempty"`
	Critical         bool                `json:"critical"`
	MinSamples       *uint64             `json:"min_samples,omitempty"`
	MinTotal         *float64            `json:"min_total,omitempty"`
	DetectableEffect *float64            `json:"detectable_effect,omitempty"`
	Unit             string              `json:"unit,omitempty"`
	ExposureUnit     string              `json:"exposure_unit,omitempty"`
}

func newConfigJSON(pc *canaryv1.CanaryConfig) *configJSON {
	if pc == nil {
		return nil
	}
	c := &configJSON{
		Name:       pc.GetName(),
		Confidence: pc.GetConfidence(),
		Power:      pc.GetPower(),
		Metrics:    make([]metricJSON, len(pc.GetMetrics())),
	}
	if w := pc.GetWarmup(); w != nil {
		c.Warmup = w.AsDuration().String()
	}
	if w := pc.GetWindow(); w != nil {
		c.Window = w.AsDuration().String()
	}
	for i, pm := range pc.GetMetrics() {
		c.Metrics[i] = metricJSON{
			Name:             pm.GetName(),
			Category:         apiconv.CategoryFromProto(pm.GetCategory()),
			Type:             apiconv.TypeFromProto(pm.GetType()),
			BadDirection:     apiconv.DirectionFromProto(pm.GetBadDirection()),
			Tolerance:        pm.Tolerance,
			Critical:         pm.GetCritical(),
			MinSamples:       pm.MinSamples,
			MinTotal:         pm.MinTotal,
			DetectableEffect: pm.DetectableEffect,
			Unit:             pm.GetUnit(),
			ExposureUnit:     pm.GetExposureUnit(),
		}
	}
	return c
}

// configVersionJSON is the JSON of a stored config version.
type configVersionJSON struct {
	Name       string      `json:"name"`
	Version    uint32      `json:"version"`
	CreateTime *time.Time  `json:"create_time,omitempty"`
	Config     *configJSON `json:"config"`
	YAML       string      `json:"yaml,omitempty"`
	// Created is set by config put: false when the content was identical
	// to the latest version, which is returned instead.
	Created *bool `json:"created,omitempty"`
}

func newConfigVersionJSON(cv *canaryv1.ConfigVersion) *configVersionJSON {
	return &configVersionJSON{
		Name:       cv.GetName(),
		Version:    cv.GetVersion(),
		CreateTime: timePtr(cv.GetCreateTime()),
		Config:     newConfigJSON(cv.GetConfig()),
		YAML:       cv.GetYaml(),
	}
}

// runJSON is the JSON of a run.
type runJSON struct {
	ID                 string            `json:"id"`
	RequestID          string            `json:"request_id"`
	Service            string            `json:"service"`
	Stage              string            `json:"stage"`
	ConfigName         string            `json:"config_name"`
	ConfigVersion      uint32            `json:"config_version"`
	State              string            `json:"state"`
	CreateTime         *time.Time        `json:"create_time,omitempty"`
	FinishTime         *time.Time        `json:"finish_time,omitempty"`
	FinishReason       string            `json:"finish_reason,omitempty"`
	BakeTime           string            `json:"bake_time,omitempty"`
	BaselineLabels     map[string]string `json:"baseline_labels,omitempty"`
	CanaryLabels       map[string]string `json:"canary_labels,omitempty"`
	CanaryTrafficShare *float64          `json:"canary_traffic_share,omitempty"`
	Counters           countersJSON      `json:"counters"`
	Config             *configJSON       `json:"config,omitempty"`
	Verdict            *verdictJSON      `json:"verdict,omitempty"`
}

type countersJSON struct {
	Batches          uint64     `json:"batches"`
	DuplicateBatches uint64     `json:"duplicate_batches"`
	BaselineSamples  uint64     `json:"baseline_samples"`
	CanarySamples    uint64     `json:"canary_samples"`
	LastIngestTime   *time.Time `json:"last_ingest_time,omitempty"`
}

func newRunJSON(r *canaryv1.Run) *runJSON {
	c := r.GetCounters()
	rj := &runJSON{
		ID:                 r.GetId(),
		RequestID:          r.GetRequestId(),
		Service:            r.GetService(),
		Stage:              r.GetStage(),
		ConfigName:         r.GetConfigName(),
		ConfigVersion:      r.GetConfigVersion(),
		State:              apiconv.RunStateName(r.GetState()),
		CreateTime:         timePtr(r.GetCreateTime()),
		FinishTime:         timePtr(r.GetFinishTime()),
		FinishReason:       r.GetFinishReason(),
		BaselineLabels:     r.GetBaselineLabels(),
		CanaryLabels:       r.GetCanaryLabels(),
		CanaryTrafficShare: r.CanaryTrafficShare,
		Counters: countersJSON{
			Batches:          c.GetBatches(),
			DuplicateBatches: c.GetDuplicateBatches(),
			BaselineSamples:  c.GetBaselineSamples(),
			CanarySamples:    c.GetCanarySamples(),
			LastIngestTime:   timePtr(c.GetLastIngestTime()),
		},
		Config:  newConfigJSON(r.GetConfig()),
		Verdict: newVerdictJSON(r.GetVerdict()),
	}
	if b := r.GetBakeTime(); b != nil {
		rj.BakeTime = b.AsDuration().String()
	}
	return rj
}

// timePtr returns the time of ts, or nil when it is absent.
func timePtr(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime()
	return &t
}

// configRef returns name@version, or name alone for version 0.
func configRef(name string, version uint32) string {
	if version == 0 {
		return name
	}
	return fmt.Sprintf("%s@%d", name, version)
}
