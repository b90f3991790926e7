// Package flagger serves canaryd behind Flagger's webhooks: POST
// /flagger/{hook} with the payload Flagger sends (CanaryWebhookPayload of
// fluxcd/flagger pkg/apis/flagger/v1beta1: name, namespace, phase, checksum,
// metadata) answers 200 to let Flagger proceed and 409 to halt it, as
// Flagger reads a webhook (pkg/controller/webhook.go callWebhook: a status
// above 202 is a failure).
//
// Every hook creates or finds the run of the canary revision, keyed by the
// request id "flagger/<namespace>/<name>/<checksum>" (Flagger's checksum
// identifies a revision of the canary's spec and tracked configs), so that
// the hooks, their retries and every replica find the same run; the
// run finishes itself on its first decisive verdict (AutoFinish):
//
//	confirm-rollout, pre-rollout    create (or find) the run: 200
//	rollout, confirm-traffic-increase  judge: 409 on ROLLBACK (a failed check), else 200
//	confirm-promotion               judge: 200 only on PROMOTE, else 409 (promotion waits)
//	rollback                        judge: 200 on ROLLBACK (Flagger rolls back), else 409
//	post-rollout                    complete the run (phase Succeeded) or abort it (Failed): 200
//
// The calls go through the in-memory gRPC connection of the HTTP gateway,
// so they are authenticated, authorized and audited as gRPC calls: with
// the Authorization header when the caller sends one, else with the token
// in metadata.token (Flagger cannot send headers).
package flagger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Payload is the body of a Flagger webhook call: CanaryWebhookPayload of
// fluxcd/flagger pkg/apis/flagger/v1beta1/canary.go.
type Payload struct {
	// Name of the canary.
	Name string `json:"name"`
	// Namespace of the canary.
	Namespace string `json:"namespace"`
	// Phase of the canary analysis (Progressing, Succeeded, Failed...).
	Phase string `json:"phase"`
	// Checksum identifies the revision of the canary (its tracked configs
	// and last applied spec).
	Checksum string `json:"checksum"`
	// Metadata is the webhook's metadata of the Canary resource.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Hooks are the webhook types served.
var Hooks = []string{"confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion", "rollback", "post-rollout"}

// maxBody bounds a payload.
const maxBody = 64 << 10

// Handler serves POST /flagger/{hook}. Create it with New.
type Handler struct {
	c   canaryv1.CanaryServiceClient
	log *slog.Logger
}

// New returns a Handler that calls the CanaryService over conn.
func New(conn grpc.ClientConnInterface, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{c: canaryv1.NewCanaryServiceClient(conn), log: log}
}

// answer is the JSON body of a webhook's answer (Flagger shows the body
// of a refusal in its events).
type answer struct {
	Hook     string `json:"hook"`
	RunID    string `json:"run_id,omitempty"`
	Decision string `json:"decision,omitempty"`
	Final    bool   `json:"final,omitempty"`
	Proceed  bool   `json:"proceed"`
	Reason   string `json:"reason,omitempty"`
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hook := r.PathValue("hook")
	if r.Method != http.MethodPost {
		writeError(w, status.Errorf(codes.InvalidArgument, "flagger webhooks are POST requests"), http.StatusMethodNotAllowed)
		return
	}
	known := false
	for _, k := range Hooks {
		known = known || k == hook
	}
	if !known {
		writeError(w, status.Errorf(codes.NotFound, "unknown flagger hook %q (want one of %s)", hook, strings.Join(Hooks, ", ")), 0)
		return
	}
	var p Payload
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(&p); err != nil {
		writeError(w, status.Errorf(codes.InvalidArgument, "payload: %v", err), 0)
		return
	}
	req, err := createRequest(p)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	ctx := r.Context()
	if a := r.Header.Get("Authorization"); a != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", a)
	} else if tok := p.Metadata["token"]; tok != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	ans, err := h.hook(ctx, hook, p, req)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	code := http.StatusOK
	if !ans.Proceed {
		code = http.StatusConflict
	}
	h.log.Debug("flagger hook", "hook", hook, "canary", p.Namespace+"/"+p.Name, "run", ans.RunID, "decision", ans.Decision, "proceed", ans.Proceed)
	writeJSON(w, code, ans)
}

// hook runs one webhook call.
func (h *Handler) hook(ctx context.Context, hook string, p Payload, req *canaryv1.CreateRunRequest) (answer, error) {
	ans := answer{Hook: hook}
	req.Judge = hook != "confirm-rollout" && hook != "pre-rollout" && hook != "post-rollout"
	cr, err := h.c.CreateRun(ctx, req)
	if err != nil {
		return ans, err
	}
	ans.RunID = cr.GetRun().GetId()
	if hook == "post-rollout" {
		return h.finish(ctx, ans, p, cr.GetRun())
	}
	if !req.Judge {
		ans.Proceed = true
		return ans, nil
	}
	v := cr.GetVerdict()
	d := v.GetDecision()
	ans.Decision, ans.Final, ans.Reason = decisionWord(d), v.GetFinal(), v.GetReason()
	switch hook {
	case "rollout", "confirm-traffic-increase":
		ans.Proceed = d != canaryv1.Decision_DECISION_ROLLBACK
	case "confirm-promotion":
		ans.Proceed = d == canaryv1.Decision_DECISION_PROMOTE
	case "rollback":
		ans.Proceed = d == canaryv1.Decision_DECISION_ROLLBACK
	}
	return ans, nil
}

