package server

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// Judging. A judge takes milliseconds per uncached verdict, too long to
// hold the run's lock: ingest into the run would wait for it. So a judge
// copies the run's data under the lock (a merge into empty Data, far
// cheaper than the judge) with the version it is at, judges the copy
// without the lock, and takes the lock again to install the verdict. The
// copy and the judge take one of the service's judge slots
// (Options.JudgeConcurrency). One judge runs per run at a time
// (liveState.judging): the others wait for it and then find its verdict in
// the cache if the data did not change meanwhile, so that many watchers of
// one run judge each change once, and verdicts are installed in the order
// of the data versions they were computed on, with increasing sequences.
//
// The final verdict (runs.go) is judged the same way on the data the run
// folds once it is closed to new batches, while the run is finishing: then
// no provisional verdict is installed (a judge that comes back finds the
// run finishing or finished), so that every provisional sequence stays
// below the final one.

// verdictCache is the latest verdict of a run and what it was judged on,
// and the last failure of its judge.
type verdictCache struct {
	verdict        *canaryv1.Verdict // latest computed (final once finished); immutable
	verdictVersion uint64            // data version verdict was computed on
	verdictBake    bool              // BakeComplete verdict was computed with
	seq            uint64            // sequence of verdict
	// judgeErr is the failure of the judge on data version
	// judgeErrVersion with bake state judgeErrBake (see judgeData).
	judgeErr        error
	judgeErrVersion uint64
	judgeErrBake    bool
}

// cached returns the verdict or the judge's failure on data version with
// bake, if either is cached.
func (c *verdictCache) cached(version uint64, bake bool) (*canaryv1.Verdict, error) {
	if v := c.verdict; v != nil && !v.GetFinal() && c.verdictVersion == version && c.verdictBake == bake {
		return v, nil
	}
	if c.judgeErr != nil && c.judgeErrVersion == version && c.judgeErrBake == bake {
		return nil, c.judgeErr
	}
	return nil, nil
}

// look is what a call that wants a run's verdict does next: return
// verdict (final if the run is finished) or err, wait for wait to close
// and look again, or judge (claim: the caller owns liveState.judging).
type look struct {
	verdict *canaryv1.Verdict
	final   bool
	err     error
	wait    <-chan struct{}
	claim   bool
}

// lookVerdict tells a call that wants the run's verdict with bake what to
// do next.
func (lr *liveRun) lookVerdict(bake bool) look {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	switch st.state {
	case stateFinished:
		if st.verdict == nil {
			return look{err: errors.New("finished run has no final verdict")}
		}
		return look{verdict: st.verdict, final: true}
	case stateFinishing:
		// The final verdict is being judged and stored, and no provisional
		// one is installed meanwhile, so that their sequences stay below
		// the final one: the cached verdict answers if it is of the current
		// data, else the final verdict, once stored.
		if v, err := st.cached(st.version, bake); v != nil || err != nil {
			return look{verdict: v, err: err}
		}
		return look{wait: st.finishDone}
	case stateEvicted:
		return look{err: errStale}
	}
	if v, err := st.cached(st.version, bake); v != nil || err != nil {
		return look{verdict: v, err: err}
	}
	if st.judging != nil {
		return look{wait: st.judging} // its verdict may be the one wanted
	}
	st.judging = make(chan struct{})
	return look{claim: true}
}

// errStale: the run was evicted while a call used it (finished through
// another process); the call looks it up again.
var errStale = errors.New("run evicted while in use")

// verdict returns the current verdict of lr (the final one once it is
// finished; final reports that), judging its data when no verdict of them
// is cached.
//
// A run that finishes by itself (AutoFinish) and whose verdict or clock
// says it is time is finished here, and its final verdict returned.
func (s *Service) verdict(ctx context.Context, lr *liveRun) (v *canaryv1.Verdict, final bool, err error) {
	v, final, err = s.judgeNow(ctx, lr)
	if err != nil || final || lr.auto == nil {
		return v, final, err
	}
	return s.autoFinish(ctx, lr, v)
}

