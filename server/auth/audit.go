package auth

import (
	"context"
	"fmt"
	"log/slog"
	"path"

	"google.golang.org/grpc/status"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// log writes the audit line of one call that changes state (PutConfig,
// CreateRun, CompleteRun, AbortRun), whatever its outcome, including calls
// refused by the guard: who (the caller's name and how it was identified,
// "anonymous" when it was not), what (the method, the run id or config
// name@version, the service and stage as far as they are known), and the
// outcome's code. The time is the log record's.
//
//	level=INFO msg=audit component=audit who=checkout-pipeline via=token rpc=CreateRun run=8f3c… service=checkout-api stage=wave-1 code=OK
func (g *Guard) log(ctx context.Context, method string, c *Caller, req, resp any, svc string, err error) {
	who, via := "anonymous", ViaNone
	if c != nil {
		who, via = c.Name, c.Via
	}
	attrs := []slog.Attr{
		slog.String("who", who),
		slog.String("via", string(via)),
		slog.String("rpc", path.Base(method)),
	}
	var run, config, stage string
	switch q := req.(type) {
	case *canaryv1.PutConfigRequest:
		config = q.GetName()
		if config == "" {
			config = q.GetConfig().GetName()
		}
		if v := asResp[*canaryv1.PutConfigResponse](resp).GetConfig(); v != nil {
			config = fmt.Sprintf("%s@%d", v.GetName(), v.GetVersion())
		}
	case *canaryv1.CreateRunRequest:
		svc, stage = q.GetService(), q.GetStage()
		config = q.GetConfigRef().GetName()
		if rr := asResp[*canaryv1.CreateRunResponse](resp).GetRun(); rr != nil {
			run, config = rr.GetId(), configName(rr)
		}
	case *canaryv1.CompleteRunRequest:
		run = q.GetRunId()
		if rr := asResp[*canaryv1.CompleteRunResponse](resp).GetRun(); rr != nil {
			svc, stage, config = rr.GetService(), rr.GetStage(), configName(rr)
		}
	case *canaryv1.ReportAlarmRequest:
		config = "alarm " + q.GetAlarm().GetName() + " " + q.GetAlarm().GetState().String()
		attrs = append(attrs, slog.Int("runs", len(asResp[*canaryv1.ReportAlarmResponse](resp).GetRunIds())))
	case *canaryv1.CheckDeployRequest:
		svc, stage = q.GetService(), q.GetStage()
		if r := asResp[*canaryv1.CheckDeployResponse](resp); r != nil {
			attrs = append(attrs, slog.Bool("allowed", r.GetAllowed()))
		}
		if q.GetOverrideReason() != "" {
			attrs = append(attrs, slog.String("override", q.GetOverrideReason()))
		}
	case *canaryv1.PutDeployPolicyRequest:
		svc = q.GetPolicy().GetService()
		if p := asResp[*canaryv1.PutDeployPolicyResponse](resp).GetPolicy(); p != nil {
			svc = p.GetPolicy().GetService()
		}
		config = "deploy policy"
	case *canaryv1.AbortRunRequest:
		run = q.GetRunId()
		if rr := asResp[*canaryv1.AbortRunResponse](resp).GetRun(); rr != nil {
			svc, stage, config = rr.GetService(), rr.GetStage(), configName(rr)
		}
	}
	for _, a := range []struct{ k, v string }{{"run", run}, {"config", config}, {"service", svc}, {"stage", stage}} {
		if a.v != "" {
			attrs = append(attrs, slog.String(a.k, a.v))
		}
	}
	attrs = append(attrs, slog.String("code", status.Code(err).String()))
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	g.audit.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
}

// configName returns a run's config as name@version, or its name for an
// inline config.
func configName(r *canaryv1.Run) string {
	if r.GetConfigVersion() == 0 {
		return r.GetConfigName()
	}
	return fmt.Sprintf("%s@%d", r.GetConfigName(), r.GetConfigVersion())
}

// asResp returns resp as a T, or T's zero value (whose getters return
// zero values) when the call failed.
func asResp[T any](resp any) T {
	r, _ := resp.(T)
	return r
}
