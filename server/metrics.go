package server

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// metrics are the service's Prometheus metrics.
type metrics struct {
	rpcs     *prometheus.CounterVec   // method, code
	rpcTime  *prometheus.HistogramVec // method, code
	samples  prometheus.Counter
	batches  *prometheus.CounterVec // result: accepted | duplicate
	verdicts *prometheus.CounterVec // decision, final
	judge    prometheus.Histogram
	// judgeWait: time judges waited for a slot (Options.JudgeConcurrency).
	judgeWait prometheus.Histogram
	// alarms: alarm events received (alarms.go), by source and state;
	// alarmRuns: their records with running runs; deployChecks:
	// CheckDeploy answers (blockers.go), by result.
	alarms       *prometheus.CounterVec
	alarmRuns    prometheus.Counter
	deployChecks *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, liveRuns func() float64) (*metrics, error) {
	m := &metrics{
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canaryd_grpc_requests_total",
			Help: "gRPC calls handled, by full method and status code.",
		}, []string{"method", "code"}),
		rpcTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "canaryd_grpc_request_duration_seconds",
			Help: "Duration of gRPC calls (of the whole stream for streaming calls), by full method and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60,
				300},
		}, []string{"method", "code"}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canaryd_ingest_samples_total",
			Help: "Observations stored (a record, a column value or a count/total pair each), duplicates excluded.",
		}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canaryd_ingest_batches_total",
			Help: "Batches acknowledged, by result: accepted (stored) or duplicate (already stored, ignored).",
		}, []string{"result"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canaryd_verdicts_total",
			Help: "Verdicts issued, by decision; final=true counts the final verdicts of finished runs, " +
				"final=false each new provisional verdict.",
		}, []string{"decision", "final"}),
		judge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "canaryd_judge_duration_seconds",
			Help:    "Time to judge a run (cache misses only).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .02, .05, .1, .25, 1},
		}),
		judgeWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "canaryd_judge_wait_seconds",
			Help:    "Time judges waited for one of the --judge-concurrency slots (only those that waited).",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	m.alarms = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canaryd_alarms_total",
		Help: "Alarm events recorded, by source (alertmanager, api) and state (firing, resolved).",
	}, []string{"source", "state"})
	m.alarmRuns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "canaryd_alarm_run_records_total",
		Help: "Alarm events recorded with running runs that their rules match (a firing one rolls the run back).",
	})
	m.deployChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "canaryd_deploy_checks_total",
		Help: "CheckDeploy answers, by result: allowed, blocked, or overridden (blocked, allowed by an override).",
	}, []string{"result"})
	runs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "canaryd_runs_in_memory",
		Help: "Runs held in memory (running runs in use, and recently finished ones).",
	}, liveRuns)
	for _, c := range []prometheus.Collector{m.rpcs, m.rpcTime, m.samples, m.batches, m.verdicts, m.judge, m.judgeWait, runs,
		m.alarms, m.alarmRuns, m.deployChecks} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	for _, r := range []string{"accepted", "duplicate"} {
		m.batches.WithLabelValues(r)
	}
	for _, r := range []string{"allowed", "blocked", "overridden"} {
		m.deployChecks.WithLabelValues(r)
	}
	return m, nil
}

func (m *metrics) observe(method string, err error, d time.Duration) {
	code := codes.OK.String()
	if err != nil {
		code = status.Code(err).String()
	}
	m.rpcs.WithLabelValues(method, code).Inc()
	m.rpcTime.WithLabelValues(method, code).Observe(d.Seconds())
}

// unaryInterceptor counts and times unary calls. It also makes sure the
// client never sees an error that is not a status: such an error (a bug)
// becomes INTERNAL, and so does a panic of the handler (see recover.go).
// A request that did not decode is answered INVALID_ARGUMENT (see
// codec.go); the stream interceptor checks every message received.
func (s *Service) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := func() (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				resp, err = nil, s.recovered(info.FullMethod, p)
			}
		}()
		if err := checkDecoded(req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}()
	err = s.ensureStatus(info.FullMethod, err)
	s.metrics.observe(info.FullMethod, err, time.Since(start))
	return resp, err
}

func (s *Service) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = s.recovered(info.FullMethod, p)
			}
		}()
		return handler(srv, decodedStream{ss})
	}()
	err = s.ensureStatus(info.FullMethod, err)
	s.metrics.observe(info.FullMethod, err, time.Since(start))
	return err
}

func (s *Service) ensureStatus(method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	s.log.Error("handler returned a non-status error", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}
