package promconfig

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type problems []string

func (p *problems) report(field, format string, args ...any) {
	*p = append(*p, field+": "+fmt.Sprintf(format, args...))
}

func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

func TestParseSource(t *testing.T) {
	var p problems
	s := ParseSource("source", node(t, `
prometheus:
  url: https://prom.example:9090/prefix
  interval: 15s
  lag: 1m
  bearer_token_file: /var/run/secrets/prom-token
  tls_ca_file: /etc/ca.pem
`), p.report)
	want := Prometheus{URL: "https://prom.example:9090/prefix", Interval: 15 * time.Second, Lag: time.Minute,
		BearerTokenFile: "/var/run/secrets/prom-token", TLSCAFile: "/etc/ca.pem"}
	if len(p) > 0 || s == nil || s.Prometheus == nil || *s.Prometheus != want {
		t.Fatalf("got %+v, %v", s, p)
	}
	p = nil
	s = ParseSource("source", node(t, "prometheus: {url: 'http://prometheus:9090'}"), p.report)
	if len(p) > 0 || s.Prometheus.Interval != DefaultInterval || s.Prometheus.Lag != DefaultLag {
		t.Errorf("defaults: %+v, %v", s.Prometheus, p)
	}
}

func TestParseSourceErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`[]`, "source: must be a mapping"},
		{`{}`, "source.prometheus: is required"},
		{`{datadog: {}}`, "source.datadog: unknown field"},
		{`prometheus: {}`, "source.prometheus.url: is required"},
		{`prometheus: {url: ""}`, "source.prometheus.url: must be a non-empty string"},
		{`prometheus: {url: "ftp://x"}`, "source.prometheus.url: must be an http:// or https:// URL"},
		{`prometheus: {url: "http://"}`, "source.prometheus.url: must name a host"},
		{`prometheus: {url: "http://u:p@x"}`, "source.prometheus.url: must not hold credentials"},
		{`prometheus: {url: "http://x/?a=b"}`, "source.prometheus.url: must be the base URL"},
		{`prometheus: {url: "http://x", interval: 500ms}`, "source.prometheus.interval: must be from 1s to 1h0m0s"},
		{`prometheus: {url: "http://x", interval: 2h}`, "source.prometheus.interval: must be from 1s"},
		{`prometheus: {url: "http://x", interval: 1500100us}`, "source.prometheus.interval: must be a whole number of milliseconds"},
		{`prometheus: {url: "http://x", interval: often}`, "source.prometheus.interval: must be a duration"},
		{`prometheus: {url: "http://x", lag: -1s}`, "source.prometheus.lag: must be from 0"},
		{`prometheus: {url: "http://x", bearer_token: abc}`, "source.prometheus.bearer_token: unknown field"},
		{`prometheus: {url: "http://x", url: "http://y"}`, "source.prometheus.url: given twice"},
	} {
		var p problems
		ParseSource("source", node(t, tc.src), p.report)
		if len(p) == 0 || !strings.HasPrefix(p[0], tc.want) {
			t.Errorf("%s: problems %q, want %q", tc.src, p, tc.want)
		}
	}
}

const (
	countQ   = `sum by (instance) (increase(http_requests_total{code=~"5..", {{.Selector}}}[{{.Range}}]))`
	totalQ   = `sum by (instance) (increase(http_requests_total{ {{.Selector}} }[{{.Range}}]))`
	bucketsQ = `sum by (le, instance) (increase(http_request_duration_seconds_bucket{ {{.Selector}} }[{{.Range}}]))`
)

