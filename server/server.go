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
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
	"github.com/canaryd/canaryd/server/store/embedded"
)

// Defaults of RunOptions.
const (
	DefaultGRPCAddr        = ":7070"
	DefaultHTTPAddr        = ":7071"
	DefaultStore           = "./canaryd.db"
	DefaultShutdownTimeout = 10 * time.Second
	healthInterval         = 5 * time.Second
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
	// DefaultStore); redis:// URLs are not supported yet.
	Store string
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
	// IdleTimeout and MaxBatchSamples are passed to the Service (0 means
	// its default).
	IdleTimeout     time.Duration
	MaxBatchSamples int
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
}

func (o *RunOptions) validate() error {
	switch {
	case o.IdleTimeout < 0:
		return fmt.Errorf("idle timeout %v is negative", o.IdleTimeout)
	case o.MaxBatchSamples < 0:
		return fmt.Errorf("max batch samples %d is negative", o.MaxBatchSamples)
	case o.ShutdownTimeout < 0:
		return fmt.Errorf("shutdown timeout %v is negative", o.ShutdownTimeout)
	}
	return nil
}

// OpenStore opens the store a --store value names: a file path opens the
// embedded store; redis:// is reserved for the Redis backend.
func OpenStore(spec string, log *slog.Logger) (store.Store, error) {
	if u, err := url.Parse(spec); err == nil && u.Scheme != "" && strings.Contains(spec, "://") {
		switch u.Scheme {
		case "redis", "rediss":
			return nil, fmt.Errorf("store %s: the Redis backend is not yet supported; use a file path for the embedded store", u.Redacted())
		case "file":
			spec = u.Path
		default:
			return nil, fmt.Errorf("store %s: unknown scheme %q; use a file path for the embedded store", u.Redacted(), u.Scheme)
		}
	}
	s, err := embedded.Open(spec, embedded.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	return s, nil
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

	st, err := OpenStore(opts.Store, log.With("component", "store"))
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
	log.Info("listening", "grpc", gl.Addr().String(), "http", hl.Addr().String(), "store", opts.Store)
	if opts.Ready != nil {
		opts.Ready(gl.Addr().String(), hl.Addr().String())
	}

	hctx, stopHealth := context.WithCancel(ctx)
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		watchHealth(hctx, st, hs, log)
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
func watchHealth(ctx context.Context, st store.Store, hs *health.Server, log *slog.Logger) {
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
	t := time.NewTicker(healthInterval)
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
