package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/internal/alarm"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/auth"
	"github.com/canaryd/canaryd/server/store"
)

// Alarms. An alarm (an Alertmanager alert delivered to the webhook,
// alertmanager.go, or one reported with ReportAlarm) is recorded twice:
//   - in the alarms canaryd knows (store.Docs kind "alarm", one record per
//     fingerprint, its latest event), which CheckDeploy and ListAlarms
//     read;
//   - in the log of every running run it matches (its config's alarms,
//     templated with the run's service and stage), as an entry beside the
//     batches' deltas (blob.go), appended once per fingerprint, start and
//     state (a fixed batch id, so that Alertmanager's repeats and retries,
//     through any replica, store nothing new). A run's alarms are thus part
//     of the fold of its log (fold.go): every replica, and a restart, see
//     the same ones.
//
// A run with an alarm that fired while it ran is ROLLBACK (withAlarms), at
// once and for good: a resolved alarm does not make the canary safe again.
// The webhook answers once the alarm is in the matching runs' logs and
// their verdicts are ROLLBACK, so that when Alertmanager's delivery
// succeeds, every reader of those runs sees the rollback.

// Kinds of store.Docs records.
const (
	docAlarm    = "alarm"
	docPolicy   = "policy"
	docOverride = "override"
)

// Tunables of alarms.
const (
	// alarmKeep is how long a resolved alarm stays in ListAlarms.
	alarmKeep = 24 * time.Hour
	// maxRunPages bounds the pages of running runs matched against an
	// alarm (1,000 runs a page).
	maxRunPages = 100
	// maxReasonAlarms bounds the alarms a verdict's reason names.
	maxReasonAlarms = 3
)

// alarmBatchID is the batch id of an alarm event in a run's log: one per
// fingerprint, start and state.
func alarmBatchID(ev *canaryv1.AlarmEvent) string {
	return "alarm\x00" + ev.GetFingerprint() + "\x00" + strconv.FormatInt(ev.GetStartTime().AsTime().UnixNano(), 10) +
		"\x00" + ev.GetState().String()
}

// firedDuring returns the alarms of a run that fired while it ran, one
// per fingerprint and start (the latest event of each), in log order:
// firing ones, and resolved ones that ended after the run was created.
func firedDuring(alarms []*canaryv1.AlarmEvent, run *canaryv1.Run) []*canaryv1.AlarmEvent {
	created := run.GetCreateTime().AsTime()
	idx := map[string]int{}
	var out []*canaryv1.AlarmEvent
	for _, ev := range alarms {
		if ev.GetState() == canaryv1.AlarmState_ALARM_STATE_RESOLVED && ev.GetEndTime().AsTime().Before(created) {
			continue
		}
		k := ev.GetFingerprint() + "\x00" + strconv.FormatInt(ev.GetStartTime().AsTime().UnixNano(), 10)
		if i, ok := idx[k]; ok {
			if ev.GetState() == canaryv1.AlarmState_ALARM_STATE_RESOLVED {
				out[i] = ev
			}
			continue
		}
		idx[k] = len(out)
		out = append(out, ev)
	}
	return out
}

// withAlarms makes v, a verdict of run, ROLLBACK when an alarm fired
// during the run, its reason naming the alarms (their summaries and start
// times) before the metrics' reason. It returns v.
func withAlarms(v *canaryv1.Verdict, alarms []*canaryv1.AlarmEvent, run *canaryv1.Run) *canaryv1.Verdict {
	fired := firedDuring(alarms, run)
	if len(fired) == 0 {
		return v
	}
	parts := make([]string, 0, maxReasonAlarms+1)
	for i, ev := range fired {
		if i == maxReasonAlarms {
			parts = append(parts, fmt.Sprintf("and %d more", len(fired)-i))
			break
		}
		parts = append(parts, alarmText(ev))
	}
	reason := "critical alarm during the run: " + strings.Join(parts, "; ")
	if v.GetReason() != "" {
		reason += ". Metrics: " + v.GetReason()
	}
	if v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		v.DecidingMetrics = nil
	}
	v.Decision = canaryv1.Decision_DECISION_ROLLBACK
	v.Reason = reason
	return v
}