// finish ends the run when Flagger's analysis has ended: completed when
// the canary was promoted (phase Succeeded), aborted otherwise. A run that
// already finished (by itself, or by an earlier call) stays as it is.
func (h *Handler) finish(ctx context.Context, ans answer, p Payload, run *canaryv1.Run) (answer, error) {
	reason := fmt.Sprintf("flagger post-rollout: canary %s/%s %s", p.Namespace, p.Name, p.Phase)
	var err error
	if run.GetState() == canaryv1.RunState_RUN_STATE_RUNNING {
		if p.Phase == "Succeeded" {
			var r *canaryv1.CompleteRunResponse
			if r, err = h.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: run.GetId(), Reason: reason}); err == nil {
				run = r.GetRun()
			}
		} else {
			var r *canaryv1.AbortRunResponse
			if r, err = h.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: run.GetId(), Reason: reason}); err == nil {
				run = r.GetRun()
			}
		}
	}
	if status.Code(err) == codes.FailedPrecondition { // finished the other way meanwhile
		err = nil
		g, gerr := h.c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: run.GetId()})
		if gerr != nil {
			return ans, gerr
		}
		run = g.GetRun()
	}
	if err != nil {
		return ans, err
	}
	v := run.GetVerdict()
	ans.Decision, ans.Final, ans.Reason, ans.Proceed = decisionWord(v.GetDecision()), v.GetFinal(), v.GetReason(), true
	return ans, nil
}

// createRequest returns the CreateRun request of a canary revision.
// Metadata keys: config (required; a stored config, "name" or
// "name@version"), service (default: the canary's name), stage (default
// "<namespace>/<name>"), baseline_labels and canary_labels ("k=v,k=v";
// default app=<name>-primary and app=<name>, Flagger's primary and canary
// pods), bake_time, max_duration (Go durations), timeout_decision (HOLD or
// ROLLBACK), and token (not part of the request).
func createRequest(p Payload) (*canaryv1.CreateRunRequest, error) {
	var bad []string
	for _, f := range []struct{ name, v string }{{"name", p.Name}, {"namespace", p.Namespace}, {"checksum", p.Checksum}} {
		if f.v == "" {
			bad = append(bad, f.name+" is required")
		}
	}
	md := p.Metadata
	cfg := md["config"]
	if cfg == "" {
		bad = append(bad, "metadata.config is required: the name of a config stored in canaryd")
	}
	ref := &canaryv1.ConfigRef{Name: cfg}
	if name, ver, ok := strings.Cut(cfg, "@"); ok {
		var v uint32
		if _, err := fmt.Sscanf(ver, "%d", &v); err != nil || v == 0 {
			bad = append(bad, fmt.Sprintf("metadata.config %q: the version after @ must be a positive number", cfg))
		}
		ref = &canaryv1.ConfigRef{Name: name, Version: v}
	}
	labels := func(key, def string) map[string]string {
		v := md[key]
		if v == "" {
			v = def
		}
		out := map[string]string{}
		for kv := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				bad = append(bad, fmt.Sprintf("metadata.%s %q: want k=v,k=v", key, v))
				return nil
			}
			out[k] = val
		}
		return out
	}
	dur := func(key string) *durationpb.Duration {
		v := md[key]
		if v == "" {
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad = append(bad, fmt.Sprintf("metadata.%s %q: want a duration such as 30m", key, v))
			return nil
		}
		return durationpb.New(d)
	}
	req := &canaryv1.CreateRunRequest{
		RequestId:      "flagger/" + p.Namespace + "/" + p.Name + "/" + p.Checksum,
		Service:        firstOf(md["service"], p.Name),
		Stage:          firstOf(md["stage"], p.Namespace+"/"+p.Name),
		Config:         &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: ref},
		BaselineLabels: labels("baseline_labels", "app="+p.Name+"-primary"),
		CanaryLabels:   labels("canary_labels", "app="+p.Name),
		BakeTime:       dur("bake_time"),
		AutoFinish:     &canaryv1.AutoFinish{OnDecision: true, MaxDuration: dur("max_duration")},
	}
	switch td := strings.ToUpper(md["timeout_decision"]); td {
	case "", "HOLD":
	case "ROLLBACK":
		req.AutoFinish.TimeoutDecision = canaryv1.Decision_DECISION_ROLLBACK
	default:
		bad = append(bad, fmt.Sprintf("metadata.timeout_decision %q: want HOLD or ROLLBACK", td))
	}
	if len(bad) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "flagger payload: %s", strings.Join(bad, "; "))
	}
	return req, nil
}

func firstOf(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// decisionWord returns PROMOTE, HOLD or ROLLBACK.
func decisionWord(d canaryv1.Decision) string {
	return strings.TrimPrefix(d.String(), "DECISION_")
}

// writeError answers err's status as the HTTP API does: the HTTP status
// of its code (or code, if set) and a google.rpc.Status body.
func writeError(w http.ResponseWriter, err error, code int) {
	st, ok := status.FromError(err)
	if !ok {
		st = status.New(codes.Internal, "internal error")
	}
	if errors.Is(err, context.Canceled) {
		st = status.New(codes.Canceled, "request cancelled")
	}
	if code == 0 {
		code = runtime.HTTPStatusFromCode(st.Code())
	}
	b, merr := protojson.Marshal(st.Proto())
	if merr != nil {
		b = []byte(`{"code":13,"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		_, _ = io.WriteString(w, "\n")
	}
}