// judgeNow is verdict without AutoFinish.
func (s *Service) judgeNow(ctx context.Context, lr *liveRun) (v *canaryv1.Verdict, final bool, err error) {
	for {
		now := s.now()
		bake := !now.Before(lr.bakeEnd)
		lr.refreshPull(now)
		next := lr.lookVerdict(bake)
		switch {
		case next.claim:
			v, err := s.judgeClaimed(ctx, lr, now, bake)
			if err != nil || v != nil {
				return v, false, err
			}
		case next.wait != nil:
			select {
			case <-next.wait:
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		default:
			return next.verdict, next.final, next.err
		}
	}
}

// judgeClaimed judges a copy of lr's data for the caller that claimed
// the run's judge, and installs the verdict. It returns nil, nil when the
// verdict was not installed (the run is finishing or finished, or a verdict
// on later data was installed): the caller looks again.
func (s *Service) judgeClaimed(ctx context.Context, lr *liveRun, now time.Time, bake bool) (*canaryv1.Verdict, error) {
	defer lr.endJudge()
	if err := s.acquireJudge(ctx); err != nil {
		return nil, err
	}
	defer s.releaseJudge()
	cp, pull, version, ok := lr.copyData()
	if !ok {
		return nil, nil
	}
	av, err := s.judgeData(lr, cp, bake)
	if err == nil && lr.pulled != nil {
		pullGate(&av, lr.pulled, pull, now)
	}
	return lr.installVerdict(s, &av, err, version, bake, now)
}

// endJudge ends the judge the caller claimed: the calls waiting for it
// look again.
func (lr *liveRun) endJudge() {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	close(lr.st.judging)
	lr.st.judging = nil
}

// copyData returns a copy of a live run's data, its pull status and their
// version; ok is false when the run is not live.
func (lr *liveRun) copyData() (cp *analysis.Data, pull *canaryv1.PullStatus, version uint64, ok bool) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	if st.state != stateLive {
		return nil, nil, 0, false
	}
	cp = analysis.NewData(lr.cfg)
	cp.Merge(st.data)
	return cp, st.rec.GetPull(), st.version, true
}

// refreshPull makes a pulled run's verdict be judged again when the
// metrics pullGate holds at now differ from those at the last look
// without a new pull record (no replica pulls the run any more): the
// cached verdict is of another version then.
func (lr *liveRun) refreshPull(now time.Time) {
	if lr.pulled == nil {
		return
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	if st.state != stateLive {
		return
	}
	reasons := pullReasons(lr.pulled, st.rec.GetPull(), now)
	names := make([]string, 0, len(reasons))
	for m := range reasons {
		names = append(names, m)
	}
	sort.Strings(names)
	if key := strings.Join(names, "\x00"); key != st.pullMissing {
		st.pullMissing = key
		st.version++
		st.notify()
	}
}

// installVerdict makes av, judged on data version with bake, the latest
// verdict of lr and returns it; a failure of the judge (jerr) is cached
// and returned. Nothing is installed, and nil returned, when the run is no
// longer live or a verdict on later data was installed.
func (lr *liveRun) installVerdict(s *Service, av *analysis.Verdict, jerr error, version uint64, bake bool, now time.Time) (*canaryv1.Verdict, error) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	if jerr != nil {
		st.judgeErr, st.judgeErrVersion, st.judgeErrBake = jerr, version, bake
		return nil, jerr
	}
	if st.state != stateLive || (st.verdict != nil && st.verdictVersion > version) {
		return nil, nil
	}
	v := st.setVerdict(s, av, version, bake, now)
	if st.trajectoryDue(now) {
		s.bg.Go(func() { s.writeTrajectory(lr) })
	}
	return v, nil
}

