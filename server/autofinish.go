package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Runs that finish themselves (AutoFinish in the API). A run's verdict is
// computed when someone asks for it (verdict in judge.go); when the run
// asks to finish on a decisive verdict, or has run for its max_duration,
// that call finishes it through finishRun, the same path as CompleteRun:
// the run is closed in the store, its log folded to the end, the final
// verdict judged on everything acknowledged and stored with the run's end
// in one conditional write. So a run finishes once whichever replica sees
// it first, and the others find it finished (errStale). The janitor
// checks the runs in memory too (autoCheck), so that a run whose clock
// ran out finishes even when nobody asks.

// autoFinish is when a run finishes by itself (Run.auto_finish).
type autoFinish struct {
	onDecision  bool
	maxDuration time.Duration // 0: none
	deadline    time.Time     // creation + maxDuration; zero: none
	failClosed  bool          // a HOLD at the deadline becomes a ROLLBACK
}

// newAutoFinish returns the auto-finish of a run, or nil if it has none.
func newAutoFinish(run *canaryv1.Run) *autoFinish {
	af := run.GetAutoFinish()
	d := af.GetMaxDuration().AsDuration()
	if !af.GetOnDecision() && d <= 0 {
		return nil
	}
	a := &autoFinish{onDecision: af.GetOnDecision(), failClosed: af.GetTimeoutDecision() == canaryv1.Decision_DECISION_ROLLBACK}
	if d > 0 {
		a.maxDuration, a.deadline = d, run.GetCreateTime().AsTime().Add(d)
	}
	return a
}

// checkAutoFinish returns what is wrong with a CreateRunRequest's
// auto_finish.
func checkAutoFinish(af *canaryv1.AutoFinish) []*errdetails.BadRequest_FieldViolation {
	var vs []*errdetails.BadRequest_FieldViolation
	if d := af.GetMaxDuration(); d != nil {
		if err := d.CheckValid(); err != nil {
			vs = append(vs, violation("auto_finish.max_duration", "must be a valid duration: %v", err))
		} else if d.AsDuration() < 0 {
			vs = append(vs, violation("auto_finish.max_duration", "must be >= 0"))
		}
	}
	switch td := af.GetTimeoutDecision(); td {
	case canaryv1.Decision_DECISION_UNSPECIFIED, canaryv1.Decision_DECISION_HOLD, canaryv1.Decision_DECISION_ROLLBACK:
	case canaryv1.Decision_DECISION_PROMOTE:
		vs = append(vs, violation("auto_finish.timeout_decision", "must be DECISION_HOLD or DECISION_ROLLBACK: a run that ran out of time is never promoted"))
	default:
		vs = append(vs, violation("auto_finish.timeout_decision", "unknown decision %d", td))
	}
	return vs
}

// plan returns how the run finishes now, given its provisional verdict v
// judged at now, and false if it goes on.
func (a *autoFinish) plan(v *canaryv1.Verdict, now, bakeEnd time.Time) (finishPlan, bool) {
	if !a.deadline.IsZero() && !now.Before(a.deadline) {
		return finishPlan{
			state:  canaryv1.RunState_RUN_STATE_COMPLETED,
			reason: fmt.Sprintf("auto_finish: max_duration %v reached", a.maxDuration),
			bake:   true,
			accept: func(f *canaryv1.Verdict) *canaryv1.Verdict {
				if a.failClosed && f.GetDecision() == canaryv1.Decision_DECISION_HOLD {
					f.Decision = canaryv1.Decision_DECISION_ROLLBACK
					f.Reason = fmt.Sprintf("max_duration %v reached with the verdict still HOLD, and the run fails closed: %s",
						a.maxDuration, f.GetReason())
				}
				return f
			},
		}, true
	}
	if !a.onDecision {
		return finishPlan{}, false
	}
	d := v.GetDecision()
	if d != canaryv1.Decision_DECISION_ROLLBACK && d != canaryv1.Decision_DECISION_PROMOTE {
		return finishPlan{}, false
	}
	return finishPlan{
		state:  canaryv1.RunState_RUN_STATE_COMPLETED,
		reason: "auto_finish: on decision " + decisionWord(d),
		// Judged as the provisional verdict was: before the bake time
		// ends only a critical regression is decisive.
		bake: !now.Before(bakeEnd),
		accept: func(f *canaryv1.Verdict) *canaryv1.Verdict {
			if f.GetDecision() == canaryv1.Decision_DECISION_HOLD {
				return nil // data that came since make it a HOLD again
			}
			return f
		},
	}, true
}

// decisionWord returns PROMOTE, HOLD or ROLLBACK.
func decisionWord(d canaryv1.Decision) string {
	switch d {
	case canaryv1.Decision_DECISION_PROMOTE:
		return "PROMOTE"
	case canaryv1.Decision_DECISION_HOLD:
		return "HOLD"
	case canaryv1.Decision_DECISION_ROLLBACK:
		return "ROLLBACK"
	}
	return d.String()
}

// autoFinish finishes lr when its auto-finish says so, given v, its
// provisional verdict: it returns the final verdict, or v when the run
// goes on. errStale: the run was finished meanwhile (by another call or
// replica); the caller looks it up again.
func (s *Service) autoFinish(ctx context.Context, lr *liveRun, v *canaryv1.Verdict) (*canaryv1.Verdict, bool, error) {
	plan, due := lr.auto.plan(v, s.now(), lr.bakeEnd)
	if !due {
		return v, false, nil
	}
	run, err := s.finishRun(ctx, lr, plan)
	switch {
	case errors.Is(err, errNotDecisive):
		return v, false, nil
	case err != nil:
		return nil, false, err
	}
	s.log.Info("run finished itself", "run", lr.id, "reason", plan.reason, "decision", decisionWord(run.GetVerdict().GetDecision()))
	return run.GetVerdict(), true, nil
}

// nextTimer returns how long until the run's verdict may change without
// new data: the end of its bake time or its max_duration, whichever comes
// first after now; 0 if neither does.
func (lr *liveRun) nextTimer(now time.Time) time.Duration {
	var next time.Duration
	for _, t := range []time.Time{lr.bakeEnd, lr.autoDeadline()} {
		if d := t.Sub(now); d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	return next
}

// autoDeadline returns when the run's max_duration passes; zero if never.
func (lr *liveRun) autoDeadline() time.Time {
	if lr.auto == nil {
		return time.Time{}
	}
	return lr.auto.deadline
}

// autoCheck finishes the live runs in memory whose max_duration has
// passed, so that they finish even when nobody asks for their verdict any
// more (the janitor calls it). Runs that are not in memory are finished
// when they are next used; a decisive verdict comes with new data or the
// end of the bake, and finishes the run when someone asks for it (judging
// idle runs here would keep them in memory).
func (s *Service) autoCheck() {
	now := s.now()
	for _, lr := range s.registered() {
		select {
		case <-lr.loaded:
		default:
			continue // being loaded
		}
		if lr.err != nil || lr.auto == nil || lr.auto.deadline.IsZero() || now.Before(lr.auto.deadline) || lr.state() != stateLive {
			continue
		}
		ctx, cancel := context.WithTimeout(s.shutdownCtx, backgroundTimeout)
		if l, err := s.fresh(ctx, lr.id); err == nil {
			if _, _, err := s.verdict(ctx, l); err != nil && !errors.Is(err, errStale) && ctx.Err() == nil {
				s.log.Warn("auto-finish check", "run", lr.id, "err", err)
			}
			s.release(l)
		}
		cancel()
	}
}
