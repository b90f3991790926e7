package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/auth"
	"github.com/canaryd/canaryd/server/store"
)

// Defaults of Options.
const (
	DefaultIdleTimeout     = 10 * time.Minute
	DefaultMaxBatchSamples = 100_000
	DefaultSnapshotEvery   = 256
	DefaultClockSkew       = 5 * time.Minute
)

// Internal tunables.
const (
	// streamWindow bounds the batches of one IngestStream that are being
	// stored at the same time (read ahead of their acknowledgement).
	streamWindow = 64
	// watchInterval is the shortest interval between two verdicts sent to
	// one watcher: changes within it are coalesced.
	watchInterval = 200 * time.Millisecond
	// maxViolations bounds the field violations reported for one request.
	maxViolations = 100
	// backgroundTimeout bounds the store calls the service makes on its
	// own (snapshots, flushing counters, loading a run).
	backgroundTimeout = time.Minute
)

// Store is what a Service needs of its storage backend: the records
// (store.Store), the log of each run's deltas, followed from a position
// (store.Tailer), the runs' verdict trajectories (store.Trajectories) and
// small keyed records (store.Docs: alarms, deploy policies). Both backends,
// store/embedded and store/redisstore, provide it.
type Store interface {
	store.Store
	store.Tailer
	store.Trajectories
	store.Docs
}

// Options configure a Service.
type Options struct {
	// Store persists configs, runs, batches and verdicts. Required.
	Store Store
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the service's metrics; nil registers them on a
	// private registry (useful in tests).
	Registerer prometheus.Registerer
	// Now is the clock of run and verdict times and of idleness; nil means
	// time.Now.
	Now func() time.Time
	// IdleTimeout is how long a run stays in memory without ingest, judge
	// or watch activity before it is dropped (it is reloaded from the store
	// on demand); 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxBatchSamples is the largest batch accepted, in observations (a
	// record, a column value or a count/total pair each); larger batches
	// are rejected with INVALID_ARGUMENT. 0 means DefaultMaxBatchSamples.
	MaxBatchSamples int
	// SnapshotEvery is the number of deltas folded into a run between two
	// snapshots of the fold; 0 means DefaultSnapshotEvery.
	SnapshotEvery int
	// Auth is the tokens file that authorizes callers (see package auth);
	// nil means no bearer tokens.
	Auth *auth.Policy
	// ClientCerts says that the server requires verified client
	// certificates (mTLS), which identify the callers. With neither Auth
	// nor ClientCerts the service is open to every caller.
	ClientCerts bool
	// ClockSkew is how far a sample's time may be before its run's start or
	// after the server's clock (ingest rejects it beyond); 0 means
	// DefaultClockSkew.
	ClockSkew time.Duration
	// Judge computes a verdict from a run's data; nil means analysis.Judge.
	// A panic in it is recovered: the run's verdict is then an error
	// (INTERNAL) and AbortRun still ends the run (see finishRun).
	Judge func(*analysis.Data, analysis.Options) analysis.Verdict
	// StreamIdleTimeout ends an IngestStream (DEADLINE_EXCEEDED) on which
	// the client sent no complete message for this long while every batch
	// it sent was acknowledged: gRPC messages count, not bytes, so a
	// stream that trickles a batch byte by byte is idle. 0 means
	// DefaultStreamIdleTimeout.
	StreamIdleTimeout time.Duration
	// MaxConcurrentStreams bounds the calls in progress on one client
	// connection; 0 means DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// KeepaliveMinTime is the shortest interval between client pings the
	// server accepts; 0 means DefaultKeepaliveMinTime.
	KeepaliveMinTime time.Duration
	// JudgeConcurrency bounds the judges computed at the same time, over
	// all runs (a judge of a large run is CPU-bound for up to seconds):
	// the others wait for a slot, so that health checks and ingest keep a
	// CPU. 0 means DefaultJudgeConcurrency().
	JudgeConcurrency int
}

// DefaultJudgeConcurrency is one judge per CPU (GOMAXPROCS) but one, and
// at least one.
func DefaultJudgeConcurrency() int {
	return max(1, runtime.GOMAXPROCS(0)-1)
}

