package prometheus

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/collectors/prometheus/promconfig"
)

func TestSelector(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"version": "v2"}, `version="v2"`},
		{map[string]string{"version": "v1", "app": "checkout", "pod_template_hash": "7d9f"}, `app="checkout", pod_template_hash="7d9f", version="v1"`},
		// PromQL string literals take Go's escapes.
		{map[string]string{"track": `a"b\c` + "\nd\té\x01"}, `track="a\"b\\c\nd\té\x01"`},
		{map[string]string{"v": `"}) or vector(1) #`}, `v="\"}) or vector(1) #"`},
	} {
		got, err := Selector(tc.labels)
		if err != nil || got != tc.want {
			t.Errorf("Selector(%q) = %s, %v; want %s", tc.labels, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{nil, "no labels"},
		{map[string]string{"app.kubernetes.io/name": "x"}, "not a Prometheus label name"},
		{map[string]string{"1version": "x"}, "not a Prometheus label name"},
		{map[string]string{"__name__": "up"}, "reserved"},
		{map[string]string{"v": "\xff"}, "not UTF-8"},
	} {
		if _, err := Selector(tc.labels); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Selector(%q) error %v, want %q", tc.labels, err, tc.want)
		}
	}
}

func sample(value float64, labels ...string) *model.Sample {
	m := model.Metric{}
	for i := 0; i+1 < len(labels); i += 2 {
		m[model.LabelName(labels[i])] = model.LabelValue(labels[i+1])
	}
	return &model.Sample{Metric: m, Value: model.SampleValue(value)}
}

func TestRateRecords(t *testing.T) {
	t.Parallel()
	totals := model.Vector{sample(1000.4, "instance", "b"), sample(250, "instance", "a"), sample(0, "instance", "idle"), sample(3.6, "instance", "c")}
	// Instance a has no error series; c's count rounds above its total.
	counts := model.Vector{sample(10.6, "instance", "b", "code", "500"), sample(1, "instance", "b", "code", "503"), sample(3.6, "instance", "c")}
	got, _, err := rateRecords(totals, counts)
	want := []analysis.Record{
		{IsCount: true, Count: 0, Total: 250, Instance: "a"},
		{IsCount: true, Count: 12, Total: 1000.4, Instance: "b"},
		{IsCount: true, Count: 3, Total: 3.6, Instance: "c"},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("rateRecords = %+v, %v; want %+v", got, err, want)
	}
	if _, role, err := rateRecords(model.Vector{sample(1, "instance", "a")}, model.Vector{sample(1, "instance", "z")}); role != "count" || err == nil || !strings.Contains(err.Error(), `instance "z", which the total query lacks`) {
		t.Errorf("count without total: %s %v", role, err)
	}
	if _, role, err := rateRecords(model.Vector{sample(math.NaN(), "instance", "a")}, nil); role != "total" || err == nil || !strings.Contains(err.Error(), "returned NaN") {
		t.Errorf("NaN total: %s %v", role, err)
	}
}

func TestDistributionRecords(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	buckets := model.Vector{
		// Instance a, out of order, +Inf spelled as Prometheus does, a
		// count that dips below the lower bucket's (extrapolation), and
		// fractional counts.
		sample(402.4, "instance", "a", "le", "0.05"),
		sample(410, "instance", "a", "le", "+Inf"),
		sample(309.6, "instance", "a", "le", "0.025"),
		sample(401.8, "instance", "a", "le", "0.1"),
		sample(409.9, "instance", "a", "le", "0.25"),
		// Instance b: no observation in the interval.
		sample(0, "instance", "b", "le", "0.05"),
		sample(0, "instance", "b", "le", "+Inf"),
		// Instance c: two series per le (by code), added up.
		sample(1, "instance", "c", "le", "0.05", "code", "200"),
		sample(2, "instance", "c", "le", "0.05", "code", "500"),
		sample(1, "instance", "c", "le", "+Inf", "code", "200"),
		sample(3, "instance", "c", "le", "+Inf", "code", "500"),
	}
	sums := model.Vector{sample(12.3456, "instance", "a"), sample(0.1, "instance", "c")}
	got, _, err := distributionRecords(buckets, sums, 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := []analysis.Record{
		{Instance: "a", Histogram: &analysis.Histogram{Bounds: []float64{25, 50, 100, 250, inf}, Counts: []float64{310, 92, 0, 8, 0}, Sum: 12345.6, HasSum: true}},
		{Instance: "c", Histogram: &analysis.Histogram{Bounds: []float64{50, inf}, Counts: []float64{3, 1}, Sum: 100, HasSum: true}},
	}
	if len(got) != 2 {
		t.Fatalf("records %+v", got)
	}
	for i := range want {
		g, w := got[i].Histogram, want[i].Histogram
		if got[i].Instance != want[i].Instance || !reflect.DeepEqual(g.Bounds, w.Bounds) || !reflect.DeepEqual(g.Counts, w.Counts) || math.Abs(g.Sum-w.Sum) > 1e-9 || g.HasSum != w.HasSum {
			t.Errorf("record %d: %s %+v, want %s %+v", i, got[i].Instance, g, want[i].Instance, w)
		}
	}
	for _, tc := range []struct {
		buckets model.Vector
		want    string
	}{
		{model.Vector{sample(1, "instance", "a")}, "without an le label"},
		{model.Vector{sample(1, "instance", "a", "le", "fast")}, `le="fast" is not a number`},
		{model.Vector{sample(-1, "instance", "a", "le", "1")}, "bucket counts are finite and >= 0"},
		{model.Vector{sample(5, "instance", "a", "le", "-1"), sample(5, "instance", "a", "le", "+Inf")}, "a distribution metric's values are >= 0"},
	} {
		if _, role, err := distributionRecords(tc.buckets, nil, 1); role != "buckets" || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %s %v, want %q", tc.buckets, role, err, tc.want)
		}
	}
}

