package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// Time. A run's data begin at its start (Run.start_time: its creation, or
// an explicit earlier start for a run that replays recorded data), and its
// warm-up counts from there, never from whichever sample arrives first: a
// run's state is a function of its acknowledged batches only, whatever the
// order in which they arrive. A sample timed more than the clock-skew
// allowance (Options.ClockSkew) before the run's start or after the
// present is rejected with INVALID_ARGUMENT naming its time: one sample
// dated 1970 or 9999 would otherwise count in the warm-up, or move the
// window tests. Samples without a time get the time the server received
// them.

// batch is a validated batch, folded into the delta to store.
type batch struct {
	lr      *live
	runID   string
	batchID string
	delta   *analysis.Data
	blob    []byte
	samples [2]uint64 // observations per cohort
	at      time.Time // when the server received it

	// inflight is set by beginAppend: the batch counts in its run's
	// inflight and must be settled. done is closed when an asynchronous
	// append has set dup and err.
	inflight bool
	done     chan struct{}
	dup      bool
	err      error
	// seen is the run's catchSeq when the append completed (on a
	// store.Tailer, see settleTail).
	seen uint64
}

// appendBatch stores b's delta and records its outcome.
func (s *Service) appendBatch(ctx context.Context, b *batch) {
	b.dup, b.err = s.store.AppendBatch(ctx, b.runID, b.batchID, b.blob)
	b.seen = b.lr.catchSeq.Load()
}

func (b *batch) total() uint64 { return b.samples[0] + b.samples[1] }

// ack is the acknowledgement of a stored batch.
func (b *batch) ack() *canaryv1.IngestAck {
	a := &canaryv1.IngestAck{RunId: b.runID, BatchId: b.batchID, Duplicate: b.dup}
	if !b.dup {
		a.Samples = b.total()
	}
	return a
}

// Ingest stores one batch; see the API.
func (s *Service) Ingest(ctx context.Context, req *canaryv1.IngestRequest) (*canaryv1.IngestResponse, error) {
	b, err := s.prepare(ctx, req.GetBatch())
	if err == nil {
		err = s.beginAppend(ctx, b)
	}
	if err != nil {
		return nil, err
	}
	s.appendBatch(ctx, b)
	s.settle(b)
	if b.err != nil {
		return nil, b.err
	}
	return &canaryv1.IngestResponse{Ack: b.ack()}, nil
}

