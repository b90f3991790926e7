package puller

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the puller's own metrics.
type metrics struct {
	runs, held  prometheus.Gauge
	queries     prometheus.Counter
	failures    *prometheus.CounterVec
	intervals   *prometheus.CounterVec
	lost        prometheus.Counter
	passSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		runs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "canaryd_pull_runs",
			Help: "Running runs whose config has a source, seen by this replica."}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "canaryd_pull_runs_held",
			Help: "Runs this replica holds the pull lease of (pulls)."}),
		queries: prometheus.NewCounter(prometheus.CounterOpts{Name: "canaryd_prometheus_queries_total",
			Help: "Queries sent to Prometheus by the puller."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_prometheus_query_failures_total",
			Help: "Failed reads of a metric's interval, by kind: unreachable (no answer), bad_query (rejected, or a result that does not fit the metric), ingest (the store refused the batch)."},
			[]string{"kind"}),
		intervals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "canaryd_pull_intervals_total",
			Help: "Metric intervals read, by outcome: ingested, empty (no observation), no_data (a cohort without series)."},
			[]string{"outcome"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "canaryd_pull_lost_intervals_total",
			Help: "Metric intervals never read: beyond the backlog after an outage."}),
		passSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "canaryd_pull_pass_seconds",
			Help:    "Time to pull the due intervals of one run.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}),
	}
	for _, c := range []prometheus.Collector{m.runs, m.held, m.queries, m.failures, m.intervals, m.lost, m.passSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	for _, k := range []string{"unreachable", "bad_query", "ingest"} {
		m.failures.WithLabelValues(k)
	}
	return m, nil
}
