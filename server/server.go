package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
	"github.com/canaryd/canaryd/server/store/embedded"
	redisstore "github.com/canaryd/canaryd/server/store/redis"
)

// Defaults of RunOptions.
const (
	DefaultGRPCAddr        = ":7070"
	DefaultHTTPAddr        = ":7071"
	DefaultStore           = "./canaryd.db"
	DefaultShutdownTimeout = 10 * time.Second
	DefaultHealthInterval  = 5 * time.Second
)

// RunOptions configure Run.
type RunOptions struct {
	// GRPCAddr is the gRPC listen address; "" means DefaultGRPCAddr, and
	// port 0 picks a free port (see Ready).
	GRPCAddr string
	// HTTPAddr is the listen address of /metrics and /healthz; "" means
	// DefaultHTTPAddr.
	HTTPAddr string
	// Store selects the store: a file path for the embedded store ("" means
	// DefaultStore), or a redis:// or rediss:// URL for the Redis backend
	// shared by replicas (see OpenStore).
	Store string
	// Retention and VerdictRetention are passed to the Redis backend: how
	// long the raw data of a finished run are kept (0 means
	// redisstore.DefaultRetention) and how long final verdicts are kept
	// (0 means forever). The embedded store ignores them.
	Retention        time.Duration
	VerdictRetention time.Duration
	// HealthInterval is the period of the store health check behind
	// grpc.health.v1; 0 means DefaultHealthInterval.
	HealthInterval time.Duration
	// StoreWait is how long Run keeps retrying a store that is unavailable
	// when it starts (Redis not up yet), before giving up; 0 fails at once.
	StoreWait time.Duration
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
	// IdleTimeout and MaxBatchSamples are passed to the Service (0 means
	// its default).
	IdleTimeout     time.Duration
	MaxBatchSamples int
	// StreamIdleTimeout, MaxConcurrentStreams, KeepaliveMinTime and
	// JudgeConcurrency are passed to the Service (0 means its default).
	StreamIdleTimeout    time.Duration
	MaxConcurrentStreams uint32
	KeepaliveMinTime     time.Duration
	JudgeConcurrency     int
	// ShutdownTimeout bounds the graceful stop on cancellation, after which
	// calls still running are cut; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Ready, if set, is called once both listeners are bound, with their
	// actual addresses.
	Ready func(grpcAddr, httpAddr string)
}

func (o *RunOptions) setDefaults() {
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
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = DefaultHealthInterval
	}
}

func (o *RunOptions) validate() error {
	switch {
	case o.IdleTimeout < 0:
		return fmt.Errorf("idle timeout %v is negative", o.IdleTimeout)
	case o.MaxBatchSamples < 0:
		return fmt.Errorf("max batch samples %d is negative", o.MaxBatchSamples)
	case o.ShutdownTimeout < 0:
		return fmt.Errorf("shutdown timeout %v is negative", o.ShutdownTimeout)
	case o.Retention < 0:
		return fmt.Errorf("retention %v is negative", o.Retention)
	case o.VerdictRetention < 0:
		return fmt.Errorf("verdict retention %v is negative", o.VerdictRetention)
	case o.HealthInterval < 0:
		return fmt.Errorf("health interval %v is negative", o.HealthInterval)
	case o.StreamIdleTimeout < 0:
		return fmt.Errorf("stream idle timeout %v is negative", o.StreamIdleTimeout)
	case o.KeepaliveMinTime < 0:
		return fmt.Errorf("keepalive min time %v is negative", o.KeepaliveMinTime)
	case o.JudgeConcurrency < 0:
		return fmt.Errorf("judge concurrency %d is negative", o.JudgeConcurrency)
	}
	return nil
}

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// Logger receives the store's logs (and, for Redis, the client's);
	// nil discards them.
	Logger *slog.Logger
	// Retention and VerdictRetention: see RunOptions.
	Retention        time.Duration
	VerdictRetention time.Duration
}

