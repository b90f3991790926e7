package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// The report pages (package report) on the daemon's HTTP port: the
// history at / and a run's report at /runs/{id}. They read the service
// in process, each page's calls made as a gRPC call would be, through the
// same interceptors (metrics and panic recovery, the auth guard, the
// mapping of errors to statuses): the caller is identified by the HTTP
// request's Authorization header, "Bearer TOKEN" as for gRPC, or "Basic"
// credentials whose password is the token (the user name is ignored), so
// that a browser asks for the token once and sends it with every page and
// the history's polling. Tokens are never taken from the URL, where they
// would end up in logs and browser histories. A page needs the role read,
// and shows only the services in the caller's scope: a report of another
// service is 403, the history lists the caller's services only. With mTLS
// only (no tokens file), the HTTP port, which asks for no client
// certificate, identifies no one: the pages answer 401.

// Pages returns the handler of the report pages, for a mux on the HTTP
// port: mount it at "GET /{$}" and "GET /runs/{id}" (with opts.BasePath
// "", the default), or under opts.BasePath. opts.Source is set to the
// service; opts.Now defaults to the service's clock.
func (s *Service) Pages(opts report.HandlerOptions) (http.Handler, error) {
	opts.Source = pagesSource{s}
	if opts.Now == nil {
		opts.Now = s.now
	}
	if opts.Logger == nil {
		opts.Logger = s.log
	}
	h, err := report.NewHandler(opts)
	if err != nil {
		return nil, fmt.Errorf("report pages: %w", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&challenge{ResponseWriter: w, open: s.guard.Open()}, r.WithContext(httpCaller(r)))
	}), nil
}

// httpCaller returns the context of an HTTP request as the auth guard
// reads a gRPC call's: its Authorization header as the metadata
// "authorization" (Basic credentials turned into their bearer token), and
// its TLS connection as the peer.
func httpCaller(r *http.Request) context.Context {
	ctx := r.Context()
	md := metadata.MD{}
	if a := r.Header.Get("Authorization"); a != "" {
		if tok, ok := basicToken(a); ok {
			a = "Bearer " + tok
		}
		md.Set("authorization", a)
	}
	if r.TLS != nil {
		addr, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: addr, AuthInfo: credentials.TLSInfo{State: *r.TLS}})
	}
	return metadata.NewIncomingContext(ctx, md)
}

// basicToken returns the password of Basic credentials.
func basicToken(a string) (string, bool) {
	const scheme = "basic "
	if len(a) <= len(scheme) || !strings.EqualFold(a[:len(scheme)], scheme) {
		return "", false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a[len(scheme):]))
	if err != nil {
		return "", false
	}
	_, pw, ok := strings.Cut(string(b), ":")
	return pw, ok && pw != ""
}

// challenge adds to a 401 the WWW-Authenticate header that makes a
// browser ask for credentials (the token as the password).
type challenge struct {
	http.ResponseWriter
	open bool
}

func (c *challenge) WriteHeader(code int) {
	if code == http.StatusUnauthorized && !c.open {
		c.Header().Add("WWW-Authenticate", `Basic realm="canaryd", charset="UTF-8"`)
		c.Header().Add("WWW-Authenticate", `Bearer realm="canaryd"`)
	}
	c.ResponseWriter.WriteHeader(code)
}

// pagesSource is the service as report.Source: each call goes through the
// interceptors of a gRPC call.
type pagesSource struct{ s *Service }

func (p pagesSource) GetRunReport(ctx context.Context, req *canaryv1.GetRunReportRequest) (*canaryv1.GetRunReportResponse, error) {
	return call(ctx, p.s, canaryv1.CanaryService_GetRunReport_FullMethodName, req, p.s.GetRunReport)
}

func (p pagesSource) ListRuns(ctx context.Context, req *canaryv1.ListRunsRequest) (*canaryv1.ListRunsResponse, error) {
	return call(ctx, p.s, canaryv1.CanaryService_ListRuns_FullMethodName, req, p.s.ListRuns)
}

func (p pagesSource) ListVerdicts(ctx context.Context, req *canaryv1.ListVerdictsRequest) (*canaryv1.ListVerdictsResponse, error) {
	return call(ctx, p.s, canaryv1.CanaryService_ListVerdicts_FullMethodName, req, p.s.ListVerdicts)
}

// call calls a method of the service in process through the interceptors
// of ServerOptions: metrics and panic recovery, the auth guard, the
// mapping of errors to statuses.
func call[Req, Resp any](ctx context.Context, s *Service, method string, req Req, h func(context.Context, Req) (Resp, error)) (Resp, error) {
	info := &grpc.UnaryServerInfo{Server: s, FullMethod: method}
	handler := func(ctx context.Context, req any) (any, error) {
		return s.errorInterceptor(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return h(ctx, req.(Req))
		})
	}
	var zero Resp
	resp, err := s.unaryInterceptor(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		return s.guard.Unary(ctx, req, info, handler)
	})
	if err != nil {
		return zero, err
	}
	return resp.(Resp), nil
}
