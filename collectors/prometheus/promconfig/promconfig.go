// Package promconfig holds the Prometheus parts of a canary config: the
// `source:` block, where a config's metrics are pulled from, and each
// metric's `query:` block, the PromQL that reads it.
//
//	source:
//	  prometheus:
//	    url: http://prometheus:9090
//	    interval: 30s              # how often canaryd queries while the run is running
//	    lag: 30s                   # an interval is queried lag after it ends (scrape and ingestion delay)
//	    bearer_token_file: /var/run/secrets/prom-token   # optional
//	    tls_ca_file: /etc/ssl/prom-ca.pem                # optional
//	metrics:
//	  - name: errors
//	    type: rate
//	    query:
//	      count: sum by (instance) (increase(http_requests_total{code=~"5..", {{.Selector}}}[{{.Range}}]))
//	      total: sum by (instance) (increase(http_requests_total{ {{.Selector}} }[{{.Range}}]))
//	  - name: latency_ms
//	    type: distribution
//	    query:
//	      buckets: sum by (le, instance) (increase(http_request_duration_seconds_bucket{ {{.Selector}} }[{{.Range}}]))
//	      sum: sum by (instance) (increase(http_request_duration_seconds_sum{ {{.Selector}} }[{{.Range}}]))
//	      scale: 1000              # seconds -> ms
//
// It is a leaf package (YAML only), so that the analysis config can hold
// its types without an import cycle; collectors/prometheus runs the
// queries. Parse functions report problems through a Reporter with the
// field's path, as the analysis config parser does.
package promconfig

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults and bounds of the source.
const (
	DefaultInterval = 30 * time.Second
	DefaultLag      = 30 * time.Second
	MinInterval     = time.Second
	MaxInterval     = time.Hour
	MaxLag          = time.Hour
	// MaxQueryLen bounds a query template, in bytes.
	MaxQueryLen = 4096
)

// Reporter receives a problem with the field at path; it has the
// signature of the analysis config parser's error list (FieldErrors.add).
type Reporter func(field, format string, args ...any)

// Source is where a config's metrics are pulled from (the YAML `source:`
// block).
type Source struct {
	// Prometheus is the one kind of source so far.
	Prometheus *Prometheus `json:"prometheus,omitempty"`
}

// Prometheus is a Prometheus server (or anything that serves its HTTP
// query API: Thanos, Mimir, VictoriaMetrics) and how often to query it.
type Prometheus struct {
	// URL is the base URL of the HTTP API, http:// or https://.
	URL string `json:"url"`
	// Interval is the length of the intervals a running run's metrics are
	// read in, each aligned to a grid fixed to the Unix epoch.
	Interval time.Duration `json:"interval"`
	// Lag is how long after its end an interval is queried, for the scrape
	// and ingestion delay.
	Lag time.Duration `json:"lag"`
	// BearerTokenFile, when set, names a file whose content is sent as a
	// bearer token (read again when it changes, as mounted tokens rotate).
	BearerTokenFile string `json:"bearer_token_file,omitempty"`
	// TLSCAFile, when set, names the PEM file of the CAs that verify an
	// https:// URL, instead of the system's.
	TLSCAFile string `json:"tls_ca_file,omitempty"`
}

// Query is the PromQL of one metric (the YAML `query:` block). Each query
// is a text/template with two fields: {{.Selector}}, the cohort's label
// matchers (version="v2", pod_template_hash="7d9f"), and {{.Range}}, the
// interval as a PromQL duration (30s). Each must return one series per
// instance (the `instance` label), and Buckets one per instance and `le`.
type Query struct {
	// Count and Total: a rate metric's events and exposure
	// (errors and requests); Count and Sum: a mean metric's observations and
	// their sum.
	Count string `json:"count,omitempty"`
	Total string `json:"total,omitempty"`
	// Buckets: a distribution metric's cumulative histogram buckets (by
	// le); Sum, optional, the sum of its observations, with which the
	// judge knows the mean exactly.
	Buckets string `json:"buckets,omitempty"`
	Sum     string `json:"sum,omitempty"`
	// Scale multiplies the values of a distribution (bucket bounds and
	// sum) or mean (sum) metric, e.g. 1000 for seconds to milliseconds; 0
	// means 1.
	Scale float64 `json:"scale,omitempty"`
}

