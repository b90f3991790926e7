package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// CreateRun starts a run; see the API. The run pins the resolved config.
func (s *Service) CreateRun(ctx context.Context, req *canaryv1.CreateRunRequest) (*canaryv1.CreateRunResponse, error) {
	run, err := s.createRun(ctx, req)
	if err != nil {
		return nil, err
	}
	if !req.GetJudge() {
		return &canaryv1.CreateRunResponse{Run: run}, nil
	}
	v, err := s.currentVerdict(ctx, run.GetId())
	if err != nil {
		return nil, err
	}
	if v.GetFinal() && isRunning(run) { // it finished itself just now (AutoFinish)
		got, err := s.GetRun(ctx, &canaryv1.GetRunRequest{RunId: run.GetId()})
		if err != nil {
			return nil, err
		}
		run = got.GetRun()
	}
	return &canaryv1.CreateRunResponse{Run: run, Verdict: v}, nil
}

func (s *Service) createRun(ctx context.Context, req *canaryv1.CreateRunRequest) (*canaryv1.Run, error) {
	var vs []*errdetails.BadRequest_FieldViolation
	for _, f := range []struct{ name, v string }{
		{"request_id", req.GetRequestId()},
		{"service", req.GetService()},
		{"stage", req.GetStage()},
	} {
		if msg := checkText(f.v); msg != "" {
			vs = append(vs, violation(f.name, "%s", msg))
		}
	}
	vs = append(vs, checkLabels(req.GetBaselineLabels(), req.GetCanaryLabels())...)
	if bt := req.GetBakeTime(); bt != nil {
		if err := bt.CheckValid(); err != nil {
			vs = append(vs, violation("bake_time", "must be a valid duration: %v", err))
		} else if bt.AsDuration() < 0 {
			vs = append(vs, violation("bake_time", "must be >= 0"))
		}
	}
	if st := req.GetStartTime(); st != nil {
		if err := st.CheckValid(); err != nil {
			vs = append(vs, violation("start_time", "must be a valid timestamp: %v", err))
		} else if t := st.AsTime(); t.After(s.now().Add(s.skew)) {
			vs = append(vs, violation("start_time", "is %s, later than the server's clock plus the clock-skew allowance of %s: a run cannot start in the future",
				t.Format(time.RFC3339), s.skew))
		}
	}
	if req.CanaryTrafficShare != nil {
		if sh := req.GetCanaryTrafficShare(); !(sh > 0 && sh < 1) {
			vs = append(vs, violation("canary_traffic_share", "must be in (0, 1) (got %v)", sh))
		}
	}
	vs = append(vs, checkAutoFinish(req.GetAutoFinish())...)
	run := &canaryv1.Run{
		AutoFinish:         req.GetAutoFinish(),
		RequestId:          req.GetRequestId(),
		Service:            req.GetService(),
		Stage:              req.GetStage(),
		BaselineLabels:     req.GetBaselineLabels(),
		CanaryLabels:       req.GetCanaryLabels(),
		BakeTime:           req.GetBakeTime(),
		CanaryTrafficShare: req.CanaryTrafficShare,
		State:              canaryv1.RunState_RUN_STATE_RUNNING,
		Counters:           &canaryv1.RunCounters{},
	}
	var cfg *analysis.Config
	switch src := req.GetConfig().(type) {
	case *canaryv1.CreateRunRequest_ConfigRef:
		ref := src.ConfigRef
		if msg := checkText(ref.GetName()); msg != "" {
			vs = append(vs, violation("config_ref.name", "%s", msg))
			break
		}
		if len(vs) > 0 {
			break // report the request's own errors before looking the config up
		}
		cv, err := s.store.GetConfig(ctx, ref.GetName(), ref.GetVersion())
		if errors.Is(err, store.ErrNotFound) {
			return nil, notFound("config %s not found", configRefName(ref.GetName(), ref.GetVersion()))
		}
		if err != nil {
			return nil, fmt.Errorf("get config %s: %w", ref.GetName(), err)
		}
		if cfg, err = apiconv.ConfigFromProto(cv.GetConfig()); err != nil {
			return nil, fmt.Errorf("stored config %s@%d: %w", cv.GetName(), cv.GetVersion(), err)
		}
		run.ConfigName, run.ConfigVersion, run.Config = cv.GetName(), cv.GetVersion(), cv.GetConfig()
	case *canaryv1.CreateRunRequest_InlineConfig:
		c, pc, cvs := protoConfig("inline_config", src.InlineConfig)
		if len(cvs) > 0 {
			vs = append(vs, cvs...)
			break
		}
		cfg, run.ConfigName, run.Config = c, c.Name, pc
	case *canaryv1.CreateRunRequest_InlineYaml:
		if len(src.InlineYaml) > maxYAMLLen {
			vs = append(vs, violation("inline_yaml", "is %d bytes, more than %d", len(src.InlineYaml), maxYAMLLen))
			break
		}
		c, pc, cvs := parseYAMLConfig("inline_yaml", []byte(src.InlineYaml))
		if len(cvs) > 0 {
			vs = append(vs, cvs...)
			break
		}
		cfg, run.ConfigName, run.Config = c, c.Name, pc
	default:
		vs = append(vs, violation("config", "is required: config_ref, inline_config or inline_yaml"))
	}
	if run.Config != nil {
		vs = append(vs, checkRunSource(run)...)
	}
	if len(vs) > 0 {
		return nil, invalid(vs...)
	}

	fp, err := fingerprint(req)
	if err != nil {
		return nil, err
	}
	if run.Id, err = newRunID(); err != nil {
		return nil, err
	}
	run.CreateTime = timestamppb.New(s.now())
	run.StartTime = run.CreateTime
	if st := req.GetStartTime(); st != nil {
		run.StartTime = st
	}
	stored, created, err := s.store.CreateRun(ctx, run, fp)
	if errors.Is(err, store.ErrConflict) {
		return nil, &apiError{code: codes.AlreadyExists, msg: fmt.Sprintf(
			"request_id %q was used to create run %s with a different request (another config, service, stage, labels, bake time or auto_finish): use another request_id for another run",
			req.GetRequestId(), storedID(stored)), resource: &errdetails.ResourceInfo{
			ResourceType: "canary.v1.Run", ResourceName: storedID(stored), Owner: req.GetRequestId(),
			Description: "the run this request_id created",
		}}
	}
	if err != nil {
		return nil, fmt.Errorf("create run: %w", err)
	}
	if !created {
		s.log.Debug("create run retried", "run", stored.GetId(), "request_id", req.GetRequestId())
		return stored, nil
	}
	// In memory at once, live, with nothing folded yet.
	lr := newLiveRun(stored.GetId())
	lr.init(proto.Clone(stored).(*canaryv1.Run), cfg, &logState{
		data: newData(cfg, runStart(stored)), counters: &canaryv1.RunCounters{},
	}, s.now())
	close(lr.loaded)
	s.register(lr)
	s.recordFiring(ctx, stored)
	s.log.Info("run created", "run", stored.GetId(), "service", run.GetService(), "stage", run.GetStage(),
		"config", configRefName(run.GetConfigName(), run.GetConfigVersion()))
	return stored, nil
}

