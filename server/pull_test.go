package server

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// pulledConfig is testConfig read from a Prometheus every 30 s (lag 30 s).
func pulledConfig(name string) *canaryv1.CanaryConfig {
	c := testConfig(name)
	c.Source = &canaryv1.MetricSource{Prometheus: &canaryv1.PrometheusSource{Url: "http://prometheus:9090"}}
	c.Metrics[0].Query = &canaryv1.PrometheusQuery{Buckets: `sum by (le, instance) (increase(latency_bucket{ {{.Selector}} }[{{.Range}}]))`, Scale: 1000}
	c.Metrics[1].Query = &canaryv1.PrometheusQuery{
		Count: `sum by (instance) (increase(requests_total{code="500", {{.Selector}}}[{{.Range}}]))`,
		Total: `sum by (instance) (increase(requests_total{ {{.Selector}} }[{{.Range}}]))`,
	}
	return c
}

// TestPullGate: a pulled run is never promoted on missing intervals. With
// data that promote, a metric whose reads fail holds with the reason and
// the verdict is HOLD; once the puller has caught up it is PROMOTE again;
// when no replica records anything for longer than two intervals beyond
// the lag, the verdict holds again by itself. A regression still rolls
// back. The status is the run's (Run.pull), and survives a snapshot and a
// reload.
func TestPullGate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.SnapshotEvery = 2 })
	ctx := ctxT(t)
	resp, err := e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: "pulled", Service: "checkout", Stage: "wave-1",
		Config:         &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: pulledConfig("checkout")},
		BaselineLabels: map[string]string{"version": "v1"}, CanaryLabels: map[string]string{"version": "v2"},
		BakeTime: durationpb.New(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	run := resp.GetRun()
	if run.GetConfig().GetSource().GetPrometheus().GetInterval().AsDuration() != 30*time.Second ||
		run.GetConfig().GetMetrics()[1].GetQuery().GetTotal() == "" || run.GetConfig().GetMetrics()[2].GetQuery() != nil {
		t.Fatalf("the run's config lost its source or queries: %v", run.GetConfig())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, id := range seqIDs("b", 4) {
		e.ingest(ctx, makeBatch(rng, run.GetId(), id, scenario{Latency: 1, Errors: 1, N: 2500}))
	}
	start := e.clock.Now()
	e.clock.Advance(2 * time.Minute)
	now := e.clock.Now()
	status := func(through time.Time, failing map[string]string) *canaryv1.PullStatus {
		p := &canaryv1.PullStatus{Source: "prometheus http://prometheus:9090", UpdateTime: timestamppb.New(e.clock.Now())}
		for _, m := range []string{"latency_ms", "errors"} {
			mp := &canaryv1.MetricPull{Metric: m, Through: timestamppb.New(through)}
			if msg, ok := failing[m]; ok {
				mp.FailingSince, mp.Error = timestamppb.New(through.Add(time.Minute)), msg
			}
			p.Metrics = append(p.Metrics, mp)
		}
		return p
	}
	decision := func(want canaryv1.Decision, reason string) *canaryv1.Verdict {
		t.Helper()
		v := e.judge(ctx, run.GetId())
		if v.GetDecision() != want || !strings.Contains(v.GetReason(), reason) {
			t.Fatalf("%v: %s; want %v with %q", v.GetDecision(), v.GetReason(), want, reason)
		}
		return v
	}

	// Nothing recorded two minutes after the start: the intervals are
	// missing.
	decision(canaryv1.Decision_DECISION_HOLD, "no interval read for")
	// Caught up: the data promote.
	through := now.Add(-30 * time.Second).Truncate(30 * time.Second)
	if err := e.svc.RecordPull(ctx, run.GetId(), status(through, nil)); err != nil {
		t.Fatal(err)
	}
	decision(canaryv1.Decision_DECISION_PROMOTE, "")
	// The errors fail to read: HOLD, naming the metric, since when and why.
	const cause = "prometheus unreachable: connection refused"
	if err := e.svc.RecordPull(ctx, run.GetId(), status(through, map[string]string{"errors": cause})); err != nil {
		t.Fatal(err)
	}
	v := decision(canaryv1.Decision_DECISION_HOLD, "errors: no data from Prometheus since "+through.UTC().Format("15:04:05")+" UTC: "+cause)
	if got := v.GetDecidingMetrics(); len(got) != 1 || got[0] != "errors" {
		t.Errorf("deciding metrics %v, want [errors]", got)
	}
	for _, m := range v.GetMetrics() {
		want := canaryv1.MetricOutcome_METRIC_OUTCOME_PASS
		if m.GetName() == "errors" {
			want = canaryv1.MetricOutcome_METRIC_OUTCOME_HOLD
		}
		if m.GetOutcome() != want {
			t.Errorf("%s: %v, want %v (%s)", m.GetName(), m.GetOutcome(), want, m.GetReason())
		}
	}
	got := e.getRun(ctx, run.GetId()).GetPull()
	if got.GetMetrics()[1].GetError() != cause || got.GetMetrics()[1].GetFailingSince() == nil {
		t.Errorf("Run.pull = %v, want the failure of errors", got)
	}
	// Recovered, and caught up.
	e.clock.Advance(time.Minute)
	through = e.clock.Now().Add(-30 * time.Second).Truncate(30 * time.Second)
	if err := e.svc.RecordPull(ctx, run.GetId(), status(through, nil)); err != nil {
		t.Fatal(err)
	}
	decision(canaryv1.Decision_DECISION_PROMOTE, "")
	// A record that moves through back (a replica taking over records
	// what it read) does not move it back.
	if err := e.svc.RecordPull(ctx, run.GetId(), status(start, nil)); err != nil {
		t.Fatal(err)
	}
	decision(canaryv1.Decision_DECISION_PROMOTE, "")
	// The status survives a snapshot and a reload from the store: the
	// run leaves memory once idle (the judge's clock is the idle clock).
	want := e.getRun(ctx, run.GetId()).GetPull()
	e.svc.bg.Wait()
	e.clock.Advance(DefaultIdleTimeout + time.Second)
	e.svc.evictIdle()
	if e.svc.liveRuns() != 0 {
		t.Fatal("idle runs not evicted")
	}
	e.clock.Advance(-DefaultIdleTimeout - time.Second)
	if got := e.getRun(ctx, run.GetId()).GetPull(); !proto.Equal(got, want) {
		t.Errorf("reloaded Run.pull = %v, want %v", got, want)
	}
	// No replica records for five minutes: HOLD by itself.
	e.clock.Advance(5 * time.Minute)
	decision(canaryv1.Decision_DECISION_HOLD, "(is a canaryd pulling the run?)")

	// A regression rolls back whatever the pull.
	resp, err = e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: "pulled-rb", Service: "checkout", Stage: "wave-1",
		Config:         &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: pulledConfig("checkout")},
		BaselineLabels: map[string]string{"version": "v1"}, CanaryLabels: map[string]string{"version": "v2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range seqIDs("b", 4) {
		e.ingest(ctx, makeBatch(rng, resp.GetRun().GetId(), id, scenario{Latency: 1.5, Errors: 3, N: 2500}))
	}
	e.clock.Advance(5 * time.Minute)
	if v := e.judge(ctx, resp.GetRun().GetId()); v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		t.Errorf("regression without pull: %v, want ROLLBACK: %s", v.GetDecision(), v.GetReason())
	}
}