// ParseSource parses a `source:` block at path and applies its defaults.
// It returns nil when the block is not a mapping.
func ParseSource(path string, n *yaml.Node, report Reporter) *Source {
	s := &Source{}
	ok := fields(n, path, report, map[string]func(string, *yaml.Node){
		"prometheus": func(fp string, v *yaml.Node) { s.Prometheus = parsePrometheus(fp, v, report) },
	})
	if !ok {
		return nil
	}
	if s.Prometheus == nil {
		report(path+".prometheus", "is required: the one kind of source is prometheus")
	}
	return s
}

func parsePrometheus(path string, n *yaml.Node, report Reporter) *Prometheus {
	p := &Prometheus{Interval: DefaultInterval, Lag: DefaultLag}
	hasURL := false
	fields(n, path, report, map[string]func(string, *yaml.Node){
		"url": func(fp string, v *yaml.Node) {
			if str(fp, v, report, &p.URL) {
				hasURL = true
				checkURL(fp, p.URL, report)
			}
		},
		"interval": func(fp string, v *yaml.Node) {
			if duration(fp, v, report, &p.Interval) {
				switch {
				case p.Interval < MinInterval || p.Interval > MaxInterval:
					report(fp, "must be from %v to %v (got %v)", MinInterval, MaxInterval, p.Interval)
				case p.Interval%time.Millisecond != 0:
					report(fp, "must be a whole number of milliseconds, as PromQL durations are (got %v)", p.Interval)
				}
			}
		},
		"lag": func(fp string, v *yaml.Node) {
			if duration(fp, v, report, &p.Lag) && (p.Lag < 0 || p.Lag > MaxLag) {
				report(fp, "must be from 0 to %v (got %v)", MaxLag, p.Lag)
			}
		},
		"bearer_token_file": func(fp string, v *yaml.Node) { str(fp, v, report, &p.BearerTokenFile) },
		"tls_ca_file":       func(fp string, v *yaml.Node) { str(fp, v, report, &p.TLSCAFile) },
	})
	if !hasURL && n.Kind == yaml.MappingNode {
		report(path+".url", "is required, e.g. http://prometheus:9090")
	}
	return p
}

func checkURL(path, s string, report Reporter) {
	if err := CheckURL(s); err != nil {
		report(path, "%v", err)
	}
}

// CheckURL checks the URL of a Prometheus: the base URL of its HTTP API,
// http:// or https://, without credentials, query or fragment.
func CheckURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("must be a URL such as http://prometheus:9090: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("must be an http:// or https:// URL (got %q)", s)
	case u.Host == "":
		return fmt.Errorf("must name a host, e.g. http://prometheus:9090 (got %q)", s)
	case u.User != nil:
		return errors.New("must not hold credentials: use bearer_token_file")
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("must be the base URL of the API, without a query or fragment (got %q)", s)
	}
	return nil
}

// ParseQuery parses a metric's `query:` block at path. Which queries a
// metric needs depends on its type: Check tells, once the type is known.
// It returns nil when the block is not a mapping.
func ParseQuery(path string, n *yaml.Node, report Reporter) *Query {
	q := &Query{}
	tmpl := func(dst *string) func(string, *yaml.Node) {
		return func(fp string, v *yaml.Node) {
			if str(fp, v, report, dst) {
				checkTemplate(fp, *dst, report)
			}
		}
	}
	ok := fields(n, path, report, map[string]func(string, *yaml.Node){
		"count":   tmpl(&q.Count),
		"total":   tmpl(&q.Total),
		"buckets": tmpl(&q.Buckets),
		"sum":     tmpl(&q.Sum),
		"scale": func(fp string, v *yaml.Node) {
			if num(fp, v, report, &q.Scale) && !(q.Scale > 0) {
				report(fp, "must be > 0 (got %v)", q.Scale)
			}
		},
	})
	if !ok {
		return nil
	}
	return q
}

