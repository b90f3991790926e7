package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/canaryd/canaryd/puller"
	"github.com/canaryd/canaryd/server"
	"github.com/canaryd/canaryd/server/store"
)

// PullOptions configure the puller (package puller), which reads the
// metrics of running runs whose config has a source; 0 means the
// puller's default.
type PullOptions struct {
	// Workers bounds the runs pulled at the same time (--pull-workers).
	Workers int
	// Timeout bounds one query to a source (--pull-timeout).
	Timeout time.Duration
	// LeaseTTL is how long a run goes unpulled after the replica pulling
	// it dies, before another takes it over (--pull-lease).
	LeaseTTL time.Duration
	// Backlog bounds how far back missed intervals are caught up
	// (--pull-backlog).
	Backlog time.Duration
	// ScanInterval is how often the running runs are listed
	// (--pull-scan).
	ScanInterval time.Duration
	// Disabled turns the puller off (--pull-workers 0 on the command
	// line): this replica pulls no run.
	Disabled bool
}

func (o *PullOptions) validate() error {
	if o.Workers < 0 || o.Timeout < 0 || o.LeaseTTL < 0 || o.Backlog < 0 || o.ScanInterval < 0 {
		return errors.New("pull: workers, timeout, lease, backlog and scan interval must be >= 0")
	}
	return nil
}

// startPuller starts the puller on svc and st unless it is disabled; stop
// ends it and waits until it has released its leases.
func startPuller(ctx context.Context, o PullOptions, svc *server.Service, st server.Store, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	if o.Disabled {
		return func() {}, nil
	}
	leases, ok := st.(store.Leaser)
	if !ok {
		return nil, fmt.Errorf("pull: store %T has no leases", st)
	}
	p, err := puller.New(puller.Options{
		Service: svc, Runs: st, Leases: leases,
		Workers: o.Workers, QueryTimeout: o.Timeout, LeaseTTL: o.LeaseTTL, Backlog: o.Backlog, ScanInterval: o.ScanInterval,
		Logger: log.With("component", "pull"), Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Run(pctx)
	}()
	return sync.OnceFunc(func() { cancel(); <-done }), nil
}
