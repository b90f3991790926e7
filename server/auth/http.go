package auth

import (
	"context"
	"log/slog"
	"net/http"
	"path"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// AlertmanagerWebhook is the name the Alertmanager webhook (POST
// /v1/alertmanager on the HTTP port) has in the rules and the audit log:
// it needs what ReportAlarm needs.
const AlertmanagerWebhook = "/canary.v1.CanaryService/AlertmanagerWebhook"

// HTTP authenticates and authorizes an HTTP request for method (a full
// gRPC method name, or AlertmanagerWebhook) as the gRPC interceptors do a
// call: by its bearer token (the Authorization header, as Alertmanager's
// http_config authorization sends it). Client certificates identify gRPC
// callers only. It returns the context the handler runs with (the caller
// in it, see CallerFrom), or the status error to answer with
// (HTTPStatus maps it). A method whose rule is service-scoped is checked
// by the handler.
func (g *Guard) HTTP(r *http.Request, method string) (context.Context, error) {
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); h != "" {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", h))
	}
	rl, public := ruleOf(method)
	if public {
		return ctx, nil
	}
	var c *Caller
	var err error
	if g.Open() {
		c = anonymous()
	} else if g.policy == nil {
		err = status.Error(codes.Unauthenticated, "the HTTP port authenticates bearer tokens only: start canaryd with --auth-tokens")
	} else if r.Header.Get("Authorization") == "" {
		err = status.Error(codes.Unauthenticated, `missing bearer token: send the header "Authorization: Bearer TOKEN"`)
	} else {
		c, err = g.authenticate(ctx)
	}
	if err == nil && !c.Has(rl.role) {
		err = status.Errorf(codes.PermissionDenied, "%s lacks role %s (it has %s)", c.describe(), rl.role, c.grant.roles)
	}
	if err != nil {
		if rl.audit {
			g.log(ctx, method, c, nil, nil, "", err)
		}
		return nil, err
	}
	return WithCaller(ctx, c), nil
}

// Audit writes the audit line of a call authorized by HTTP, with its
// outcome (nil or a status error) and what it did (attrs).
func (g *Guard) Audit(ctx context.Context, method string, err error, attrs ...slog.Attr) {
	who, via := "anonymous", ViaNone
	if c := CallerFrom(ctx); c != nil {
		who, via = c.Name, c.Via
	}
	all := append([]slog.Attr{slog.String("who", who), slog.String("via", string(via)), slog.String("rpc", path.Base(method))}, attrs...)
	all = append(all, slog.String("code", status.Code(err).String()))
	if err != nil {
		all = append(all, slog.String("error", status.Convert(err).Message()))
	}
	g.audit.LogAttrs(ctx, slog.LevelInfo, "audit", all...)
}

// HTTPStatus maps a status error of HTTP (or a handler) to an HTTP status
// code.
func HTTPStatus(err error) int {
	switch status.Code(err) {
	case codes.OK:
		return http.StatusOK
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
