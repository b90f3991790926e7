package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

// Metric names of the simulated configs.
const (
	Latency     = "latency_ms"
	Errors      = "errors"
	Conversions = "conversions"
)

// Tolerances of the simulated configs (those of examples/canary.yaml).
const (
	LatencyTolerance     = 0.10
	ErrorsTolerance      = 0.20
	ConversionsTolerance = 0.10
)

// Scenario describes a population of canary runs: traffic, the metrics
// reported and how they behave, and which metric regresses. Each cohort has
// Instances[c] instances sharing its traffic evenly. A regression of effect
// k (a multiple of the target metric's tolerance tol) makes the canary's
// target worse by the factor 1 + k·tol (latency, error rate) or 1 − k·tol
// (conversion rate), from RampStart on, growing linearly over RampMinutes.
// With Target TargetTraffic the regression is the canary's traffic itself
// (a sample-ratio mismatch, see ShareDropMinute).
//
// Every random quantity is drawn from the run's seeded source, per run or
// per simulated minute, so a run's data are a function of the seed.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Group is the family of a built-in scenario (GroupClassic,
	// GroupMessy); canaryctl simulate --scenario accepts it for all of its
	// scenarios.
	Group string `json:"group,omitempty"`
	// Minutes is the bake: the run is judged over this many one-minute
	// batches and the bake completes with the last.
	Minutes int `json:"minutes"`
	// Instances and RequestsPerMinute per cohort (baseline, canary).
	Instances         [2]int     `json:"instances"`
	RequestsPerMinute [2]float64 `json:"requests_per_minute"`
	// Target is the metric that regresses, or TargetTraffic.
	Target string `json:"target"`

	// TotalRequestsPerMinute, when > 0, replaces RequestsPerMinute by a
	// total shared between the cohorts: at minute m the canary receives
	// Total·share(m) requests per minute in expectation and the baseline
	// Total·(1 − share(m)). share(m) follows CanaryShare: CanaryShare[i]
	// during the i-th of len(CanaryShare) equal parts of the bake (minutes
	// [i·M/n, (i+1)·M/n) of M — Argo Rollouts' setWeight steps, Flagger's
	// stepWeight; one value is a constant share), or, with ShareRamp, the
	// linear interpolation through the values spread evenly from minute 0
	// to minute M−1 (two values: a linear ramp from the first to the
	// second). Shares are in (0, 1).
	TotalRequestsPerMinute float64   `json:"total_requests_per_minute,omitempty"`
	CanaryShare            []float64 `json:"canary_share,omitempty"`
	ShareRamp              bool      `json:"share_ramp,omitempty"`
	// ExpectedShare is the canary's share of the traffic that the run
	// declares (the run's canary_traffic_share), in (0, 1); 0: not
	// declared. The sequential policy passes it to the judge as
	// analysis.Options.ExpectedShare, for the sample-ratio check.
	ExpectedShare float64 `json:"expected_share,omitempty"`
	// ShareDropMinute is where the canary's traffic collapses when Target
	// is TargetTraffic (a sample-ratio mismatch: a canary ejected by health
	// checks, crash-looping, receiving fewer requests). From this minute
	// on, a regression of effect k multiplies the canary's share by
	// max(0, 1 − k·ShareDropUnit): k = 1 is a drop of 20%, k = 4 leaves a
	// fifth, k ≥ 5 nothing; the baseline takes the rest of the total, which
	// stays the same. Effect 0 is a canary that keeps its share (A/A).
	// Needs TotalRequestsPerMinute.
	ShareDropMinute int `json:"share_drop_minute,omitempty"`

	// Latency: lognormal with median LatencyMedian (ms) and log-sd
	// LatencySigma; rounded to whole ms when LatencyInteger (heavy ties).
	// Zero LatencyMedian means no latency metric.
	LatencyMedian  float64 `json:"latency_median_ms,omitempty"`
	LatencySigma   float64 `json:"latency_sigma,omitempty"`
	LatencyInteger bool    `json:"latency_integer,omitempty"`
	// LatencyBuckets, when set, make latency known only through histogram
	// buckets, as a Prometheus classic histogram delivers it: each
	// instance reports one analysis.Histogram per minute (Sample.Histogram
	// instead of Sample.Values) with these upper bounds in ms (strictly
	// increasing, > 0; +Inf is appended when the last is finite), counting
	// the values drawn for its requests, and their Sum (HasSum) unless
	// LatencyNoSum (a histogram whose _sum is not kept).
	// PrometheusBuckets returns Prometheus' default buckets.
	LatencyBuckets []float64 `json:"latency_buckets_ms,omitempty"`
	LatencyNoSum   bool      `json:"latency_no_sum,omitempty"`
	// ExtremeValue, when > 0, is a stray latency value (ms): one value drawn
	// for one instance of ExtremeCohort ("baseline" or "canary") at one
	// minute, both drawn uniformly per run among the minutes after the
	// config's warm-up and the cohort's instances, is replaced by it (it is
	// added when that instance had no request that minute). In a histogram
	// it lands in the bucket holding it and in Sum.
	ExtremeValue  float64 `json:"extreme_value_ms,omitempty"`
	ExtremeCohort string  `json:"extreme_cohort,omitempty"`
	// ErrorRate is the baseline's probability that a request fails
	// (binomial). HasErrors with ErrorRate 0 is a baseline with no errors;
	// then a regression of effect k gives the canary an error rate of
	// k·tol·ZeroBaselineRef.
	HasErrors bool    `json:"has_errors,omitempty"`
	ErrorRate float64 `json:"error_rate,omitempty"`
	// ConversionRate per session, with SessionsPerRequest sessions per
	// request; zero means no conversion metric.
	ConversionRate     float64 `json:"conversion_rate,omitempty"`
	SessionsPerRequest float64 `json:"sessions_per_request,omitempty"`

	// Per-instance heterogeneity: each instance's latency is multiplied by
	// exp(σ·Z) and its error rate by a mean-one lognormal factor, drawn once
	// per run — requests of one instance are correlated.
	InstanceLatencySigma float64 `json:"instance_latency_sigma,omitempty"`
	InstanceErrorSigma   float64 `json:"instance_error_sigma,omitempty"`
	// Warm-up: the canary's first WarmupMinutes have latency × WarmupLatency
	// and error rate × WarmupErrors at minute 0, decaying linearly to ×1.
	// ConfigWarmup is the warm-up the judged config declares.
	WarmupMinutes int           `json:"warmup_minutes,omitempty"`
	WarmupLatency float64       `json:"warmup_latency,omitempty"`
	WarmupErrors  float64       `json:"warmup_errors,omitempty"`
	ConfigWarmup  time.Duration `json:"config_warmup,omitempty"`
	// ConfigWindow is the window of the judged config's window tests
	// (analysis.Config.Window); 0 turns them off.
	ConfigWindow time.Duration `json:"config_window,omitempty"`
	// A traffic dip shared by both cohorts over [DipStart, DipEnd):
	// traffic × DipTraffic, error rate × DipErrors, latency × DipLatency
	// (each factor applies as given: set all three). With DipTraffic 1 it
	// is a change that hits both cohorts alike without a dip: an error
	// burst (DipErrors), a shared slowdown (DipLatency).
	DipStart   int     `json:"dip_start,omitempty"`
	DipEnd     int     `json:"dip_end,omitempty"`
	DipTraffic float64 `json:"dip_traffic,omitempty"`
	DipErrors  float64 `json:"dip_errors,omitempty"`
	DipLatency float64 `json:"dip_latency,omitempty"`
	// Noisy neighbours: each instance of either cohort independently gets,
	// with probability NoisyProb, a noisy neighbour for NoisyMinutes at a
	// random time: latency × NoisyLatency, error rate × NoisyErrors.
	NoisyProb    float64 `json:"noisy_prob,omitempty"`
	NoisyMinutes int     `json:"noisy_minutes,omitempty"`
	NoisyLatency float64 `json:"noisy_latency,omitempty"`
	NoisyErrors  float64 `json:"noisy_errors,omitempty"`
	// RampStart and RampMinutes shape the regression (slow burn).
	RampStart   int `json:"ramp_start,omitempty"`
	RampMinutes int `json:"ramp_minutes,omitempty"`
}

