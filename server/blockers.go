package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/alarm"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/auth"
	"github.com/canaryd/canaryd/server/store"
)

// Deploy blockers. A deploy policy per service (store.Docs kind "policy",
// keyed by service; "*" is the default) says when a deployment may start:
// within its deploy windows, and while none of its alarm rules matches a
// firing alarm. CheckDeploy applies it; an override lets a blocked
// deployment start and is recorded (kind "override": who, why, when, what
// it overrode) and written to the audit log.

// Bounds of the blockers.
const (
	// defaultPolicy is the service of the policy of services without one.
	defaultPolicy = "*"
	// maxOverrides is how many overrides are kept (the oldest go).
	maxOverrides = 1000
)

// PutDeployPolicy stores a deploy policy; see the API.
func (s *Service) PutDeployPolicy(ctx context.Context, req *canaryv1.PutDeployPolicyRequest) (*canaryv1.PutDeployPolicyResponse, error) {
	var (
		pol   *canaryv1.DeployPolicy
		field string
	)
	switch src := req.GetSource().(type) {
	case *canaryv1.PutDeployPolicyRequest_Policy:
		field, pol = "policy", proto.CloneOf(src.Policy)
	case *canaryv1.PutDeployPolicyRequest_Yaml:
		field = "yaml"
		if len(src.Yaml) > maxYAMLLen {
			return nil, badField(field, "is %d bytes, more than %d", len(src.Yaml), maxYAMLLen)
		}
		var err error
		if pol, err = alarm.ParsePolicy([]byte(src.Yaml)); err != nil {
			return nil, invalid(yamlViolations(field, err)...)
		}
	default:
		return nil, badField("source", "is required: policy or yaml")
	}
	errs := alarm.CheckPolicy(pol)
	if svc := pol.GetService(); svc != "" && svc != defaultPolicy && checkText(svc) != "" {
		errs = append(errs, &analysis.FieldError{Field: "service", Msg: checkText(svc)})
	}
	if len(errs) > 0 {
		vs, _ := fieldViolations(field, errs)
		return nil, invalid(vs...)
	}
	sp := &canaryv1.StoredDeployPolicy{Policy: pol, Yaml: req.GetYaml(), UpdateTime: timestamppb.New(s.now())}
	if c := auth.CallerFrom(ctx); c != nil {
		sp.UpdatedBy = c.Name
	}
	b, err := proto.Marshal(sp)
	if err != nil {
		return nil, fmt.Errorf("encode deploy policy: %w", err)
	}
	if err := s.store.PutDoc(ctx, docPolicy, pol.GetService(), b); err != nil {
		return nil, fmt.Errorf("store deploy policy of %s: %w", pol.GetService(), err)
	}
	s.log.Info("deploy policy stored", "service", pol.GetService())
	return &canaryv1.PutDeployPolicyResponse{Policy: sp}, nil
}

// GetDeployPolicy returns the policy that applies to a service; see the
// API.
func (s *Service) GetDeployPolicy(ctx context.Context, req *canaryv1.GetDeployPolicyRequest) (*canaryv1.GetDeployPolicyResponse, error) {
	svc := req.GetService()
	if svc != defaultPolicy {
		if msg := checkText(svc); msg != "" {
			return nil, badField("service", "%s", msg)
		}
	}
	sp, err := s.policyFor(ctx, svc)
	if err != nil {
		return nil, err
	}
	if sp == nil {
		return nil, notFound("no deploy policy for service %q and no default policy (service %q)", svc, defaultPolicy)
	}
	return &canaryv1.GetDeployPolicyResponse{Policy: sp}, nil
}

// policyFor returns the policy of service, else the default one, else
// nil.
func (s *Service) policyFor(ctx context.Context, service string) (*canaryv1.StoredDeployPolicy, error) {
	for _, key := range []string{service, defaultPolicy} {
		b, err := s.store.GetDoc(ctx, docPolicy, key)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read deploy policy: %w", err)
		}
		sp := new(canaryv1.StoredDeployPolicy)
		if err := proto.Unmarshal(b, sp); err != nil {
			return nil, fmt.Errorf("decode deploy policy of %s: %w", key, err)
		}
		return sp, nil
	}
	return nil, nil
}

