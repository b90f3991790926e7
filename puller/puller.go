// Package puller pulls the metrics of running runs from where they live:
// for every running run whose config has a source (today Prometheus:
// CanaryConfig.source, MetricConfig.query), it reads each interval of the
// source's grid once it is lag old (collectors/prometheus) and ingests it
// as one batch per metric, through the service's own ingest path, with an
// id derived from the run, the metric's queries and the interval: an
// interval read twice, by a retry or by two replicas, is counted once.
//
// # One replica per run
//
// Every replica runs a Puller. A run is pulled by the replica that holds
// its lease in the store ("pull/<run id>", store.Leaser), renewed every
// third of Options.LeaseTTL; a replica that dies stops renewing, and
// another takes the run over once the lease expires. A new holder reads
// the run's pull status (Run.pull, folded from the run's log) and goes on
// after the last interval recorded there; what a dead holder ingested but
// did not record yet is read again and stored nowhere (the same batch ids).
//
// # Failures
//
// A metric whose read fails (Prometheus unreachable, a query rejected, the
// store unavailable) is retried every interval, from the first interval it
// misses: the intervals are caught up in order when the source answers
// again, at most Options.Backlog of them (older ones are counted as lost).
// Meanwhile the puller records, in the run's log, since when and why the
// metric has no data (server.Service.RecordPull), which the run's record
// shows (Run.pull) and which makes the judge hold the metric and never
// promote (server's pullGate). canaryd_pull_query_failures_total counts
// the failed reads.
package puller

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	promcol "github.com/canaryd/canaryd/collectors/prometheus"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server"
	"github.com/canaryd/canaryd/server/store"
)

// Defaults of Options.
const (
	DefaultWorkers      = 4
	DefaultQueryTimeout = 30 * time.Second
	DefaultLeaseTTL     = 30 * time.Second
	DefaultScanInterval = 10 * time.Second
	DefaultBacklog      = time.Hour
	// DefaultMaxConns bounds the connections to one Prometheus.
	DefaultMaxConns = 4
)

// tick is how often the scheduler looks for due work.
const tick = 100 * time.Millisecond

// Service is what the puller needs of the run engine (server.Service):
// the ingest path of client batches, the run's state, and the pull
// records.
type Service interface {
	Ingest(ctx context.Context, req *canaryv1.IngestRequest) (*canaryv1.IngestResponse, error)
	GetRun(ctx context.Context, req *canaryv1.GetRunRequest) (*canaryv1.GetRunResponse, error)
	RecordPull(ctx context.Context, runID string, p *canaryv1.PullStatus) error
}

// Runs lists the running runs (store.Store.ListRuns).
type Runs interface {
	ListRuns(ctx context.Context, f store.RunFilter, page store.Page) ([]*canaryv1.Run, string, error)
}

// Options configure a Puller.
type Options struct {
	// Service ingests the batches and records the pull status. Required.
	Service Service
	// Runs lists the running runs; Leases holds the runs' leases (both
	// the store). Required.
	Runs   Runs
	Leases store.Leaser
	// Holder names this replica in the leases; "" means the host name and
	// a random suffix.
	Holder string
	// Workers bounds the runs pulled at the same time; 0 means
	// DefaultWorkers.
	Workers int
	// QueryTimeout bounds one query; 0 means DefaultQueryTimeout.
	QueryTimeout time.Duration
	// MaxConns bounds the connections to one Prometheus; 0 means
	// DefaultMaxConns.
	MaxConns int
	// LeaseTTL is how long a run's lease lasts without renewal: how long
	// a run goes unpulled after its replica dies. 0 means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// ScanInterval is how often the running runs are listed; 0 means
	// DefaultScanInterval.
	ScanInterval time.Duration
	// Backlog bounds how far back a run's missed intervals are caught up;
	// 0 means DefaultBacklog.
	Backlog time.Duration
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means a private registry.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o *Options) validate() error {
	switch {
	case o.Service == nil || o.Runs == nil || o.Leases == nil:
		return errors.New("puller: Service, Runs and Leases are required")
	case o.Workers < 0, o.QueryTimeout < 0, o.MaxConns < 0, o.LeaseTTL < 0, o.ScanInterval < 0, o.Backlog < 0:
		return errors.New("puller: workers, timeouts, lease TTL, scan interval and backlog must be >= 0")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.QueryTimeout, DefaultQueryTimeout)
	def(&o.LeaseTTL, DefaultLeaseTTL)
	def(&o.ScanInterval, DefaultScanInterval)
	def(&o.Backlog, DefaultBacklog)
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.Holder == "" {
		host, _ := os.Hostname()
		o.Holder = host + "-" + rand.Text()[:8]
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Puller pulls the running runs that have a source; see the package
// comment. Run runs it.
type Puller struct {
	o       Options
	pool    *promcol.Pool
	metrics *metrics

	mu   sync.Mutex
	runs map[string]*target

	// down is, by source URL, the last read that found it unreachable
	// (see sourceDown).
	downMu sync.Mutex
	down   map[string]downSource
}

// downSource is a source found unreachable: when, and the error.
type downSource struct {
	at  time.Time
	err error
}

// downFor is how long after a read found a source unreachable the runs
// of that source skip their reads (failing with the same error) instead
// of waiting for their own timeouts: with a Prometheus that hangs, a
// thousand runs would otherwise hold every worker for a query timeout
// each, and leases would go unrenewed.
const downFor = 5 * time.Second

// sourceDown returns the error of the source's last unreachable read if it
// is recent (downFor) and no read succeeded since.
func (p *Puller) sourceDown(url string, now time.Time) error {
	p.downMu.Lock()
	defer p.downMu.Unlock()
	if d, ok := p.down[url]; ok && now.Sub(d.at) < downFor {
		return d.err
	}
	return nil
}

// markSource records the outcome of a read of a source: err is nil
// (reachable) or the unreachable error.
func (p *Puller) markSource(url string, now time.Time, err error) {
	p.downMu.Lock()
	defer p.downMu.Unlock()
	if err == nil {
		delete(p.down, url)
		return
	}
	p.down[url] = downSource{at: now, err: err}
}

// New returns a Puller.
func New(o Options) (*Puller, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	pool, err := promcol.NewPool(promcol.ClientOptions{MaxConnsPerHost: o.MaxConns, QueryTimeout: o.QueryTimeout})
	if err != nil {
		return nil, fmt.Errorf("puller: %w", err)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("puller: %w", err)
	}
	return &Puller{o: o, pool: pool, metrics: m, runs: map[string]*target{}, down: map[string]downSource{}}, nil
}

// Holder is the name of this replica in the leases.
func (p *Puller) Holder() string { return p.o.Holder }

// Run pulls until ctx is done, then releases the leases it holds (so that
// another replica takes its runs over at once) and returns nil.
func (p *Puller) Run(ctx context.Context) error {
	jobs := make(chan *target)
	var wg sync.WaitGroup
	for range p.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range jobs {
				p.work(ctx, t)
				t.busy.Store(false)
			}
		}()
	}
	defer p.pool.Close()
	defer p.releaseAll()
	defer wg.Wait()
	defer close(jobs)

	scan := time.NewTimer(0)
	defer scan.Stop()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-scan.C:
			if err := p.scan(ctx); err != nil && ctx.Err() == nil {
				p.o.Logger.Warn("pull: listing the running runs failed; retrying", "err", err)
			}
			scan.Reset(p.o.ScanInterval)
		case <-tk.C:
		}
		now := p.o.Now()
		for _, t := range p.due(now) {
			select {
			case jobs <- t:
			case <-ctx.Done():
				t.busy.Store(false)
				return nil
			}
		}
	}
}

