package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Source is what the pages read: three RPCs of the service, as its server
// implementation (canaryv1.CanaryServiceServer) has them.
type Source interface {
	GetRunReport(context.Context, *canaryv1.GetRunReportRequest) (*canaryv1.GetRunReportResponse, error)
	ListRuns(context.Context, *canaryv1.ListRunsRequest) (*canaryv1.ListRunsResponse, error)
	ListVerdicts(context.Context, *canaryv1.ListVerdictsRequest) (*canaryv1.ListVerdictsResponse, error)
}

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	// Source answers the pages' queries. Required.
	Source Source
	// Renderer renders them; nil makes one.
	Renderer *Renderer
	// Logger logs the requests that fail; nil discards.
	Logger *slog.Logger
	// Now is the clock (the history's since filter, the pages' footers);
	// nil means time.Now.
	Now func() time.Time
	// Refresh is how often a running run's report reloads itself and the
	// history page polls for its running runs; 0 means 10 seconds,
	// negative never.
	Refresh time.Duration
	// PageSize is the number of verdicts per history page; 0 means 50.
	PageSize int32
	// BasePath is where the handler is mounted ("" for the root).
	BasePath string
}

func (o *HandlerOptions) validate() error {
	if o.Source == nil {
		return errors.New("report handler: Source is required")
	}
	if o.BasePath != "" && (!strings.HasPrefix(o.BasePath, "/") || strings.HasSuffix(o.BasePath, "/")) {
		return fmt.Errorf("report handler: BasePath %q must start with / and not end with one", o.BasePath)
	}
	return nil
}

// Handler serves the history page at BasePath/ and the report of a run at
// BasePath/runs/{id} (HTML; JSON, the RunReport in protojson, with
// ?format=json). Every page is self-contained, and its Content Security
// Policy forbids loading anything: only the history's inline polling
// script may run, and fetch only its own URL.
type Handler struct {
	o   HandlerOptions
	mux *http.ServeMux
	log *slog.Logger
}

// NewHandler returns the handler of the pages.
func NewHandler(o HandlerOptions) (*Handler, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Renderer == nil {
		r, err := NewRenderer()
		if err != nil {
			return nil, err
		}
		o.Renderer = r
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Refresh == 0 {
		o.Refresh = 10 * time.Second
	}
	if o.PageSize == 0 {
		o.PageSize = 50
	}
	h := &Handler{o: o, mux: http.NewServeMux(), log: o.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.mux.HandleFunc("GET "+o.BasePath+"/{$}", h.history)
	h.mux.HandleFunc("GET "+o.BasePath+"/runs/{id}", h.report)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// Content Security Policies: nothing is loaded; the report runs no script,
// the history only its inline one, which fetches its own URL.
const (
	cspReport  = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	cspHistory = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

func (h *Handler) report(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	resp, err := h.o.Source.GetRunReport(r.Context(), &canaryv1.GetRunReportRequest{RunId: id})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	rep := resp.GetReport()
	if r.URL.Query().Get("format") == "json" {
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(rep)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b)
		return
	}
	opts := ReportOptions{Generated: h.o.Now(), HistoryURL: h.o.BasePath + "/"}
	if rep.GetRun().GetState() == canaryv1.RunState_RUN_STATE_RUNNING && h.o.Refresh > 0 {
		opts.Refresh = h.o.Refresh
	}
	h.page(w, r, cspReport, http.StatusOK, func(b *strings.Builder) error { return h.o.Renderer.Report(b, rep, opts) })
}

func (h *Handler) history(w http.ResponseWriter, r *http.Request) {
	now := h.o.Now()
	p := &HistoryPage{Generated: now, BasePath: h.o.BasePath}
	if h.o.Refresh > 0 {
		p.Refresh = h.o.Refresh
	}
	q, err := ParseHistoryQuery(r.URL.Query(), now)
	p.Query = q
	code := http.StatusOK
	if err != nil {
		p.Error, code = "Bad filter: "+err.Error(), http.StatusBadRequest
	} else {
		runs, err := h.o.Source.ListRuns(r.Context(), q.RunsRequest(100))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		for _, run := range runs.GetRuns() {
			if q.KeepRun(run) {
				p.Running = append(p.Running, run)
			}
		}
		vs, err := h.o.Source.ListVerdicts(r.Context(), q.VerdictsRequest(h.o.PageSize))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		p.Verdicts, p.NextPageToken = vs.GetVerdicts(), vs.GetNextPageToken()
	}
	h.page(w, r, cspHistory, code, func(b *strings.Builder) error { return h.o.Renderer.History(b, p) })
}

// page renders a page whole before writing it, so that a failure is an
// error page rather than half a page.
func (h *Handler) page(w http.ResponseWriter, r *http.Request, csp string, code int, render func(*strings.Builder) error) {
	var b strings.Builder
	if err := render(&b); err != nil {
		h.fail(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write([]byte(b.String()))
	}
}

// fail answers an error: the HTTP status of its gRPC code, with the
// status message for the caller's errors and a generic one otherwise.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := http.StatusInternalServerError, "internal error"
	switch st, _ := status.FromError(err); st.Code() {
	case codes.NotFound:
		code, msg = http.StatusNotFound, st.Message()
	case codes.InvalidArgument:
		code, msg = http.StatusBadRequest, st.Message()
	case codes.Unauthenticated:
		code, msg = http.StatusUnauthorized, st.Message()
	case codes.PermissionDenied:
		code, msg = http.StatusForbidden, st.Message()
	case codes.Unavailable:
		code, msg = http.StatusServiceUnavailable, st.Message()
	default:
		h.log.Error("report page failed", "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}
