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
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// CreateRun starts a run; see the API. The run pins the resolved config.
func (s *Service) CreateRun(ctx context.Context, req *canaryv1.CreateRunRequest) (*canaryv1.CreateRunResponse, error) {
	run, err := s.createRun(ctx, req)
	if err != nil {
		return nil, err
	}
	return &canaryv1.CreateRunResponse{Run: run}, nil
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
	run := &canaryv1.Run{
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
		c, err := apiconv.ConfigFromProto(src.InlineConfig)
		if err != nil {
			cvs, ok := fieldViolations("inline_config", err)
			if !ok {
				return nil, err
			}
			vs = append(vs, cvs...)
			break
		}
		cfg = c
	case *canaryv1.CreateRunRequest_InlineYaml:
		if len(src.InlineYaml) > maxYAMLLen {
			vs = append(vs, violation("inline_yaml", "is %d bytes, more than %d", len(src.InlineYaml), maxYAMLLen))
			break
		}
		c, err := analysis.ParseConfig([]byte(src.InlineYaml))
		if err != nil {
			vs = append(vs, yamlViolations("inline_yaml", err)...)
			break
		}
		cfg = c
	default:
		vs = append(vs, violation("config", "is required: config_ref, inline_config or inline_yaml"))
	}
	if len(vs) > 0 {
		return nil, invalid(vs...)
	}
	if run.Config == nil {
		run.ConfigName, run.Config = cfg.Name, apiconv.ConfigToProto(cfg)
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
			"request_id %q was used to create run %s with a different request", req.GetRequestId(), storedID(stored))}
	}
	if err != nil {
		return nil, fmt.Errorf("create run: %w", err)
	}
	if !created {
		s.log.Debug("create run retried", "run", stored.GetId(), "request_id", req.GetRequestId())
		return stored, nil
	}
	lr := newLive(proto.Clone(stored).(*canaryv1.Run), cfg, s.now())
	s.mu.Lock()
	if _, ok := s.runs[lr.id]; !ok {
		s.runs[lr.id] = lr
	}
	s.mu.Unlock()
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
// of its deterministic encoding (map entries sorted), so a retry of the same
// request matches and any change of it does not.
func fingerprint(req *canaryv1.CreateRunRequest) ([]byte, error) {
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
// (if it is not there already), whose counters and latest verdict are
// fresher than the stored record's: those are written back only with
// snapshots, on eviction and on shutdown, so after a crash the stored ones
// lag behind the acknowledged batches.
func (s *Service) GetRun(ctx context.Context, req *canaryv1.GetRunRequest) (*canaryv1.GetRunResponse, error) {
	if msg := checkID(req.GetRunId()); msg != "" {
		return nil, badField("run_id", "%s", msg)
	}
	var (
		lr  *live
		err error
	)
	if s.tail != nil {
		lr, err = s.fresh(ctx, req.GetRunId()) // up to date with every replica
	} else if lr, err = s.get(ctx, req.GetRunId()); err == nil {
		lr.mu.Lock()
	}
	if err != nil {
		return nil, err
	}
	defer lr.mu.Unlock()
	return &canaryv1.GetRunResponse{Run: lr.record()}, nil
}

// fresher returns the freshest record of a run as ListRuns read it from
// the store. A running run is loaded into memory (see GetRun) and, on a
// store.Tailer, caught up with the deltas of every replica first, so that
// its counters are as exact as GetRun's. A finished run is used as stored:
// elsewhere than on a Tailer, its in-memory record when it is in memory
// anyway; on a Tailer the stored record of a finished run is the complete
// one (FinishRunThrough wrote it whole), and a replica may still hold the
// run in memory as running, finished through another replica.
func (s *Service) fresher(ctx context.Context, run *canaryv1.Run) (*canaryv1.Run, error) {
	if run.GetState() == canaryv1.RunState_RUN_STATE_RUNNING {
		for {
			lr, err := s.get(ctx, run.GetId())
			if err != nil {
				return nil, err
			}
			lr.mu.Lock()
			if lr.evicted {
				lr.mu.Unlock()
				continue
			}
			err = s.catchUpLocked(ctx, lr) // only on a Tailer
			r := lr.record()
			lr.mu.Unlock()
			if err != nil {
				return nil, err
			}
			return r, nil
		}
	}
	if s.tail != nil {
		return run, nil
	}
	s.mu.Lock()
	lr, ok := s.runs[run.GetId()]
	s.mu.Unlock()
	if !ok {
		return run, nil
	}
	select {
	case <-lr.loaded:
		if lr.err != nil {
			return run, nil
		}
	default:
		return run, nil
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.record(), nil
}

// listFreshers bounds the runs of one ListRuns page that fresher brings up
// to date at once (each a load or a catch-up: a few reads of the store).
const listFreshers = 8

// ListRuns lists runs; see the API. A caller restricted to some services
// (package auth) sees only theirs (see listScoped for the page size).
// Running runs are loaded into memory
// for their fresh counters and, on a store.Tailer, caught up with every
// replica's deltas, as by GetRun (see fresher); up to listFreshers at a
// time.
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
// fresher), up to listFreshers at a time.
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
			runs[i], errs[i] = s.fresher(ctx, r)
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

// finish completes or aborts a run: new appends are refused, the ones in
// flight are drained, the final verdict is computed on everything
// acknowledged, and the store marks the run finished and adds the verdict
// to the history in one write.
func (s *Service) finish(ctx context.Context, id string, state canaryv1.RunState, reason string) (*canaryv1.Run, error) {
	if msg := checkID(id); msg != "" {
		return nil, badField("run_id", "%s", msg)
	}
	if len(reason) > maxReasonLen || !utf8.ValidString(reason) {
		return nil, badField("reason", "must be valid UTF-8 of at most %d bytes", maxReasonLen)
	}
	for attempt := 0; ; attempt++ {
		lr, err := s.acquire(ctx, id)
		if err != nil {
			return nil, err
		}
		if lr.finished() {
			defer lr.mu.Unlock()
			if got := lr.run.GetState(); got != state {
				return nil, failedPrecondition("run %q is already %s", id, apiconv.RunStateName(got))
			}
			return lr.record(), nil
		}
		if ch := lr.finishing; ch != nil {
			lr.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		lr.finishing = done
		lr.mu.Unlock()
		run, err := s.finishLocked(ctx, lr, state, reason)
		lr.mu.Lock()
		lr.finishing = nil
		close(done)
		if err == nil {
			lr.notify()
		}
		lr.mu.Unlock()
		if errors.Is(err, store.ErrFinished) && attempt == 0 {
			// Finished behind our back (another process on the store):
			// reload it and answer from the stored state.
			s.evict(lr)
			continue
		}
		return run, err
	}
}

// maxFinishAttempts bounds the attempts of finishLocked to store a final
// verdict. With the run closed first (store.Tailer.CloseRun) no other
// replica can append, so a second attempt is the exception (a batch that
// was being appended while the run closed).
const maxFinishAttempts = 10

// finishLocked does the work of finish while lr.finishing is set.
func (s *Service) finishLocked(ctx context.Context, lr *live, state canaryv1.RunState, reason string) (*canaryv1.Run, error) {
	var (
		run   *canaryv1.Run
		final *canaryv1.Verdict
	)
	// The final verdict is judged under lr.mu: take a judge slot first,
	// without it.
	if err := s.acquireJudge(ctx); err != nil {
		return nil, err
	}
	defer s.releaseJudge()
	if err := waitIdle(ctx, lr); err != nil {
		return nil, err
	}
	if s.tail != nil {
		// Other replicas may be appending: close the run to new batches
		// first, so that the final read below sees its last delta.
		if err := s.tail.CloseRun(ctx, lr.id); err != nil {
			lr.mu.Unlock()
			return nil, err
		}
	}
	for attempt := 1; ; attempt++ {
		// On a Tailer, the final verdict folds every replica's deltas, and
		// it is stored only if no other replica appended one meanwhile.
		if err := s.catchUpLocked(ctx, lr); err != nil {
			lr.mu.Unlock()
			return nil, err
		}
		now := s.now()
		v, err := s.judgeLocked(lr, now, state == canaryv1.RunState_RUN_STATE_COMPLETED)
		if err != nil {
			if state != canaryv1.RunState_RUN_STATE_ABORTED {
				lr.mu.Unlock()
				return nil, err
			}
			// A run whose data cannot be judged can always be aborted.
			v = unjudgedVerdict(lr)
		}
		final = proto.Clone(v).(*canaryv1.Verdict)
		final.Final = true
		final.RunState = state
		final.Time = timestamppb.New(now)
		final.Sequence = lr.seq + 1
		run = lr.record()
		run.State = state
		run.FinishTime = final.Time
		run.FinishReason = reason
		run.Verdict = final
		through := lr.cursor
		lr.mu.Unlock()

		if s.tail != nil {
			// Only if no other replica appended a delta after through.
			err = s.tail.FinishRunThrough(ctx, run, through)
		} else {
			err = s.store.FinishRun(ctx, run)
		}
		if errors.Is(err, store.ErrMoreBatches) {
			if attempt < maxFinishAttempts {
				lr.mu.Lock()
				continue
			}
			return nil, &apiError{code: codes.Aborted, msg: fmt.Sprintf(
				"run %q: batches kept arriving through other replicas while it was being finished; retry", lr.id)}
		}
		if err != nil {
			return nil, fmt.Errorf("finish run %s: %w", lr.id, err)
		}
		break
	}
	lr.mu.Lock()
	lr.run = run
	lr.verdict, lr.seq = final, final.Sequence
	lr.data = nil
	lr.mu.Unlock()
	s.metrics.verdicts.WithLabelValues(final.GetDecision().String(), "true").Inc()
	s.log.Info("run finished", "run", lr.id, "state", apiconv.RunStateName(state), "decision", final.GetDecision().String(),
		"reason", reason)
	return proto.Clone(run).(*canaryv1.Run), nil
}

// evict drops lr from memory so that the next use reloads it.
func (s *Service) evict(lr *live) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.evicted = true
	if s.runs[lr.id] == lr {
		delete(s.runs, lr.id)
	}
	lr.notify() // watchers move to the reloaded run
}