// scan lists the running runs and updates the targets: new runs with a
// source are added, runs no longer running are dropped.
func (p *Puller) scan(ctx context.Context) error {
	seen := map[string]*canaryv1.Run{}
	page := store.Page{Size: store.MaxPageSize}
	for {
		runs, next, err := p.o.Runs.ListRuns(ctx, store.RunFilter{State: canaryv1.RunState_RUN_STATE_RUNNING}, page)
		if err != nil {
			return fmt.Errorf("list running runs: %w", err)
		}
		for _, r := range runs {
			if r.GetConfig().GetSource().GetPrometheus() != nil && r.GetState() == canaryv1.RunState_RUN_STATE_RUNNING {
				seen[r.GetId()] = r
			}
		}
		if next == "" {
			break
		}
		page.Token = next
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, t := range p.runs {
		if seen[id] == nil {
			t.gone.Store(true)
			if !t.busy.Load() {
				delete(p.runs, id)
				if t.held.Load() {
					go p.release(t)
				}
			}
		}
	}
	for id, r := range seen {
		if p.runs[id] != nil {
			continue
		}
		t, err := p.newTarget(r)
		if err != nil {
			p.o.Logger.Warn("pull: run cannot be pulled", "run", id, "err", err)
			continue
		}
		p.runs[id] = t
	}
	p.metrics.runs.Set(float64(len(p.runs)))
	return nil
}

// due returns the targets with work due at now, marked busy.
func (p *Puller) due(now time.Time) []*target {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*target
	held := 0
	for id, t := range p.runs {
		if t.held.Load() {
			held++
		}
		if t.busy.Load() {
			continue
		}
		if t.gone.Load() {
			delete(p.runs, id)
			if t.held.Load() {
				go p.release(t)
			}
			continue
		}
		if now.Before(t.leaseDue) && (!t.held.Load() || now.Before(t.pullDue)) {
			continue
		}
		t.busy.Store(true)
		out = append(out, t)
	}
	p.metrics.held.Set(float64(held))
	return out
}

// releaseAll releases the leases this replica holds.
func (p *Puller) releaseAll() {
	p.mu.Lock()
	var held []*target
	for _, t := range p.runs {
		if t.held.Load() {
			held = append(held, t)
		}
	}
	p.mu.Unlock()
	for _, t := range held {
		p.release(t)
	}
}

func (p *Puller) release(t *target) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.o.Leases.ReleaseLease(ctx, leaseName(t.id), p.o.Holder); err != nil {
		p.o.Logger.Debug("pull: releasing a lease failed (it expires)", "run", t.id, "err", err)
	}
}

func leaseName(runID string) string { return "pull/" + runID }

// isFinished reports whether an error of the service says the run is
// finished (or gone): its pull ends.
func isFinished(err error) bool {
	c := status.Code(err)
	return c == codes.FailedPrecondition || c == codes.NotFound
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

var _ Service = (*server.Service)(nil)
