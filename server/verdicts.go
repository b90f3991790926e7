package server

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/auth"
	"github.com/canaryd/canaryd/server/store"
)

// bakeEnd returns when a run's bake time ends. The judge promotes nothing
// before it, and rolls back before it only on a critical regression.
func bakeEnd(run *canaryv1.Run) time.Time {
	return run.GetCreateTime().AsTime().Add(run.GetBakeTime().AsDuration())
}

// Judging. A judge takes about 10 ms per uncached verdict, too long to
// hold the run's lock: ingest into the run would wait for it. So verdictNow
// copies the run's data under the lock (a merge into empty Data, far
// cheaper than the judge), judges the copy without the lock, and takes the
// lock again to install the verdict. One such judge runs per run at a time
// (lr.judging): the others wait for it and then find its verdict in the
// cache if the data did not change meanwhile, so that many watchers of one
// run judge each change once, and verdicts are installed in the order of
// the data versions they were computed on, with increasing sequences. The
// final verdict (finishLocked) is judged under the lock: appends are
// refused while a run is being finished, and a provisional verdict that
// comes back while it is (or after it is finished) is not installed, so
// that every provisional sequence stays below the final one.

// cachedVerdict returns the latest verdict if it was computed on the
// current data with the same bake state, else nil. Called with lr.mu held.
func (lr *live) cachedVerdict(bake bool) *canaryv1.Verdict {
	if v := lr.verdict; v != nil && !v.GetFinal() && lr.verdictVersion == lr.version && lr.verdictBake == bake {
		return v
	}
	return nil
}

// judgeLocked returns the verdict of a running run at now, judged under
// lr.mu (which finishLocked holds). The verdict is cached per data version
// and bake state, so judging unchanged data is a lookup; so is a failure of
// the judge (see judgeData). Called with lr.mu held.
func (s *Service) judgeLocked(lr *live, now time.Time, bake bool) (*canaryv1.Verdict, error) {
	if v := lr.cachedVerdict(bake); v != nil {
		return v, nil
	}
	if err := lr.cachedJudgeErr(bake); err != nil {
		return nil, err
	}
	av, err := s.judgeData(lr, lr.data, bake)
	if err != nil {
		lr.judgeErr, lr.judgeErrVersion, lr.judgeErrBake = err, lr.version, bake
		return nil, err
	}
	return s.installLocked(lr, &av, lr.version, bake, now), nil
}

// cachedJudgeErr returns the failure of the judge on the current data with
// the same bake state, if it failed on them. Called with lr.mu held.
func (lr *live) cachedJudgeErr(bake bool) error {
	if lr.judgeErr != nil && lr.judgeErrVersion == lr.version && lr.judgeErrBake == bake {
		return lr.judgeErr
	}
	return nil
}

// judgeFailed: the judge panicked on a run's data (a bug, or data it
// cannot handle). The client gets INTERNAL with this message; the panic and
// its stack are logged once per data version.
type judgeFailed struct{ runID string }

func (e *judgeFailed) Error() string {
	return fmt.Sprintf("run %q: its verdict cannot be computed (internal error, logged); AbortRun still ends the run", e.runID)
}

// judgeData judges the data of a running run, live runs with anytime-valid
// (sequential) tests since they are judged after every batch. A panic of
// the judge is recovered and returned as a *judgeFailed.
func (s *Service) judgeData(lr *live, d *analysis.Data, bake bool) (av analysis.Verdict, err error) {
	id := lr.id
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("judge panicked", "run", id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = &judgeFailed{runID: id}
		}
	}()
	start := time.Now()
	av = s.judge(d, analysis.Options{BakeComplete: bake, Sequential: true, ExpectedShare: lr.share})
	s.metrics.judge.Observe(time.Since(start).Seconds())
	return av, nil
}