// ZeroBaselineRef is the reference error rate of a regression against a
// baseline without errors.
const ZeroBaselineRef = 0.005

// TargetTraffic is the Target of a scenario whose regression is the
// canary's share of the traffic (ShareDropMinute), not a metric.
const TargetTraffic = "traffic"

// ShareDropUnit is the relative drop of the canary's share per unit of
// effect when the Target is TargetTraffic: the tolerance of the judge's
// sample-ratio check (analysis.DefaultTrafficTolerance), so that effect 1
// is a drop of half, the boundary the check tolerates (effect k: share ×
// max(0, 1 − k·ShareDropUnit)).
const ShareDropUnit = analysis.DefaultTrafficTolerance

// ShareDropFalsePromote is the effect of a canary whose share drops to a
// fifth of the expected one (a drop of 80%): promoting it is false.
const ShareDropFalsePromote = 1.6

// Groups of the built-in scenarios.
const (
	// GroupClassic holds the scenarios of issue 5: constant traffic,
	// independent or mildly correlated requests.
	GroupClassic = "classic"
	// GroupMessy holds the real-world conditions of issue 9: traffic
	// shares that change during the run with a change hitting both
	// cohorts, few instances, 2 ms integer and bucketed latencies, a stray
	// extreme value, a canary losing its share of the traffic.
	GroupMessy = "messy"
)