func TestNativeHistogramRecords(t *testing.T) {
	t.Parallel()
	// As the API renders a native histogram: the zero bucket [-0.001,
	// 0.001], then positive buckets with a gap between (0.5, 1] and (2, 4].
	h := &model.SampleHistogram{Count: 11, Sum: 9.5, Buckets: model.HistogramBuckets{
		{Boundaries: 0, Lower: 2, Upper: 4, Count: 3},
		{Boundaries: 3, Lower: -0.001, Upper: 0.001, Count: 2},
		{Boundaries: 0, Lower: 0.5, Upper: 1, Count: 6},
		{Boundaries: 0, Lower: 1, Upper: 2, Count: 0},
	}}
	got, _, err := distributionRecords(model.Vector{{Metric: model.Metric{"instance": "a"}, Histogram: h}}, nil, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("%+v, %v", got, err)
	}
	want := &analysis.Histogram{Bounds: []float64{0.001, 0.5, 1, 2, 4}, Counts: []float64{2, 0, 6, 0, 3}, Sum: 9.5, HasSum: true}
	if !reflect.DeepEqual(got[0].Histogram, want) {
		t.Errorf("got %+v, want %+v", got[0].Histogram, want)
	}
	neg := &model.SampleHistogram{Count: 1, Buckets: model.HistogramBuckets{{Boundaries: 1, Lower: -4, Upper: -2, Count: 1}}}
	if _, _, err := distributionRecords(model.Vector{{Metric: model.Metric{"instance": "a"}, Histogram: neg}}, nil, 1); err == nil || !strings.Contains(err.Error(), "negative observations") {
		t.Errorf("negative bucket: %v", err)
	}
}

func TestMeanRecords(t *testing.T) {
	t.Parallel()
	got, _, err := meanRecords(model.Vector{sample(4, "instance", "a"), sample(0.2, "instance", "b")}, model.Vector{sample(10, "instance", "a")}, 100)
	if want := []analysis.Record{{Value: 250, Instance: "a"}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("meanRecords = %+v, %v", got, err)
	}
	if _, role, err := meanRecords(model.Vector{sample(4, "instance", "a")}, nil, 1); role != "sum" || err == nil {
		t.Errorf("a count without a sum: %s %v", role, err)
	}
}

func testTarget() Target {
	return Target{
		RunID: "run-1", Interval: 30 * time.Second, Lag: 10 * time.Second,
		Baseline: map[string]string{"version": "v1"}, Canary: map[string]string{"version": "v2"},
		Metrics: []Metric{
			{Name: "errors", Type: analysis.TypeRate, Query: promconfig.Query{
				Count: `sum by (instance) (increase(http_requests_total{code=~"5..", {{.Selector}}}[{{.Range}}]))`,
				Total: `sum by (instance) (increase(http_requests_total{ {{.Selector}} }[{{.Range}}]))`}},
			{Name: "latency_ms", Type: analysis.TypeDistribution, Query: promconfig.Query{
				Buckets: `sum by (le, instance) (increase(http_request_duration_seconds_bucket{ {{.Selector}} }[{{.Range}}]))`, Scale: 1000}},
		},
	}
}