func storedID(r *canaryv1.Run) string {
	if r.GetId() == "" {
		return "(unknown)"
	}
	return r.GetId()
}

func configRefName(name string, version uint32) string {
	if version == 0 {
		return name
	}
	return fmt.Sprintf("%s@%d", name, version)
}

// fingerprint identifies a CreateRun request for idempotency: the SHA-256
// of its deterministic encoding (map entries sorted), judge left out, so a
// retry of the same request matches and any change of the run it asks for
// does not.
func fingerprint(req *canaryv1.CreateRunRequest) ([]byte, error) {
	if req.GetJudge() { // how the caller wants the answer, not the run
		req = proto.Clone(req).(*canaryv1.CreateRunRequest)
		req.Judge = false
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("fingerprint request: %w", err)
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

// newRunID returns 16 random bytes in hex.
func newRunID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// checkText returns what is wrong with a required short text field, or "".
func checkText(v string) string {
	if msg := checkID(v); msg != "" {
		return msg
	}
	if !utf8.ValidString(v) {
		return "must be valid UTF-8"
	}
	return ""
}

// GetRun returns a run; see the API. A running run is loaded into memory
// (if it is not there already) and caught up with its log: its counters
// and latest verdict are fresher than the stored record's, which are
// written back only with snapshots, on eviction and on shutdown (so after
// a crash the stored ones lag behind the acknowledged batches).
func (s *Service) GetRun(ctx context.Context, req *canaryv1.GetRunRequest) (*canaryv1.GetRunResponse, error) {
	if msg := checkID(req.GetRunId()); msg != "" {
		return nil, badField("run_id", "%s", msg)
	}
	lr, err := s.fresh(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	defer s.release(lr)
	return &canaryv1.GetRunResponse{Run: lr.record()}, nil
}

// listed returns the freshest record of a run as ListRuns read it from
// the store: a running run is loaded into memory and caught up with its
// log, so that its counters are as exact as GetRun's; a finished run is
// used as stored, since the record its finish stored is complete.
func (s *Service) listed(ctx context.Context, run *canaryv1.Run) (*canaryv1.Run, error) {
	if !isRunning(run) {
		return run, nil
	}
	lr, err := s.use(ctx, run.GetId())
	if err != nil {
		return nil, err
	}
	defer s.release(lr)
	if err := s.catchUp(ctx, lr); err != nil {
		return nil, err
	}
	return lr.record(), nil
}

// listFreshers bounds the runs of one ListRuns page that listed brings up
// to date at once (each a load or a catch-up: a few reads of the store).
const listFreshers = 8

// ListRuns lists runs; see the API. A caller restricted to some services
// (package auth) sees only theirs (see listScoped for the page size).
// Running runs are loaded into memory and caught up with their logs, as by
// GetRun (see listed); up to listFreshers at a time.
func (s *Service) ListRuns(ctx context.Context, req *canaryv1.ListRunsRequest) (*canaryv1.ListRunsResponse, error) {
	vs := checkPage(req.GetPageSize(), req.GetPageToken())
	vs = append(vs, checkFilter("service", req.GetService())...)
	vs = append(vs, checkFilter("stage", req.GetStage())...)
	if _, ok := canaryv1.RunState_name[int32(req.GetState())]; !ok {
		vs = append(vs, violation("state", "unknown run state %d", req.GetState()))
	}
	if len(vs) > 0 {
		return nil, invalid(vs...)
	}
	svc, scope := listService(ctx, req.GetService())
	f := store.RunFilter{Service: svc, Stage: req.GetStage(), State: req.GetState()}
	fetch := func(size int) ([]*canaryv1.Run, string, error) {
		return listScoped(scope, store.Page{Size: size, Token: req.GetPageToken()},
			(*canaryv1.Run).GetService, func(p store.Page) ([]*canaryv1.Run, string, error) {
				return s.store.ListRuns(ctx, f, p)
			})
	}
	runs, next, err := boundedPage(s.maxListBytes, int(req.GetPageSize()), fetch, func(runs []*canaryv1.Run) error {
		return s.freshen(ctx, runs)
	})
	if err != nil {
		return nil, err
	}
	return &canaryv1.ListRunsResponse{Runs: runs, NextPageToken: next}, nil
}

// freshen replaces the runs of a page by their fresher records (see
// listed), up to listFreshers at a time.
func (s *Service) freshen(ctx context.Context, runs []*canaryv1.Run) error {
	var (
		wg   sync.WaitGroup
		sem  = make(chan struct{}, listFreshers)
		errs = make([]error, len(runs))
	)
	for i, r := range runs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			runs[i], errs[i] = s.listed(ctx, r)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// CompleteRun ends a run with its final verdict judged as if the bake time
// had elapsed (BakeComplete = true); see the API.
func (s *Service) CompleteRun(ctx context.Context, req *canaryv1.CompleteRunRequest) (*canaryv1.CompleteRunResponse, error) {
	run, err := s.finish(ctx, req.GetRunId(), canaryv1.RunState_RUN_STATE_COMPLETED, req.GetReason())
	if err != nil {
		return nil, err
	}
	return &canaryv1.CompleteRunResponse{Run: run}, nil
}

// AbortRun ends a run early. Its final verdict is judged on the data
// received so far with BakeComplete = false: a critical regression still
// reads ROLLBACK, a non-critical one HOLD, and nothing reads PROMOTE, since
// the canary did not bake; see the API.
func (s *Service) AbortRun(ctx context.Context, req *canaryv1.AbortRunRequest) (*canaryv1.AbortRunResponse, error) {
	run, err := s.finish(ctx, req.GetRunId(), canaryv1.RunState_RUN_STATE_ABORTED, req.GetReason())
	if err != nil {
		return nil, err
	}
	return &canaryv1.AbortRunResponse{Run: run}, nil
}

// finish completes or aborts a run: the run is closed to new batches in
// the store, its log folded to the end, the final verdict judged on
// everything acknowledged, and the store marks the run finished and adds
// the verdict to the history in one write, provided no delta was appended
// after the position the verdict folds.
func (s *Service) finish(ctx context.Context, id string, state canaryv1.RunState, reason string) (*canaryv1.Run, error) {
	if msg := checkID(id); msg != "" {
		return nil, badField("run_id", "%s", msg)
	}
	if len(reason) > maxReasonLen || !utf8.ValidString(reason) {
		return nil, badField("reason", "must be valid UTF-8 of at most %d bytes", maxReasonLen)
	}
	for attempt := 0; ; attempt++ {
		lr, err := s.use(ctx, id)
		if err != nil {
			return nil, err
		}
		run, err := s.finishRun(ctx, lr, finishPlan{state: state, reason: reason, bake: state == canaryv1.RunState_RUN_STATE_COMPLETED})
		s.release(lr)
		if errors.Is(err, errStale) && attempt < 2 {
			// Finished through another process, or by a concurrent call:
			// answer from the run as it is now.
			continue
		}
		return run, err
	}
}

// maxFinishAttempts bounds the attempts of finishRun to store a final
// verdict. With the run closed first (store.Tailer.CloseRun) no process can
// append, so a second attempt is the exception (a batch that was being
// appended while the run closed).
const maxFinishAttempts = 10

// finishPlan is how finishRun finishes a run.
type finishPlan struct {
	state  canaryv1.RunState // COMPLETED or ABORTED
	reason string            // Run.finish_reason
	bake   bool              // the final verdict is judged with the bake time over
	// accept, if set, returns the final verdict to store given the one
	// judged (it may change it), or nil to leave the run running
	// (errNotDecisive); see autoFinish.
	accept func(*canaryv1.Verdict) *canaryv1.Verdict
}

// errNotDecisive: the final verdict of an automatic finish was not the
// one that called for it (finishPlan.accept); the run goes on.
var errNotDecisive = errors.New("final verdict not decisive")

// finishRun finishes lr as plan says (see finish). errStale: look the run
// up again.
func (s *Service) finishRun(ctx context.Context, lr *liveRun, plan finishPlan) (*canaryv1.Run, error) {
	state, reason := plan.state, plan.reason
	// The final verdict is judged in a judge slot, taken before the run is
	// claimed: a finish that waits for a slot holds nothing.
	if err := s.acquireJudge(ctx); err != nil {
		return nil, err
	}
	defer s.releaseJudge()
	run, wait, err := lr.beginFinish(state)
	if wait != nil {
		select { // another finish is at work: see how it ends
		case <-wait:
			return nil, errStale
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if run != nil || err != nil {
		return run, err
	}
	var final *canaryv1.Verdict
	closed := false
	defer func() {
		if final != nil {
			return
		}
		if closed {
			// The finish failed: the store takes the run's batches again,
			// and then the run does.
			rctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
			defer cancel()
			if err := s.store.ReopenRun(rctx, lr.id); err != nil && !errors.Is(err, store.ErrFinished) {
				s.log.Warn("reopen run after a failed finish", "run", lr.id, "err", err)
			}
		}
		lr.endFinish(nil)
	}()
	// Close the run to new batches first, so that the fold below sees its
	// last delta whichever process appended it.
	if err := s.store.CloseRun(ctx, lr.id); err != nil {
		return nil, s.finishFailed(lr, err)
	}
	closed = true
	bake := plan.bake
	for attempt := 1; ; attempt++ {
		if err := s.catchUp(ctx, lr); err != nil {
			return nil, err
		}
		in := lr.finalInput(bake)
		v, err := s.judgeFinal(lr, in, bake)
		if err != nil {
			if state != canaryv1.RunState_RUN_STATE_ABORTED {
				return nil, err
			}
			// A run whose data cannot be judged can always be aborted.
			v = withAlarms(unjudgedVerdict(in.run, lr.cfg), in.alarms, in.run)
		}
		now := s.now()
		f := proto.Clone(v).(*canaryv1.Verdict)
		f.Final = true
		f.RunState = state
		f.Time = timestamppb.New(now)
		f.Sequence = in.seq + 1
		if plan.accept != nil {
			if f = plan.accept(f); f == nil {
				return nil, errNotDecisive
			}
		}
		run = in.run
		run.State = state
		run.FinishTime = f.Time
		run.FinishReason = reason
		run.Verdict = f
		err = s.store.FinishRunThrough(ctx, run, in.through)
		if errors.Is(err, store.ErrMoreBatches) {
			if attempt < maxFinishAttempts {
				continue
			}
			return nil, &apiError{code: codes.Aborted, msg: fmt.Sprintf(
				"run %q: batches kept arriving through other processes while it was being finished; retry", lr.id)}
		}
		if err != nil {
			return nil, s.finishFailed(lr, fmt.Errorf("finish run %s: %w", lr.id, err))
		}
		final = f
		break
	}
	lr.endFinish(run)
	// The final point is stored before the finish returns, so that the
	// trajectory of a finished run is whole wherever it is read.
	if err := s.flushTrajectory(lr); err != nil {
		s.log.Warn("store the trajectory of a finished run", "run", lr.id, "err", err)
	}
	s.metrics.verdicts.WithLabelValues(decisionLabel(final.GetDecision()), "true").Inc()
	s.log.Info("run finished", "run", lr.id, "state", apiconv.RunStateName(state), "decision", final.GetDecision().String(),
		"reason", reason)
	return proto.Clone(run).(*canaryv1.Run), nil
}

// finishFailed returns the error of a finish that failed in the store:
// errStale when the run was finished meanwhile (through another process),
// so that the caller answers from the stored run.
func (s *Service) finishFailed(lr *liveRun, err error) error {
	if errors.Is(err, store.ErrFinished) {
		lr.endFinish(nil)
		s.drop(lr)
		return errStale
	}
	return err
}

// beginFinish claims a live run for a finish to state. It returns the
// record of a run already finished to state (or the error of one finished
// otherwise), or the channel to wait on while another finish is at work;
// with neither, the run is now finishing and the caller must endFinish it.
func (lr *liveRun) beginFinish(state canaryv1.RunState) (*canaryv1.Run, <-chan struct{}, error) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	switch st.state {
	case stateFinished:
		if got := st.rec.GetState(); got != state {
			return nil, nil, failedPrecondition("run %q is already %s", lr.id, apiconv.RunStateName(got))
		}
		return st.record(), nil, nil
	case stateFinishing:
		return nil, st.finishDone, nil
	case stateEvicted:
		return nil, nil, errStale
	}
	st.finishDone = make(chan struct{})
	st.setState(stateFinishing)
	return nil, nil, nil
}

// endFinish ends a finish: the run is finished with record run (its final
// verdict, no data), or live again when run is nil (the finish failed). A
// second call is a no-op.
func (lr *liveRun) endFinish(run *canaryv1.Run) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	if st.state != stateFinishing {
		return
	}
	close(st.finishDone)
	st.finishDone = nil
	if run == nil {
		st.setState(stateLive)
		return
	}
	st.rec = proto.Clone(run).(*canaryv1.Run)
	st.verdict, st.seq = st.rec.GetVerdict(), st.rec.GetVerdict().GetSequence()
	st.data = nil
	st.addPoint(report.Point(st.verdict))
	st.setState(stateFinished)
}
