package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// bakeEnd returns when a run's bake time ends. The judge promotes nothing
// before it, and rolls back before it only on a critical regression.
func bakeEnd(run *canaryv1.Run) time.Time {
	return run.GetCreateTime().AsTime().Add(run.GetBakeTime().AsDuration())
}

// judgeLocked returns the verdict of a running run at now. The verdict is
// cached per data version and bake state, so judging unchanged data is a
// lookup; a recomputed verdict that shows the same evidence keeps the
// cached one (and its sequence and time). Called with lr.mu held.
func (s *Service) judgeLocked(lr *live, now time.Time, bake bool) *canaryv1.Verdict {
	if v := lr.verdict; v != nil && !v.GetFinal() && lr.verdictVersion == lr.version && lr.verdictBake == bake {
		return v
	}
	start := time.Now()
	// Live runs are judged after every batch: anytime-valid tests.
	av := analysis.Judge(lr.data, analysis.Options{BakeComplete: bake, Sequential: true})
	s.metrics.judge.Observe(time.Since(start).Seconds())
	v := verdictToProto(&av, lr.run)
	v.RunState = canaryv1.RunState_RUN_STATE_RUNNING
	lr.verdictVersion, lr.verdictBake = lr.version, bake
	if lr.verdict != nil && sameEvidence(lr.verdict, v) {
		return lr.verdict
	}
	lr.seq++
	v.Sequence = lr.seq
	v.Time = timestamppb.New(now)
	lr.verdict = v
	lr.run.Verdict = v
	lr.gen++
	s.metrics.verdicts.WithLabelValues(v.GetDecision().String(), "false").Inc()
	return v
}

// sameEvidence reports whether two verdicts differ only in their time and
// sequence.
func sameEvidence(a, b *canaryv1.Verdict) bool {
	a = proto.Clone(a).(*canaryv1.Verdict)
	b = proto.Clone(b).(*canaryv1.Verdict)
	a.Time, a.Sequence, b.Time, b.Sequence = nil, 0, nil, 0
	return proto.Equal(a, b)
}

// verdictNow returns the current verdict of lr (the final one once it is
// finished). Called with lr.mu held.
func (s *Service) verdictNow(lr *live) (*canaryv1.Verdict, error) {
	if lr.finished() {
		if lr.verdict == nil {
			return nil, errors.New("finished run has no final verdict")
		}
		return lr.verdict, nil
	}
	if lr.finishing != nil && lr.verdict != nil {
		// The data are frozen and the final verdict is being stored: keep
		// the sequence numbers of provisional verdicts below the final one.
		return lr.verdict, nil
	}
	now := s.now()
	return s.judgeLocked(lr, now, !now.Before(bakeEnd(lr.run))), nil
}

// Judge returns the verdict now; see the API.
func (s *Service) Judge(ctx context.Context, req *canaryv1.JudgeRequest) (*canaryv1.JudgeResponse, error) {
	lr, err := s.fresh(ctx, req.GetRunId())
	if err != nil {
		return nil, s.status(err)
	}
	v, err := s.verdictNow(lr)
	lr.mu.Unlock()
	if err != nil {
		return nil, s.status(err)
	}
	return &canaryv1.JudgeResponse{Verdict: v}, nil
}