// alarmText describes an alarm event in words: its name, when it started
// (and ended), and its summary.
func alarmText(ev *canaryv1.AlarmEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "alarm %s firing since %s", ev.GetName(), ev.GetStartTime().AsTime().UTC().Format(time.RFC3339))
	if ev.GetState() == canaryv1.AlarmState_ALARM_STATE_RESOLVED {
		b.Reset()
		fmt.Fprintf(&b, "alarm %s fired %s, resolved %s", ev.GetName(),
			ev.GetStartTime().AsTime().UTC().Format(time.RFC3339), ev.GetEndTime().AsTime().UTC().Format(time.RFC3339))
	}
	if ev.GetSummary() != "" {
		fmt.Fprintf(&b, ": %s", ev.GetSummary())
	}
	return b.String()
}

// ReportAlarm records an alarm; see the API.
func (s *Service) ReportAlarm(ctx context.Context, req *canaryv1.ReportAlarmRequest) (*canaryv1.ReportAlarmResponse, error) {
	if req.GetAlarm() == nil {
		return nil, badField("alarm", "is required")
	}
	ev := proto.CloneOf(req.GetAlarm())
	ev.Source, ev.ReportedBy, ev.ReceiveTime = "", "", nil
	if errs := alarm.Normalize("alarm", ev, s.now()); len(errs) > 0 {
		vs, _ := fieldViolations("", errs)
		return nil, invalid(vs...)
	}
	ev.Source = alarm.SourceAPI
	ids, err := s.recordAlarm(ctx, ev)
	if err != nil {
		return nil, err
	}
	return &canaryv1.ReportAlarmResponse{Alarm: ev, RunIds: ids}, nil
}

// recordAlarm records a normalized alarm event (alarm.Normalize) in the
// alarms canaryd knows and in the log of every running run it matches, of
// the services the caller may use, and returns those runs. A caller
// restricted to some services may only report alarms whose label
// `service` is one of them.
func (s *Service) recordAlarm(ctx context.Context, ev *canaryv1.AlarmEvent) ([]string, error) {
	c := auth.CallerFrom(ctx)
	if c != nil {
		ev.ReportedBy = c.Name
		if !c.AllServices() {
			if svc := ev.GetLabels()["service"]; svc == "" || !c.AllowsService(svc) {
				return nil, &apiError{code: codes.PermissionDenied, msg: fmt.Sprintf(
					"%s is not allowed service %s: it may report only alarms whose label service is one of its services (alarm %s)", c, svc, ev.GetName())}
			}
		}
	}
	if err := s.storeAlarm(ctx, ev); err != nil {
		return nil, err
	}
	runs, err := s.runsMatching(ctx, ev, c)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, id := range runs {
		ok, err := s.appendAlarm(ctx, id, ev)
		if err != nil {
			return ids, fmt.Errorf("record alarm %s with run %s: %w", ev.GetName(), id, err)
		}
		if ok {
			ids = append(ids, id)
		}
	}
	s.metrics.alarms.WithLabelValues(ev.GetSource(), strings.ToLower(strings.TrimPrefix(ev.GetState().String(), "ALARM_STATE_"))).Inc()
	s.metrics.alarmRuns.Add(float64(len(ids)))
	if len(ids) > 0 {
		s.log.Info("alarm recorded with runs", "alarm", ev.GetName(), "state", ev.GetState().String(), "runs", ids)
	}
	return ids, nil
}