func (o *Options) validate() error {
	switch {
	case o.Store == nil:
		return errors.New("options: store is required")
	case o.IdleTimeout < 0:
		return fmt.Errorf("options: idle timeout %v is negative", o.IdleTimeout)
	case o.MaxBatchSamples < 0:
		return fmt.Errorf("options: max batch samples %d is negative", o.MaxBatchSamples)
	case o.SnapshotEvery < 0:
		return fmt.Errorf("options: snapshot every %d is negative", o.SnapshotEvery)
	case o.ClockSkew < 0:
		return fmt.Errorf("options: clock skew %v is negative", o.ClockSkew)
	case o.StreamIdleTimeout < 0:
		return fmt.Errorf("options: stream idle timeout %v is negative", o.StreamIdleTimeout)
	case o.KeepaliveMinTime < 0:
		return fmt.Errorf("options: keepalive min time %v is negative", o.KeepaliveMinTime)
	case o.JudgeConcurrency < 0:
		return fmt.Errorf("options: judge concurrency %d is negative", o.JudgeConcurrency)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxBatchSamples == 0 {
		o.MaxBatchSamples = DefaultMaxBatchSamples
	}
	if o.ClockSkew == 0 {
		o.ClockSkew = DefaultClockSkew
	}
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = DefaultSnapshotEvery
	}
	if o.Judge == nil {
		o.Judge = analysis.Judge
	}
	if o.StreamIdleTimeout == 0 {
		o.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if o.KeepaliveMinTime == 0 {
		o.KeepaliveMinTime = DefaultKeepaliveMinTime
	}
	if o.JudgeConcurrency == 0 {
		o.JudgeConcurrency = DefaultJudgeConcurrency()
	}
}

// Service implements canaryv1.CanaryServiceServer. Create it with New,
// register it with Register (or canaryv1.RegisterCanaryServiceServer plus
// ServerOptions), and Close it after the gRPC server has stopped.
type Service struct {
	canaryv1.UnimplementedCanaryServiceServer

	store Store
	// tailWaiters holds a token per follower blocked in WaitBatches.
	tailWaiters chan struct{}
	log         *slog.Logger
	now         func() time.Time
	idle        time.Duration
	maxB        int
	snapN       int
	skew        time.Duration
	judge       func(*analysis.Data, analysis.Options) analysis.Verdict
	streamIdle  time.Duration
	maxStreams  uint32
	pingMin     time.Duration
	metrics     *metrics
	guard       *auth.Guard
	// judges holds a token per judge being computed (JudgeConcurrency).
	judges chan struct{}
	// maxListBytes bounds the items of one page of a listing (see
	// boundedPage); maxListBytes unless a test lowers it before any call.
	maxListBytes int

	// mu guards runs, the registry of the runs in memory (live.go). It is
	// never held with a run's lock.
	mu   sync.Mutex
	runs map[string]*liveRun

	// alarmRules caches the compiled alarm rules of running runs
	// (alarms.go).
	alarmRules ruleCache

	// judgeHook, when set (by tests, before any call), is called by
	// judgeData before it judges, in a judge slot, without the run's lock.
	judgeHook func()

	// unavailable is signalled (without blocking) when a call fails with
	// store.ErrUnavailable, so that Run checks the store's health at once.
	unavailable chan struct{}

	// shutdownCtx is cancelled by Shutdown: watchers and followers end,
	// ingest streams drain.
	shutdownCtx context.Context
	shutdown    context.CancelFunc
	stop        chan struct{} // closed by Close: the janitor ends
	closeOnce   sync.Once
	janitorDone chan struct{}
	bg          sync.WaitGroup // snapshot writers, followers, stream clean-ups
}

var _ canaryv1.CanaryServiceServer = (*Service)(nil)

// New returns a Service on opts.Store and starts its janitor, which drops
// idle runs from memory. The caller owns the store.
func New(opts Options) (*Service, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	s := &Service{
		log:         opts.Logger,
		now:         opts.Now,
		idle:        opts.IdleTimeout,
		maxB:        opts.MaxBatchSamples,
		snapN:       opts.SnapshotEvery,
		skew:        opts.ClockSkew,
		judge:       opts.Judge,
		runs:        map[string]*liveRun{},
		unavailable: make(chan struct{}, 1),
		tailWaiters: make(chan struct{}, maxTailWaiters),
		stop:        make(chan struct{}),
		janitorDone: make(chan struct{}),

		streamIdle:   opts.StreamIdleTimeout,
		maxStreams:   opts.MaxConcurrentStreams,
		pingMin:      opts.KeepaliveMinTime,
		judges:       make(chan struct{}, opts.JudgeConcurrency),
		maxListBytes: maxListBytes,
	}
	s.shutdownCtx, s.shutdown = context.WithCancel(context.Background())
	m, err := newMetrics(opts.Registerer, s.liveRuns, s.runsByState)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.store = instrumentedStore{Store: opts.Store, m: m}
	// Audit lines go to the service's logger, with component=audit.
	if s.guard, err = auth.NewGuard(auth.Options{
		Policy: opts.Auth, ClientCerts: opts.ClientCerts, Runs: s, Logger: opts.Logger,
	}); err != nil {
		return nil, err
	}
	go s.janitor()
	return s, nil
}

// ServerOptions returns the gRPC server options the service needs: its
// codec (a request that does not decode, e.g. invalid UTF-8, is answered
// INVALID_ARGUMENT naming the field: see codec.go), its interceptors
// (metrics, panic recovery, the codec's check; they must come first in the
// chain), then the auth guard's (authentication, authorization and audit
// log; see package auth), a receive limit that fits MaxBatchSamples, and
// the connection limits (see limits.go): MaxConcurrentStreams, the
// keepalive enforcement policy and parameters, bounds on handshakes and
// metadata, and on the time to receive a request (tapRequest); innermost,
// the mapping of the handlers' errors to statuses (errors.go).
func (s *Service) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		codecOption(),
		grpc.ChainUnaryInterceptor(s.metrics.grpc.UnaryServerInterceptor(), s.unaryInterceptor, s.guard.Unary),
		grpc.ChainStreamInterceptor(s.metrics.grpc.StreamServerInterceptor(), s.streamInterceptor, s.guard.Stream),
		grpc.MaxRecvMsgSize(s.maxMessageSize()),
		grpc.MaxConcurrentStreams(s.maxStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             s.pingMin,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: maxConnectionIdle,
			Time:              keepaliveTime,
			Timeout:           keepaliveTimeout,
		}),
		grpc.ConnectionTimeout(connectionTimeout),
		grpc.MaxHeaderListSize(maxHeaderListSize),
		grpc.InTapHandle(s.tapRequest),
		grpc.ChainUnaryInterceptor(s.unaryReceived, s.errorInterceptor),
		grpc.ChainStreamInterceptor(s.streamReceived, s.streamErrorInterceptor),
	}
}

