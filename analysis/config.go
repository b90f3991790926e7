package analysis

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Category says what kind of signal a metric carries.
type Category string

// The categories of the brief: errors and crashes, resource use and
// latency, and what the business counts.
const (
	Stability   Category = "stability"
	Performance Category = "performance"
	Business    Category = "business"
)

// MetricType selects the statistical test of a metric.
type MetricType string

// Metric types.
const (
	// TypeDistribution is a metric with one value per observation
	// (latency, CPU): Mann-Whitney U on the two distributions.
	TypeDistribution MetricType = "distribution"
	// TypeRate is events out of an exposure (errors/requests,
	// crashes/instance-hours): the exact conditional test of the rate ratio.
	TypeRate MetricType = "rate"
	// TypeMean is a metric judged by its mean (revenue per order): Welch's t.
	TypeMean MetricType = "mean"
)

// Direction says which change of a metric is bad.
type Direction string

// Directions.
const (
	Increase Direction = "increase"
	Decrease Direction = "decrease"
	Both     Direction = "both"
)

// Defaults applied by Config.Normalize where a field is left out.
const (
	DefaultConfidence = 0.99
	DefaultPower      = 0.80
	DefaultTolerance  = 0.10
	DefaultMinSamples = 100
	DefaultMinTotal   = 1000
	// DefaultDetectableEffect is the detectable effect of a metric whose
	// tolerance is 0.
	DefaultDetectableEffect = 0.10
	// MaxMetrics bounds the metrics of one config: each extra metric costs
	// power, and the SRE workbook advises about a dozen.
	MaxMetrics = 50
	// MaxUnitLen bounds Metric.Unit and Metric.ExposureUnit, in bytes:
	// they are copied into every run and reason.
	MaxUnitLen = 64
)

// Config says how to judge a canary: which metrics, how, and with what
// confidence. One file serves `canaryctl analyze` and the service.
type Config struct {
	// Name identifies the config (letters, digits, '.', '_', '-').
	Name string `json:"name"`
	// Warmup is the time after each cohort's start during which its
	// observations are ignored.
	Warmup time.Duration `json:"warmup"`
	// Window, when positive, adds window tests to the judge: the
	// samples since the start of each of the last MaxWindows time slices
	// of this length (on a grid anchored at the run's start) are judged on
	// their own, beside the whole run, so that a regression that starts mid-run
	// (a slow burn, a leak) is not diluted by the healthy samples before
	// it. Half of the level goes to the whole run and half to the windows
	// (see Judge). Zero turns window tests off.
	Window time.Duration `json:"window,omitempty"`
	// Confidence is the family-wise confidence of a rollback: the
	// probability that a canary identical to its baseline is rolled back,
	// across all its metrics together, is at most 1 − Confidence.
	Confidence float64 `json:"confidence"`
	// Power is the probability with which the gate requires a regression
	// of DetectableEffect beyond the tolerance to be detected.
	Power float64 `json:"power"`
	// Metrics are judged together.
	Metrics []Metric `json:"metrics"`
	// Traffic configures the sample-ratio check of the canary's share of
	// the traffic (traffic.go), on by default.
	Traffic TrafficCheck `json:"traffic"`
}

// TrafficCheck configures the sample-ratio check: a canary whose share of
// the traffic falls below (1 − Tolerance) times the expected one is a
// regression of the stability metric "traffic_share".
type TrafficCheck struct {
	// Metric names the rate metric whose exposure counts the traffic; ""
	// means the first rate metric whose exposure unit is requests (without
	// one, there is no check).
	Metric string `json:"metric,omitempty"`
	// Tolerance is the relative drop of the share accepted; Normalize
	// turns 0 into DefaultTrafficTolerance (0.5).
	Tolerance float64 `json:"tolerance,omitempty"`
	// Critical makes a regression roll back at once; Normalize turns nil
	// into true.
	Critical *bool `json:"critical,omitempty"`
	// Disabled turns the check off.
	Disabled bool `json:"disabled,omitempty"`
}

// Metric configures one metric.
type Metric struct {
	Name         string     `json:"name"`
	Category     Category   `json:"category"`
	Type         MetricType `json:"type"`
	BadDirection Direction  `json:"bad_direction"`
	// Tolerance is the relative change accepted before it counts as a
	// regression: 0.10 means a canary 10% worse than its baseline is
	// still acceptable.
	Tolerance float64 `json:"tolerance"`
	// Critical metrics roll back as soon as they regress, without waiting
	// for the bake time to end.
	Critical bool `json:"critical"`
	// MinSamples is the floor of observations per cohort (distribution and
	// mean metrics).
	MinSamples int `json:"min_samples,omitempty"`
	// MinTotal is the floor of exposure per cohort (rate metrics).
	MinTotal float64 `json:"min_total,omitempty"`
	// DetectableEffect is the relative change beyond the tolerance that the
	// gate requires the sample to detect with the configured power.
	DetectableEffect float64 `json:"detectable_effect"`
	// Unit names the unit of a value ("ms"), for reasons and tables.
	Unit string `json:"unit,omitempty"`
	// ExposureUnit names what Total counts for a rate metric ("requests",
	// "sessions", "instance-hours"); default "requests".
	ExposureUnit string `json:"exposure_unit,omitempty"`
}

