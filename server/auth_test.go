package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/auth"
)

// Services of the auth tests: the scoped tokens may use checkout-*.
const (
	inScope  = "checkout-api"
	outScope = "payments-api"
)

// authCaller is a caller of the auth tests: a token (none for "none"), and
// the roles and scope its entry grants.
type authCaller struct {
	name  string
	token string
	role  auth.Role // 0: not authenticated
	all   bool      // may use every service
}

// authCallers: no token, an unknown token, each single role and admin on
// checkout-*, and root (admin on every service).
var authCallers = []authCaller{
	{name: "none"},
	{name: "unknown", token: "not-a-token"},
	{name: "ingest", token: "tok-ingest", role: auth.RoleIngest},
	{name: "read", token: "tok-read", role: auth.RoleRead},
	{name: "operate", token: "tok-operate", role: auth.RoleOperate},
	{name: "admin", token: "tok-admin", role: auth.RoleAdmin},
	{name: "root", token: "tok-root", role: auth.RoleAdmin, all: true},
}

func sha(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// authPolicy grants the tokens of authCallers, plus extra YAML entries.
func authPolicy(t testing.TB, extra string) *auth.Policy {
	t.Helper()
	var b strings.Builder
	b.WriteString("tokens:\n")
	for _, c := range authCallers {
		if c.role == 0 {
			continue
		}
		svc := `"checkout-*"`
		if c.all {
			svc = `"*"`
		}
		fmt.Fprintf(&b, "  - name: %s\n    sha256: %s\n    roles: [%s]\n    services: [%s]\n", c.name, sha(c.token), c.role, svc)
	}
	b.WriteString(extra)
	p, err := auth.Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("tokens file: %v\n%s", err, b.String())
	}
	return p
}

// withToken returns ctx sending tok as a bearer token ("" sends none).
func withToken(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// authRPC is one RPC of the table: the role it needs, whether it concerns
// a service, and how to call it on svc. prepare makes what the call needs
// (as root) and returns the call, and a check of the state after it (ok:
// whether the call succeeded), which makes sure a refused call changed
// nothing.
type authRPC struct {
	method  string
	role    auth.Role
	scoped  bool
	prepare func(t *testing.T, svc string) (call func(ctx context.Context) error, after func(ok bool))
}

// authFixture is the server of the table and what root made on it.
type authFixture struct {
	e    *env
	root context.Context // ctx with root's token
	rng  *rand.Rand
	mu   sync.Mutex
	n    int
	runs map[string]string // service -> a running run with data
}

func (f *authFixture) seq() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return f.n
}

// newRun creates a running run of svc as root.
func (f *authFixture) newRun(t *testing.T, svc string) string {
	t.Helper()
	resp, err := f.e.c.CreateRun(f.root, &canaryv1.CreateRunRequest{
		RequestId: fmt.Sprintf("req-%d", f.seq()), Service: svc, Stage: fmt.Sprintf("stage-%d", f.seq()),
		Config: &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "shared"}},
	})
	if err != nil {
		t.Fatalf("root: create run of %s: %v", svc, err)
	}
	return resp.GetRun().GetId()
}

func (f *authFixture) run(t *testing.T, id string) *canaryv1.Run {
	t.Helper()
	resp, err := f.e.c.GetRun(f.root, &canaryv1.GetRunRequest{RunId: id})
	if err != nil {
		t.Fatalf("root: get run %s: %v", id, err)
	}
	return resp.GetRun()
}

func (f *authFixture) batch(runID string) *canaryv1.Batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return makeBatch(f.rng, runID, fmt.Sprintf("b-%d", f.n), scenario{Latency: 1, Errors: 1, N: 20})
}

// wantState checks that a run is in state.
func (f *authFixture) wantState(t *testing.T, id string, state canaryv1.RunState) {
	t.Helper()
	if got := f.run(t, id).GetState(); got != state {
		t.Errorf("run %s is %v, want %v", id, got, state)
	}
}

// wantBatches checks that a run stored n batches.
func (f *authFixture) wantBatches(t *testing.T, id string, n uint64) {
	t.Helper()
	if got := f.run(t, id).GetCounters().GetBatches(); got != n {
		t.Errorf("run %s stored %d batches, want %d", id, got, n)
	}
}

