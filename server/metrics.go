package server

import (
	"context"
	"fmt"
	"strings"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// metrics are the service's Prometheus metrics. The gRPC calls are
// counted and timed by go-grpc-middleware's Prometheus provider under the
// names every gRPC dashboard knows: grpc_server_started_total,
// grpc_server_handled_total{grpc_type, grpc_service, grpc_method,
// grpc_code}, grpc_server_handling_seconds (a histogram),
// grpc_server_msg_received_total and grpc_server_msg_sent_total.
type metrics struct {
	grpc     *grpcprom.ServerMetrics
	samples  prometheus.Counter
	batches  *prometheus.CounterVec // result: accepted | duplicate
	verdicts *prometheus.CounterVec // decision (PROMOTE, HOLD, ROLLBACK), final
	judge    prometheus.Histogram
	// judgeWait: time judges waited for a slot (Options.JudgeConcurrency).
	judgeWait prometheus.Histogram
	// storeTime and storeErrors: the service's calls to its store
	// (storemetrics.go), by operation.
	storeTime   *prometheus.HistogramVec // operation
	storeErrors *prometheus.CounterVec   // operation, kind: unavailable | error
	// alarms: alarm events received (alarms.go), by source and state;
	// alarmRuns: their records with running runs; deployChecks:
	// CheckDeploy answers (blockers.go), by result.
	alarms       *prometheus.CounterVec
	alarmRuns    prometheus.Counter
	deployChecks *prometheus.CounterVec
}

// grpcBuckets are the buckets of grpc_server_handling_seconds: from the
// sub-millisecond unary calls to the streams that last a whole run.
var grpcBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200}

// decisionLabels are the values of the decision label, the API's decisions
// without their enum prefix.
var decisionLabels = []string{"PROMOTE", "HOLD", "ROLLBACK"}

// decisionLabel is the decision label of a verdict: PROMOTE, HOLD or
// ROLLBACK (UNSPECIFIED for a verdict without a decision, a bug).
func decisionLabel(d canaryv1.Decision) string {
	return strings.TrimPrefix(d.String(), "DECISION_")
}

func newMetrics(reg prometheus.Registerer, liveRuns func() float64, runsByState func() map[string]int) (*metrics, error) {
	m := &metrics{
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(grpcBuckets))),
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
			Help: "Verdicts issued, by decision (PROMOTE, HOLD, ROLLBACK); final=\"true\" counts the final verdicts " +
				"of finished runs, final=\"false\" each new provisional verdict.",
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
		storeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "canaryd_store_operation_duration_seconds",
			Help:    "Duration of the service's calls to its store, by operation (failed calls included).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canaryd_store_errors_total",
			Help: "Calls to the store that failed, by operation and kind: unavailable (the backend could not be " +
				"reached; nothing was stored) or error (any other failure). Expected answers (not found, run " +
				"finished, request id conflict) and cancelled calls are not errors.",
		}, []string{"operation", "kind"}),
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
	byState := &runStateCollector{
		desc: prometheus.NewDesc("canaryd_runs", "Runs held in memory by state: running, completed or aborted "+
			"(runs still loading are not counted).", []string{"state"}, nil),
		count: runsByState,
	}
	for _, c := range []prometheus.Collector{m.grpc, m.samples, m.batches, m.verdicts, m.judge, m.judgeWait,
		m.storeTime, m.storeErrors, runs, byState, m.alarms, m.alarmRuns, m.deployChecks} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	// Every series a dashboard or an alert reads exists from the start,
	// at zero.
	for _, r := range []string{"accepted", "duplicate"} {
		m.batches.WithLabelValues(r)
	}
	for _, d := range decisionLabels {
		m.verdicts.WithLabelValues(d, "true")
		m.verdicts.WithLabelValues(d, "false")
	}
	for _, op := range storeOperations {
		m.storeTime.WithLabelValues(op)
		m.storeErrors.WithLabelValues(op, "unavailable")
		m.storeErrors.WithLabelValues(op, "error")
	}
	for _, r := range []string{"allowed", "blocked", "overridden"} {
		m.deployChecks.WithLabelValues(r)
	}
	return m, nil
}

// runStateCollector reports canaryd_runs{state} at each scrape.
type runStateCollector struct {
	desc  *prometheus.Desc
	count func() map[string]int
}

// Describe implements prometheus.Collector.
func (c *runStateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector: one gauge per state, running,
// completed and aborted always present.
func (c *runStateCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.count()
	for _, st := range []string{"running", "completed", "aborted"} {
		if _, ok := n[st]; !ok {
			n[st] = 0
		}
	}
	for st, v := range n {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), st)
	}
}

// InitializeMetrics creates the gRPC metrics' series of every method
// registered on gs, at zero, so that rates and ratios exist before the
// first call. Call it once every service is registered.
func (s *Service) InitializeMetrics(gs *grpc.Server) {
	s.metrics.grpc.InitializeMetrics(gs)
}

// unaryInterceptor makes sure the client never sees an error that is not
// a status: such an error (a bug) becomes INTERNAL, and so does a panic of
// the handler (see recover.go); the metrics' interceptor, before it in the
// chain, counts the status the client gets.
// A request that did not decode is answered INVALID_ARGUMENT (see
// codec.go); the stream interceptor checks every message received.
func (s *Service) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
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
	return resp, s.ensureStatus(info.FullMethod, err)
}

// streamInterceptor is unaryInterceptor for streams.
func (s *Service) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = s.recovered(info.FullMethod, p)
			}
		}()
		return handler(srv, decodedStream{ss})
	}()
	return s.ensureStatus(info.FullMethod, err)
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