// FieldError is a config or input error that names the offending field,
// such as "metrics[1].tolerance: must be >= 0".
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// FieldErrors collects every FieldError of one config.
type FieldErrors []*FieldError

func (es FieldErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

func (es *FieldErrors) add(field, format string, args ...any) {
	*es = append(*es, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (es FieldErrors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)

// ParseConfig parses a YAML config, applies the defaults and validates
// it. Unknown fields, wrong types and contradictions are reported as
// FieldErrors that name the field.
func ParseConfig(src []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("parse config: empty document")
	}
	var errs FieldErrors
	cfg := &Config{}
	p := parser{errs: &errs}
	p.config(doc.Content[0], cfg)
	if len(errs) > 0 {
		return nil, errs
	}
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parser walks the YAML tree so that every error names its field path.
type parser struct{ errs *FieldErrors }

func (p parser) fields(n *yaml.Node, path string, known map[string]func(string, *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.errs.add(orRoot(path), "must be a mapping (line %d)", n.Line)
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		fp := k
		if path != "" {
			fp = path + "." + k
		}
		f, ok := known[k]
		switch {
		case !ok:
			p.errs.add(fp, "unknown field (line %d)", n.Content[i].Line)
		case seen[k]:
			p.errs.add(fp, "given twice (line %d)", n.Content[i].Line)
		default:
			seen[k] = true
			f(fp, v)
		}
	}
}

func orRoot(path string) string {
	if path == "" {
		return "config"
	}
	return path
}

func (p parser) str(path string, n *yaml.Node, dst *string) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errs.add(path, "must be a string (line %d)", n.Line)
		return
	}
	*dst = n.Value
}

func (p parser) num(path string, n *yaml.Node, dst *float64) {
	v, err := strconv.ParseFloat(n.Value, 64)
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || err != nil ||
		math.IsNaN(v) || math.IsInf(v, 0) {
		p.errs.add(path, "must be a finite number (line %d)", n.Line)
		return
	}
	*dst = v
}

func (p parser) integer(path string, n *yaml.Node, dst *int) {
	v, err := strconv.Atoi(n.Value)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
		p.errs.add(path, "must be a whole number (line %d)", n.Line)
		return
	}
	*dst = v
}

func (p parser) boolean(path string, n *yaml.Node, dst *bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.errs.add(path, "must be true or false (line %d)", n.Line)
		return
	}
	*dst = n.Value == "true"
}

func (p parser) duration(path string, n *yaml.Node, dst *time.Duration) {
	if n.Kind != yaml.ScalarNode {
		p.errs.add(path, "must be a duration such as 5m (line %d)", n.Line)
		return
	}
	if n.Value == "0" {
		*dst = 0
		return
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		p.errs.add(path, "must be a duration such as 5m or 90s (line %d)", n.Line)
		return
	}
	*dst = d
}

func (p parser) config(n *yaml.Node, c *Config) {
	p.fields(n, "", map[string]func(string, *yaml.Node){
		"name":       func(fp string, v *yaml.Node) { p.str(fp, v, &c.Name) },
		"warmup":     func(fp string, v *yaml.Node) { p.duration(fp, v, &c.Warmup) },
		"window":     func(fp string, v *yaml.Node) { p.duration(fp, v, &c.Window) },
		"confidence": func(fp string, v *yaml.Node) { p.num(fp, v, &c.Confidence) },
		"power":      func(fp string, v *yaml.Node) { p.num(fp, v, &c.Power) },
		"traffic": func(fp string, v *yaml.Node) {
			t := &c.Traffic
			p.fields(v, fp, map[string]func(string, *yaml.Node){
				"metric":    func(fp string, v *yaml.Node) { p.str(fp, v, &t.Metric) },
				"tolerance": func(fp string, v *yaml.Node) { p.num(fp, v, &t.Tolerance) },
				"critical": func(fp string, v *yaml.Node) {
					var b bool
					p.boolean(fp, v, &b)
					t.Critical = &b
				},
				"disabled": func(fp string, v *yaml.Node) { p.boolean(fp, v, &t.Disabled) },
			})
		},
		"metrics": func(fp string, v *yaml.Node) {
			if v.Kind != yaml.SequenceNode {
				p.errs.add(fp, "must be a list of metrics (line %d)", v.Line)
				return
			}
			c.Metrics = make([]Metric, len(v.Content))
			for i, m := range v.Content {
				p.metric(fmt.Sprintf("%s[%d]", fp, i), m, &c.Metrics[i])
			}
		},
	})
}

