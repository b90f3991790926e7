package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/auth"
	"github.com/canaryd/canaryd/server/store"
)

// Judge returns the verdict now; see the API.
func (s *Service) Judge(ctx context.Context, req *canaryv1.JudgeRequest) (*canaryv1.JudgeResponse, error) {
	v, err := s.currentVerdict(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	return &canaryv1.JudgeResponse{Verdict: v}, nil
}

// currentVerdict returns the verdict of run id now (its final one once it
// is finished), as Judge does.
func (s *Service) currentVerdict(ctx context.Context, id string) (*canaryv1.Verdict, error) {
	for attempt := 0; ; attempt++ {
		lr, err := s.fresh(ctx, id)
		if err != nil {
			return nil, err
		}
		v, _, err := s.verdict(ctx, lr)
		s.release(lr)
		if errors.Is(err, errStale) && attempt < 2 {
			continue // dropped meanwhile: judge the reloaded run
		}
		if err != nil {
			return nil, err
		}
		return v, nil
	}
}

// WatchVerdict streams the verdict; see the API. It sends the current
// verdict, then a new one whenever a change (new data through any process,
// the end of the bake time) gives different evidence, at most one every
// watchInterval, and ends after the final verdict. It also ends when the
// client goes away, and with UNAVAILABLE when the server shuts down.
func (s *Service) WatchVerdict(req *canaryv1.WatchVerdictRequest, stream canaryv1.CanaryService_WatchVerdictServer) error {
	id := req.GetRunId()
	if id == "" {
		return badField("run_id", "is required")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stopOnShutdown := context.AfterFunc(s.shutdownCtx, cancel)
	defer stopOnShutdown()
	// shutdownErr ends the stream with UNAVAILABLE when the server drains.
	shutdownErr := func(err error) error {
		if s.shutdownCtx.Err() != nil {
			return errShuttingDown
		}
		return err
	}
	w := watch{s: s}
	defer w.leave()
	var sent watchSent
	for {
		lr, err := s.fresh(ctx, id)
		if err != nil {
			return shutdownErr(err)
		}
		changed := w.follow(lr)
		untilBake := lr.nextTimer(s.now())
		if d := lr.untilPullStale(s.now()); d > 0 && (untilBake <= 0 || d < untilBake) {
			untilBake = d // judged again when a pulled metric turns stale
		}
		v, final, err := s.verdict(ctx, lr)
		s.release(lr)
		if errors.Is(err, errStale) {
			continue // dropped meanwhile: follow the reloaded run
		}
		if err != nil {
			return shutdownErr(err)
		}
		if !sent.sent || v.GetSequence() != sent.lastSeq || final {
			if err := stream.Send(&canaryv1.WatchVerdictResponse{Verdict: v}); err != nil {
				return err
			}
			sent = watchSent{sent: true, lastSeq: v.GetSequence(), lastSent: time.Now()}
		}
		if final {
			return nil
		}
		if err := waitChange(ctx, changed, untilBake, sent.lastSent); err != nil {
			return shutdownErr(err)
		}
	}
}

// watchSent is what a WatchVerdict stream has sent so far.
type watchSent struct {
	sent     bool
	lastSeq  uint64
	lastSent time.Time
}

// waitChange waits for changed to close or the bake time to end or the
// run's max_duration to pass (after untilBake, if > 0), and then until watchInterval has passed since
// lastSent, so that quick changes are coalesced.
func waitChange(ctx context.Context, changed <-chan struct{}, untilBake time.Duration, lastSent time.Time) error {
	var bakeC <-chan time.Time
	if untilBake > 0 {
		t := time.NewTimer(untilBake)
		defer t.Stop()
		bakeC = t.C
	}
	select {
	case <-changed:
	case <-bakeC:
	case <-ctx.Done():
		return ctx.Err()
	}
	if d := watchInterval - time.Since(lastSent); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ListVerdicts queries the history; see the API. A caller restricted to
// some services (package auth) sees only theirs (see listScoped for the
// page size).
func (s *Service) ListVerdicts(ctx context.Context, req *canaryv1.ListVerdictsRequest) (*canaryv1.ListVerdictsResponse, error) {
	vs := checkPage(req.GetPageSize(), req.GetPageToken())
	vs = append(vs, checkFilter("service", req.GetService())...)
	vs = append(vs, checkFilter("stage", req.GetStage())...)
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
		return nil, invalid(vs...)
	}
	var scope *auth.Caller
	f.Service, scope = listService(ctx, f.Service)
	verdicts, next, err := boundedPage(s.maxListBytes, int(req.GetPageSize()), func(size int) ([]*canaryv1.Verdict, string, error) {
		return listScoped(scope, store.Page{Size: size, Token: req.GetPageToken()},
			(*canaryv1.Verdict).GetService, func(p store.Page) ([]*canaryv1.Verdict, string, error) {
				return s.store.ListVerdicts(ctx, f, p)
			})
	}, nil)
	if err != nil {
		return nil, err
	}
	return &canaryv1.ListVerdictsResponse{Verdicts: verdicts, NextPageToken: next}, nil
}