// CheckDeploy says whether a deployment may start; see the API.
func (s *Service) CheckDeploy(ctx context.Context, req *canaryv1.CheckDeployRequest) (*canaryv1.CheckDeployResponse, error) {
	var vs []*errdetails.BadRequest_FieldViolation
	if msg := checkText(req.GetService()); msg != "" {
		vs = append(vs, violation("service", "%s", msg))
	}
	if msg := checkText(req.GetStage()); msg != "" {
		vs = append(vs, violation("stage", "%s", msg))
	}
	if r := req.GetOverrideReason(); len(r) > maxReasonLen || !utf8.ValidString(r) {
		vs = append(vs, violation("override_reason", "must be valid UTF-8 of at most %d bytes", maxReasonLen))
	}
	if len(vs) > 0 {
		return nil, invalid(vs...)
	}
	c := auth.CallerFrom(ctx)
	if req.GetOverrideReason() != "" && c != nil && !c.Has(auth.RoleOperate) {
		return nil, &apiError{code: codes.PermissionDenied, msg: fmt.Sprintf(
			"%s lacks role operate, which an override needs", c)}
	}
	now := s.now()
	resp := &canaryv1.CheckDeployResponse{}
	sp, err := s.policyFor(ctx, req.GetService())
	if err != nil {
		return nil, err
	}
	if pol := sp.GetPolicy(); pol != nil {
		resp.PolicyService = pol.GetService()
		w, errs := alarm.CompileWindows("deploy_windows", pol.GetDeployWindows())
		if len(errs) > 0 {
			return nil, fmt.Errorf("stored deploy policy of %s: %w", pol.GetService(), errs)
		}
		if w != nil {
			if ok, reasons := w.Allows(now); !ok {
				resp.Reasons = append(resp.Reasons, reasons...)
				if next, found := w.Next(now); found {
					resp.NextWindow = timestamppb.New(next)
				}
			}
		}
		rules, err := alarm.Compile(pol.GetAlarms(), alarm.Target{Service: req.GetService(), Stage: req.GetStage()})
		if err != nil {
			return nil, fmt.Errorf("stored deploy policy of %s: %w", pol.GetService(), err)
		}
		if len(rules) > 0 {
			known, err := s.knownAlarms(ctx)
			if err != nil {
				return nil, err
			}
			for _, ev := range known {
				if ev.GetState() != canaryv1.AlarmState_ALARM_STATE_FIRING {
					continue
				}
				i := slices.IndexFunc(rules, func(r *alarm.Rule) bool { return r.Matches(ev.GetLabels()) })
				if i < 0 {
					continue
				}
				resp.Alarms = append(resp.Alarms, ev)
				resp.Reasons = append(resp.Reasons, fmt.Sprintf("%s (rule %s)", alarmText(ev), rules[i]))
			}
		}
	}
	resp.Allowed = len(resp.Reasons) == 0
	if resp.Allowed || req.GetOverrideReason() == "" {
		s.metrics.deployChecks.WithLabelValues(map[bool]string{true: "allowed", false: "blocked"}[resp.Allowed]).Inc()
		return resp, nil
	}
	o := &canaryv1.DeployOverride{
		Service: req.GetService(), Stage: req.GetStage(), Reason: req.GetOverrideReason(),
		Time: timestamppb.New(now), BlockedReasons: resp.Reasons, Who: "anonymous",
	}
	if c != nil {
		o.Who = c.Name
	}
	if err := s.storeOverride(ctx, o); err != nil {
		return nil, err
	}
	s.log.Warn("blocked deployment overridden", "service", o.Service, "stage", o.Stage, "who", o.Who, "reason", o.Reason,
		"blocked", o.BlockedReasons)
	resp.Allowed, resp.Override = true, o
	s.metrics.deployChecks.WithLabelValues("overridden").Inc()
	return resp, nil
}

// storeOverride records an override, keeping the last maxOverrides.
func (s *Service) storeOverride(ctx context.Context, o *canaryv1.DeployOverride) error {
	b, err := proto.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode override: %w", err)
	}
	key := fmt.Sprintf("%020d\x00%s\x00%s", o.GetTime().AsTime().UnixNano(), o.GetService(), o.GetStage())
	if err := s.store.PutDoc(ctx, docOverride, key, b); err != nil {
		return fmt.Errorf("record override: %w", err)
	}
	docs, err := s.store.ListDocs(ctx, docOverride)
	if err == nil && len(docs) > maxOverrides {
		old := make([]string, 0, len(docs)-maxOverrides)
		for _, d := range docs[:len(docs)-maxOverrides] {
			old = append(old, d.Key)
		}
		err = s.store.DeleteDocs(ctx, docOverride, old...)
	}
	if err != nil {
		s.log.Warn("trim overrides", "err", err)
	}
	return nil
}

// ListDeployOverrides lists the recorded overrides; see the API.
func (s *Service) ListDeployOverrides(ctx context.Context, req *canaryv1.ListDeployOverridesRequest) (*canaryv1.ListDeployOverridesResponse, error) {
	if len(req.GetService()) > maxIDLen {
		return nil, badField("service", "is %d bytes, more than %d", len(req.GetService()), maxIDLen)
	}
	c := auth.CallerFrom(ctx)
	out, err := s.readOverrides(ctx, func(o *canaryv1.DeployOverride) bool {
		return (req.GetService() == "" || o.GetService() == req.GetService()) && (c == nil || c.AllowsService(o.GetService()))
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return &canaryv1.ListDeployOverridesResponse{Overrides: out}, nil
}

// overrideLookback is how long before a run's creation the overrides of
// its service and stage are the run's (RunReport.overrides): a pipeline
// checks its blockers, then deploys and creates the run.
const overrideLookback = 6 * time.Hour

// runOverrides returns the overrides of a run's service and stage from
// overrideLookback before its creation until its end, or until now while
// it runs, oldest first.
func (s *Service) runOverrides(ctx context.Context, run *canaryv1.Run) ([]*canaryv1.DeployOverride, error) {
	from := run.GetCreateTime().AsTime().Add(-overrideLookback)
	until := s.now()
	if run.GetFinishTime() != nil {
		until = run.GetFinishTime().AsTime()
	}
	return s.readOverrides(ctx, func(o *canaryv1.DeployOverride) bool {
		t := o.GetTime().AsTime()
		return o.GetService() == run.GetService() && o.GetStage() == run.GetStage() && !t.Before(from) && !t.After(until)
	})
}

// readOverrides returns the recorded overrides that keep accepts, oldest
// first.
func (s *Service) readOverrides(ctx context.Context, keep func(*canaryv1.DeployOverride) bool) ([]*canaryv1.DeployOverride, error) {
	docs, err := s.store.ListDocs(ctx, docOverride)
	if err != nil {
		return nil, fmt.Errorf("list overrides: %w", err)
	}
	var out []*canaryv1.DeployOverride
	for _, d := range docs {
		o := new(canaryv1.DeployOverride)
		if err := proto.Unmarshal(d.Value, o); err != nil {
			return nil, fmt.Errorf("decode override: %w", err)
		}
		if keep(o) {
			out = append(out, o)
		}
	}
	return out, nil
}