// WatchVerdict streams the verdict; see the API. It sends the current
// verdict, then a new one whenever a change (new data, the end of the bake
// time) gives different evidence, at most one every watchInterval, and ends
// after the final verdict. It also ends when the client goes away, and with
// UNAVAILABLE when the server shuts down.
func (s *Service) WatchVerdict(req *canaryv1.WatchVerdictRequest, stream canaryv1.CanaryService_WatchVerdictServer) error {
	ctx := stream.Context()
	if s.tail != nil {
		if req.GetRunId() == "" {
			return s.status(badField("run_id", "is required"))
		}
		return s.watchTail(ctx, req.GetRunId(), stream)
	}
	lr, err := s.acquire(ctx, req.GetRunId())
	if err != nil {
		return s.status(err)
	}
	lr.watchers++
	lr.mu.Unlock()
	defer func() {
		lr.mu.Lock()
		lr.watchers--
		lr.lastUsed = s.now()
		lr.mu.Unlock()
	}()

	var (
		sent     bool
		lastSeq  uint64
		lastSent time.Time
	)
	for {
		lr.mu.Lock()
		if lr.evicted {
			// Dropped and reloaded behind our back (see finish): follow the
			// reloaded run.
			lr.watchers--
			lr.mu.Unlock()
			if lr, err = s.acquire(ctx, req.GetRunId()); err != nil {
				return s.status(err)
			}
			lr.watchers++
		}
		v, err := s.verdictNow(lr)
		changed, final := lr.changed, lr.finished()
		untilBake := time.Duration(-1)
		if !final {
			if d := bakeEnd(lr.run).Sub(s.now()); d > 0 {
				untilBake = d
			}
		}
		lr.mu.Unlock()
		if err != nil {
			return s.status(err)
		}
		if !sent || v.GetSequence() != lastSeq || final {
			if err := stream.Send(&canaryv1.WatchVerdictResponse{Verdict: v}); err != nil {
				return err
			}
			sent, lastSeq, lastSent = true, v.GetSequence(), time.Now()
		}
		if final {
			return nil
		}

		if err := s.waitChange(ctx, changed, untilBake, lastSent); err != nil {
			return s.status(err)
		}
	}
}

// waitChange waits for changed to close or the bake time to end (after
// untilBake, if >= 0), and then until watchInterval has passed since
// lastSent, so that quick changes are coalesced.
func (s *Service) waitChange(ctx context.Context, changed <-chan struct{}, untilBake time.Duration, lastSent time.Time) error {
	var bakeC <-chan time.Time
	if untilBake >= 0 {
		t := time.NewTimer(untilBake)
		defer t.Stop()
		bakeC = t.C
	}
	shutdown := &apiError{code: codes.Unavailable, msg: "server shutting down"}
	select {
	case <-changed:
	case <-bakeC:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.shutdown:
		return shutdown
	}
	if d := watchInterval - time.Since(lastSent); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.shutdown:
			return shutdown
		}
	}
	return nil
}

// ListVerdicts queries the history; see the API.
func (s *Service) ListVerdicts(ctx context.Context, req *canaryv1.ListVerdictsRequest) (*canaryv1.ListVerdictsResponse, error) {
	var vs []*errdetails.BadRequest_FieldViolation
	if req.GetPageSize() < 0 {
		vs = append(vs, violation("page_size", "must be >= 0"))
	}
	if _, ok := canaryv1.Decision_name[int32(req.GetDecision())]; !ok {
		vs = append(vs, violation("decision", "unknown decision %d", req.GetDecision()))
	}
	f := store.VerdictFilter{Service: req.GetService(), Stage: req.GetStage(), Decision: req.GetDecision()}
	for _, t := range []struct {
		field string
		ts    *timestamppb.Timestamp
		dst   *time.Time
	}{{"since", req.GetSince(), &f.Since}, {"until", req.GetUntil(), &f.Until}} {
		if t.ts == nil {
			continue
		}
		if err := t.ts.CheckValid(); err != nil {
			vs = append(vs, violation(t.field, "must be a valid timestamp: %v", err))
			continue
		}
		*t.dst = t.ts.AsTime()
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		vs = append(vs, violation("until", "must be after since"))
	}
	if len(vs) > 0 {
		return nil, s.status(invalid(vs...))
	}
	verdicts, next, err := s.store.ListVerdicts(ctx, f, store.Page{Size: int(req.GetPageSize()), Token: req.GetPageToken()})
	if err != nil {
		return nil, s.status(err)
	}
	return &canaryv1.ListVerdictsResponse{Verdicts: verdicts, NextPageToken: next}, nil
}