// IngestStream stores batches as they arrive and acknowledges each one, in
// order, once it is durable. When the server drains (Shutdown), it stops
// reading, acknowledges the batches it received, and ends with
// UNAVAILABLE "server shutting down". A reader goroutine validates each batch and
// starts its append without waiting for the previous ones, so that up to
// streamWindow appends are in flight and the store can commit them
// together; this goroutine waits for them in order, merges them into their
// runs and sends the acknowledgements. A stream that stays idle for
// Options.StreamIdleTimeout (no complete message received, every batch
// acknowledged) is ended with DEADLINE_EXCEEDED.
func (s *Service) IngestStream(stream canaryv1.CanaryService_IngestStreamServer) error {
	ctx := stream.Context()
	queue := make(chan *batch, streamWindow)
	quit := make(chan struct{})
	var readErr error // written before queue is closed
	// lastActive is when the last complete message arrived or the last
	// acknowledgement was sent (UnixNano).
	var lastActive atomic.Int64
	lastActive.Store(time.Now().UnixNano())
	go func() {
		defer close(queue)
		// A batch resent while its first copy is still being appended
		// waits for it, so that the first copy is the one stored and the
		// resend is acknowledged as the duplicate, whatever the timing.
		pending := map[string]chan struct{}{}
		for {
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
			lastActive.Store(time.Now().UnixNano())
			select {
			case <-quit:
				return
			default:
			}
			b, err := s.startBatch(ctx, req.GetBatch())
			if err != nil {
				if b == nil {
					b = &batch{batchID: req.GetBatch().GetBatchId()}
				}
				b.err = err
				queue <- b
				return
			}
			b.done = make(chan struct{})
			key := b.runID + "\x00" + b.batchID
			prev := pending[key]
			pending[key] = b.done
			go func() {
				if prev != nil {
					<-prev
				}
				s.appendBatch(ctx, b)
				close(b.done)
			}()
			if len(pending) > 4*streamWindow {
				for k, done := range pending {
					select {
					case <-done:
						delete(pending, k)
					default:
					}
				}
			}
			queue <- b
		}
	}()

	// On an early return, the batches already started must still be
	// settled, so that memory keeps matching the store.
	stopReading := sync.OnceFunc(func() { close(quit) })
	abandon := func() {
		stopReading()
		s.bg.Go(func() {
			for b := range queue {
				s.settle(b)
			}
		})
	}
	var sum canaryv1.IngestStreamResponse
	ack := func(b *batch) error {
		s.settle(b)
		if b.err != nil {
			return batchError(b.batchID, b.err)
		}
		if b.dup {
			sum.Duplicates++
		} else {
			sum.BatchesAccepted++
			sum.Samples += b.total()
		}
		err := stream.Send(&canaryv1.IngestStreamResponse{
			Ack:             b.ack(),
			BatchesAccepted: sum.BatchesAccepted,
			Duplicates:      sum.Duplicates,
			Samples:         sum.Samples,
		})
		lastActive.Store(max(lastActive.Load(), time.Now().UnixNano()))
		return err
	}
	// The idle timer runs while this goroutine waits for a batch, i.e.
	// while every batch received is acknowledged; it is checked against
	// lastActive, which also covers a batch received and being validated.
	idle := time.NewTimer(s.streamIdle)
	defer idle.Stop()
	for {
		select {
		case b, ok := <-queue:
			if !ok {
				if readErr != nil {
					return readErr // the stream's own status, as the transport saw it
				}
				return nil
			}
			if err := ack(b); err != nil {
				abandon()
				return err
			}
			idle.Reset(s.streamIdle)
		case <-idle.C:
			if d := s.streamIdle - time.Since(time.Unix(0, lastActive.Load())); d > 0 {
				idle.Reset(d)
				continue
			}
			abandon()
			return &apiError{code: codes.DeadlineExceeded, msg: fmt.Sprintf(
				"ingest stream idle: no batch received for %v (--stream-idle-timeout); open a new stream to send more", s.streamIdle)}
		case <-s.shutdown:
			// Drain: take no new batch, acknowledge the ones received,
			// then end the stream so that the client resends the rest
			// elsewhere (a batch started meanwhile is stored, settled by
			// abandon, and acknowledged as a duplicate when resent).
			stopReading()
			for more := true; more; {
				select {
				case b, ok := <-queue:
					if !ok {
						more = false
						break
					}
					if err := ack(b); err != nil {
						abandon()
						return err
					}
				default:
					more = false
				}
			}
			abandon()
			return errShuttingDown
		}
	}
}

// errShuttingDown ends the streams (ingest and watch) when the server
// drains: UNAVAILABLE, so that clients retry elsewhere.
var errShuttingDown = &apiError{code: codes.Unavailable, msg: "server shutting down"}

// startBatch is prepare and beginAppend for the reader goroutine of
// IngestStream, which the recovery interceptor does not cover: a panic (a
// bug) becomes an error of the batch instead of a crash of the daemon.
func (s *Service) startBatch(ctx context.Context, pb *canaryv1.Batch) (b *batch, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = s.recovered(canaryv1.CanaryService_IngestStream_FullMethodName, p)
		}
	}()
	if b, err = s.prepare(ctx, pb); err == nil {
		err = s.beginAppend(ctx, b)
	}
	return b, err
}

// batchError names the batch in err's message, keeping its code and field
// violations.
func batchError(batchID string, err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		c := *ae
		c.msg = fmt.Sprintf("batch %q: %s", batchID, ae.msg)
		return &c
	}
	return fmt.Errorf("batch %q: %w", batchID, err)
}

