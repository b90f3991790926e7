package auth

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Runs looks up the service of a run, for the RPCs that name a run.
type Runs interface {
	// RunService returns the service of the run with id runID. Its errors
	// are gRPC statuses (NOT_FOUND for an unknown run, INVALID_ARGUMENT
	// for a missing id), which the caller receives as they are.
	RunService(ctx context.Context, runID string) (string, error)
}

// Options configure a Guard.
type Options struct {
	// Policy is the tokens file; nil means no bearer tokens.
	Policy *Policy
	// ClientCerts says that every connection carries a verified client
	// certificate (mTLS with a client CA), whose name identifies the
	// caller: through a names entry of Policy, or, without a Policy, with
	// every role on every service.
	ClientCerts bool
	// Runs looks up the service of a run. Required.
	Runs Runs
	// Logger receives the audit lines (component=audit); nil discards
	// them.
	Logger *slog.Logger
}

// Guard authenticates, authorizes and audits the calls of the
// CanaryService as gRPC interceptors. With neither a Policy nor
// ClientCerts the service is open: every caller is "anonymous" with every
// role, and only the audit log remains.
//
// Each call of a CanaryService method is identified (UNAUTHENTICATED when
// it cannot be: no token, an unknown one), then needs the method's role
// (RoleOf) and, for the methods that concern a service, that the service
// is in the caller's scope (both PERMISSION_DENIED, the message naming
// what is missing). The health and reflection services need nothing;
// methods of any other service need RoleAdmin.
type Guard struct {
	policy      *Policy
	clientCerts bool
	runs        Runs
	audit       *slog.Logger
}

// NewGuard returns a Guard.
func NewGuard(o Options) (*Guard, error) {
	if o.Runs == nil {
		return nil, fmt.Errorf("auth guard: Runs is required")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{policy: o.Policy, clientCerts: o.ClientCerts, runs: o.Runs, audit: log.With("component", "audit")}, nil
}

// Open reports whether the guard lets every caller do everything.
func (g *Guard) Open() bool { return g.policy == nil && !g.clientCerts }

// target is what a method's service scope is checked against.
type target uint8

const (
	targetNone    target = iota // not service-scoped (configs)
	targetService               // the request's service (CreateRun)
	targetRun                   // the service of the run the request's run_id names
	targetBatch                 // the service of the run of the request's batch (every message of a stream)
	targetList                  // the request's service filter, if set; without one the handler lists only the caller's services
)

// rule is what a method needs.
type rule struct {
	role   Role
	target target
	audit  bool // a change of state: written to the audit log
}

// ruleOf returns the rule of a full method name; public is true for the
// methods that need nothing (health, reflection).
func ruleOf(method string) (r rule, public bool) {
	switch method {
	case canaryv1.CanaryService_PutConfig_FullMethodName:
		return rule{RoleAdmin, targetNone, true}, false
	case canaryv1.CanaryService_GetConfig_FullMethodName, canaryv1.CanaryService_ListConfigs_FullMethodName:
		return rule{RoleRead, targetNone, false}, false
	case canaryv1.CanaryService_CreateRun_FullMethodName:
		return rule{RoleIngest, targetService, true}, false
	case canaryv1.CanaryService_Ingest_FullMethodName, canaryv1.CanaryService_IngestStream_FullMethodName:
		return rule{RoleIngest, targetBatch, false}, false
	case canaryv1.CanaryService_GetRun_FullMethodName, canaryv1.CanaryService_Judge_FullMethodName,
		canaryv1.CanaryService_WatchVerdict_FullMethodName, canaryv1.CanaryService_GetRunReport_FullMethodName:
		return rule{RoleRead, targetRun, false}, false
	case canaryv1.CanaryService_ListRuns_FullMethodName, canaryv1.CanaryService_ListVerdicts_FullMethodName:
		return rule{RoleRead, targetList, false}, false
	case canaryv1.CanaryService_CompleteRun_FullMethodName, canaryv1.CanaryService_AbortRun_FullMethodName:
		return rule{RoleOperate, targetRun, true}, false
	case canaryv1.CanaryService_ReportAlarm_FullMethodName, AlertmanagerWebhook:
		// The handler applies the alarm to the runs of the caller's
		// services only (and a scoped caller's alarm must name one).
		return rule{RoleIngest, targetNone, true}, false
	case canaryv1.CanaryService_ListAlarms_FullMethodName:
		return rule{RoleRead, targetNone, false}, false // the handler filters by scope
	case canaryv1.CanaryService_CheckDeploy_FullMethodName:
		// An override needs RoleOperate too (checked by the handler).
		return rule{RoleRead, targetService, true}, false
	case canaryv1.CanaryService_GetDeployPolicy_FullMethodName:
		return rule{RoleRead, targetNone, false}, false
	case canaryv1.CanaryService_ListDeployOverrides_FullMethodName:
		return rule{RoleRead, targetList, false}, false
	case canaryv1.CanaryService_PutDeployPolicy_FullMethodName:
		return rule{RoleAdmin, targetNone, true}, false
	}
	for _, p := range []string{"/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/",
		"/grpc.reflection.v1alpha.ServerReflection/"} {
		if strings.HasPrefix(method, p) {
			return rule{}, true
		}
	}
	return rule{RoleAdmin, targetNone, false}, false // anything else: admin only
}

// RoleOf returns the role a full method name needs, and false for the
// methods open to everyone (health, reflection).
func RoleOf(method string) (Role, bool) {
	r, public := ruleOf(method)
	return r.role, !public
}

// Unary is the unary server interceptor.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r, public := ruleOf(info.FullMethod)
	if public {
		return handler(ctx, req)
	}
	c, svc, err := g.check(ctx, r, req)
	var resp any
	if err == nil {
		resp, err = handler(WithCaller(ctx, c), req)
	}
	if r.audit {
		g.log(ctx, info.FullMethod, c, req, resp, svc, err)
	}
	return resp, err
}