// TestPulledConfigs: configs carry a source and queries, as YAML and as
// messages; what they lack or get wrong is INVALID_ARGUMENT naming the
// field, and a run's labels must make Prometheus selectors.
func TestPulledConfigs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	const yaml = `name: shop
source:
  prometheus:
    url: http://prometheus:9090
    interval: 15s
metrics:
  - name: errors
    category: stability
    type: rate
    query:
      count: sum by (instance) (increase(requests_total{code="500", {{.Selector}}}[{{.Range}}]))
      total: sum by (instance) (increase(requests_total{ {{.Selector}} }[{{.Range}}]))
`
	resp, err := e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: yaml}})
	if err != nil {
		t.Fatal(err)
	}
	c := resp.GetConfig().GetConfig()
	if p := c.GetSource().GetPrometheus(); p.GetUrl() != "http://prometheus:9090" || p.GetInterval().AsDuration() != 15*time.Second ||
		p.GetLag().AsDuration() != 30*time.Second || c.GetMetrics()[0].GetQuery().GetCount() == "" {
		t.Fatalf("stored config %v", c)
	}
	// The same config as a message is the same version.
	resp, err = e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: c}})
	if err != nil || resp.GetCreated() {
		t.Fatalf("put as a message: created %v, %v", resp.GetCreated(), err)
	}
	for _, tc := range []struct {
		name  string
		req   *canaryv1.PutConfigRequest
		field string
	}{
		{"query without source", &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{
			Yaml: strings.Replace(yaml, "source:\n  prometheus:\n    url: http://prometheus:9090\n    interval: 15s\n", "", 1)}}, "yaml.source"},
		{"bad url", &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{
			Yaml: strings.Replace(yaml, "http://prometheus:9090", "ftp://x", 1)}}, "yaml.source.prometheus.url"},
		{"query of the wrong type", &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{
			Yaml: strings.Replace(yaml, "count:", "buckets:", 1)}}, "yaml.metrics[0].query.count"},
		{"message: bad interval", &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: func() *canaryv1.CanaryConfig {
			m := proto.Clone(c).(*canaryv1.CanaryConfig)
			m.Source.Prometheus.Interval = durationpb.New(time.Millisecond)
			return m
		}()}}, "config.source.prometheus.interval"},
		{"message: query without selector", &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: func() *canaryv1.CanaryConfig {
			m := proto.Clone(c).(*canaryv1.CanaryConfig)
			m.Metrics[0].Query.Total = `sum(increase(requests_total[{{.Range}}]))`
			return m
		}()}}, "config.metrics[0].query.total"},
		{"message: source without queries", &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: func() *canaryv1.CanaryConfig {
			m := proto.Clone(c).(*canaryv1.CanaryConfig)
			m.Metrics[0].Query = nil
			return m
		}()}}, "config.source"},
	} {
		_, err := e.c.PutConfig(ctx, tc.req)
		wantCode(t, err, codes.InvalidArgument, tc.field)
	}
	// A run's labels make the cohorts' selectors.
	for _, tc := range []struct {
		baseline, canary map[string]string
		field            string
	}{
		{nil, map[string]string{"version": "v2"}, "baseline_labels"},
		{map[string]string{"version": "v1"}, map[string]string{"app.kubernetes.io/version": "v2"}, "canary_labels"},
		{map[string]string{"version": "v1"}, map[string]string{"version": "v1"}, "canary_labels"},
	} {
		_, err := e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{
			RequestId: "r", Service: "shop", Stage: "s", Config: &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: yaml},
			BaselineLabels: tc.baseline, CanaryLabels: tc.canary,
		})
		wantCode(t, err, codes.InvalidArgument, tc.field)
	}
}