// beginAppend registers b as in flight on its run, so that the run is
// neither snapshotted, finished nor evicted before b is settled. It waits
// while a snapshot of the run is being written.
func (s *Service) beginAppend(ctx context.Context, b *batch) error {
	for {
		lr := b.lr
		lr.mu.Lock()
		switch {
		case lr.evicted:
			lr.mu.Unlock()
			// Reloaded state has the same config: the delta still fits.
			nlr, err := s.get(ctx, b.runID)
			if err != nil {
				return err
			}
			b.lr = nlr
			continue
		case lr.finished():
			lr.mu.Unlock()
			return failedPrecondition("run %q is %s: it takes no more samples", b.runID, apiconv.RunStateName(lr.run.GetState()))
		case lr.finishing != nil:
			lr.mu.Unlock()
			return failedPrecondition("run %q is being finished: it takes no more samples", b.runID)
		case lr.blocked != nil:
			ch := lr.blocked
			lr.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		lr.inflight++
		lr.lastUsed = s.now()
		lr.mu.Unlock()
		b.inflight = true
		return nil
	}
}

// settle waits for b's append (when started) and applies its outcome to
// the run: a stored delta is merged and wakes the watchers.
func (s *Service) settle(b *batch) {
	if !b.inflight {
		return
	}
	b.inflight = false
	if b.done != nil {
		<-b.done
	}
	if s.tail != nil {
		s.settleTail(b)
		return
	}
	lr := b.lr
	lr.mu.Lock()
	defer lr.mu.Unlock()
	switch {
	case b.err != nil:
		if errors.Is(b.err, store.ErrFinished) {
			b.err = failedPrecondition("run %q is finished: it takes no more samples", b.runID)
		}
	case b.dup:
		lr.run.Counters.DuplicateBatches++
		lr.gen++
		s.metrics.batches.WithLabelValues("duplicate").Inc()
	default:
		lr.data.Merge(b.delta)
		lr.version++
		lr.sinceSnap++
		c := lr.run.Counters
		c.Batches++
		c.BaselineSamples += b.samples[analysis.Baseline]
		c.CanarySamples += b.samples[analysis.Canary]
		c.LastIngestTime = timestamppb.New(b.at)
		lr.notify()
		s.metrics.batches.WithLabelValues("accepted").Inc()
		s.metrics.samples.Add(float64(b.total()))
	}
	lr.lastUsed = s.now()
	lr.inflight--
	if lr.inflight == 0 && lr.idle != nil {
		close(lr.idle)
		lr.idle = nil
	}
	if b.err == nil && lr.sinceSnap >= s.snapN && lr.blocked == nil && lr.finishing == nil {
		lr.blocked = make(chan struct{})
		s.bg.Go(func() { s.snapshot(lr) })
	}
}

// waitIdle waits until no append is in flight on lr and returns with
// lr.mu held.
func waitIdle(ctx context.Context, lr *live) error {
	for {
		lr.mu.Lock()
		if lr.inflight == 0 {
			return nil
		}
		if lr.idle == nil {
			lr.idle = make(chan struct{})
		}
		ch := lr.idle
		lr.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// snapshot writes the merged state of lr to the store, folding the deltas
// merged since the previous snapshot. New appends wait (lr.blocked) and the
// ones in flight are drained first, so that the deltas the snapshot folds
// are exactly the first sinceSnap ones the store holds after the previous
// snapshot.
func (s *Service) snapshot(lr *live) {
	ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
	defer cancel()
	var (
		n    int
		blob []byte
		run  *canaryv1.Run
		gen  uint64
		err  error
	)
	if err = waitIdle(ctx, lr); err == nil {
		n, gen, run = lr.sinceSnap, lr.gen, lr.record()
		if lr.data != nil && n > 0 {
			blob, err = snapshotOf(run, lr.data)
		}
		lr.mu.Unlock()
	}
	if err == nil && blob != nil {
		start := time.Now()
		err = s.store.Snapshot(ctx, lr.id, n, blob)
		if err == nil {
			s.log.Debug("run snapshot", "run", lr.id, "deltas", n, "bytes", len(blob), "elapsed", time.Since(start))
			err = s.store.UpdateRun(ctx, run)
		}
		if errors.Is(err, store.ErrFinished) {
			err = nil
		}
	}
	lr.mu.Lock()
	if err == nil && blob != nil {
		lr.sinceSnap -= n
		lr.flushedGen = max(lr.flushedGen, gen)
	}
	close(lr.blocked)
	lr.blocked = nil
	lr.mu.Unlock()
	if err != nil {
		s.log.Warn("run snapshot failed; retried after the next batches", "run", lr.id, "err", err)
	}
}

// prepare validates a batch whole against its run's config and folds it
// into a delta. It stores nothing and changes no run.
func (s *Service) prepare(ctx context.Context, pb *canaryv1.Batch) (*batch, error) {
	if pb == nil {
		return nil, badField("batch", "is required")
	}
	var vs []*errdetails.BadRequest_FieldViolation
	if err := checkID(pb.GetRunId()); err != "" {
		vs = append(vs, violation("batch.run_id", "%s", err))
	}
	if err := checkID(pb.GetBatchId()); err != "" {
		vs = append(vs, violation("batch.batch_id", "%s", err))
	}
	size := len(pb.GetSamples())
	for _, c := range pb.GetColumns() {
		size += len(c.GetValues()) + len(c.GetCounts())
	}
	if size > s.maxB {
		vs = append(vs, violation("batch", "has %d observations, more than the limit of %d: split it", size, s.maxB))
	}
	if len(vs) > 0 {
		return nil, invalid(vs...)
	}
	lr, err := s.get(ctx, pb.GetRunId())
	if err != nil {
		return nil, err
	}
	lr.mu.Lock()
	if lr.finished() {
		st := lr.run.GetState()
		lr.mu.Unlock()
		return nil, failedPrecondition("run %q is %s: it takes no more samples", pb.GetRunId(), apiconv.RunStateName(st))
	}
	lr.mu.Unlock()

	b := &batch{lr: lr, runID: pb.GetRunId(), batchID: pb.GetBatchId(), at: s.now()}
	v := validator{cfg: lr.cfg, metrics: lr.metrics, check: analysis.NewData(lr.cfg), at: b.at,
		from: lr.start.Add(-s.skew), until: b.at.Add(s.skew), start: lr.start}
	v.batch(pb)
	if len(v.vs) > 0 {
		return nil, invalid(v.vs...)
	}
	b.delta, b.samples, err = v.fold(pb)
	if err == nil {
		b.blob, err = encodeDelta(b.at, b.delta)
	}
	if err != nil {
		return nil, fmt.Errorf("run %s batch %s: %w", b.runID, b.batchID, err)
	}
	return b, nil
}

// checkID returns what is wrong with a required id, or "".
func checkID(id string) string {
	switch {
	case id == "":
		return "is required"
	case len(id) > maxIDLen:
		return fmt.Sprintf("is %d bytes, more than %d", len(id), maxIDLen)
	}
	return ""
}

// validator checks the samples and columns of one batch against a config.
type validator struct {
	cfg     *analysis.Config
	metrics map[string]int
	check   *analysis.Data // for Check, which adds nothing
	at      time.Time      // receive time, for samples without one
	vs      []*errdetails.BadRequest_FieldViolation
	// Samples must be timed in [from, until]: the run's start and the
	// present, widened by the clock-skew allowance.
	from, until time.Time
	start       time.Time // the run's start, for the warm-up
}

func (v *validator) bad(field, format string, args ...any) {
	if len(v.vs) < maxViolations {
		v.vs = append(v.vs, violation(field, format, args...))
	}
}

func (v *validator) full() bool { return len(v.vs) >= maxViolations }

// when returns the time of an observation: its own, or the receive time;
// a time outside [from, until] is reported.
func (v *validator) when(ts *timestamppb.Timestamp, field string) (time.Time, bool) {
	if ts == nil {
		return v.at, true
	}
	if err := ts.CheckValid(); err != nil {
		v.bad(field, "must be a valid timestamp: %v", err)
		return time.Time{}, false
	}
	t := ts.AsTime()
	switch {
	case t.Before(v.from):
		v.bad(field, "is %s, before the run's start %s less the clock-skew allowance of %s (a skewed clock?)",
			t.Format(time.RFC3339), v.start.Format(time.RFC3339), v.until.Sub(v.at))
		return t, false
	case t.After(v.until):
		v.bad(field, "is %s, later than the server's clock %s plus the clock-skew allowance of %s (a skewed clock?)",
			t.Format(time.RFC3339), v.at.Format(time.RFC3339), v.until.Sub(v.at))
		return t, false
	}
	return t, true
}

// metric resolves a metric and cohort, reporting unknown ones.
func (v *validator) metric(path, name string, pc canaryv1.Cohort) (int, analysis.Cohort, bool) {
	i, ok := v.metrics[name]
	if !ok {
		if name == "" {
			v.bad(path+".metric", "is required")
		} else {
			v.bad(path+".metric", "%s is not a metric of config %q", quoteShort(name), v.cfg.Name)
		}
	}
	c, cok := apiconv.CohortFromProto(pc)
	if !cok {
		v.bad(path+".cohort", "must be COHORT_BASELINE or COHORT_CANARY (got %v)", pc)
	}
	return i, c, ok && cok
}

func (v *validator) batch(pb *canaryv1.Batch) {
	for i, smp := range pb.GetSamples() {
		if v.full() {
			return
		}
		v.sample(fmt.Sprintf("batch.samples[%d]", i), smp)
	}
	for j, col := range pb.GetColumns() {
		if v.full() {
			return
		}
		v.column(fmt.Sprintf("batch.columns[%d]", j), col)
	}
}

// record returns the analysis record of a sample.
func sampleRecord(smp *canaryv1.Sample, c analysis.Cohort, t time.Time) analysis.Record {
	r := analysis.Record{Metric: smp.GetMetric(), Cohort: c, Time: t, Instance: smp.GetInstance()}
	switch o := smp.GetObservation().(type) {
	case *canaryv1.Sample_Value:
		r.Value = o.Value
	case *canaryv1.Sample_Counts:
		r.IsCount, r.Count, r.Total = true, o.Counts.GetCount(), o.Counts.GetTotal()
	}
	return r
}

func (v *validator) sample(path string, smp *canaryv1.Sample) {
	i, c, ok := v.metric(path, smp.GetMetric(), smp.GetCohort())
	t, tok := v.when(smp.GetTime(), path+".time")
	if !ok || !tok {
		return
	}
	if smp.GetObservation() == nil {
		v.bad(path+".value", "is required: a value, or counts for a rate metric")
		return
	}
	r := sampleRecord(smp, c, t)
	if err := v.check.Check(&r); err != nil {
		v.recordError(err, path, func(field string) string {
			switch field {
			case "count", "total":
				if v.cfg.Metrics[i].Type != analysis.TypeRate {
					return path + ".counts"
				}
				return path + ".counts." + field
			}
			return path + "." + field
		})
		return
	}
}

// recordError reports an error of analysis.Data.Check under the API path
// that field maps to.
func (v *validator) recordError(err error, path string, field func(string) string) {
	var fe *analysis.FieldError
	if errors.As(err, &fe) {
		v.bad(field(fe.Field), "%s", fe.Msg)
		return
	}
	v.bad(path, "%v", err)
}

func (v *validator) column(path string, col *canaryv1.MetricColumn) {
	i, c, ok := v.metric(path, col.GetMetric(), col.GetCohort())
	t, tok := v.when(col.GetTime(), path+".time")
	if !ok || !tok {
		return
	}
	m := &v.cfg.Metrics[i]
	vals, counts, totals := col.GetValues(), col.GetCounts(), col.GetTotals()
	if m.Type == analysis.TypeRate {
		switch {
		case len(vals) > 0:
			v.bad(path+".values", "metric %q is a rate: send counts and totals, not values", m.Name)
			return
		case len(counts) != len(totals):
			v.bad(path+".totals", "has %d entries, counts has %d: they must pair up", len(totals), len(counts))
			return
		}
		for k := range counts {
			r := analysis.Record{Metric: m.Name, Cohort: c, IsCount: true, Count: counts[k], Total: totals[k], Time: t}
			if err := v.check.Check(&r); err != nil {
				v.recordError(err, path, func(field string) string {
					if field == "total" {
						return fmt.Sprintf("%s.totals[%d]", path, k)
					}
					return fmt.Sprintf("%s.counts[%d]", path, k)
				})
				if v.full() {
					return
				}
			}
		}
	} else {
		if len(counts) > 0 || len(totals) > 0 {
			v.bad(path+".counts", "metric %q is a %s metric: send values, not counts and totals", m.Name, m.Type)
			return
		}
		v.values(path, m.Name, c, t, vals)
	}
}

// values checks a column of values. Check decides what is valid; to keep
// 10,000-value columns cheap it is asked about the extremes only (besides
// a scan for NaN and ±Inf), and about every value only when one of those
// fails, to name the first offending ones.
func (v *validator) values(path, metric string, c analysis.Cohort, t time.Time, vals []float64) {
	if len(vals) == 0 {
		return
	}
	lo, hi := vals[0], vals[0]
	finite := true
	for _, x := range vals {
		if x-x != 0 { // NaN or ±Inf
			finite = false
			break
		}
		lo, hi = min(lo, x), max(hi, x)
	}
	r := analysis.Record{Metric: metric, Cohort: c, Time: t}
	ok := func(x float64) bool {
		r.Value = x
		return v.check.Check(&r) == nil
	}
	if finite && ok(lo) && ok(hi) {
		return
	}
	for k, x := range vals {
		r.Value = x
		if err := v.check.Check(&r); err != nil {
			v.recordError(err, path, func(string) string { return fmt.Sprintf("%s.values[%d]", path, k) })
			if v.full() {
				return
			}
		}
	}
}

// fold builds the delta of a validated batch, with the cohorts' warm-up
// starting at the run's start.
func (v *validator) fold(pb *canaryv1.Batch) (*analysis.Data, [2]uint64, error) {
	var n [2]uint64
	d := analysis.NewData(v.cfg)
	d.SetStart(analysis.Baseline, v.start)
	d.SetStart(analysis.Canary, v.start)
	for _, smp := range pb.GetSamples() {
		c, _ := apiconv.CohortFromProto(smp.GetCohort())
		t := v.at
		if smp.GetTime() != nil {
			t = smp.GetTime().AsTime()
		}
		r := sampleRecord(smp, c, t)
		if err := d.Add(&r); err != nil {
			return nil, n, err
		}
		n[c]++
	}
	for _, col := range pb.GetColumns() {
		i := v.metrics[col.GetMetric()]
		c, _ := apiconv.CohortFromProto(col.GetCohort())
		t := v.at
		if col.GetTime() != nil {
			t = col.GetTime().AsTime()
		}
		if counts, totals := col.GetCounts(), col.GetTotals(); len(counts) > 0 {
			for k := range counts {
				r := analysis.Record{Metric: col.GetMetric(), Cohort: c, IsCount: true, Count: counts[k], Total: totals[k], Time: t, Instance: col.GetInstance()}
				if err := d.Add(&r); err != nil {
					return nil, n, err
				}
			}
			n[c] += uint64(len(counts))
			continue
		}
		vals := col.GetValues()
		n[c] += uint64(len(vals))
		if err := d.AddValues(i, c, col.GetInstance(), t, vals); err != nil {
			return nil, n, err
		}
	}
	return d, n, nil
}