// storeAlarm stores ev as the latest event of its fingerprint, unless the
// stored one is of a later start (ev is a late delivery of an older
// firing), or of the same start and resolved while ev fires (a firing
// resent after its resolution). A resolved event without a start takes
// the start of the stored event.
func (s *Service) storeAlarm(ctx context.Context, ev *canaryv1.AlarmEvent) error {
	prev, err := s.getAlarm(ctx, ev.GetFingerprint())
	if err != nil {
		return err
	}
	if ev.GetStartTime() == nil { // resolved, reported without its start
		if prev != nil {
			ev.StartTime = prev.GetStartTime()
		} else {
			ev.StartTime = ev.GetEndTime()
		}
	}
	if prev != nil {
		ps, es := prev.GetStartTime().AsTime(), ev.GetStartTime().AsTime()
		if ps.After(es) || (ps.Equal(es) && prev.GetState() == canaryv1.AlarmState_ALARM_STATE_RESOLVED &&
			ev.GetState() == canaryv1.AlarmState_ALARM_STATE_FIRING) {
			return nil
		}
	}
	b, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode alarm: %w", err)
	}
	if err := s.store.PutDoc(ctx, docAlarm, ev.GetFingerprint(), b); err != nil {
		return fmt.Errorf("store alarm %s: %w", ev.GetName(), err)
	}
	return nil
}

func (s *Service) getAlarm(ctx context.Context, fp string) (*canaryv1.AlarmEvent, error) {
	b, err := s.store.GetDoc(ctx, docAlarm, fp)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read alarm: %w", err)
	}
	ev := new(canaryv1.AlarmEvent)
	if err := proto.Unmarshal(b, ev); err != nil {
		return nil, fmt.Errorf("decode alarm %s: %w", fp, err)
	}
	return ev, nil
}

// knownAlarms returns the alarms canaryd knows: firing ones, and those
// resolved within alarmKeep; older ones are deleted.
func (s *Service) knownAlarms(ctx context.Context) ([]*canaryv1.AlarmEvent, error) {
	docs, err := s.store.ListDocs(ctx, docAlarm)
	if err != nil {
		return nil, fmt.Errorf("list alarms: %w", err)
	}
	cutoff := s.now().Add(-alarmKeep)
	var out []*canaryv1.AlarmEvent
	var old []string
	for _, d := range docs {
		ev := new(canaryv1.AlarmEvent)
		if err := proto.Unmarshal(d.Value, ev); err != nil {
			s.log.Warn("undecodable alarm record deleted", "key", d.Key, "err", err)
			old = append(old, d.Key)
			continue
		}
		if ev.GetState() == canaryv1.AlarmState_ALARM_STATE_RESOLVED && ev.GetEndTime().AsTime().Before(cutoff) {
			old = append(old, d.Key)
			continue
		}
		out = append(out, ev)
	}
	if len(old) > 0 {
		if err := s.store.DeleteDocs(ctx, docAlarm, old...); err != nil {
			s.log.Warn("delete old alarms", "err", err)
		}
	}
	return out, nil
}

// ruleCache holds the compiled alarm rules of the running runs, by run id
// (a run's config never changes).
type ruleCache struct {
	mu    sync.Mutex
	rules map[string][]*alarm.Rule
}