func (p parser) metric(path string, n *yaml.Node, m *Metric) {
	m.Tolerance = math.NaN() // distinguishes "left out" from 0
	m.DetectableEffect = math.NaN()
	m.MinSamples = -1
	m.MinTotal = math.NaN()
	p.fields(n, path, map[string]func(string, *yaml.Node){
		"name":          func(fp string, v *yaml.Node) { p.str(fp, v, &m.Name) },
		"category":      func(fp string, v *yaml.Node) { p.str(fp, v, (*string)(&m.Category)) },
		"type":          func(fp string, v *yaml.Node) { p.str(fp, v, (*string)(&m.Type)) },
		"bad_direction": func(fp string, v *yaml.Node) { p.str(fp, v, (*string)(&m.BadDirection)) },
		"tolerance":     func(fp string, v *yaml.Node) { p.num(fp, v, &m.Tolerance) },
		"critical":      func(fp string, v *yaml.Node) { p.boolean(fp, v, &m.Critical) },
		"min_samples": func(fp string, v *yaml.Node) {
			if p.integer(fp, v, &m.MinSamples); m.MinSamples < 2 {
				p.errs.add(fp, "must be >= 2")
			}
		},
		"min_total":         func(fp string, v *yaml.Node) { p.num(fp, v, &m.MinTotal) },
		"detectable_effect": func(fp string, v *yaml.Node) { p.num(fp, v, &m.DetectableEffect) },
		"unit":              func(fp string, v *yaml.Node) { p.str(fp, v, &m.Unit) },
		"exposure_unit":     func(fp string, v *yaml.Node) { p.str(fp, v, &m.ExposureUnit) },
	})
}

// Normalize applies the defaults to fields left out and validates the
// config; it is idempotent. A zero MinSamples or DetectableEffect means
// "left out"; for Tolerance and MinTotal, where 0 is meaningful, NaN marks
// a field left out (UnsetMetric returns a Metric with every marker set).
func (c *Config) Normalize() error {
	var errs FieldErrors
	if !nameRE.MatchString(c.Name) {
		errs.add("name", "must be 1-128 letters, digits or . _ : / - (got %q)", shorten(c.Name))
	}
	if c.Warmup < 0 {
		errs.add("warmup", "must be >= 0")
	}
	if c.Window != 0 && c.Window < time.Second {
		errs.add("window", "must be 0 (no window tests) or at least 1s")
	}
	if c.Confidence == 0 {
		c.Confidence = DefaultConfidence
	}
	if !(c.Confidence >= 0.5 && c.Confidence < 1) {
		errs.add("confidence", "must be in [0.5, 1) (got %v)", c.Confidence)
	}
	if c.Power == 0 {
		c.Power = DefaultPower
	}
	if !(c.Power >= 0.5 && c.Power < 1) {
		errs.add("power", "must be in [0.5, 1) (got %v)", c.Power)
	}
	switch {
	case len(c.Metrics) == 0:
		errs.add("metrics", "at least one metric is required")
	case len(c.Metrics) > MaxMetrics:
		errs.add("metrics", "at most %d metrics (got %d)", MaxMetrics, len(c.Metrics))
	}
	names := map[string]int{}
	for i := range c.Metrics {
		m := &c.Metrics[i]
		path := fmt.Sprintf("metrics[%d]", i)
		m.normalize(path, &errs)
		if j, dup := names[m.Name]; dup && m.Name != "" {
			errs.add(path+".name", "%q is also the name of metrics[%d]", m.Name, j)
		}
		names[m.Name] = i
		if m.Name == TrafficName {
			errs.add(path+".name", "%q is reserved for the sample-ratio check", TrafficName)
		}
	}
	t := &c.Traffic
	if t.Tolerance == 0 {
		t.Tolerance = DefaultTrafficTolerance
	}
	if t.Critical == nil {
		t.Critical = new(bool)
		*t.Critical = true
	}
	switch {
	case !(t.Tolerance > 0 && t.Tolerance < 1):
		errs.add("traffic.tolerance", "must be in (0, 1) (got %v)", t.Tolerance)
	case t.Metric != "" && c.Metric(t.Metric) < 0:
		errs.add("traffic.metric", "%q is not a metric of the config", t.Metric)
	case t.Metric != "" && c.Metrics[c.Metric(t.Metric)].Type != TypeRate:
		errs.add("traffic.metric", "%q is not a rate metric: the traffic is a rate metric's exposure", t.Metric)
	}
	return errs.err()
}