func TestCollectorQueriesAndGrid(t *testing.T) {
	t.Parallel()
	c, err := NewCollector(nil, testTarget())
	if err != nil {
		t.Fatal(err)
	}
	q := c.Queries("errors", analysis.Canary)
	if want := `sum by (instance) (increase(http_requests_total{code=~"5..", version="v2"}[30s]))`; q["count"] != want {
		t.Errorf("rendered count query %s, want %s", q["count"], want)
	}
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		runStart, first time.Time
	}{
		{at, at.Add(30 * time.Second)},
		{at.Add(time.Nanosecond), at.Add(time.Minute)},
		{at.Add(29 * time.Second), at.Add(time.Minute)},
		{time.Unix(-45, 0), time.Unix(0, 0)}, // before the epoch
	} {
		if got := c.FirstEnd(tc.runStart); !got.Equal(tc.first) {
			t.Errorf("FirstEnd(%v) = %v, want %v", tc.runStart, got, tc.first)
		}
	}
	if got, want := c.LatestEnd(at.Add(39*time.Second)), at; !got.Equal(want) {
		t.Errorf("LatestEnd = %v, want %v", got, want)
	}
	if got, want := c.LatestEnd(at.Add(40*time.Second)), at.Add(30*time.Second); !got.Equal(want) {
		t.Errorf("LatestEnd at the lag = %v, want %v", got, want)
	}
}

// TestBatchIDs checks that batch ids depend on the run, the interval,
// the metric and its rendered queries, and on nothing else.
func TestBatchIDs(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 11, 22, 10, 0, 30, 0, time.UTC)
	ids := func(tg Target, end time.Time) []string {
		c, err := NewCollector(nil, tg)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for i := range c.metrics {
			out = append(out, c.batchID(&c.metrics[i], end))
		}
		return out
	}
	base := ids(testTarget(), end)
	if base[0] == base[1] || !strings.HasPrefix(base[0], "prom-1795341630000-") || len(base[0]) > 64 {
		t.Fatalf("ids %q", base)
	}
	if again := ids(testTarget(), end); !reflect.DeepEqual(again, base) {
		t.Errorf("ids differ between two collectors of the same target: %q, %q", again, base)
	}
	lag := testTarget()
	lag.Lag = time.Hour // when it is read does not matter
	if got := ids(lag, end); !reflect.DeepEqual(got, base) {
		t.Errorf("ids depend on the lag: %q, %q", got, base)
	}
	for name, change := range map[string]func(*Target){
		"run":      func(tg *Target) { tg.RunID = "run-2" },
		"labels":   func(tg *Target) { tg.Canary = map[string]string{"version": "v3"} },
		"interval": func(tg *Target) { tg.Interval = time.Minute },
		"query":    func(tg *Target) { tg.Metrics[1].Query.Scale = 1 },
		"name":     func(tg *Target) { tg.Metrics[0].Name = "errs" },
	} {
		tg := testTarget()
		change(&tg)
		got := ids(tg, end)
		if got[0] == base[0] && got[1] == base[1] {
			t.Errorf("changing the %s changes no id", name)
		}
	}
	if got := ids(testTarget(), end.Add(30*time.Second)); got[0] == base[0] {
		t.Errorf("the next interval has the same id")
	}
}

func TestNewCollectorErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		change func(*Target)
		want   string
	}{
		"same labels":    {func(tg *Target) { tg.Canary = tg.Baseline }, "are the same"},
		"no labels":      {func(tg *Target) { tg.Canary = nil }, "canary_labels: no labels"},
		"bad label":      {func(tg *Target) { tg.Baseline = map[string]string{"a-b": "x"} }, "baseline_labels: label \"a-b\""},
		"short interval": {func(tg *Target) { tg.Interval = time.Millisecond }, "interval 1ms"},
		"query for type": {func(tg *Target) { tg.Metrics[0].Type = analysis.TypeMean }, "query.sum: is required for a mean metric"},
	} {
		tg := testTarget()
		tc.change(&tg)
		if _, err := NewCollector(nil, tg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	cause := errors.New("connection refused")
	err := error(&Error{Kind: ErrUnreachable, Metric: "errors", Query: "total", Cohort: "canary", Err: cause})
	if !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrBadQuery) || !errors.Is(err, cause) {
		t.Errorf("errors.Is does not see the kind and the cause of %v", err)
	}
	if want := "errors (canary total query): prometheus unreachable: connection refused"; err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
}