// unjudgedVerdict is the final verdict of a run aborted while its data
// cannot be judged: HOLD (neither a promotion nor a rollback the data did
// not show), with a reason that says so.
func unjudgedVerdict(lr *live) *canaryv1.Verdict {
	r := lr.run
	return &canaryv1.Verdict{
		RunId: r.GetId(), Service: r.GetService(), Stage: r.GetStage(),
		ConfigName: r.GetConfigName(), ConfigVersion: r.GetConfigVersion(),
		Decision:   canaryv1.Decision_DECISION_HOLD,
		Reason:     "the final verdict could not be computed (judging the run's data failed: an internal error); the run was aborted",
		Confidence: lr.cfg.Confidence,
	}
}

// installLocked makes av, judged on data version with bake, the latest
// verdict of lr and returns it: a verdict that shows the same evidence as
// the latest one keeps the latest one (and its sequence and time), any
// other gets the next sequence. Called with lr.mu held.
func (s *Service) installLocked(lr *live, av *analysis.Verdict, version uint64, bake bool, now time.Time) *canaryv1.Verdict {
	v := verdictToProto(av, lr.run)
	v.RunState = canaryv1.RunState_RUN_STATE_RUNNING
	lr.verdictVersion, lr.verdictBake = version, bake
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

// judgeUnlocked judges a copy of lr's data without holding lr.mu (see
// Judging) and installs the verdict, unless the run was finished or is
// being finished meanwhile, or a verdict on later data was installed: ok
// is false then, and the caller looks again. The copy and the judge take
// one of the service's judge slots (Options.JudgeConcurrency), waited for
// without lr.mu; err is ctx's error if it ends first. A failure of the
// judge is returned (and cached for the data version). Called with lr.mu
// held and lr.judging nil; it returns with lr.mu held, having released it
// while it waited and judged.
func (s *Service) judgeUnlocked(ctx context.Context, lr *live, now time.Time, bake bool) (v *canaryv1.Verdict, ok bool, err error) {
	done := make(chan struct{})
	lr.judging = done
	lr.mu.Unlock()
	err = s.acquireJudge(ctx)
	lr.mu.Lock()
	if err != nil || lr.finished() {
		if err == nil {
			s.releaseJudge()
		}
		lr.judging = nil
		close(done)
		return nil, false, err
	}
	cp := analysis.NewData(lr.cfg)
	cp.Merge(lr.data)
	version := lr.version
	lr.mu.Unlock()
	if s.judgeHook != nil {
		s.judgeHook()
	}
	av, err := s.judgeData(lr, cp, bake)
	s.releaseJudge()
	lr.mu.Lock()
	lr.judging = nil
	close(done)
	if err != nil {
		lr.judgeErr, lr.judgeErrVersion, lr.judgeErrBake = err, version, bake
		return nil, false, err
	}
	switch {
	case lr.finished(), lr.finishing != nil && lr.verdict != nil:
		return nil, false, nil
	case lr.verdict != nil && lr.verdictVersion > version:
		// Only after a failed finish, which judged later data under the
		// lock. The next look judges the current data (lr.version is
		// never below lr.verdictVersion), so it ends.
		return nil, false, nil
	}
	return s.installLocked(lr, &av, version, bake, now), true, nil
}

// acquireJudge waits for a judge slot (see Options.JudgeConcurrency).
// The caller must not hold a run's lock.
func (s *Service) acquireJudge(ctx context.Context) error {
	select {
	case s.judges <- struct{}{}:
		return nil
	default:
	}
	start := time.Now()
	defer func() { s.metrics.judgeWait.Observe(time.Since(start).Seconds()) }()
	select {
	case s.judges <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// releaseJudge returns a slot taken by acquireJudge.
func (s *Service) releaseJudge() { <-s.judges }

// sameEvidence reports whether two verdicts differ only in their time and
// sequence.
func sameEvidence(a, b *canaryv1.Verdict) bool {
	a = proto.Clone(a).(*canaryv1.Verdict)
	b = proto.Clone(b).(*canaryv1.Verdict)
	a.Time, a.Sequence, b.Time, b.Sequence = nil, 0, nil, 0
	return proto.Equal(a, b)
}

// verdictNow returns the current verdict of lr (the final one once it is
// finished). Called with lr.mu held; it returns with lr.mu held, but may
// release it meanwhile (see Judging), so the caller must read whatever it
// needs to be consistent with the verdict after it returns (or before it
// is called, for what must not be newer than the verdict's data).
func (s *Service) verdictNow(ctx context.Context, lr *live) (*canaryv1.Verdict, error) {
	for {
		if lr.finished() {
			if lr.verdict == nil {
				return nil, errors.New("finished run has no final verdict")
			}
			return lr.verdict, nil
		}
		if lr.finishing != nil && lr.verdict != nil {
			// The data are frozen and the final verdict is being stored:
			// keep the sequence numbers of provisional verdicts below the
			// final one.
			return lr.verdict, nil
		}
		now := s.now()
		bake := !now.Before(bakeEnd(lr.run))
		if v := lr.cachedVerdict(bake); v != nil {
			return v, nil
		}
		if err := lr.cachedJudgeErr(bake); err != nil {
			return nil, err
		}
		if ch := lr.judging; ch != nil {
			// Another call is judging this run: its verdict may be the
			// one wanted.
			lr.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				lr.mu.Lock()
				return nil, ctx.Err()
			}
			lr.mu.Lock()
			continue
		}
		v, ok, err := s.judgeUnlocked(ctx, lr, now, bake)
		if err != nil || ok {
			return v, err
		}
	}
}

// Judge returns the verdict now; see the API.
func (s *Service) Judge(ctx context.Context, req *canaryv1.JudgeRequest) (*canaryv1.JudgeResponse, error) {
	lr, err := s.fresh(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	v, err := s.verdictNow(ctx, lr)
	lr.mu.Unlock()
	if err != nil {
		return nil, err
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
			return badField("run_id", "is required")
		}
		return s.watchTail(ctx, req.GetRunId(), stream)
	}
	lr, err := s.acquire(ctx, req.GetRunId())
	if err != nil {
		return err
	}
	lr.watchers++
	lr.mu.Unlock()
	defer func() {
		lr.mu.Lock()
		lr.watchers--
		lr.lastUsed = s.now()
		lr.mu.Unlock()
	}()

	var w watchSent
	for {
		lr.mu.Lock()
		if lr.evicted {
			// Dropped and reloaded behind our back (see finish): follow the
			// reloaded run.
			lr.watchers--
			lr.mu.Unlock()
			if lr, err = s.acquire(ctx, req.GetRunId()); err != nil {
				return err
			}
			lr.watchers++
		}
		// What to wait for next is read before judging, which may release
		// lr.mu: a change meanwhile then wakes this watcher at once, to
		// judge again.
		changed, untilBake := lr.changed, time.Duration(-1)
		if d := bakeEnd(lr.run).Sub(s.now()); d > 0 {
			untilBake = d
		}
		final, err := s.judgeAndSend(stream, lr, &w)
		if err != nil || final {
			return err
		}
		if err := s.waitChange(ctx, changed, untilBake, w.lastSent); err != nil {
			return err
		}
	}
}

// watchSent is what a WatchVerdict stream has sent so far.
type watchSent struct {
	sent     bool
	lastSeq  uint64
	lastSent time.Time
}

// judgeAndSend judges lr, whose lock the caller holds and which it
// releases, and sends the verdict on the stream unless it is the one sent
// last; final reports that the run has finished (the stream's end). Errors
// are gRPC statuses.
func (s *Service) judgeAndSend(stream canaryv1.CanaryService_WatchVerdictServer, lr *live, w *watchSent) (final bool, err error) {
	v, err := s.verdictNow(stream.Context(), lr)
	final = lr.finished()
	lr.mu.Unlock()
	if err != nil {
		return false, err
	}
	if !w.sent || v.GetSequence() != w.lastSeq || final {
		if err := stream.Send(&canaryv1.WatchVerdictResponse{Verdict: v}); err != nil {
			return false, err
		}
		w.sent, w.lastSeq, w.lastSent = true, v.GetSequence(), time.Now()
	}
	return final, nil
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
	select {
	case <-changed:
	case <-bakeC:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.shutdown:
		return errShuttingDown
	}
	if d := watchInterval - time.Since(lastSent); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.shutdown:
			return errShuttingDown
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
