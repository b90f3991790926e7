package puller

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	promcol "github.com/canaryd/canaryd/collectors/prometheus"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server"
)

// target is one run to pull. busy is set while a worker has it: the
// fields below it are the worker's then, and the scheduler's otherwise
// (the atomic store that clears busy orders them).
type target struct {
	id    string
	busy  atomic.Bool
	gone  atomic.Bool // no longer running: dropped at the next look
	held  atomic.Bool // this replica holds the run's lease
	start time.Time
	col   *promcol.Collector
	src   string // the source, for the status
	url   string // the source's URL

	leaseDue time.Time // when to take or renew the lease
	pullDue  time.Time // when the next interval is due
	// synced is set once the state below was read from the run's pull
	// status after taking the lease.
	synced  bool
	metrics []metricState
	// recorded is the status last recorded.
	recorded *canaryv1.PullStatus
}

// metricState is the progress of one metric.
type metricState struct {
	name         string
	through      time.Time // end of the last interval read; zero before the first
	failingSince time.Time
	err          string
	lost         uint64
}

func (p *Puller) newTarget(r *canaryv1.Run) (*target, error) {
	src, tg, ok := server.PromTarget(r)
	if !ok {
		return nil, errors.New("no Prometheus source")
	}
	c, err := p.pool.Client(src)
	if err != nil {
		return nil, err
	}
	col, err := promcol.NewCollector(c, tg)
	if err != nil {
		return nil, err
	}
	t := &target{id: r.GetId(), start: r.GetStartTime().AsTime(), col: col, src: src.String(), url: src.URL}
	for _, name := range col.Metrics() {
		t.metrics = append(t.metrics, metricState{name: name})
	}
	return t, nil
}

// work takes or renews t's lease when due, and pulls t when it holds it
// and an interval is due. The caller has set t.busy.
func (p *Puller) work(ctx context.Context, t *target) {
	now := p.o.Now()
	if !now.Before(t.leaseDue) {
		ok, err := p.o.Leases.Lease(ctx, leaseName(t.id), p.o.Holder, p.o.LeaseTTL)
		if err != nil {
			p.o.Logger.Warn("pull: lease failed", "run", t.id, "err", err)
			ok = false
		}
		if ok && !t.held.Load() {
			p.o.Logger.Info("pull: pulling run", "run", t.id, "source", t.src, "holder", p.o.Holder)
			t.synced = false
		}
		if !ok && t.held.Load() {
			p.o.Logger.Info("pull: another replica pulls run", "run", t.id)
		}
		t.held.Store(ok)
		// Renew every third of the TTL; retry a failed lease sooner.
		t.leaseDue = now.Add(p.o.LeaseTTL / 3)
		if err != nil {
			t.leaseDue = now.Add(time.Second)
		}
	}
	if !t.held.Load() || now.Before(t.pullDue) {
		return
	}
	if !t.synced {
		if err := p.sync(ctx, t); err != nil {
			if isFinished(err) {
				t.gone.Store(true)
				return
			}
			p.o.Logger.Warn("pull: reading the run's pull status failed; retrying", "run", t.id, "err", err)
			t.pullDue = now.Add(time.Second)
			return
		}
		t.synced = true
	}
	p.pull(ctx, t, now)
}

// sync reads t's progress from the run's pull status, as the replica that
// held the lease before recorded it.
func (p *Puller) sync(ctx context.Context, t *target) error {
	resp, err := p.o.Service.GetRun(ctx, &canaryv1.GetRunRequest{RunId: t.id})
	if err != nil {
		return err
	}
	pull := resp.GetRun().GetPull()
	t.recorded = pull
	byName := map[string]*canaryv1.MetricPull{}
	for _, m := range pull.GetMetrics() {
		byName[m.GetMetric()] = m
	}
	for i := range t.metrics {
		ms := &t.metrics[i]
		if m := byName[ms.name]; m != nil {
			if m.GetThrough() != nil {
				ms.through = m.GetThrough().AsTime()
			}
			if m.GetFailingSince() != nil {
				ms.failingSince, ms.err = m.GetFailingSince().AsTime(), m.GetError()
			}
			ms.lost = m.GetLostIntervals()
		}
	}
	return nil
}