const issueConfig = `name: checkout-api
source:
  prometheus:
    url: http://prometheus:9090
    interval: 30s              # how often canaryd queries while the run is running
    lag: 30s                   # query [t-interval-lag, t-lag], for scrape delay
    bearer_token_file: /var/run/secrets/prom-token
metrics:
  - name: errors
    category: stability
    type: rate
    query:
      count: sum by (instance) (increase(http_requests_total{code=~"5..", {{.Selector}}}[{{.Range}}]))
      total: sum by (instance) (increase(http_requests_total{ {{.Selector}} }[{{.Range}}]))
  - name: conversions
    category: business
    type: rate
  - name: latency_ms
    type: distribution
    category: performance
    query:
      buckets: sum by (le, instance) (increase(http_request_duration_seconds_bucket{ {{.Selector}} }[{{.Range}}]))
      scale: 1000              # seconds -> ms
`

func TestParseConfig(t *testing.T) {
	t.Parallel()
	cfg, rest, err := ParseConfig([]byte(issueConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source == nil || cfg.Source.URL != "http://prometheus:9090" || cfg.Source.Interval != 30*time.Second || cfg.Source.BearerTokenFile == "" {
		t.Errorf("source %+v", cfg.Source)
	}
	if len(cfg.Metrics) != 2 || cfg.Metrics[0].Name != "errors" || cfg.Metrics[0].Type != analysis.TypeRate ||
		cfg.Metrics[1].Name != "latency_ms" || cfg.Metrics[1].Query.Scale != 1000 {
		t.Errorf("metrics %+v", cfg.Metrics)
	}
	acfg, err := analysis.ParseConfig(rest)
	if err != nil {
		t.Fatalf("analysis.ParseConfig of the rest: %v\n%s", err, rest)
	}
	if len(acfg.Metrics) != 3 || acfg.Name != "checkout-api" {
		t.Errorf("analysis config %+v", acfg)
	}
	// Queries without a source: the caller decides.
	noSource := strings.Replace(issueConfig, "source:\n  prometheus:\n    url: http://prometheus:9090\n", "x_source:\n  prometheus:\n    url: http://prometheus:9090\n", 1)
	if cfg, _, err := ParseConfig([]byte(noSource)); err != nil || cfg.Source != nil || len(cfg.Metrics) != 2 {
		t.Errorf("queries without a source: %+v, %v", cfg, err)
	}
	// A config without a source passes through unchanged.
	plain := "name: x\nmetrics: [{name: a, category: stability, type: rate}]\n"
	if cfg, rest, err := ParseConfig([]byte(plain)); cfg != nil || string(rest) != plain || err != nil {
		t.Errorf("plain config: %+v %q %v", cfg, rest, err)
	}
	for _, tc := range []struct{ src, want string }{
		{strings.Replace(issueConfig, "url: http://prometheus:9090", "url: prometheus:9090", 1), "source.prometheus.url: must be an http:// or https:// URL"},
		{strings.Replace(issueConfig, "      scale: 1000 ", "      count: x\n      scale: 1000 ", 1), "metrics[2].query.count: does not apply to a distribution metric"},
	} {
		_, _, err := ParseConfig([]byte(tc.src))
		var fes analysis.FieldErrors
		if !errors.As(err, &fes) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

// FuzzParseConfig checks that ParseConfig never panics, and that what it
// accepts renders: every query of a metric whose type takes it makes a
// collector.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(issueConfig))
	f.Add([]byte("name: x\nsource: {prometheus: {url: 'http://p:9090', interval: 1s, lag: 0}}\nmetrics: [{name: m, type: mean, query: {count: '{{.Selector}}[{{.Range}}]', sum: 'a{ {{.Selector}} }[{{.Range}}]', scale: 2}}]\n"))
	f.Add([]byte("source: []\nmetrics: [1, {query: 3}]\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, rest, err := ParseConfig(src)
		if err != nil || cfg == nil {
			return
		}
		if rest == nil {
			t.Fatal("no YAML left for the analysis config")
		}
		for _, m := range cfg.Metrics {
			switch m.Type {
			case analysis.TypeRate, analysis.TypeDistribution, analysis.TypeMean:
			default:
				continue
			}
			_, err := NewCollector(nil, Target{Interval: time.Minute, Metrics: []Metric{m},
				Baseline: map[string]string{"v": "1"}, Canary: map[string]string{"v": "2"}})
			if err != nil {
				t.Fatalf("metric %+v was accepted but makes no collector: %v", m, err)
			}
		}
	})
}