// check identifies the caller of a call and authorizes it for r on req;
// svc is the service it checked, if any.
func (g *Guard) check(ctx context.Context, r rule, req any) (c *Caller, svc string, err error) {
	c, err = g.authenticate(ctx)
	if err != nil {
		return nil, "", err
	}
	if !c.Has(r.role) {
		return c, "", status.Errorf(codes.PermissionDenied, "%s lacks role %s (it has %s)", c.describe(), r.role, c.grant.roles)
	}
	// A CreateRun that also judges reads the verdict.
	if j, ok := req.(interface{ GetJudge() bool }); ok && j.GetJudge() && !c.Has(RoleRead) {
		return c, "", status.Errorf(codes.PermissionDenied, "%s lacks role %s (it has %s), which judge needs", c.describe(), RoleRead, c.grant.roles)
	}
	svc, err = g.scope(ctx, c, r.target, req)
	return c, svc, err
}

// scope checks that the service req concerns is in c's scope, and returns
// it.
func (g *Guard) scope(ctx context.Context, c *Caller, t target, req any) (string, error) {
	var svc string
	switch t {
	case targetNone:
		return "", nil
	case targetService, targetList:
		r, ok := req.(interface{ GetService() string })
		if !ok {
			return "", status.Errorf(codes.Internal, "auth: %T has no service", req)
		}
		if svc = r.GetService(); svc == "" {
			// CreateRun rejects it; a listing without a filter lists the
			// caller's services only.
			return "", nil
		}
	case targetRun, targetBatch:
		if c.AllServices() {
			return "", nil // nothing to check: skip the lookup
		}
		id, err := runID(t, req)
		if err != nil {
			return "", err
		}
		if id == "" {
			return "", nil // the handler rejects it (INVALID_ARGUMENT naming the field)
		}
		if svc, err = g.runs.RunService(ctx, id); err != nil {
			if _, ok := status.FromError(err); !ok {
				err = status.Error(codes.Internal, "internal error")
			}
			return "", err
		}
	}
	if !c.AllowsService(svc) {
		return svc, status.Errorf(codes.PermissionDenied, "%s is not allowed service %s (it may use %s)",
			c.describe(), svc, strings.Join(c.grant.services, ", "))
	}
	return svc, nil
}

