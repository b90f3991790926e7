package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
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
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Minutes is the bake: the run is judged over this many one-minute
	// batches and the bake completes with the last.
	Minutes int `json:"minutes"`
	// Instances and RequestsPerMinute per cohort (baseline, canary).
	Instances         [2]int     `json:"instances"`
	RequestsPerMinute [2]float64 `json:"requests_per_minute"`
	// Target is the metric that regresses.
	Target string `json:"target"`

	// Latency: lognormal with median LatencyMedian (ms) and log-sd
	// LatencySigma; rounded to whole ms when LatencyInteger (heavy ties).
	// Zero LatencyMedian means no latency metric.
	LatencyMedian  float64 `json:"latency_median_ms,omitempty"`
	LatencySigma   float64 `json:"latency_sigma,omitempty"`
	LatencyInteger bool    `json:"latency_integer,omitempty"`
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
	// traffic × DipTraffic, error rate × DipErrors, latency × DipLatency.
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
	if cfg.Metric(s.Target) < 0 {
		return nil, fmt.Errorf("target %q is not a metric of the scenario", s.Target)
	}
	if s.Minutes < 1 || s.Instances[0] < 1 || s.Instances[1] < 1 {
		return nil, fmt.Errorf("minutes and instances must be >= 1")
	}
	return cfg, nil
}

// Traffic states the scenario's traffic in words.
func (s *Scenario) Traffic() string {
	return fmt.Sprintf("%g+%g req/min (%d+%d instances), %d min",
		s.RequestsPerMinute[0], s.RequestsPerMinute[1], s.Instances[0], s.Instances[1], s.Minutes)
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

	return []Scenario{latency, errors, zero, conv, onebox, ties, slow, warm, inst, noisy, dip}
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
}

func (s *Scenario) newRun(cfg *analysis.Config, effect float64, rng *rand.Rand) *run {
	r := &run{s: s, rng: rng, lat: cfg.Metric(Latency), errs: cfg.Metric(Errors), conv: cfg.Metric(Conversions)}
	r.effect = effect * cfg.Metrics[cfg.Metric(s.Target)].Tolerance
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
	return r
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
			reqs := poisson(r.rng, s.RequestsPerMinute[c]*traffic/float64(n))
			b.Requests[c] += reqs
			inst := r.names[c][i]
			if r.lat >= 0 {
				f := s.LatencyMedian * r.latFactor[c][i] * noisyLat * dipLat * warmLat
				if canary && s.Target == Latency {
					f *= 1 + reg
				}
				vs := make([]float64, int(reqs))
				for j := range vs {
					v := f * math.Exp(s.LatencySigma*r.rng.NormFloat64())
					if s.LatencyInteger {
						v = math.Round(v)
					}
					vs[j] = v
				}
				b.Samples = append(b.Samples, Sample{Metric: r.lat, Cohort: analysis.Cohort(c), Instance: inst, Values: vs})
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