// Register registers the service on a gRPC server built with
// ServerOptions.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	canaryv1.RegisterCanaryServiceServer(r, s)
}

// MaxMessageSize is the largest request message the service accepts (see
// ServerOptions), for other transports of its API (the HTTP gateway).
func (s *Service) MaxMessageSize() int { return s.maxMessageSize() }

// maxMessageSize allows a full batch of records of about 64 bytes each.
func (s *Service) maxMessageSize() int {
	return max(4<<20, s.maxB*64+1<<20)
}

// StoreUnavailable is signalled (without blocking: one pending signal)
// when a call fails because the store is unavailable, so that the process
// checks the store's health at once.
func (s *Service) StoreUnavailable() <-chan struct{} { return s.unavailable }

// Shutdown starts the drain: every WatchVerdict stream ends, and every
// IngestStream ends once it has acknowledged the batches it received, with
// UNAVAILABLE "server shutting down" (clients retry elsewhere), so that a
// graceful stop of the gRPC server does not wait for them. Unary calls are
// not affected.
func (s *Service) Shutdown() { s.shutdown() }

// Close shuts the service down after the gRPC server has stopped: it ends
// the watchers, followers and the janitor, waits for background snapshots,
// and writes the counters and latest verdicts of the runs in memory to the
// store. It does not close the store.
func (s *Service) Close() error {
	s.Shutdown()
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.janitorDone
	s.bg.Wait()
	var errs []error
	for _, lr := range s.registered() {
		if err := s.flush(lr); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