// pull reads t's due intervals, metric by metric, oldest first, and
// records the status when it changed.
func (p *Puller) pull(ctx context.Context, t *target, now time.Time) {
	start := time.Now()
	interval := t.col.Interval()
	latest := t.col.LatestEnd(now)
	first := t.col.FirstEnd(t.start)
	backlog := max(1, int64(p.o.Backlog/interval))
	unreachable := p.sourceDown(t.url, now)
	finished := false
	for i := range t.metrics {
		ms := &t.metrics[i]
		next := first
		if !ms.through.IsZero() {
			next = ms.through.Add(interval)
		}
		if n := int64(latest.Sub(next)/interval) + 1; n > backlog {
			skip := n - backlog
			ms.lost += uint64(skip)
			p.metrics.lost.Add(float64(skip))
			next = next.Add(time.Duration(skip) * interval)
			ms.through = next.Add(-interval)
			p.o.Logger.Warn("pull: intervals beyond the backlog are lost", "run", t.id, "metric", ms.name, "lost", skip)
		}
		for e := next; !e.After(latest) && !finished; e = e.Add(interval) {
			if unreachable != nil {
				p.fail(ms, now, shared(unreachable))
				break
			}
			err := p.read(ctx, t, i, e, now)
			if err == nil || !errors.Is(err, promcol.ErrUnreachable) {
				p.markSource(t.url, now, nil)
			}
			if err == nil {
				ms.through, ms.failingSince, ms.err = e, time.Time{}, ""
				continue
			}
			if errors.Is(err, errNotYet) {
				break
			}
			if isFinished(err) {
				finished = true
				break
			}
			if ctx.Err() != nil {
				return
			}
			p.fail(ms, now, err)
			if errors.Is(err, promcol.ErrUnreachable) {
				unreachable = err // the other metrics would wait for the same timeout
				p.markSource(t.url, p.o.Now(), err)
			}
			break
		}
	}
	if finished {
		t.gone.Store(true)
		return
	}
	p.metrics.passSeconds.Observe(time.Since(start).Seconds())
	p.record(ctx, t, now)
	// The next interval is due lag after it ends; one that failed is
	// retried then too.
	t.pullDue = latest.Add(interval + t.col.Lag())
}

// shared is the error of another metric's read that keeps this one from
// being read (Prometheus unreachable), without that metric's name.
func shared(err error) error {
	var pe *promcol.Error
	if errors.As(err, &pe) && pe.Err != nil {
		return fmt.Errorf("%w: %w", pe.Kind, pe.Err)
	}
	return err
}

// fail records a failed read of a metric.
func (p *Puller) fail(ms *metricState, now time.Time, err error) {
	if ms.failingSince.IsZero() {
		ms.failingSince = now
	}
	ms.err = err.Error()
}

// errNotYet: a cohort has no series in an interval read when it was first
// due; it is read again an interval later (a scrape may be late).
var errNotYet = errors.New("no series yet")

// read reads one interval of metric i and ingests it at now. An interval
// where a cohort has no series an interval after it was due is read (there
// is nothing to ingest).
func (p *Puller) read(ctx context.Context, t *target, i int, end, now time.Time) error {
	res := t.col.CollectMetric(ctx, i, end)
	p.metrics.queries.Add(float64(t.col.QueryCount(i)))
	switch {
	case errors.Is(res.Err, promcol.ErrNoData):
		if now.Before(end.Add(t.col.Lag() + t.col.Interval())) {
			return errNotYet
		}
		p.metrics.intervals.WithLabelValues("no_data").Inc()
		return nil
	case res.Err != nil:
		kind := "bad_query"
		if errors.Is(res.Err, promcol.ErrUnreachable) {
			kind = "unreachable"
		}
		p.metrics.failures.WithLabelValues(kind).Inc()
		return res.Err
	}
	b := res.Batch()
	if len(b.GetSamples()) == 0 {
		p.metrics.intervals.WithLabelValues("empty").Inc()
		return nil
	}
	if _, err := p.o.Service.Ingest(ctx, &canaryv1.IngestRequest{Batch: b}); err != nil {
		if !isFinished(err) {
			p.metrics.failures.WithLabelValues("ingest").Inc()
		}
		return fmt.Errorf("ingest: %w", err)
	}
	p.metrics.intervals.WithLabelValues("ingested").Inc()
	return nil
}

// record appends t's status to the run's log when it differs from the
// last one recorded.
func (p *Puller) record(ctx context.Context, t *target, now time.Time) {
	st := &canaryv1.PullStatus{Source: t.src}
	for _, ms := range t.metrics {
		st.Metrics = append(st.Metrics, &canaryv1.MetricPull{
			Metric: ms.name, Through: ts(ms.through), FailingSince: ts(ms.failingSince), Error: ms.err, LostIntervals: ms.lost,
		})
	}
	if t.recorded != nil {
		prev := proto.Clone(t.recorded).(*canaryv1.PullStatus)
		prev.UpdateTime = nil
		if proto.Equal(prev, st) {
			return
		}
	}
	st.UpdateTime = ts(now)
	if err := p.o.Service.RecordPull(ctx, t.id, st); err != nil {
		if isFinished(err) {
			t.gone.Store(true)
			return
		}
		p.o.Logger.Warn("pull: recording the pull status failed; retried at the next interval", "run", t.id, "err", err)
		return
	}
	t.recorded = st
}