// runsMatching returns the running runs, of services c may use (all with
// c nil), whose alarm rules match ev.
func (s *Service) runsMatching(ctx context.Context, ev *canaryv1.AlarmEvent, c *auth.Caller) ([]string, error) {
	var runs []*canaryv1.Run
	tok := ""
	for range maxRunPages {
		page, next, err := s.store.ListRuns(ctx, store.RunFilter{State: canaryv1.RunState_RUN_STATE_RUNNING},
			store.Page{Size: store.MaxPageSize, Token: tok})
		if err != nil {
			return nil, fmt.Errorf("list running runs: %w", err)
		}
		runs = append(runs, page...)
		if tok = next; tok == "" {
			break
		}
	}
	s.alarmRules.mu.Lock()
	defer s.alarmRules.mu.Unlock()
	cached := s.alarmRules.rules
	fresh := make(map[string][]*alarm.Rule, len(runs))
	var ids []string
	for _, run := range runs {
		if len(run.GetConfig().GetAlarms()) == 0 || (c != nil && !c.AllowsService(run.GetService())) {
			continue
		}
		rules, ok := cached[run.GetId()]
		if !ok {
			var err error
			rules, err = alarm.Compile(run.GetConfig().GetAlarms(), alarm.Target{Service: run.GetService(), Stage: run.GetStage()})
			if err != nil {
				s.log.Warn("alarm rules of a run do not compile", "run", run.GetId(), "err", err)
			}
		}
		fresh[run.GetId()] = rules
		if slices.ContainsFunc(rules, func(r *alarm.Rule) bool { return r.Matches(ev.GetLabels()) }) {
			ids = append(ids, run.GetId())
		}
	}
	s.alarmRules.rules = fresh
	return ids, nil
}

// appendAlarm appends ev to the log of running run id, folds it, and
// judges the run, so that its verdict is ROLLBACK when this returns. It
// reports false for a run that finished meanwhile (not an error).
func (s *Service) appendAlarm(ctx context.Context, id string, ev *canaryv1.AlarmEvent) (bool, error) {
	lr, err := s.admitting(ctx, id)
	if err != nil {
		if isGone(err) {
			return false, nil
		}
		return false, err
	}
	defer s.release(lr)
	blob, err := encodeAlarm(s.now(), ev)
	if err != nil {
		return false, err
	}
	if _, err := s.store.AppendBatch(ctx, id, alarmBatchID(ev), blob); err != nil {
		if errors.Is(err, store.ErrFinished) {
			return false, nil
		}
		return false, err
	}
	if err := s.catchUp(ctx, lr); err != nil {
		return true, err
	}
	if _, _, err := s.verdict(ctx, lr); err != nil && !errors.Is(err, errStale) {
		// Stored and folded: the next reader judges it.
		s.log.Warn("judge after an alarm", "run", id, "err", err)
	}
	return true, nil
}

// isGone reports whether err says that a run is finished or unknown.
func isGone(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && (ae.code == codes.FailedPrecondition || ae.code == codes.NotFound)
}

// recordFiring records the alarms firing now that match a new run's
// rules with it, so that a run created while its alarm fires is ROLLBACK
// at once (Alertmanager repeats a firing alert only every
// repeat_interval). Failures are logged: the run exists.
func (s *Service) recordFiring(ctx context.Context, run *canaryv1.Run) {
	if len(run.GetConfig().GetAlarms()) == 0 {
		return
	}
	rules, err := alarm.Compile(run.GetConfig().GetAlarms(), alarm.Target{Service: run.GetService(), Stage: run.GetStage()})
	if err != nil {
		s.log.Warn("alarm rules of a run do not compile", "run", run.GetId(), "err", err)
		return
	}
	known, err := s.knownAlarms(ctx)
	if err != nil {
		s.log.Warn("read alarms for a new run", "run", run.GetId(), "err", err)
		return
	}
	for _, ev := range known {
		if ev.GetState() != canaryv1.AlarmState_ALARM_STATE_FIRING ||
			!slices.ContainsFunc(rules, func(r *alarm.Rule) bool { return r.Matches(ev.GetLabels()) }) {
			continue
		}
		if _, err := s.appendAlarm(ctx, run.GetId(), ev); err != nil {
			s.log.Warn("record a firing alarm with a new run", "run", run.GetId(), "alarm", ev.GetName(), "err", err)
		}
	}
}

