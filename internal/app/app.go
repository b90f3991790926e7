// Package app runs canaryd as a process: it opens the store a --store
// value names, builds the server.Service on it, serves the gRPC API with
// health and reflection the HTTP/JSON API (package gateway), /metrics and /healthz, reports the
// store's health, and drains on cancellation (SIGTERM). cmd/canaryd parses
// the flags into Options and calls Run; everything else is testable in
// process.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/canaryd/canaryd/internal/buildinfo"
	"github.com/canaryd/canaryd/internal/flagger"
	"github.com/canaryd/canaryd/internal/gateway"
	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server"
	"github.com/canaryd/canaryd/server/auth"
	"github.com/canaryd/canaryd/server/store"
)

// Defaults of Options.
const (
	DefaultGRPCAddr       = ":7070"
	DefaultHTTPAddr       = ":7071"
	DefaultStore          = "./canaryd.db"
	DefaultDrainTimeout   = 10 * time.Second
	DefaultHealthInterval = 5 * time.Second
)

// Options configure Run.
type Options struct {
	// GRPCAddr is the gRPC listen address; "" means DefaultGRPCAddr, and
	// port 0 picks a free port (see Ready).
	GRPCAddr string
	// HTTPAddr is the listen address of the HTTP/JSON API (/v1/), the
	// Flagger webhooks, /metrics, /healthz and the report pages (/ and
	// /runs/{id}, behind the API's auth); "" means
	// DefaultHTTPAddr.
	HTTPAddr string
	// Store selects the store: a file path for the embedded store ("" means
	// DefaultStore), or a redis:// or rediss:// URL for the Redis backend
	// shared by replicas (see OpenStore).
	Store string
	// Retention and VerdictRetention are passed to the store: how long
	// the raw data of a finished run are kept (0 means 7 days) and how long
	// final verdicts are kept (0 means forever).
	Retention        time.Duration
	VerdictRetention time.Duration
	// CompactThreshold is passed to the embedded store: it compacts its
	// file at start when the free pages take this many bytes and a quarter
	// of the file (0 means embedded.DefaultCompactThreshold, negative
	// never).
	CompactThreshold int64
	// HealthInterval is the period of the store health check behind
	// grpc.health.v1; 0 means DefaultHealthInterval.
	HealthInterval time.Duration
	// StoreWait is how long Run keeps retrying a store that is unavailable
	// when it starts (Redis not up yet), before giving up; 0 fails at once.
	StoreWait time.Duration
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
	// IdleTimeout and MaxBatchSamples are passed to the server.Service (0
	// means its default).
	IdleTimeout     time.Duration
	MaxBatchSamples int
	// ClockSkew is passed to the server.Service (0 means
	// server.DefaultClockSkew).
	ClockSkew time.Duration
	// StreamIdleTimeout, MaxConcurrentStreams, KeepaliveMinTime and
	// JudgeConcurrency are passed to the server.Service (0 means its
	// default).
	StreamIdleTimeout    time.Duration
	MaxConcurrentStreams uint32
	KeepaliveMinTime     time.Duration
	JudgeConcurrency     int
	// DrainTimeout bounds the drain on cancellation (see Run), after which
	// calls still running are cut; 0 means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Ready, if set, is called once both listeners are bound, with their
	// actual addresses.
	Ready func(grpcAddr, httpAddr string)
	// Build describes the running build, for canaryd_build_info.
	Build buildinfo.Info

	// TLSCert and TLSKey (PEM files) make both listeners serve TLS.
	TLSCert, TLSKey string
	// ClientCA (a PEM file of CA certificates) makes the gRPC listener
	// require a client certificate signed by one of them (mTLS), whose
	// name identifies the caller (see package auth). Needs TLSCert.
	ClientCA string
	// AuthTokens is the tokens file (see package auth) that authorizes the
	// callers; "" means none. With neither AuthTokens nor ClientCA the
	// service is open to anyone who reaches it.
	AuthTokens string
	// DisableReflection turns gRPC server reflection off.
	DisableReflection bool

	// Pull configures the puller of runs whose config has a source.
	Pull PullOptions
}

func (o *Options) setDefaults() {
	if o.GRPCAddr == "" {
		o.GRPCAddr = DefaultGRPCAddr
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = DefaultHTTPAddr
	}
	if o.Store == "" {
		o.Store = DefaultStore
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = DefaultHealthInterval
	}
}