// Check reports what q lacks or has too much of for a metric of the type
// ("rate", "distribution" or "mean") at path: a rate metric takes count and
// total, a distribution buckets (sum and scale optional), a mean count and
// sum (scale optional).
func (q *Query) Check(path, metricType string, report Reporter) {
	type key struct {
		name string
		set  bool
	}
	keys := []key{{"count", q.Count != ""}, {"total", q.Total != ""}, {"buckets", q.Buckets != ""}, {"sum", q.Sum != ""}, {"scale", q.Scale != 0}}
	var required, allowed []string
	switch metricType {
	case "rate":
		required, allowed = []string{"count", "total"}, []string{"count", "total"}
	case "distribution":
		required, allowed = []string{"buckets"}, []string{"buckets", "sum", "scale"}
	case "mean":
		required, allowed = []string{"count", "sum"}, []string{"count", "sum", "scale"}
	default:
		return // the type's own error is reported elsewhere
	}
	for _, k := range keys {
		switch {
		case !k.set && contains(required, k.name):
			report(path+"."+k.name, "is required for a %s metric (%s)", metricType, strings.Join(required, " and "))
		case k.set && !contains(allowed, k.name):
			report(path+"."+k.name, "does not apply to a %s metric, which takes %s", metricType, strings.Join(allowed, ", "))
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TemplateData is what a query template is executed with.
type TemplateData struct {
	// Selector is the cohort's label matchers, comma-separated.
	Selector string
	// Range is the interval as a PromQL duration.
	Range string
}

// Template parses a query template.
func Template(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Parse(text)
}

// CheckTemplate reports at path what is wrong with a query template, as
// ParseQuery does: for queries that come from elsewhere than YAML (the
// API's message form).
func CheckTemplate(path, text string, report Reporter) { checkTemplate(path, text, report) }

// checkTemplate checks that a query template parses, uses only
// {{.Selector}} and {{.Range}}, and uses both: without the selector both
// cohorts would read the same series, without the range the values would
// not be the interval's.
func checkTemplate(path, text string, report Reporter) {
	if len(text) > MaxQueryLen {
		report(path, "is %d bytes, more than %d", len(text), MaxQueryLen)
		return
	}
	t, err := Template(path, text)
	if err != nil {
		report(path, "must be a template with {{.Selector}} and {{.Range}}: %v", err)
		return
	}
	render := func(d TemplateData) (string, bool) {
		var b strings.Builder
		if err := t.Execute(&b, d); err != nil {
			report(path, "must be a template with {{.Selector}} and {{.Range}} only: %v", err)
			return "", false
		}
		return b.String(), true
	}
	a, ok := render(TemplateData{Selector: `a="1"`, Range: "1m"})
	if !ok {
		return
	}
	b, _ := render(TemplateData{Selector: `b="2"`, Range: "1m"})
	c, _ := render(TemplateData{Selector: `a="1"`, Range: "2m"})
	switch {
	case a == b:
		report(path, "must use {{.Selector}}, the cohort's label matchers: without it both cohorts read the same series")
	case a == c:
		report(path, "must use {{.Range}}, the interval (as in increase(...[{{.Range}}])): without it the values are not the interval's")
	}
}

// fields walks a mapping, calling the function of each known key, and
// reports unknown and repeated keys. It reports false when n is not a
// mapping.
func fields(n *yaml.Node, path string, report Reporter, known map[string]func(string, *yaml.Node)) bool {
	if n.Kind != yaml.MappingNode {
		report(path, "must be a mapping (line %d)", n.Line)
		return false
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		fp := path + "." + k
		f, ok := known[k]
		switch {
		case !ok:
			report(fp, "unknown field (line %d)", n.Content[i].Line)
		case seen[k]:
			report(fp, "given twice (line %d)", n.Content[i].Line)
		default:
			seen[k] = true
			f(fp, v)
		}
	}
	return true
}

func str(path string, n *yaml.Node, report Reporter, dst *string) bool {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Value == "" {
		report(path, "must be a non-empty string (line %d)", n.Line)
		return false
	}
	*dst = n.Value
	return true
}

func num(path string, n *yaml.Node, report Reporter, dst *float64) bool {
	v, err := strconv.ParseFloat(n.Value, 64)
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		report(path, "must be a finite number (line %d)", n.Line)
		return false
	}
	*dst = v
	return true
}

func duration(path string, n *yaml.Node, report Reporter, dst *time.Duration) bool {
	if n.Kind == yaml.ScalarNode && n.Value == "0" {
		*dst = 0
		return true
	}
	d, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		report(path, "must be a duration such as 30s or 1m (line %d)", n.Line)
		return false
	}
	*dst = d
	return true
}

// String returns the source as the YAML block spells it, for logs.
func (p *Prometheus) String() string {
	return fmt.Sprintf("prometheus %s every %v (lag %v)", p.URL, p.Interval, p.Lag)
}

// CheckSource reports what a config's source and its metrics' queries
// lack together: a query needs a source to run against, and a source
// needs at least one query to run. queries[i] is metric i's query, nil
// without one; src is nil without a source.
func CheckSource(src *Source, queries []*Query, report Reporter) {
	first := -1
	for i, q := range queries {
		if q != nil {
			first = i
			break
		}
	}
	switch {
	case src == nil && first >= 0:
		report("source", "is required: metrics[%d] has a query to run against it", first)
	case src != nil && first < 0:
		report("source", "no metric has a query to run against it")
	}
}