// setVerdict makes av the latest verdict and returns it: a verdict that
// shows the same evidence as the latest one keeps the latest one (and its
// sequence and time), any other gets the next sequence and adds its point
// to the run's trajectory (trajectory.go).
func (st *liveState) setVerdict(s *Service, av *analysis.Verdict, version uint64, bake bool, now time.Time) *canaryv1.Verdict {
	v := withAlarms(verdictToProto(av, st.rec), st.alarms, st.rec)
	v.RunState = canaryv1.RunState_RUN_STATE_RUNNING
	st.verdictVersion, st.verdictBake = version, bake
	if st.verdict != nil && sameEvidence(st.verdict, v) {
		return st.verdict
	}
	st.seq++
	v.Sequence = st.seq
	v.Time = timestamppb.New(now)
	st.verdict = v
	st.rec.Verdict = v
	st.gen++
	st.addPoint(report.Point(v))
	s.metrics.verdicts.WithLabelValues(decisionLabel(v.GetDecision()), "false").Inc()
	return v
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
// the judge is recovered and returned as a *judgeFailed. The caller holds
// a judge slot and not the run's lock.
func (s *Service) judgeData(lr *liveRun, d *analysis.Data, bake bool) (av analysis.Verdict, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("judge panicked", "run", lr.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = &judgeFailed{runID: lr.id}
		}
	}()
	if s.judgeHook != nil {
		s.judgeHook()
	}
	start := time.Now()
	av = s.judge(d, analysis.Options{BakeComplete: bake, Sequential: true, ExpectedShare: lr.share})
	s.metrics.judge.Observe(time.Since(start).Seconds())
	return av, nil
}

// finalInput is what the final verdict of a finishing run is made of:
// the verdict of its data (cached, or data, a copy to judge, or the
// judge's cached failure), the version of those data, the record, the
// sequence of the latest verdict and the position of the log they fold.
type finalInput struct {
	cached  *canaryv1.Verdict
	err     error
	data    *analysis.Data
	version uint64
	run     *canaryv1.Run
	alarms  []*canaryv1.AlarmEvent
	seq     uint64
	through store.Cursor
}

// finalInput returns what the final verdict with bake of the finishing
// run is judged from.
func (lr *liveRun) finalInput(bake bool) finalInput {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	in := finalInput{version: st.version, run: st.record(), alarms: st.alarms, seq: st.seq, through: st.cursor}
	in.cached, in.err = st.cached(st.version, bake)
	if in.cached == nil && in.err == nil {
		in.data = analysis.NewData(lr.cfg)
		in.data.Merge(st.data)
	}
	return in
}

// judgeFinal returns the verdict in stands for (see finalInput), judging
// its data if needed; a failure of the judge is cached for their version.
// The caller holds a judge slot.
func (s *Service) judgeFinal(lr *liveRun, in finalInput, bake bool) (*canaryv1.Verdict, error) {
	if in.cached != nil || in.err != nil {
		return in.cached, in.err
	}
	av, err := s.judgeData(lr, in.data, bake)
	if err != nil {
		lr.cacheJudgeErr(err, in.version, bake)
		return nil, err
	}
	if lr.pulled != nil {
		pullGate(&av, lr.pulled, in.run.GetPull(), s.now())
	}
	return withAlarms(verdictToProto(&av, in.run), in.alarms, in.run), nil
}

// cacheJudgeErr records a failure of the judge on data version with bake.
func (lr *liveRun) cacheJudgeErr(err error, version uint64, bake bool) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.st.judgeErr, lr.st.judgeErrVersion, lr.st.judgeErrBake = err, version, bake
}

// unjudgedVerdict is the final verdict of a run aborted while its data
// cannot be judged: HOLD (neither a promotion nor a rollback the data did
// not show), with a reason that says so.
func unjudgedVerdict(r *canaryv1.Run, cfg *analysis.Config) *canaryv1.Verdict {
	return &canaryv1.Verdict{
		RunId: r.GetId(), Service: r.GetService(), Stage: r.GetStage(),
		ConfigName: r.GetConfigName(), ConfigVersion: r.GetConfigVersion(),
		Decision:   canaryv1.Decision_DECISION_HOLD,
		Reason:     "the final verdict could not be computed (judging the run's data failed: an internal error); the run was aborted",
		Confidence: cfg.Confidence,
	}
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