// OpenStore opens the store a --store value names: a file path (or
// file:// URL) opens the embedded store; a redis:// or rediss:// (TLS) URL,
// redis://[[user]:password@]host[:port][/db], opens the Redis backend that
// replicas share (password from the URL, else the environment variable
// redisstore.PasswordEnv).
func OpenStore(ctx context.Context, spec string, o StoreOptions) (store.Store, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if u, err := url.Parse(spec); err == nil && u.Scheme != "" && strings.Contains(spec, "://") {
		switch u.Scheme {
		case "redis", "rediss":
			// go-redis logs through a process-wide logger; route it to ours
			// (at debug level: a failed dial is reported by the health
			// check and by the calls that fail, not once per attempt).
			redis.SetLogger(redisLogger{log: log.With("component", "go-redis")})
			s, err := redisstore.Open(ctx, spec, redisstore.Options{
				Logger:           log,
				Retention:        o.Retention,
				VerdictRetention: o.VerdictRetention,
			})
			if err != nil {
				return nil, fmt.Errorf("store %s: %w", u.Redacted(), err)
			}
			return s, nil
		case "file":
			spec = u.Path
		default:
			return nil, fmt.Errorf("store %s: unknown scheme %q; use a file path or a redis:// URL", u.Redacted(), u.Scheme)
		}
	}
	s, err := embedded.Open(spec, embedded.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// openStoreWaiting opens the store, retrying with backoff for up to
// opts.StoreWait while it is unavailable, so that canaryd started before
// its Redis comes up by itself.
func openStoreWaiting(ctx context.Context, opts RunOptions) (store.Store, error) {
	deadline := time.Now().Add(opts.StoreWait)
	for backoff := 250 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := OpenStore(octx, opts.Store, StoreOptions{
			Logger:           opts.Logger.With("component", "store"),
			Retention:        opts.Retention,
			VerdictRetention: opts.VerdictRetention,
		})
		cancel()
		if err == nil || !errors.Is(err, store.ErrUnavailable) || time.Now().Add(backoff).After(deadline) {
			return st, err
		}
		opts.Logger.Warn("store unavailable, retrying", "store", redactStore(opts.Store), "in", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, fmt.Errorf("open store: %w", ctx.Err())
		}
	}
}

// redactStore returns a --store value without the password of a URL.
func redactStore(spec string) string {
	if u, err := url.Parse(spec); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return spec
}

// redisLogger is the go-redis logger on slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}

// Run serves canaryd until ctx is cancelled: the CanaryService, gRPC
// health (grpc.health.v1) and server reflection on GRPCAddr, and /metrics
// and /healthz on HTTPAddr. On cancellation it reports NOT_SERVING, ends
// the verdict watchers, stops gracefully (cutting calls still running after
// ShutdownTimeout), writes the runs' counters back and closes the store.
// It returns nil after a clean shutdown.
func Run(ctx context.Context, opts RunOptions) (err error) {
	if err := opts.validate(); err != nil {
		return err
	}
	opts.setDefaults()
	log := opts.Logger

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
	svc, err := New(Options{
		Store:           st,
		Logger:          log,
		Registerer:      reg,
		IdleTimeout:     opts.IdleTimeout,
		MaxBatchSamples: opts.MaxBatchSamples,

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

	gl, err := net.Listen("tcp", opts.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen grpc: %w", err)
	}
	hl, err := net.Listen("tcp", opts.HTTPAddr)
	if err != nil {
		gl.Close()
		return fmt.Errorf("listen http: %w", err)
	}

	gs := grpc.NewServer(svc.ServerOptions()...)
	svc.Register(gs)
	hs := health.NewServer()
	// The store was just opened: serving until watchHealth says otherwise,
	// so that a health check right after Ready never finds the service
	// unknown.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(canaryv1.CanaryService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	mux := http.NewServeMux()
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
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(gl) }()
	go func() { errc <- httpSrv.Serve(hl) }()
	log.Info("listening", "grpc", gl.Addr().String(), "http", hl.Addr().String(), "store", redactStore(opts.Store))
	if opts.Ready != nil {
		opts.Ready(gl.Addr().String(), hl.Addr().String())
	}

	hctx, stopHealth := context.WithCancel(ctx)
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		watchHealth(hctx, st, hs, opts.HealthInterval, log)
	}()

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-errc:
		log.Error("server failed", "err", serveErr)
	}
	stopHealth()
	<-healthDone
	hs.Shutdown()
	svc.Shutdown()
	stopGRPC(gs, opts.ShutdownTimeout, log)
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(sctx); err != nil {
		httpSrv.Close()
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	log.Info("stopped")
	return nil
}

// stopGRPC stops gs gracefully, and forcibly after timeout.
func stopGRPC(gs *grpc.Server, timeout time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
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
// while it is not, for the whole server and for canary.v1.CanaryService.
func watchHealth(ctx context.Context, st store.Store, hs *health.Server, every time.Duration, log *slog.Logger) {
	last := healthpb.HealthCheckResponse_UNKNOWN
	check := func() {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := st.Healthy(cctx)
		cancel()
		s := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s = healthpb.HealthCheckResponse_NOT_SERVING
		}
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
		}
	}
}