// runID returns the run a request of target t names.
func runID(t target, req any) (string, error) {
	if t == targetBatch {
		r, ok := req.(interface{ GetBatch() *canaryv1.Batch })
		if !ok {
			return "", status.Errorf(codes.Internal, "auth: %T has no batch", req)
		}
		return r.GetBatch().GetRunId(), nil
	}
	r, ok := req.(interface{ GetRunId() string })
	if !ok {
		return "", status.Errorf(codes.Internal, "auth: %T has no run id", req)
	}
	return r.GetRunId(), nil
}

// authenticate identifies the caller: by its bearer token when it sends
// one, else by its client certificate with mTLS.
func (g *Guard) authenticate(ctx context.Context) (*Caller, error) {
	if g.Open() {
		return anonymous(), nil
	}
	if g.policy != nil {
		if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
			tok, ok := bearer(vals[0])
			if !ok {
				return nil, status.Error(codes.Unauthenticated, `malformed authorization metadata: want "Bearer TOKEN"`)
			}
			gr := g.policy.token(tok)
			if gr == nil {
				return nil, status.Error(codes.Unauthenticated, "unknown bearer token")
			}
			return &Caller{Name: gr.Name, Via: ViaToken, grant: gr}, nil
		}
	}
	if g.clientCerts {
		name, ok := peerCertName(ctx)
		if !ok {
			return nil, status.Error(codes.Unauthenticated, "no verified client certificate with a name (subject CN, DNS or URI SAN)")
		}
		if g.policy == nil {
			return &Caller{Name: name, Via: ViaCertificate}, nil
		}
		gr := g.policy.name(name)
		if gr == nil {
			return nil, status.Errorf(codes.PermissionDenied,
				"client certificate %s is not granted anything: no entry of the tokens file names it, and no bearer token was sent", name)
		}
		return &Caller{Name: name, Via: ViaCertificate, grant: gr}, nil
	}
	return nil, status.Error(codes.Unauthenticated, `missing bearer token: send the metadata "authorization: Bearer TOKEN"`)
}

// bearer returns the token of an authorization value "Bearer TOKEN" (the
// scheme is case-insensitive).
func bearer(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(v[len(scheme):])
	return tok, tok != ""
}

// Stream is the stream server interceptor. The caller is identified and
// its role checked when the stream starts; the service scope of every
// message received is checked as it is received (a WatchVerdict request,
// each batch of an IngestStream), and a message out of scope ends the
// stream with PERMISSION_DENIED.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	r, public := ruleOf(info.FullMethod)
	if public {
		return handler(srv, ss)
	}
	c, _, err := g.check(ss.Context(), rule{role: r.role}, nil)
	if err != nil {
		return err
	}
	if c.AllServices() {
		return handler(srv, ss) // no scope to check
	}
	return handler(srv, &guardedStream{ServerStream: ss, ctx: WithCaller(ss.Context(), c), g: g, c: c, t: r.target})
}

// guardedStream checks the scope of every message received.
type guardedStream struct {
	grpc.ServerStream
	ctx context.Context
	g   *Guard
	c   *Caller
	t   target
	// lastRun is the run of the last message allowed: consecutive batches
	// of one run are looked up once. RecvMsg is not called concurrently.
	lastRun string
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.t == targetRun || s.t == targetBatch {
		id, err := runID(s.t, m)
		if err != nil {
			return err
		}
		if id != "" && id == s.lastRun {
			return nil
		}
		if _, err := s.g.scope(s.ctx, s.c, s.t, m); err != nil {
			return err
		}
		s.lastRun = id
		return nil
	}
	_, err := s.g.scope(s.ctx, s.c, s.t, m)
	return err
}
