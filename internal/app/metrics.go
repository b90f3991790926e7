package app

import (
	"fmt"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/canaryd/canaryd/internal/buildinfo"
)

// processMetrics are the metrics of the process rather than of the
// service: the store's health as the process checks it, and the build.
type processMetrics struct {
	storeUp     prometheus.Gauge
	healthCheck prometheus.Histogram
}

// newProcessMetrics registers canaryd_store_up,
// canaryd_store_health_check_duration_seconds and canaryd_build_info
// (version, goversion and revision of the build, value 1) on reg.
func newProcessMetrics(reg prometheus.Registerer, build buildinfo.Info) (*processMetrics, error) {
	m := &processMetrics{
		storeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "canaryd_store_up",
			Help: "1 when the last health check of the store passed (the service serves), 0 when it failed.",
		}),
		healthCheck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "canaryd_store_health_check_duration_seconds",
			Help:    "Duration of the store's health checks (a round trip to Redis, a read of the embedded store), failed ones included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2},
		}),
	}
	goVersion := build.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "canaryd_build_info",
		Help: "The build of canaryd: its version, the Go version that built it and the VCS revision; value 1.",
		ConstLabels: prometheus.Labels{
			"version": build.Version, "goversion": goVersion, "revision": build.Revision,
		},
	})
	info.Set(1)
	// Up until a check says otherwise: Run starts serving on an open store.
	m.storeUp.Set(1)
	for _, c := range []prometheus.Collector{m.storeUp, m.healthCheck, info} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register process metrics: %w", err)
		}
	}
	return m, nil
}

// observeHealth records one health check of the store.
func (m *processMetrics) observeHealth(d time.Duration, err error) {
	m.healthCheck.Observe(d.Seconds())
	if err != nil {
		m.storeUp.Set(0)
		return
	}
	m.storeUp.Set(1)
}
