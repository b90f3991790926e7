package server

import (
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/collectors/prometheus"
	"github.com/canaryd/canaryd/collectors/prometheus/promconfig"
	"github.com/canaryd/canaryd/internal/alarm"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Configs with a source. A config may say where a running run's metrics
// are pulled from (CanaryConfig.source) and how each is read
// (MetricConfig.query); the judge's config (analysis.Config) holds
// neither, so the service parses and checks them beside it and keeps them
// in the config's message, which runs copy: the puller (package puller)
// reads them from the run's record.

// parseYAMLConfig parses a config in YAML with its source and queries,
// which the returned message carries; problems are violations under field
// ("yaml", "inline_yaml").
func parseYAMLConfig(field string, text []byte) (*analysis.Config, *canaryv1.CanaryConfig, []*errdetails.BadRequest_FieldViolation) {
	rules, text, err := alarm.SplitConfig(text) // alarms.go
	if err != nil {
		return nil, nil, yamlViolations(field, err)
	}
	if errs := alarm.Check("alarms", rules); len(errs) > 0 {
		vs, _ := fieldViolations(field, errs)
		return nil, nil, vs
	}
	pcfg, rest, err := prometheus.ParseConfig(text)
	if err != nil {
		return nil, nil, yamlViolations(field, err)
	}
	cfg, err := analysis.ParseConfig(rest)
	if err != nil {
		return nil, nil, yamlViolations(field, err)
	}
	pc := apiconv.ConfigToProto(cfg)
	pc.Alarms = rules
	if pcfg == nil {
		return cfg, pc, nil
	}
	var vs []*errdetails.BadRequest_FieldViolation
	report := func(f, format string, args ...any) { vs = append(vs, violation(joinPath(field, f), format, args...)) }
	queries := make([]*promconfig.Query, len(cfg.Metrics))
	for _, m := range pcfg.Metrics {
		for i := range cfg.Metrics {
			if cfg.Metrics[i].Name == m.Name {
				q := m.Query
				queries[i] = &q
				pc.Metrics[i].Query = queryToProto(&q)
			}
		}
	}
	var src *promconfig.Source
	if pcfg.Source != nil {
		src = &promconfig.Source{Prometheus: pcfg.Source}
		pc.Source = sourceToProto(pcfg.Source)
	}
	promconfig.CheckSource(src, queries, report)
	if len(vs) > 0 {
		return nil, nil, vs
	}
	return cfg, pc, nil
}

// protoConfig converts a config given as a message, keeping its source
// and queries (checked, with the source's defaults applied); problems are
// violations under field ("config", "inline_config").
func protoConfig(field string, in *canaryv1.CanaryConfig) (*analysis.Config, *canaryv1.CanaryConfig, []*errdetails.BadRequest_FieldViolation) {
	cfg, err := apiconv.ConfigFromProto(in)
	if err != nil {
		vs, ok := fieldViolations(field, err)
		if !ok {
			vs = []*errdetails.BadRequest_FieldViolation{violation(field, "%v", err)}
		}
		return nil, nil, vs
	}
	pc := apiconv.ConfigToProto(cfg)
	var vs []*errdetails.BadRequest_FieldViolation
	if errs := alarm.Check("alarms", in.GetAlarms()); len(errs) > 0 { // alarms.go
		vs, _ = fieldViolations(field, errs)
	}
	pc.Alarms = in.GetAlarms()
	report := func(f, format string, args ...any) { vs = append(vs, violation(joinPath(field, f), format, args...)) }
	queries := make([]*promconfig.Query, len(cfg.Metrics))
	for i, m := range in.GetMetrics() {
		if m.GetQuery() == nil || i >= len(pc.Metrics) {
			continue
		}
		q := queryFromProto(m.GetQuery())
		path := fmt.Sprintf("metrics[%d].query", i)
		for role, text := range map[string]string{"count": q.Count, "total": q.Total, "buckets": q.Buckets, "sum": q.Sum} {
			if text != "" {
				promconfig.CheckTemplate(path+"."+role, text, report)
			}
		}
		if q.Scale < 0 {
			report(path+".scale", "must be > 0 (got %v)", q.Scale)
		}
		q.Check(path, string(cfg.Metrics[i].Type), report)
		queries[i] = &q
		pc.Metrics[i].Query = queryToProto(&q)
	}
	var src *promconfig.Source
	if ps := in.GetSource(); ps != nil {
		src = &promconfig.Source{}
		if ps.GetPrometheus() == nil {
			report("source.prometheus", "is required: the one kind of source is prometheus")
		} else {
			p := sourceFromProto(ps.GetPrometheus(), "source.prometheus", report)
			src.Prometheus = p
			pc.Source = sourceToProto(p)
		}
	}
	promconfig.CheckSource(src, queries, report)
	if len(vs) > 0 {
		return nil, nil, vs
	}
	return cfg, pc, nil
}

// sourceFromProto checks a source message and applies its defaults.
func sourceFromProto(ps *canaryv1.PrometheusSource, path string, report promconfig.Reporter) *promconfig.Prometheus {
	p := &promconfig.Prometheus{URL: ps.GetUrl(), Interval: promconfig.DefaultInterval, Lag: promconfig.DefaultLag,
		BearerTokenFile: ps.GetBearerTokenFile(), TLSCAFile: ps.GetTlsCaFile()}
	if p.URL == "" {
		report(path+".url", "is required, e.g. http://prometheus:9090")
	} else if err := promconfig.CheckURL(p.URL); err != nil {
		report(path+".url", "%v", err)
	}
	dur := func(f string, d *durationpb.Duration, dst *time.Duration) bool {
		if d == nil {
			return false
		}
		if err := d.CheckValid(); err != nil {
			report(path+"."+f, "must be a valid duration: %v", err)
			return false
		}
		*dst = d.AsDuration()
		return true
	}
	if dur("interval", ps.GetInterval(), &p.Interval) {
		switch {
		case p.Interval < promconfig.MinInterval || p.Interval > promconfig.MaxInterval:
			report(path+".interval", "must be from %v to %v (got %v)", promconfig.MinInterval, promconfig.MaxInterval, p.Interval)
		case p.Interval%time.Millisecond != 0:
			report(path+".interval", "must be a whole number of milliseconds, as PromQL durations are (got %v)", p.Interval)
		}
	}
	if dur("lag", ps.GetLag(), &p.Lag) && (p.Lag < 0 || p.Lag > promconfig.MaxLag) {
		report(path+".lag", "must be from 0 to %v (got %v)", promconfig.MaxLag, p.Lag)
	}
	return p
}

func sourceToProto(p *promconfig.Prometheus) *canaryv1.MetricSource {
	return &canaryv1.MetricSource{Prometheus: &canaryv1.PrometheusSource{
		Url: p.URL, Interval: durationpb.New(p.Interval), Lag: durationpb.New(p.Lag),
		BearerTokenFile: p.BearerTokenFile, TlsCaFile: p.TLSCAFile,
	}}
}

func queryToProto(q *promconfig.Query) *canaryv1.PrometheusQuery {
	return &canaryv1.PrometheusQuery{Count: q.Count, Total: q.Total, Buckets: q.Buckets, Sum: q.Sum, Scale: q.Scale}
}

func queryFromProto(q *canaryv1.PrometheusQuery) promconfig.Query {
	return promconfig.Query{Count: q.GetCount(), Total: q.GetTotal(), Buckets: q.GetBuckets(), Sum: q.GetSum(), Scale: q.GetScale()}
}

// PromTarget returns what the puller reads of a run whose config has a
// Prometheus source: the source, and the target of a collector (the
// metrics with a query, the cohorts' labels); ok is false for a run
// without a source.
func PromTarget(run *canaryv1.Run) (src *promconfig.Prometheus, t prometheus.Target, ok bool) {
	ps := run.GetConfig().GetSource().GetPrometheus()
	if ps == nil {
		return nil, t, false
	}
	src = &promconfig.Prometheus{URL: ps.GetUrl(), Interval: ps.GetInterval().AsDuration(), Lag: ps.GetLag().AsDuration(),
		BearerTokenFile: ps.GetBearerTokenFile(), TLSCAFile: ps.GetTlsCaFile()}
	t = prometheus.Target{RunID: run.GetId(), Interval: src.Interval, Lag: src.Lag,
		Baseline: run.GetBaselineLabels(), Canary: run.GetCanaryLabels()}
	for _, m := range run.GetConfig().GetMetrics() {
		if m.GetQuery() == nil {
			continue
		}
		t.Metrics = append(t.Metrics, prometheus.Metric{Name: m.GetName(), Type: apiconv.TypeFromProto(m.GetType()), Query: queryFromProto(m.GetQuery())})
	}
	return src, t, true
}

// checkRunSource checks that a run's labels make selectors for its
// config's source (violations on baseline_labels, canary_labels).
func checkRunSource(run *canaryv1.Run) []*errdetails.BadRequest_FieldViolation {
	src, t, ok := PromTarget(run)
	if !ok {
		return nil
	}
	var vs []*errdetails.BadRequest_FieldViolation
	for _, f := range []struct {
		name   string
		labels map[string]string
	}{{"baseline_labels", t.Baseline}, {"canary_labels", t.Canary}} {
		if _, err := prometheus.Selector(f.labels); err != nil {
			vs = append(vs, violation(f.name, "the config reads its metrics from %s: %v", src.URL, err))
		}
	}
	if len(vs) > 0 {
		return vs
	}
	if _, err := prometheus.NewCollector(nil, t); err != nil {
		vs = append(vs, violation("canary_labels", "the config reads its metrics from %s: %v", src.URL, err))
	}
	return vs
}

// cloneConfig returns a copy of a config message.
func cloneConfig(pc *canaryv1.CanaryConfig) *canaryv1.CanaryConfig {
	return proto.Clone(pc).(*canaryv1.CanaryConfig)
}