func (o *Options) validate() error {
	switch {
	case o.IdleTimeout < 0:
		return fmt.Errorf("idle timeout %v is negative", o.IdleTimeout)
	case o.MaxBatchSamples < 0:
		return fmt.Errorf("max batch samples %d is negative", o.MaxBatchSamples)
	case o.DrainTimeout < 0:
		return fmt.Errorf("drain timeout %v is negative", o.DrainTimeout)
	case o.Retention < 0:
		return fmt.Errorf("retention %v is negative", o.Retention)
	case o.VerdictRetention < 0:
		return fmt.Errorf("verdict retention %v is negative", o.VerdictRetention)
	case o.HealthInterval < 0:
		return fmt.Errorf("health interval %v is negative", o.HealthInterval)
	case (o.TLSCert == "") != (o.TLSKey == ""):
		return errors.New("tls: a certificate and its key go together (--tls-cert and --tls-key)")
	case o.ClientCA != "" && o.TLSCert == "":
		return errors.New("tls: a client CA (mTLS) needs a server certificate (--tls-cert and --tls-key)")
	case o.StreamIdleTimeout < 0:
		return fmt.Errorf("stream idle timeout %v is negative", o.StreamIdleTimeout)
	case o.KeepaliveMinTime < 0:
		return fmt.Errorf("keepalive min time %v is negative", o.KeepaliveMinTime)
	case o.JudgeConcurrency < 0:
		return fmt.Errorf("judge concurrency %d is negative", o.JudgeConcurrency)
	}
	return o.Pull.validate()
}

// Run serves canaryd until ctx is cancelled: the CanaryService, gRPC
// health (grpc.health.v1) and server reflection on GRPCAddr, and /metrics
// and /healthz on HTTPAddr, both over TLS with TLSCert; the CanaryService
// authenticated and authorized with AuthTokens and ClientCA (health,
// reflection, /metrics and /healthz stay open). On cancellation it drains:
// it reports NOT_SERVING, stops accepting connections and calls, lets the
// calls in flight finish (the ingest streams acknowledge the batches they
// received, then end, like the verdict watchers, with UNAVAILABLE "server
// shutting down" so that clients retry elsewhere), and cuts what still runs
// after DrainTimeout. Then it writes the runs' counters back and closes the
// store. It returns nil after a clean shutdown.
func Run(ctx context.Context, opts Options) (err error) {
	if err := opts.validate(); err != nil {
		return err
	}
	opts.setDefaults()
	log := opts.Logger
	grpcTLS, httpTLS, err := serverTLS(opts)
	if err != nil {
		return err
	}
	var policy *auth.Policy
	if opts.AuthTokens != "" {
		if policy, err = auth.Load(opts.AuthTokens); err != nil {
			return err
		}
	}

	st, err := openStoreWaiting(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pm, err := newProcessMetrics(reg, opts.Build)
	if err != nil {
		return err
	}
	svc, err := server.New(server.Options{
		Store:                st,
		Logger:               log,
		Registerer:           reg,
		IdleTimeout:          opts.IdleTimeout,
		MaxBatchSamples:      opts.MaxBatchSamples,
		ClockSkew:            opts.ClockSkew,
		Auth:                 policy,
		ClientCerts:          opts.ClientCA != "",
		StreamIdleTimeout:    opts.StreamIdleTimeout,
		MaxConcurrentStreams: opts.MaxConcurrentStreams,
		KeepaliveMinTime:     opts.KeepaliveMinTime,
		JudgeConcurrency:     opts.JudgeConcurrency,
	})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := svc.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	stopPuller, err := startPuller(ctx, opts.Pull, svc, st, reg, log)
	if err != nil {
		return err
	}
	defer stopPuller()

	gl, err := net.Listen("tcp", opts.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen grpc: %w", err)
	}
	hl, err := net.Listen("tcp", opts.HTTPAddr)
	if err != nil {
		gl.Close()
		return fmt.Errorf("listen http: %w", err)
	}

	gopts := svc.ServerOptions()
	if grpcTLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(grpcTLS)))
	}
	gs := grpc.NewServer(gopts...)
	svc.Register(gs)
	hs := health.NewServer()
	// The store was just opened: serving until watchHealth says otherwise,
	// so that a health check right after Ready never finds the service
	// unknown.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(canaryv1.CanaryService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	if !opts.DisableReflection {
		reflection.Register(gs)
	}
	svc.InitializeMetrics(gs)

	gw, err := gateway.New(gateway.Options{Service: svc, MaxMessageSize: svc.MaxMessageSize(), Logger: log})
	if err != nil {
		gl.Close()
		hl.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", gw)                                          // the HTTP/JSON API (package gateway)
	mux.Handle("POST /flagger/{hook}", flagger.New(gw.Conn(), log)) // Flagger's webhooks
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		hctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := st.Healthy(hctx); err != nil {
			http.Error(w, "store unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	// The report pages (README "Reports"), behind the API's auth.
	pages, err := svc.Pages(report.HandlerOptions{Logger: log})
	if err != nil {
		gl.Close()
		hl.Close()
		return err
	}
	mux.Handle("GET /{$}", pages)
	mux.Handle("GET /runs/{id}", pages)
	// Alertmanager's webhook receiver (alarms; same auth as gRPC).
	mux.Handle("POST "+server.AlertmanagerPath, svc.AlertmanagerHandler())
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: httpTLS}

	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(gl) }()
	go func() {
		if httpTLS != nil {
			errc <- httpSrv.ServeTLS(hl, "", "")
			return
		}
		errc <- httpSrv.Serve(hl)
	}()
	log.Info("listening", "grpc", gl.Addr().String(), "http", hl.Addr().String(), "store", redactStore(opts.Store),
		"tls", grpcTLS != nil, "mtls", opts.ClientCA != "", "auth_tokens", policy != nil, "reflection", !opts.DisableReflection)
	warnExposure(log, opts, gl.Addr(), hl.Addr(), policy != nil, policy != nil && policy.HasNames())
	if opts.Ready != nil {
		opts.Ready(gl.Addr().String(), hl.Addr().String())
	}

	hctx, stopHealth := context.WithCancel(ctx)
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		watchHealth(hctx, st, hs, opts.HealthInterval, svc.StoreUnavailable(), log, pm)
	}()

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-errc:
		log.Error("server failed", "err", serveErr)
	}
	drainStart := time.Now()
	stopPuller()
	stopHealth()
	<-healthDone
	hs.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), opts.DrainTimeout)
	defer cancel()
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := httpSrv.Shutdown(sctx); err != nil {
			httpSrv.Close()
		}
	}()
	drainGRPC(gs, svc, opts.DrainTimeout, log)
	<-httpDone
	if gerr := gw.Close(opts.DrainTimeout); gerr != nil {
		log.Warn("http api", "err", gerr)
	}
	log.Info("drained", "elapsed", time.Since(drainStart).Round(time.Millisecond))
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	log.Info("stopped")
	return nil
}

