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

	"github.com/canaryd/canaryd/analysis"
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

// The path of a batch, from the wire to the verdict: prepare validates it
// whole against its run's config (a rejected batch stores nothing) and
// folds it into a delta, taking a lease on the run; appendBatch appends the
// delta durably to the run's log (a batch id already stored is a duplicate,
// appended nowhere); settle folds the log into the run up to the new delta
// (fold.go: catchUp), which wakes the run's watchers, and returns the
// lease; then the batch is acknowledged. Judges judge the fold (judge.go).

// batch is a validated batch, folded into the delta to store.
type batch struct {
	lr      *liveRun // leased from prepare until settle; nil once settled
	runID   string
	batchID string
	blob    []byte    // the delta, encoded
	samples [2]uint64 // observations per cohort
	at      time.Time // when the server received it
	pull    bool      // a pull record (pull.go), not samples

	// done is closed when an asynchronous append has set dup and err.
	done chan struct{}
	dup  bool
	err  error
	// seen is the run's catchSeq when the append completed: a catch-up
	// numbered after it covers the batch.
	seen uint64
}

// appendBatch appends b's delta to its run's log and records the outcome.
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
		case <-s.shutdownCtx.Done():
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

// startBatch is prepare for the reader goroutine of IngestStream, which
// the recovery interceptor does not cover: a panic (a bug) becomes an error
// of the batch instead of a crash of the daemon.
func (s *Service) startBatch(ctx context.Context, pb *canaryv1.Batch) (b *batch, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, s.recovered(canaryv1.CanaryService_IngestStream_FullMethodName, p)
		}
	}()
	return s.prepare(ctx, pb)
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

// prepare validates a batch whole against its run's config and folds it
// into a delta, with a lease on the run (see Service.use) that settle
// returns. It stores nothing and changes no run; on an error it holds no
// lease.
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
	size := 0
	for _, smp := range pb.GetSamples() {
		size += max(1, histogramSize(smp.GetHistogram()))
	}
	for _, c := range pb.GetColumns() {
		size += len(c.GetValues()) + len(c.GetCounts())
		for _, h := range c.GetHistograms() {
			size += histogramSize(h)
		}
	}
	if size > s.maxB {
		vs = append(vs, violation("batch", "has %d observations, more than the limit of %d: split it", size, s.maxB))
	}
	if len(vs) > 0 {
		return nil, invalid(vs...)
	}
	lr, err := s.admitting(ctx, pb.GetRunId())
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok { // an error, or a panic on its way to startBatch
			s.release(lr)
		}
	}()
	b := &batch{lr: lr, runID: pb.GetRunId(), batchID: pb.GetBatchId(), at: s.now()}
	v := validator{cfg: lr.cfg, metrics: lr.metrics, check: analysis.NewData(lr.cfg), at: b.at,
		from: lr.start.Add(-s.skew), until: b.at.Add(s.skew), start: lr.start}
	v.batch(pb)
	if len(v.vs) > 0 {
		return nil, invalid(v.vs...)
	}
	delta, samples, err := v.fold(pb)
	if err == nil {
		b.samples = samples
		b.blob, err = encodeDelta(b.at, delta)
	}
	if err != nil {
		return nil, fmt.Errorf("run %s batch %s: %w", b.runID, b.batchID, err)
	}
	ok = true
	return b, nil
}

// admitting returns run id with a lease (see use) if it takes batches.
func (s *Service) admitting(ctx context.Context, id string) (*liveRun, error) {
	for attempt := 0; ; attempt++ {
		lr, err := s.use(ctx, id)
		if err != nil {
			return nil, err
		}
		err = lr.admits()
		if err == nil {
			return lr, nil
		}
		s.release(lr)
		if !errors.Is(err, errStale) || attempt == 2 {
			return nil, err
		}
	}
}

// settle waits for b's append (when started asynchronously), applies its
// outcome to the run, and returns the run's lease: a stored batch, or a
// duplicate (whose original may be another process's), is folded in by a
// catch-up of the run, unless one that started after the append completed
// has succeeded already. A failure to catch up does not fail the batch,
// which is stored: the next reader of the run catches up.
func (s *Service) settle(b *batch) {
	if b.lr == nil {
		return
	}
	if b.done != nil {
		<-b.done
	}
	lr := b.lr
	b.lr = nil
	defer s.release(lr)
	switch {
	case errors.Is(b.err, store.ErrFinished):
		b.err = failedPrecondition("run %q is finished: it takes no more samples", b.runID)
		if lr.state() == stateLive {
			s.drop(lr) // finished, or being finished, through another process: reload it
		}
		return
	case b.err != nil:
		return
	case b.pull:
	case b.dup:
		lr.countDuplicate()
		s.metrics.batches.WithLabelValues("duplicate").Inc()
	default:
		s.metrics.batches.WithLabelValues("accepted").Inc()
		s.metrics.samples.Add(float64(b.total()))
	}
	if !lr.caughtUpSince(b.seen) {
		ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
		defer cancel()
		if err := s.catchUp(ctx, lr); err != nil {
			s.log.Debug("catch up after append", "run", lr.id, "err", err)
		}
	}
}