func TestParseQuery(t *testing.T) {
	var p problems
	q := ParseQuery("metrics[1].query", node(t, "buckets: '"+bucketsQ+"'\nscale: 1000\n"), p.report)
	if len(p) > 0 || q == nil || q.Buckets != bucketsQ || q.Scale != 1000 {
		t.Fatalf("got %+v, %v", q, p)
	}
	q.Check("metrics[1].query", "distribution", p.report)
	if len(p) > 0 {
		t.Errorf("a distribution query: %v", p)
	}
	tmpl, err := Template("buckets", q.Buckets)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, TemplateData{Selector: `version="v2"`, Range: "30s"}); err != nil {
		t.Fatal(err)
	}
	if want := `sum by (le, instance) (increase(http_request_duration_seconds_bucket{ version="v2" }[30s]))`; b.String() != want {
		t.Errorf("rendered %s, want %s", b.String(), want)
	}
}

func TestQueryErrors(t *testing.T) {
	for _, tc := range []struct{ typ, src, want string }{
		{"rate", `[]`, "q: must be a mapping"},
		{"rate", "count: '" + countQ + "'", "q.total: is required for a rate metric (count and total)"},
		{"rate", "total: '" + totalQ + "'\ncount: '" + countQ + "'\nscale: 2", "q.scale: does not apply to a rate metric"},
		{"distribution", "sum: '" + totalQ + "'", "q.buckets: is required for a distribution metric"},
		{"distribution", "buckets: '" + bucketsQ + "'\ncount: '" + countQ + "'", "q.count: does not apply to a distribution metric, which takes buckets, sum, scale"},
		{"mean", "count: '" + countQ + "'", "q.sum: is required for a mean metric (count and sum)"},
		{"mean", "count: '" + countQ + "'\nsum: '" + totalQ + "'\nbuckets: '" + bucketsQ + "'", "q.buckets: does not apply to a mean metric"},
		{"rate", "count: 'x{ {{.Selector}} }[{{.Range}}]'\ntotal: 'up'", "q.total: must use {{.Selector}}"},
		{"rate", "count: 'x{ {{.Selector}} }[{{.Range}}]'\ntotal: 'x{ {{.Selector}} }[5m]'", "q.total: must use {{.Range}}"},
		{"rate", "count: 'x{ {{.Selector}} }[{{.Range}}]'\ntotal: 'x{ {{.Selector}} }[{{.Interval}}]'", "q.total: must be a template with {{.Selector}} and {{.Range}} only"},
		{"rate", "count: 'x{ {{.Selector}} }[{{.Range}}]'\ntotal: 'x{ {{.Selector} }'", "q.total: must be a template"},
		{"rate", "count: 'x{ {{.Selector}} }[{{.Range}}]'\ntotal: 12", "q.total: must use {{.Selector}}"},
		{"rate", "count: ''\ntotal: 'x'", "q.count: must be a non-empty string"},
		{"distribution", "buckets: '" + bucketsQ + "'\nscale: 0", "q.scale: must be > 0"},
		{"distribution", "buckets: '" + bucketsQ + "'\nscale: fast", "q.scale: must be a finite number"},
		{"distribution", "buckets: '" + bucketsQ + "'\nlatency: x", "q.latency: unknown field"},
		{"distribution", "buckets: '" + strings.Repeat("x", MaxQueryLen+1) + "'", "q.buckets: is 4097 bytes, more than 4096"},
	} {
		var p problems
		if q := ParseQuery("q", node(t, tc.src), p.report); q != nil {
			q.Check("q", tc.typ, p.report)
		}
		if len(p) == 0 || !strings.HasPrefix(p[0], tc.want) {
			t.Errorf("%s %q: problems %q, want %q", tc.typ, tc.src, p, tc.want)
		}
	}
}

func TestCheckSource(t *testing.T) {
	var p problems
	CheckSource(nil, []*Query{nil, {Count: "x"}}, p.report)
	CheckSource(&Source{}, []*Query{nil}, p.report)
	CheckSource(&Source{}, []*Query{{Count: "x"}}, p.report)
	CheckSource(nil, []*Query{nil}, p.report)
	want := problems{"source: is required: metrics[1] has a query to run against it", "source: no metric has a query to run against it"}
	if strings.Join(p, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems %q, want %q", p, want)
	}
}