// PrometheusBuckets returns the default buckets of Prometheus' client
// libraries (prometheus.DefBuckets: .005, .01, .025, .05, .1, .25, .5, 1,
// 2.5, 5, 10 seconds, and +Inf) in milliseconds, for a metric in ms.
func PrometheusBuckets() []float64 {
	return []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, math.Inf(1)}
}

// DefaultWindow is the window of the built-in scenarios' configs, that of
// examples/canary.yaml.
const DefaultWindow = 15 * time.Minute

// Start is the simulated start time of every run.
var Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Config returns the canary config the scenario's runs are judged with:
// the metrics it reports, with the tolerances and the window of
// examples/canary.yaml, 99% confidence and 80% power.
func (s *Scenario) Config() (*analysis.Config, error) {
	cfg := &analysis.Config{Name: "sim-" + s.Name, Warmup: s.ConfigWarmup, Window: s.ConfigWindow, Confidence: 0.99, Power: 0.8}
	if s.LatencyMedian > 0 {
		m := analysis.UnsetMetric()
		m.Name, m.Category, m.Type, m.BadDirection = Latency, analysis.Performance, analysis.TypeDistribution, analysis.Increase
		m.Tolerance, m.Critical, m.MinSamples, m.Unit = LatencyTolerance, true, 200, "ms"
		cfg.Metrics = append(cfg.Metrics, m)
	}
	if s.HasErrors {
		m := analysis.UnsetMetric()
		m.Name, m.Category, m.Type, m.BadDirection = Errors, analysis.Stability, analysis.TypeRate, analysis.Increase
		m.Tolerance, m.Critical, m.MinTotal = ErrorsTolerance, true, 2000
		cfg.Metrics = append(cfg.Metrics, m)
	}
	if s.ConversionRate > 0 {
		m := analysis.UnsetMetric()
		m.Name, m.Category, m.Type, m.BadDirection = Conversions, analysis.Business, analysis.TypeRate, analysis.Decrease
		m.Tolerance, m.MinTotal, m.ExposureUnit = ConversionsTolerance, 5000, "sessions"
		cfg.Metrics = append(cfg.Metrics, m)
	}
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	if err := s.validate(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// validate checks the scenario's fields against each other and against its
// config.
func (s *Scenario) validate(cfg *analysis.Config) error {
	share := func(v float64) bool { return v > 0 && v < 1 }
	switch {
	case s.Target != TargetTraffic && cfg.Metric(s.Target) < 0:
		return fmt.Errorf("target %q is not a metric of the scenario", s.Target)
	case s.Minutes < 1 || s.Instances[0] < 1 || s.Instances[1] < 1:
		return fmt.Errorf("minutes and instances must be >= 1")
	case s.TotalRequestsPerMinute < 0 || math.IsInf(s.TotalRequestsPerMinute, 0) || math.IsNaN(s.TotalRequestsPerMinute):
		return fmt.Errorf("total_requests_per_minute must be finite and >= 0")
	case s.TotalRequestsPerMinute > 0 && len(s.CanaryShare) == 0:
		return fmt.Errorf("total_requests_per_minute needs canary_share")
	case s.TotalRequestsPerMinute == 0 && (len(s.CanaryShare) > 0 || s.ShareRamp):
		return fmt.Errorf("canary_share and share_ramp need total_requests_per_minute")
	case s.ExpectedShare != 0 && !share(s.ExpectedShare):
		return fmt.Errorf("expected_share must be in (0, 1) or 0 (got %v)", s.ExpectedShare)
	case s.Target == TargetTraffic && s.TotalRequestsPerMinute == 0:
		return fmt.Errorf("target %q needs total_requests_per_minute", TargetTraffic)
	case s.ShareDropMinute != 0 && s.Target != TargetTraffic:
		return fmt.Errorf("share_drop_minute applies to target %q", TargetTraffic)
	case s.ShareDropMinute < 0:
		return fmt.Errorf("share_drop_minute must be >= 0")
	case len(s.LatencyBuckets) > 0 && s.LatencyMedian <= 0, s.ExtremeValue > 0 && s.LatencyMedian <= 0:
		return fmt.Errorf("latency_buckets_ms and extreme_value_ms need a latency metric")
	case s.ExtremeValue < 0 || math.IsInf(s.ExtremeValue, 0) || math.IsNaN(s.ExtremeValue):
		return fmt.Errorf("extreme_value_ms must be finite and >= 0")
	}
	for _, v := range s.CanaryShare {
		if !share(v) {
			return fmt.Errorf("canary_share values must be in (0, 1) (got %v)", v)
		}
	}
	for i, b := range s.LatencyBuckets {
		if !(b > 0) || i > 0 && !(b > s.LatencyBuckets[i-1]) {
			return fmt.Errorf("latency_buckets_ms must be > 0 and strictly increasing (got %v)", s.LatencyBuckets)
		}
	}
	if s.ExtremeValue > 0 {
		if _, err := analysis.ParseCohort(s.ExtremeCohort); err != nil {
			return fmt.Errorf("extreme_cohort: %w", err)
		}
	}
	return nil
}

// tolerance returns the relative change that one unit of effect makes:
// the target metric's tolerance, or ShareDropUnit for TargetTraffic.
func (s *Scenario) tolerance(cfg *analysis.Config) float64 {
	if s.Target == TargetTraffic {
		return ShareDropUnit
	}
	return cfg.Metrics[cfg.Metric(s.Target)].Tolerance
}

// FalsePromoteEffect returns the effect multiple from which a PROMOTE is
// false: a canary worse than its tolerance plus its detectable effect,
// 1 + detectable_effect/tolerance (2 with the default detectable effect,
// which equals the tolerance) — the regression the gate sizes samples to
// catch with the config's power, so that a valid judge promotes it in at
// most 1 − power of runs. For TargetTraffic it is ShareDropFalsePromote,
// a share dropped to a fifth. 0 when the tolerance is 0 (effect
// multiples are then all A/A). cfg is the scenario's Config().
func (s *Scenario) FalsePromoteEffect(cfg *analysis.Config) float64 {
	if s.Target == TargetTraffic {
		return ShareDropFalsePromote
	}
	m := &cfg.Metrics[cfg.Metric(s.Target)]
	if m.Tolerance == 0 {
		return 0
	}
	return 1 + m.DetectableEffect/m.Tolerance
}

// BoundaryEffect returns the effect multiple at the tolerance boundary, 1,
// where a valid judge still rolls back at most 1 − confidence of runs
// (the canary is exactly as bad as the config tolerates); 0 when there is
// no boundary (a tolerance of 0).
func (s *Scenario) BoundaryEffect(cfg *analysis.Config) float64 {
	if s.tolerance(cfg) == 0 {
		return 0
	}
	return 1
}

// Traffic states the scenario's traffic in words.
func (s *Scenario) Traffic() string {
	if s.TotalRequestsPerMinute > 0 {
		pct := make([]string, len(s.CanaryShare))
		for i, v := range s.CanaryShare {
			pct[i] = strconv.FormatFloat(100*v, 'g', 4, 64)
		}
		shape := "in " + strconv.Itoa(len(pct)) + " equal steps"
		switch {
		case len(pct) == 1:
			shape = "constant"
		case s.ShareRamp:
			shape = "linear ramp"
		}
		sep := "/"
		if s.ShareRamp {
			sep = "→"
		}
		return fmt.Sprintf("%g req/min in all, canary share %s%% (%s) (%d+%d instances), %d min",
			s.TotalRequestsPerMinute, strings.Join(pct, sep), shape, s.Instances[0], s.Instances[1], s.Minutes)
	}
	return fmt.Sprintf("%g+%g req/min (%d+%d instances), %d min",
		s.RequestsPerMinute[0], s.RequestsPerMinute[1], s.Instances[0], s.Instances[1], s.Minutes)
}

// shareAt returns the canary's scheduled share of the total traffic at
// minute m (CanaryShare, ShareRamp).
func (s *Scenario) shareAt(m int) float64 {
	n := len(s.CanaryShare)
	switch {
	case n == 1:
		return s.CanaryShare[0]
	case !s.ShareRamp:
		return s.CanaryShare[min(n-1, m*n/s.Minutes)]
	case s.Minutes == 1:
		return s.CanaryShare[0]
	}
	x := float64(m) / float64(s.Minutes-1) * float64(n-1)
	i := min(n-2, int(x))
	return s.CanaryShare[i] + (s.CanaryShare[i+1]-s.CanaryShare[i])*(x-float64(i))
}

// Scenarios returns the built-in scenarios, in report order.
func Scenarios() []Scenario {
	lat := func(s Scenario) Scenario { s.LatencyMedian, s.LatencySigma = 100, 0.5; return s }
	errs := func(s Scenario) Scenario { s.HasErrors, s.ErrorRate = true, 0.005; return s }
	base := Scenario{Minutes: 60, Instances: [2]int{1, 1}, RequestsPerMinute: [2]float64{1000, 1000}, ConfigWindow: DefaultWindow}
	multi := base
	multi.Instances = [2]int{4, 4}
	multi.RequestsPerMinute = [2]float64{2000, 2000}

	latency := lat(base)
	latency.Name, latency.Target = "latency", Latency
	latency.Description = "lognormal latency (median 100 ms, log-sd 0.5), independent requests"

	errors := errs(base)
	errors.Name, errors.Target = "errors", Errors
	errors.Description = "binomial errors, baseline 0.5%"

	zero := base
	zero.HasErrors = true
	zero.Name, zero.Target = "errors-zero", Errors
	zero.Description = "baseline without errors; regression k gives the canary k·tol·0.5% errors"

	conv := base
	conv.ConversionRate, conv.SessionsPerRequest = 0.05, 0.5
	conv.Name, conv.Target = "conversions", Conversions
	conv.Description = "conversions 5% of sessions (non-critical: rolls back only when the bake ends)"

	onebox := errs(lat(base))
	onebox.RequestsPerMinute = [2]float64{9000, 1000}
	onebox.Instances = [2]int{9, 1}
	onebox.Name, onebox.Target = "onebox", Errors
	onebox.Description = "one-box canary taking 10% of traffic (1,000 of 10,000 req/min); errors 0.5% and latency"

	ties := base
	ties.LatencyMedian, ties.LatencySigma, ties.LatencyInteger = 4, 0.6, true
	ties.Name, ties.Target = "latency-ties", Latency
	ties.Description = "integer latencies (median 4 ms, rounded): heavy ties"

	slow := errs(lat(base))
	slow.RampStart, slow.RampMinutes = 30, 15
	slow.Name, slow.Target = "slow-burn", Latency
	slow.Description = "latency regression starting at minute 30, reaching its size at minute 45"

	warm := errs(lat(base))
	warm.WarmupMinutes, warm.WarmupLatency, warm.WarmupErrors, warm.ConfigWarmup = 5, 3, 5, 5*time.Minute
	warm.Name, warm.Target = "warmup", Latency
	warm.Description = "canary warm-up spike (latency ×3, errors ×5, decaying over 5 min); config warm-up 5m"

	inst := errs(lat(multi))
	inst.InstanceLatencySigma, inst.InstanceErrorSigma = 0.05, 0.3
	inst.Name, inst.Target = "instances", Latency
	inst.Description = "4+4 instances, per-instance latency factor (log-sd 0.05) and error factor (log-sd 0.3)"

	noisy := errs(lat(multi))
	noisy.NoisyProb, noisy.NoisyMinutes, noisy.NoisyLatency, noisy.NoisyErrors = 0.25, 15, 1.3, 2
	noisy.Name, noisy.Target = "noisy-neighbour", Latency
	noisy.Description = "4+4 instances; each has a 25% chance of a 15-min noisy neighbour (latency ×1.3, errors ×2)"

	dip := errs(lat(multi))
	dip.InstanceLatencySigma, dip.InstanceErrorSigma = 0.02, 0.1
	dip.DipStart, dip.DipEnd, dip.DipTraffic, dip.DipErrors, dip.DipLatency = 20, 30, 0.2, 4, 1.2
	dip.Name, dip.Target = "traffic-dip", Errors
	dip.Description = "4+4 instances; both cohorts' traffic drops to 20% at minutes 20-30, with errors ×4 and latency ×1.2"

	classic := []Scenario{latency, errors, zero, conv, onebox, ties, slow, warm, inst, noisy, dip}
	for i := range classic {
		classic[i].Group = GroupClassic
	}
	return append(classic, messy()...)
}

// messy returns the built-in scenarios of GroupMessy: the conditions of
// real deployments under which issue 9 found the judge failing.
func messy() []Scenario {
	lat := func(s Scenario) Scenario { s.LatencyMedian, s.LatencySigma, s.Target = 100, 0.5, Latency; return s }
	errs := func(s Scenario) Scenario { s.HasErrors, s.ErrorRate, s.Target = true, 0.005, Errors; return s }
	base := Scenario{Group: GroupMessy, Minutes: 60, Instances: [2]int{1, 1}, RequestsPerMinute: [2]float64{1000, 1000}, ConfigWindow: DefaultWindow}
	var out []Scenario
	add := func(s Scenario, name, desc string) { s.Name, s.Description = name, desc; out = append(out, s) }

	// Traffic shares that change during the run, with a change hitting both
	// cohorts in minutes 40-59: counts pooled over time are confounded by
	// the share (Simpson's paradox).
	shared := base
	shared.TotalRequestsPerMinute = 2000
	shared.DipStart, shared.DipEnd, shared.DipTraffic, shared.DipErrors, shared.DipLatency = 40, 60, 1, 1, 1
	steps, ramp := shared, shared
	steps.CanaryShare = []float64{0.05, 0.10, 0.25, 0.50}
	ramp.CanaryShare, ramp.ShareRamp = []float64{0.05, 0.50}, true
	burst := func(s Scenario) Scenario { s = errs(s); s.DipErrors = 4; return s }
	slowdown := func(s Scenario) Scenario { s = lat(s); s.DipLatency = 1.5; return s }
	add(burst(steps), "share-steps-burst", "canary share 5/10/25/50% of 2,000 req/min, each for a quarter of the run (Argo Rollouts setWeight steps); errors 0.5%, ×4 for both cohorts in minutes 40-59")
	add(slowdown(steps), "share-steps-slowdown", "canary share 5/10/25/50% of 2,000 req/min, each for a quarter of the run; latency (median 100 ms, log-sd 0.5) ×1.5 for both cohorts in minutes 40-59")
	add(burst(ramp), "share-ramp-burst", "canary share ramping linearly 5% → 50% of 2,000 req/min; errors 0.5%, ×4 for both cohorts in minutes 40-59")
	add(slowdown(ramp), "share-ramp-slowdown", "canary share ramping linearly 5% → 50% of 2,000 req/min; latency ×1.5 for both cohorts in minutes 40-59")

	// Few instances, each with its own latency and error factor (those of
	// the classic instances scenario), drawn per run.
	for _, l := range []struct {
		name string
		n    [2]int
		rpm  [2]float64
	}{
		{"instances-2x2", [2]int{2, 2}, [2]float64{2000, 2000}},
		{"instances-3x3", [2]int{3, 3}, [2]float64{2000, 2000}},
		{"onebox-9x1", [2]int{9, 1}, [2]float64{9000, 1000}},
	} {
		s := base
		s.Instances, s.RequestsPerMinute = l.n, l.rpm
		s.InstanceLatencySigma, s.InstanceErrorSigma = 0.05, 0.3
		what := fmt.Sprintf("%d+%d instances at %g+%g req/min, per-instance", l.n[0], l.n[1], l.rpm[0], l.rpm[1])
		add(errs(s), l.name+"-errors", what+" error factor (log-sd 0.3); errors only, 0.5%")
		add(lat(s), l.name+"-latency", what+" latency factor (log-sd 0.05); latency only (median 100 ms, log-sd 0.5)")
	}

	int2 := base
	int2.LatencyMedian, int2.LatencySigma, int2.LatencyInteger, int2.Target = 2, 0.5, true, Latency
	add(int2, "latency-int-2ms", "integer-ms latency with a 2 ms median (lognormal, log-sd 0.5, rounded): 1, 2, 3 ms hold most values")

	prom := lat(base)
	prom.LatencyBuckets = PrometheusBuckets()
	add(prom, "prom-buckets", "latency (median 100 ms, log-sd 0.5) known only through Prometheus' default buckets (5 ms ... 10 s, +Inf): one histogram per instance and minute, with _sum")
	prom.LatencyNoSum = true
	add(prom, "prom-buckets-nosum", "as prom-buckets, without the histograms' _sum (HasSum false): bucket counts only")

	extreme := lat(base)
	extreme.ExtremeValue = 1e12
	extreme.ExtremeCohort = analysis.Canary.String()
	add(extreme, "extreme-canary", "latency (median 100 ms); one canary value of 1e12 ms at one random minute")
	extreme.ExtremeCohort = analysis.Baseline.String()
	add(extreme, "extreme-baseline", "latency (median 100 ms); one baseline value of 1e12 ms at one random minute")

	srm := errs(lat(base))
	srm.Instances, srm.TotalRequestsPerMinute, srm.CanaryShare, srm.ExpectedShare = [2]int{9, 1}, 10000, []float64{0.1}, 0.1
	srm.Target, srm.ShareDropMinute = TargetTraffic, 10
	add(srm, "share-drop", "one-box with 10% of 10,000 req/min, declared (expected share 0.1); errors 0.5% and latency; from minute 10 the canary's share drops by k·50% (effect 1: by half, the tolerance of the sample-ratio check; 1.6: to a fifth); A/A keeps it")
	return out
}

// run is the generator of one simulated run.
type run struct {
	s                  *Scenario
	rng                *rand.Rand
	effect             float64 // k·tol, the relative size of the regression
	lat, errs, conv    int     // metric indexes, -1 when absent
	names              [2][]string
	latFactor, errFac  [2][]float64
	noisyFrom, noisyTo [2][]int
	scratch            []float64 // values of one histogram
	// bounds are the latency histograms' upper bounds (ending with +Inf),
	// nil when latency is reported as values.
	bounds []float64
	// The extreme value goes to instance extremeInst of cohort
	// extremeCohort at minute extremeMinute; extremeMinute is -1 without.
	extremeMinute, extremeInst int
	extremeCohort              analysis.Cohort
}

func (s *Scenario) newRun(cfg *analysis.Config, effect float64, rng *rand.Rand) *run {
	r := &run{s: s, rng: rng, lat: cfg.Metric(Latency), errs: cfg.Metric(Errors), conv: cfg.Metric(Conversions), extremeMinute: -1}
	r.effect = effect * s.tolerance(cfg)
	for c := range 2 {
		n := s.Instances[c]
		r.names[c] = make([]string, n)
		r.latFactor[c] = make([]float64, n)
		r.errFac[c] = make([]float64, n)
		r.noisyFrom[c] = make([]int, n)
		r.noisyTo[c] = make([]int, n)
		for i := range n {
			r.names[c][i] = analysis.Cohort(c).String()[:1] + strconv.Itoa(i)
			r.latFactor[c][i] = math.Exp(s.InstanceLatencySigma * rng.NormFloat64())
			es := s.InstanceErrorSigma
			r.errFac[c][i] = math.Exp(es*rng.NormFloat64() - es*es/2)
			if s.NoisyProb > 0 && rng.Float64() < s.NoisyProb {
				from := rng.IntN(max(1, s.Minutes-s.NoisyMinutes+1))
				r.noisyFrom[c][i], r.noisyTo[c][i] = from, from+s.NoisyMinutes
			}
		}
	}
	if len(s.LatencyBuckets) > 0 {
		r.bounds = slices.Clone(s.LatencyBuckets)
		if !math.IsInf(r.bounds[len(r.bounds)-1], 1) {
			r.bounds = append(r.bounds, math.Inf(1))
		}
	}
	// Draws for the features below come after those above, and only when
	// a feature is on: the scenarios without it keep their data.
	if s.ExtremeValue > 0 {
		r.extremeCohort, _ = analysis.ParseCohort(s.ExtremeCohort) // validated by Config
		first := min(s.Minutes-1, int(math.Ceil(cfg.Warmup.Minutes())))
		r.extremeMinute = first + rng.IntN(s.Minutes-first)
		r.extremeInst = rng.IntN(s.Instances[r.extremeCohort])
	}
	return r
}

// rates returns the expected requests per minute of each cohort at minute
// m, before a dip: RequestsPerMinute, or the total split by the canary's
// share, after its drop when the target is the traffic.
func (r *run) rates(m int) [2]float64 {
	s := r.s
	if s.TotalRequestsPerMinute <= 0 {
		return s.RequestsPerMinute
	}
	share := s.shareAt(m)
	if s.Target == TargetTraffic && m >= s.ShareDropMinute {
		share *= max(0, 1-r.regression(m))
	}
	return [2]float64{s.TotalRequestsPerMinute * (1 - share), s.TotalRequestsPerMinute * share}
}

// histogram counts vs in the buckets of r.bounds: a value v goes to the
// first bucket whose upper bound is >= v (Prometheus' le).
func (r *run) histogram(vs []float64) *analysis.Histogram {
	h := &analysis.Histogram{Bounds: r.bounds, Counts: make([]float64, len(r.bounds)), HasSum: !r.s.LatencyNoSum}
	for _, v := range vs {
		h.Counts[sort.SearchFloat64s(r.bounds, v)]++
		if h.HasSum {
			h.Sum += v
		}
	}
	return h
}

// regression returns the size of the canary's regression at minute m.
func (r *run) regression(m int) float64 {
	s := r.s
	switch {
	case m < s.RampStart:
		return 0
	case s.RampMinutes > 0:
		return r.effect * min(1, float64(m-s.RampStart+1)/float64(s.RampMinutes))
	}
	return r.effect
}

func (r *run) next(m int) *Batch {
	s := r.s
	b := &Batch{Minute: m, Time: Start.Add(time.Duration(m) * time.Minute), Last: m == s.Minutes-1}
	traffic, dipErr, dipLat := 1.0, 1.0, 1.0
	if m >= s.DipStart && m < s.DipEnd {
		traffic, dipErr, dipLat = s.DipTraffic, s.DipErrors, s.DipLatency
	}
	reg := r.regression(m)
	rate := r.rates(m)
	for c := range 2 {
		canary := analysis.Cohort(c) == analysis.Canary
		warmLat, warmErr := 1.0, 1.0
		if canary && m < s.WarmupMinutes {
			f := 1 - float64(m)/float64(s.WarmupMinutes)
			warmLat, warmErr = 1+(s.WarmupLatency-1)*f, 1+(s.WarmupErrors-1)*f
		}
		n := s.Instances[c]
		for i := range n {
			noisyLat, noisyErr := 1.0, 1.0
			if m >= r.noisyFrom[c][i] && m < r.noisyTo[c][i] {
				noisyLat, noisyErr = s.NoisyLatency, s.NoisyErrors
			}
			reqs := poisson(r.rng, rate[c]*traffic/float64(n))
			b.Requests[c] += reqs
			inst := r.names[c][i]
			if r.lat >= 0 {
				f := s.LatencyMedian * r.latFactor[c][i] * noisyLat * dipLat * warmLat
				if canary && s.Target == Latency {
					f *= 1 + reg
				}
				var vs []float64
				if r.bounds != nil {
					vs = slices.Grow(r.scratch[:0], int(reqs))[:int(reqs)]
				} else {
					vs = make([]float64, int(reqs))
				}
				for j := range vs {
					v := f * math.Exp(s.LatencySigma*r.rng.NormFloat64())
					if s.LatencyInteger {
						v = math.Round(v)
					}
					vs[j] = v
				}
				if m == r.extremeMinute && analysis.Cohort(c) == r.extremeCohort && i == r.extremeInst {
					if len(vs) > 0 {
						vs[0] = s.ExtremeValue
					} else {
						vs = append(vs, s.ExtremeValue)
					}
				}
				smp := Sample{Metric: r.lat, Cohort: analysis.Cohort(c), Instance: inst, Values: vs}
				if r.bounds != nil {
					smp.Values, smp.Histogram, r.scratch = nil, r.histogram(vs), vs
				}
				b.Samples = append(b.Samples, smp)
			}
			if r.errs >= 0 {
				p := s.ErrorRate * r.errFac[c][i] * noisyErr * dipErr * warmErr
				if canary && s.Target == Errors {
					if s.ErrorRate == 0 {
						p = reg * ZeroBaselineRef
					} else {
						p *= 1 + reg
					}
				}
				k := binomial(r.rng, reqs, min(1, p))
				b.Samples = append(b.Samples, Sample{Metric: r.errs, Cohort: analysis.Cohort(c), Instance: inst, Count: k, Total: reqs})
			}
			if r.conv >= 0 {
				sessions := binomial(r.rng, reqs, s.SessionsPerRequest)
				p := s.ConversionRate
				if canary && s.Target == Conversions {
					p *= max(0, 1-reg)
				}
				k := binomial(r.rng, sessions, p)
				b.Samples = append(b.Samples, Sample{Metric: r.conv, Cohort: analysis.Cohort(c), Instance: inst, Count: k, Total: sessions})
			}
		}
	}
	return b
}

// poisson draws a Poisson(λ) count: by multiplication of uniforms below
// λ = 30, by the normal approximation with continuity above.
func poisson(rng *rand.Rand, lambda float64) float64 {
	if lambda <= 0 {
		return 0
	}
	if lambda < 30 {
		l, k, p := math.Exp(-lambda), 0.0, rng.Float64()
		for p > l {
			k++
			p *= rng.Float64()
		}
		return k
	}
	return max(0, math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64()))
}

// binomial draws a Binomial(n, p) count: by geometric waiting times while
// the mean is small (exact), by the normal approximation otherwise.
func binomial(rng *rand.Rand, n, p float64) float64 {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case p > 0.5:
		return n - binomial(rng, n, 1-p)
	case n*p < 40:
		lq := math.Log1p(-p)
		k, pos := 0.0, 0.0
		for {
			pos += math.Floor(math.Log(1-rng.Float64())/lq) + 1
			if pos > n {
				return k
			}
			k++
		}
	}
	return min(n, max(0, math.Round(n*p+math.Sqrt(n*p*(1-p))*rng.NormFloat64())))
}