// authRPCs lists every RPC of the CanaryService with the role the README
// documents for it.
func authRPCs(f *authFixture) []authRPC {
	c := f.e.c
	none := func(bool) {}
	return []authRPC{
		{canaryv1.CanaryService_PutConfig_FullMethodName, auth.RoleAdmin, false,
			func(t *testing.T, _ string) (func(context.Context) error, func(bool)) {
				name := fmt.Sprintf("cfg-%d", f.seq())
				return func(ctx context.Context) error {
						_, err := c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig(name)}})
						return err
					}, func(ok bool) {
						_, err := c.GetConfig(f.root, &canaryv1.GetConfigRequest{Name: name})
						if stored := err == nil; stored != ok {
							t.Errorf("config %s stored: %v, want %v (%v)", name, stored, ok, err)
						}
					}
			}},
		{canaryv1.CanaryService_GetConfig_FullMethodName, auth.RoleRead, false,
			func(t *testing.T, _ string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					_, err := c.GetConfig(ctx, &canaryv1.GetConfigRequest{Name: "shared"})
					return err
				}, none
			}},
		{canaryv1.CanaryService_ListConfigs_FullMethodName, auth.RoleRead, false,
			func(t *testing.T, _ string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					_, err := c.ListConfigs(ctx, &canaryv1.ListConfigsRequest{})
					return err
				}, none
			}},
		{canaryv1.CanaryService_CreateRun_FullMethodName, auth.RoleIngest, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				stage := fmt.Sprintf("create-%d", f.seq())
				return func(ctx context.Context) error {
						_, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{
							RequestId: stage, Service: svc, Stage: stage,
							Config: &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "shared"}},
						})
						return err
					}, func(ok bool) {
						resp, err := c.ListRuns(f.root, &canaryv1.ListRunsRequest{Service: svc, Stage: stage})
						if err != nil {
							t.Fatal(err)
						}
						if stored := len(resp.GetRuns()) == 1; stored != ok {
							t.Errorf("run of stage %s stored: %v, want %v", stage, stored, ok)
						}
					}
			}},
		{canaryv1.CanaryService_GetRun_FullMethodName, auth.RoleRead, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					_, err := c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: f.runs[svc]})
					return err
				}, none
			}},
		{canaryv1.CanaryService_GetRunReport_FullMethodName, auth.RoleRead, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					resp, err := c.GetRunReport(ctx, &canaryv1.GetRunReportRequest{RunId: f.runs[svc]})
					if err == nil && resp.GetReport().GetRun().GetId() != f.runs[svc] {
						err = errors.New("a report of another run")
					}
					return err
				}, none
			}},
		{canaryv1.CanaryService_ListRuns_FullMethodName, auth.RoleRead, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					resp, err := c.ListRuns(ctx, &canaryv1.ListRunsRequest{Service: svc})
					if err == nil && len(resp.GetRuns()) == 0 {
						err = errors.New("no runs listed")
					}
					return err
				}, none
			}},
		{canaryv1.CanaryService_Ingest_FullMethodName, auth.RoleIngest, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				id := f.newRun(t, svc)
				return func(ctx context.Context) error {
						_, err := c.Ingest(ctx, &canaryv1.IngestRequest{Batch: f.batch(id)})
						return err
					}, func(ok bool) {
						f.wantBatches(t, id, map[bool]uint64{true: 1}[ok])
					}
			}},
		{canaryv1.CanaryService_IngestStream_FullMethodName, auth.RoleIngest, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				id := f.newRun(t, svc)
				return func(ctx context.Context) error {
						s, err := c.IngestStream(ctx)
						if err != nil {
							return err
						}
						if err := s.Send(&canaryv1.IngestStreamRequest{Batch: f.batch(id)}); err != nil && !errors.Is(err, io.EOF) {
							return err
						}
						s.CloseSend()
						if _, err := s.Recv(); err != nil {
							return err
						}
						_, err = s.Recv()
						if errors.Is(err, io.EOF) {
							return nil
						}
						return fmt.Errorf("after the ack: %v, want EOF", err)
					}, func(ok bool) {
						f.wantBatches(t, id, map[bool]uint64{true: 1}[ok])
					}
			}},
		{canaryv1.CanaryService_Judge_FullMethodName, auth.RoleRead, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					_, err := c.Judge(ctx, &canaryv1.JudgeRequest{RunId: f.runs[svc]})
					return err
				}, none
			}},
		{canaryv1.CanaryService_WatchVerdict_FullMethodName, auth.RoleRead, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					ctx, cancel := context.WithCancel(ctx)
					defer cancel()
					s, err := c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: f.runs[svc]})
					if err != nil {
						return err
					}
					r, err := s.Recv()
					if err == nil && r.GetVerdict().GetRunId() != f.runs[svc] {
						err = fmt.Errorf("watched verdict of run %q", r.GetVerdict().GetRunId())
					}
					return err
				}, none
			}},
		{canaryv1.CanaryService_CompleteRun_FullMethodName, auth.RoleOperate, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				id := f.newRun(t, svc)
				return func(ctx context.Context) error {
						_, err := c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id})
						return err
					}, func(ok bool) {
						f.wantState(t, id, map[bool]canaryv1.RunState{true: canaryv1.RunState_RUN_STATE_COMPLETED, false: canaryv1.RunState_RUN_STATE_RUNNING}[ok])
					}
			}},
		{canaryv1.CanaryService_AbortRun_FullMethodName, auth.RoleOperate, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				id := f.newRun(t, svc)
				return func(ctx context.Context) error {
						_, err := c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: id})
						return err
					}, func(ok bool) {
						f.wantState(t, id, map[bool]canaryv1.RunState{true: canaryv1.RunState_RUN_STATE_ABORTED, false: canaryv1.RunState_RUN_STATE_RUNNING}[ok])
					}
			}},
		{canaryv1.CanaryService_ReportAlarm_FullMethodName, auth.RoleIngest, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				name := fmt.Sprintf("Alarm%d", f.seq())
				return func(ctx context.Context) error {
						_, err := c.ReportAlarm(ctx, &canaryv1.ReportAlarmRequest{Alarm: &canaryv1.AlarmEvent{
							Name: name, State: canaryv1.AlarmState_ALARM_STATE_FIRING, Labels: map[string]string{"service": svc},
						}})
						return err
					}, func(ok bool) {
						resp, err := c.ListAlarms(f.root, &canaryv1.ListAlarmsRequest{})
						if err != nil {
							t.Fatal(err)
						}
						found := slices.ContainsFunc(resp.GetAlarms(), func(a *canaryv1.AlarmEvent) bool { return a.GetName() == name })
						if found != ok {
							t.Errorf("alarm %s recorded: %v, want %v", name, found, ok)
						}
					}
			}},
		{canaryv1.CanaryService_ListAlarms_FullMethodName, auth.RoleRead, false,
			func(t *testing.T, _ string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					_, err := c.ListAlarms(ctx, &canaryv1.ListAlarmsRequest{})
					return err
				}, none
			}},
		{canaryv1.CanaryService_CheckDeploy_FullMethodName, auth.RoleRead, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					_, err := c.CheckDeploy(ctx, &canaryv1.CheckDeployRequest{Service: svc, Stage: "prod"})
					return err
				}, none
			}},
		{canaryv1.CanaryService_PutDeployPolicy_FullMethodName, auth.RoleAdmin, false,
			func(t *testing.T, _ string) (func(context.Context) error, func(bool)) {
				svc := fmt.Sprintf("policy-%d", f.seq())
				return func(ctx context.Context) error {
						_, err := c.PutDeployPolicy(ctx, &canaryv1.PutDeployPolicyRequest{Source: &canaryv1.PutDeployPolicyRequest_Yaml{
							Yaml: "service: " + svc + "\ndeploy_windows: {allow: [\"Mon-Fri 09:00-17:00\"]}\n"}})
						return err
					}, func(ok bool) {
						resp, err := c.GetDeployPolicy(f.root, &canaryv1.GetDeployPolicyRequest{Service: svc})
						if stored := err == nil && resp.GetPolicy().GetPolicy().GetService() == svc; stored != ok {
							t.Errorf("policy of %s stored: %v, want %v (%v)", svc, stored, ok, err)
						}
					}
			}},
		{canaryv1.CanaryService_GetDeployPolicy_FullMethodName, auth.RoleRead, false,
			func(t *testing.T, _ string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					_, err := c.GetDeployPolicy(ctx, &canaryv1.GetDeployPolicyRequest{Service: "*"})
					return err
				}, none
			}},
		{canaryv1.CanaryService_ListDeployOverrides_FullMethodName, auth.RoleRead, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					_, err := c.ListDeployOverrides(ctx, &canaryv1.ListDeployOverridesRequest{Service: svc})
					return err
				}, none
			}},
		{canaryv1.CanaryService_ListVerdicts_FullMethodName, auth.RoleRead, true,
			func(t *testing.T, svc string) (func(context.Context) error, func(bool)) {
				return func(ctx context.Context) error {
					resp, err := c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{Service: svc})
					if err == nil && len(resp.GetVerdicts()) == 0 {
						err = errors.New("no verdicts listed")
					}
					return err
				}, none
			}},
	}
}