// UnsetMetric returns a Metric whose optional fields are all marked as left
// out, for configs built in Go: Normalize fills in their defaults.
func UnsetMetric() Metric {
	return Metric{Tolerance: math.NaN(), DetectableEffect: math.NaN(), MinSamples: -1, MinTotal: math.NaN()}
}

func (m *Metric) normalize(path string, errs *FieldErrors) {
	if !nameRE.MatchString(m.Name) {
		errs.add(path+".name", "must be 1-128 letters, digits or . _ : / - (got %q)", shorten(m.Name))
	}
	for _, u := range []struct{ field, v string }{{"unit", m.Unit}, {"exposure_unit", m.ExposureUnit}} {
		if len(u.v) > MaxUnitLen {
			errs.add(path+"."+u.field, "is %d bytes, more than %d", len(u.v), MaxUnitLen)
		}
	}
	switch m.Category {
	case Stability, Performance, Business:
	case "":
		errs.add(path+".category", "is required: stability, performance or business")
	default:
		errs.add(path+".category", "must be stability, performance or business (got %q)", m.Category)
	}
	switch m.Type {
	case TypeDistribution, TypeRate, TypeMean:
	case "":
		errs.add(path+".type", "is required: distribution, rate or mean")
	default:
		errs.add(path+".type", "must be distribution, rate or mean (got %q)", m.Type)
	}
	switch m.BadDirection {
	case Increase, Decrease, Both:
	case "":
		// Errors, crashes, latency and CPU are bad when they go up;
		// conversions and revenue when they go down.
		m.BadDirection = Increase
		if m.Category == Business {
			m.BadDirection = Decrease
		}
	default:
		errs.add(path+".bad_direction", "must be increase, decrease or both (got %q)", m.BadDirection)
	}
	if math.IsNaN(m.Tolerance) {
		m.Tolerance = DefaultTolerance
	}
	switch {
	case m.Tolerance < 0 || math.IsInf(m.Tolerance, 0):
		errs.add(path+".tolerance", "must be >= 0")
	case m.BadDirection != Increase && m.Tolerance >= 1:
		errs.add(path+".tolerance", "must be < 1 when bad_direction is %s: a decrease of 100%% or more cannot happen", m.BadDirection)
	}
	if math.IsNaN(m.DetectableEffect) || m.DetectableEffect == 0 {
		m.DetectableEffect = m.Tolerance
		if m.DetectableEffect == 0 {
			m.DetectableEffect = DefaultDetectableEffect
		}
		if m.BadDirection != Increase && m.Tolerance < 1 {
			// A decrease cannot reach 100%: keep tolerance + effect below
			// 1, halfway from the tolerance to 100% at most.
			m.DetectableEffect = min(m.DetectableEffect, (1-m.Tolerance)/2)
		}
	}
	switch {
	case !(m.DetectableEffect > 0) || math.IsInf(m.DetectableEffect, 0):
		errs.add(path+".detectable_effect", "must be > 0")
	case m.BadDirection != Increase && m.Tolerance+m.DetectableEffect >= 1:
		errs.add(path+".detectable_effect", "tolerance + detectable_effect must be < 1 when bad_direction is %s", m.BadDirection)
	}
	switch m.Type {
	case TypeRate:
		if m.MinSamples > 0 {
			errs.add(path+".min_samples", "applies to distribution and mean metrics; use min_total for a rate metric")
		}
		m.MinSamples = 0
		if math.IsNaN(m.MinTotal) {
			m.MinTotal = DefaultMinTotal
		}
		if m.ExposureUnit == "" {
			m.ExposureUnit = "requests"
		}
		if !(m.MinTotal >= 0) || math.IsInf(m.MinTotal, 0) {
			errs.add(path+".min_total", "must be >= 0")
		}
	case TypeDistribution, TypeMean:
		if m.ExposureUnit != "" {
			errs.add(path+".exposure_unit", "applies to rate metrics only")
		}
		if !math.IsNaN(m.MinTotal) && m.MinTotal != 0 {
			errs.add(path+".min_total", "applies to rate metrics; use min_samples for a %s metric", m.Type)
		}
		m.MinTotal = 0
		if m.MinSamples <= 0 {
			m.MinSamples = DefaultMinSamples
		}
		if m.MinSamples < 2 {
			errs.add(path+".min_samples", "must be >= 2")
		}
	}
}

// shorten cuts a rejected name to 140 bytes for an error message.
func shorten(s string) string {
	if len(s) > 140 {
		return s[:140] + "…"
	}
	return s
}

// Metric returns the index of the named metric, or -1.
func (c *Config) Metric(name string) int {
	for i := range c.Metrics {
		if c.Metrics[i].Name == name {
			return i
		}
	}
	return -1
}

// Alpha is the family-wise error rate 1 − Confidence.
func (c *Config) Alpha() float64 { return 1 - c.Confidence }