// ListAlarms lists alarms; see the API.
func (s *Service) ListAlarms(ctx context.Context, req *canaryv1.ListAlarmsRequest) (*canaryv1.ListAlarmsResponse, error) {
	if req.GetRunId() != "" {
		if msg := checkID(req.GetRunId()); msg != "" {
			return nil, badField("run_id", "%s", msg)
		}
		alarms, svc, err := s.runAlarms(ctx, req.GetRunId())
		if err != nil {
			return nil, err
		}
		if c := auth.CallerFrom(ctx); c != nil && !c.AllowsService(svc) {
			return nil, &apiError{code: codes.PermissionDenied, msg: fmt.Sprintf("%s is not allowed service %s", c, svc)}
		}
		return &canaryv1.ListAlarmsResponse{Alarms: filterState(alarms, req.GetState())}, nil
	}
	if len(req.GetService()) > maxIDLen {
		return nil, badField("service", "is %d bytes, more than %d", len(req.GetService()), maxIDLen)
	}
	known, err := s.knownAlarms(ctx)
	if err != nil {
		return nil, err
	}
	c := auth.CallerFrom(ctx)
	var out []*canaryv1.AlarmEvent
	for _, ev := range filterState(known, req.GetState()) {
		svc := ev.GetLabels()["service"]
		if (req.GetService() != "" && svc != req.GetService()) || (c != nil && !c.AllServices() && (svc == "" || !c.AllowsService(svc))) {
			continue
		}
		out = append(out, ev)
	}
	slices.SortStableFunc(out, func(a, b *canaryv1.AlarmEvent) int {
		return b.GetStartTime().AsTime().Compare(a.GetStartTime().AsTime())
	})
	return &canaryv1.ListAlarmsResponse{Alarms: out}, nil
}

func filterState(alarms []*canaryv1.AlarmEvent, st canaryv1.AlarmState) []*canaryv1.AlarmEvent {
	if st == canaryv1.AlarmState_ALARM_STATE_UNSPECIFIED {
		return alarms
	}
	var out []*canaryv1.AlarmEvent
	for _, ev := range alarms {
		if ev.GetState() == st {
			out = append(out, ev)
		}
	}
	return out
}

// runAlarms returns the alarms recorded with a run, in log order, and its
// service: from memory for a running run brought up to date, else from
// its log in the store.
func (s *Service) runAlarms(ctx context.Context, id string) ([]*canaryv1.AlarmEvent, string, error) {
	lr, err := s.fresh(ctx, id)
	if err != nil {
		return nil, "", err
	}
	alarms, live := lr.alarmsIfLive()
	svc := lr.service
	s.release(lr)
	if live {
		return alarms, svc, nil
	}
	alarms, err = s.readAlarms(ctx, id)
	return alarms, svc, err
}

// alarmsIfLive returns the alarms of a live run; ok is false otherwise.
func (lr *liveRun) alarmsIfLive() ([]*canaryv1.AlarmEvent, bool) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.st.state != stateLive {
		return nil, false
	}
	return slices.Clone(lr.st.alarms), true
}

// readAlarms reads the alarms of a run's log from the store (a finished
// run's log is kept for the raw-data retention).
func (s *Service) readAlarms(ctx context.Context, id string) ([]*canaryv1.AlarmEvent, error) {
	var out []*canaryv1.AlarmEvent
	err := s.store.ReadBatches(ctx, id, func(snapshot bool, b []byte) error {
		switch {
		case snapshot && len(b) >= 2 && b[1] == 'T':
			r, err := blobBody(b, 'T')
			for i := 0; err == nil && i < 2; i++ {
				_, err = r.uvarint()
			}
			if err == nil {
				_, err = r.time()
			}
			var evs []*canaryv1.AlarmEvent
			if err == nil {
				evs, err = r.alarms()
			}
			if err != nil {
				return fmt.Errorf("decode snapshot: %w", err)
			}
			out = append(out, evs...)
		case !snapshot && isAlarm(b):
			ev, err := decodeAlarm(b)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil // raw data expired
	}
	if err != nil {
		return nil, fmt.Errorf("read alarms of run %s: %w", id, err)
	}
	return out, nil
}