// TestAuthMatrix calls every RPC of the API as every caller (no token, an
// unknown token, each single role and admin scoped to checkout-*, and
// root), on a service in and out of the callers' scope, against a real
// server with real tokens, and checks every cell's code: UNAUTHENTICATED
// without a known token; PERMISSION_DENIED naming the missing role, or
// the service out of scope; OK otherwise. A refused call changes nothing.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	policy := authPolicy(t, "")
	e := newEnv(t, func(o *Options) { o.Auth = policy })
	ctx := ctxT(t)
	f := &authFixture{e: e, root: withToken(ctx, "tok-root"), rng: rand.New(rand.NewPCG(3, 4)), runs: map[string]string{}}
	if _, err := e.c.PutConfig(f.root, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("shared")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PutDeployPolicy(f.root, &canaryv1.PutDeployPolicyRequest{Source: &canaryv1.PutDeployPolicyRequest_Policy{
		Policy: &canaryv1.DeployPolicy{Service: "*"}}}); err != nil {
		t.Fatal(err)
	}
	// A running run with data, and a finished one (for the history), per
	// service.
	for _, svc := range []string{inScope, outScope} {
		f.runs[svc] = f.newRun(t, svc)
		if _, err := e.c.Ingest(f.root, &canaryv1.IngestRequest{Batch: f.batch(f.runs[svc])}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.CompleteRun(f.root, &canaryv1.CompleteRunRequest{RunId: f.newRun(t, svc)}); err != nil {
			t.Fatal(err)
		}
	}

	rpcs := authRPCs(f)
	// Every method of the service is in the table, needing the role the
	// guard applies.
	var methods []string
	for _, m := range canaryv1.CanaryService_ServiceDesc.Methods {
		methods = append(methods, "/"+canaryv1.CanaryService_ServiceDesc.ServiceName+"/"+m.MethodName)
	}
	for _, s := range canaryv1.CanaryService_ServiceDesc.Streams {
		methods = append(methods, "/"+canaryv1.CanaryService_ServiceDesc.ServiceName+"/"+s.StreamName)
	}
	for _, m := range methods {
		i := slices.IndexFunc(rpcs, func(r authRPC) bool { return r.method == m })
		if i < 0 {
			t.Errorf("method %s is not in the table", m)
			continue
		}
		if role, guarded := auth.RoleOf(m); !guarded || role != rpcs[i].role {
			t.Errorf("guard: %s needs %v (guarded %v), the table says %v", m, role, guarded, rpcs[i].role)
		}
	}
	if len(rpcs) != len(methods) {
		t.Errorf("the table has %d RPCs, the service %d", len(rpcs), len(methods))
	}

	cells := 0
	for _, r := range rpcs {
		targets := []string{inScope, outScope}
		if !r.scoped {
			targets = []string{""}
		}
		for _, caller := range authCallers {
			for _, svc := range targets {
				name := fmt.Sprintf("%s/%s/%s", r.method[strings.LastIndex(r.method, "/")+1:], caller.name, cmpOr(svc, "-"))
				wantCode, wantMsg := codes.OK, ""
				switch {
				case caller.role == 0:
					wantCode = codes.Unauthenticated
				case caller.role != auth.RoleAdmin && caller.role != r.role:
					wantCode, wantMsg = codes.PermissionDenied, fmt.Sprintf("token %s lacks role %s", caller.name, r.role)
				case svc == outScope && !caller.all:
					wantCode, wantMsg = codes.PermissionDenied, fmt.Sprintf("token %s is not allowed service %s", caller.name, outScope)
				}
				call, after := r.prepare(t, svc)
				err := call(withToken(ctx, caller.token))
				cells++
				if got := status.Code(err); got != wantCode || !strings.Contains(status.Convert(err).Message(), wantMsg) {
					t.Errorf("%s: %v (%v), want %v %q", name, got, err, wantCode, wantMsg)
				}
				after(err == nil)
			}
		}
	}
	t.Logf("%d cells", cells)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestAuthStreamScope: a stream's scope is checked for every message, so
// an IngestStream that moves on to a batch of another service's run ends
// with PERMISSION_DENIED after acknowledging the batches before it.
func TestAuthStreamScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.Auth = authPolicy(t, "") })
	ctx := ctxT(t)
	f := &authFixture{e: e, root: withToken(ctx, "tok-root"), rng: rand.New(rand.NewPCG(5, 6)), runs: map[string]string{}}
	if _, err := e.c.PutConfig(f.root, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("shared")}}); err != nil {
		t.Fatal(err)
	}
	in, out := f.newRun(t, inScope), f.newRun(t, outScope)
	s, err := e.c.IngestStream(withToken(ctx, "tok-ingest"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{in, in, out, in} {
		if err := s.Send(&canaryv1.IngestStreamRequest{Batch: f.batch(id)}); err != nil {
			break
		}
	}
	s.CloseSend()
	acks := 0
	for {
		_, err = s.Recv()
		if err != nil {
			break
		}
		acks++
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "not allowed service "+outScope) || acks != 2 {
		t.Errorf("stream: %d acks, then %v; want 2 acks then PERMISSION_DENIED", acks, err)
	}
	f.wantBatches(t, in, 2)
	f.wantBatches(t, out, 0)
}

// TestAuthListScope lists runs and verdicts as callers of different
// scopes, page by page at several page sizes, and checks that each sees
// exactly the items of its services, in order, with full pages (but where
// its services are too rare to fill one), and that a filter outside its
// scope is refused.
func TestAuthListScope(t *testing.T) {
	t.Parallel()
	extra := `  - name: checkout-or-search
    sha256: ` + sha("tok-multi") + `
    roles: [read]
    services: ["checkout-*", "search"]
  - name: web-only
    sha256: ` + sha("tok-web") + `
    roles: [read]
    services: ["checkout-web"]
  - name: rare
    sha256: ` + sha("tok-rare") + `
    roles: [read]
    services: ["sea*"]
`
	e := newEnv(t, func(o *Options) { o.Auth = authPolicy(t, extra) })
	ctx := ctxT(t)
	root := withToken(ctx, "tok-root")
	if _, err := e.c.PutConfig(root, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("shared")}}); err != nil {
		t.Fatal(err)
	}
	// 40 runs: mostly payments, some checkout-api and checkout-web, and one
	// search run among the oldest, so that the rare caller's pages come
	// back empty before it. Three runs in four are completed (a verdict
	// each).
	services := make([]string, 40)
	for i := range services {
		switch {
		case i == 2:
			services[i] = "search"
		case i%5 == 1:
			services[i] = "checkout-api"
		case i%7 == 3:
			services[i] = "checkout-web"
		default:
			services[i] = "payments-api"
		}
	}
	for i, svc := range services {
		e.clock.Advance(time.Second)
		resp, err := e.c.CreateRun(root, &canaryv1.CreateRunRequest{
			RequestId: fmt.Sprintf("r%d", i), Service: svc, Stage: "s",
			Config: &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "shared"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if i%4 != 0 {
			if _, err := e.c.CompleteRun(root, &canaryv1.CompleteRunRequest{RunId: resp.GetRun().GetId()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	listRuns := func(ctx context.Context, svc string, size int32, tok string) ([]string, []string, string, error) {
		resp, err := e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{Service: svc, PageSize: size, PageToken: tok})
		var ids, svcs []string
		for _, r := range resp.GetRuns() {
			ids, svcs = append(ids, r.GetId()), append(svcs, r.GetService())
		}
		return ids, svcs, resp.GetNextPageToken(), err
	}
	listVerdicts := func(ctx context.Context, svc string, size int32, tok string) ([]string, []string, string, error) {
		resp, err := e.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{Service: svc, PageSize: size, PageToken: tok})
		var ids, svcs []string
		for _, v := range resp.GetVerdicts() {
			ids, svcs = append(ids, v.GetRunId()), append(svcs, v.GetService())
		}
		return ids, svcs, resp.GetNextPageToken(), err
	}
	for _, l := range []struct {
		name string
		list func(ctx context.Context, svc string, size int32, tok string) ([]string, []string, string, error)
	}{{"ListRuns", listRuns}, {"ListVerdicts", listVerdicts}} {
		// Everything, as root, in one page: the reference order.
		allIDs, allSvcs, next, err := l.list(root, "", 1000, "")
		if err != nil || next != "" {
			t.Fatalf("%s as root: %v (next %q)", l.name, err, next)
		}
		for _, c := range []struct {
			token   string
			allowed func(string) bool
			sparse  bool // its services are too rare for full pages
		}{
			{"tok-root", func(string) bool { return true }, false},
			{"tok-read", func(s string) bool { return strings.HasPrefix(s, "checkout-") }, false},
			{"tok-multi", func(s string) bool { return strings.HasPrefix(s, "checkout-") || s == "search" }, false},
			{"tok-web", func(s string) bool { return s == "checkout-web" }, false},
			{"tok-rare", func(s string) bool { return s == "search" }, true},
		} {
			var want []string
			for i, id := range allIDs {
				if c.allowed(allSvcs[i]) {
					want = append(want, id)
				}
			}
			for _, size := range []int32{1, 3, 7, 50} {
				var got []string
				tok, pages := "", 0
				for {
					ids, svcs, next, err := l.list(withToken(ctx, c.token), "", size, tok)
					if err != nil {
						t.Fatalf("%s as %s, page %d of %d: %v", l.name, c.token, pages, size, err)
					}
					for _, s := range svcs {
						if !c.allowed(s) {
							t.Errorf("%s as %s: listed service %s", l.name, c.token, s)
						}
					}
					if len(ids) > int(size) || (!c.sparse && next != "" && len(ids) != int(size)) {
						t.Errorf("%s as %s, size %d: page %d has %d items (next %q)", l.name, c.token, size, pages, len(ids), next)
					}
					got = append(got, ids...)
					pages++
					if tok = next; tok == "" || pages > 100 {
						break
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s as %s, pages of %d: got %d items %v, want %d %v", l.name, c.token, size, len(got), got, len(want), want)
				}
			}
		}
		// An explicit filter: in scope, it lists that service; outside,
		// PERMISSION_DENIED.
		ids, svcs, _, err := l.list(withToken(ctx, "tok-multi"), "search", 50, "")
		if err != nil || len(ids) != 1 || svcs[0] != "search" {
			t.Errorf("%s as tok-multi, service search: %v %v", l.name, svcs, err)
		}
		_, _, _, err = l.list(withToken(ctx, "tok-multi"), "payments-api", 50, "")
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "token checkout-or-search is not allowed service payments-api") {
			t.Errorf("%s as tok-multi, service payments-api: %v, want PERMISSION_DENIED", l.name, err)
		}
	}
}

// lockedBuffer is a bytes.Buffer for concurrent log writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// auditLines returns the audit records logged so far.
func (b *lockedBuffer) auditLines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.b.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["component"] == "audit" {
			out = append(out, rec)
		}
	}
	return out
}

// TestAuditLog: every change of state (config put, run create, complete,
// abort) logs one audit line with who, what and the outcome, including the
// calls the guard refuses; reads log none.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	for _, open := range []bool{false, true} {
		t.Run(map[bool]string{false: "tokens", true: "open"}[open], func(t *testing.T) {
			t.Parallel()
			var logs lockedBuffer
			e := newEnv(t, func(o *Options) {
				o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
				if !open {
					o.Auth = authPolicy(t, "")
				}
			})
			ctx := ctxT(t)
			root, ingest, operate := withToken(ctx, "tok-root"), withToken(ctx, "tok-ingest"), withToken(ctx, "tok-operate")
			who := func(name string) string {
				if open {
					return "anonymous"
				}
				return name
			}
			put, err := e.c.PutConfig(root, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("shared")}})
			if err != nil {
				t.Fatal(err)
			}
			create := func(id string) string {
				resp, err := e.c.CreateRun(ingest, &canaryv1.CreateRunRequest{RequestId: id, Service: inScope, Stage: "wave-1",
					Config: &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "shared"}}})
				if err != nil {
					t.Fatal(err)
				}
				return resp.GetRun().GetId()
			}
			r1, r2 := create("a"), create("b")
			if _, err := e.c.CompleteRun(operate, &canaryv1.CompleteRunRequest{RunId: r1}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.c.AbortRun(operate, &canaryv1.AbortRunRequest{RunId: r2}); err != nil {
				t.Fatal(err)
			}
			e.getRun(root, r1) // a read: not audited
			_, errDenied := e.c.AbortRun(ingest, &canaryv1.AbortRunRequest{RunId: r1})
			_, errAnon := e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{RequestId: "c", Service: outScope, Stage: "wave-2",
				Config: &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "shared"}}})
			wantDenied, wantAnon := "PermissionDenied", "Unauthenticated"
			if open {
				wantDenied = "FailedPrecondition" // aborting a completed run
				wantAnon = "OK"
				if errDenied == nil || errAnon != nil {
					t.Fatalf("open: abort of a completed run %v, create %v", errDenied, errAnon)
				}
			}
			cfg := fmt.Sprintf("shared@%d", put.GetConfig().GetVersion())
			want := []map[string]any{
				{"who": who("root"), "rpc": "PutConfig", "config": cfg, "code": "OK"},
				{"who": who("ingest"), "rpc": "CreateRun", "run": r1, "config": cfg, "service": inScope, "stage": "wave-1", "code": "OK"},
				{"who": who("ingest"), "rpc": "CreateRun", "run": r2, "service": inScope, "code": "OK"},
				{"who": who("operate"), "rpc": "CompleteRun", "run": r1, "service": inScope, "stage": "wave-1", "code": "OK"},
				{"who": who("operate"), "rpc": "AbortRun", "run": r2, "service": inScope, "code": "OK"},
				{"who": who("ingest"), "rpc": "AbortRun", "run": r1, "code": wantDenied},
				{"who": "anonymous", "rpc": "CreateRun", "service": outScope, "stage": "wave-2", "code": wantAnon},
			}
			got := logs.auditLines(t)
			if len(got) != len(want) {
				t.Fatalf("%d audit lines, want %d: %v", len(got), len(want), got)
			}
			for i, w := range want {
				via := "token"
				if w["who"] == "anonymous" {
					via = "anonymous"
				}
				w["via"], w["msg"], w["level"] = via, "audit", "INFO"
				for k, v := range w {
					if got[i][k] != v {
						t.Errorf("audit line %d: %s = %v, want %v (line %v)", i, k, got[i][k], v, got[i])
					}
				}
				if _, ok := got[i]["time"]; !ok {
					t.Errorf("audit line %d has no time", i)
				}
			}
		})
	}
}

// TestAuthBadRequests: with a scoped token, a request without a run id
// still answers INVALID_ARGUMENT naming the field, and an unknown run
// NOT_FOUND, as without auth.
func TestAuthBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.Auth = authPolicy(t, "") })
	ctx := ctxT(t)
	read, ingest := withToken(ctx, "tok-read"), withToken(ctx, "tok-ingest")
	_, err := e.c.GetRun(read, &canaryv1.GetRunRequest{})
	wantCode(t, err, codes.InvalidArgument, "run_id")
	_, err = e.c.Ingest(ingest, &canaryv1.IngestRequest{Batch: &canaryv1.Batch{BatchId: "b"}})
	wantCode(t, err, codes.InvalidArgument, "batch.run_id")
	_, err = e.c.Judge(read, &canaryv1.JudgeRequest{RunId: "no-such-run"})
	wantCode(t, err, codes.NotFound, "")
	_, err = e.c.CompleteRun(read, &canaryv1.CompleteRunRequest{RunId: "no-such-run"})
	wantCode(t, err, codes.PermissionDenied, "") // the role is checked first
}