// drainGRPC stops gs gracefully: no new connection or call is accepted,
// the streams of svc end (Service.Shutdown), and the calls in flight
// finish; after timeout the remaining ones are cut.
func drainGRPC(gs *grpc.Server, svc *server.Service, timeout time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	svc.Shutdown()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Warn("graceful stop timed out; cutting the remaining calls", "timeout", timeout)
		gs.Stop()
		<-done
	}
}

// watchHealth reports SERVING while the store is healthy and NOT_SERVING
// while it is not, for the whole server and for canary.v1.CanaryService. It
// checks every interval, and at once when a call found the store
// unavailable (a write failed: the store stays unhealthy until one
// succeeds again). Each check sets canaryd_store_up and is timed (pm).
func watchHealth(ctx context.Context, st store.Store, hs *health.Server, every time.Duration, poke <-chan struct{}, log *slog.Logger, pm *processMetrics) {
	last := healthpb.HealthCheckResponse_UNKNOWN
	check := func() {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		start := time.Now()
		err := st.Healthy(cctx)
		cancel()
		s := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s = healthpb.HealthCheckResponse_NOT_SERVING
		}
		pm.observeHealth(time.Since(start), err)
		if s != last {
			if err != nil {
				log.Warn("store unhealthy", "err", err)
			} else if last != healthpb.HealthCheckResponse_UNKNOWN {
				log.Info("store healthy again")
			}
			last = s
		}
		hs.SetServingStatus("", s)
		hs.SetServingStatus(canaryv1.CanaryService_ServiceDesc.ServiceName, s)
	}
	check()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		case <-poke:
			check()
		}
	}
}
