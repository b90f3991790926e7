package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// httpAPI calls canaryd's HTTP/JSON API as any HTTP client would.
type httpAPI struct {
	t     *testing.T
	base  string
	token string
}

// do sends method path with body (a message, raw JSON bytes or nil) and
// returns the status and body of the answer.
func (a httpAPI) do(ctx context.Context, method, path string, body any) (int, []byte) {
	a.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case proto.Message:
		j, err := protojson.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	default:
		a.t.Fatalf("body %T", body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// call is do that wants 200 and decodes the answer into out.
func (a httpAPI) call(ctx context.Context, method, path string, body any, out proto.Message) {
	a.t.Helper()
	code, b := a.do(ctx, method, path, body)
	if code != http.StatusOK {
		a.t.Fatalf("%s %s: HTTP %d: %s", method, path, code, b)
	}
	if err := protojson.Unmarshal(b, out); err != nil {
		a.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
	}
}

// wantStatus checks that the answer is HTTP code with a google.rpc.Status
// body of grpcCode and, when field is set, a BadRequest violation naming it.
func wantStatus(t *testing.T, code int, body []byte, wantHTTP int, grpcCode codes.Code, field string) *status.Status {
	t.Helper()
	if code != wantHTTP {
		t.Fatalf("HTTP %d (%s), want %d", code, body, wantHTTP)
	}
	var st status.Status
	if err := protojson.Unmarshal(body, &st); err != nil {
		t.Fatalf("body %s is not a google.rpc.Status: %v", body, err)
	}
	if codes.Code(st.GetCode()) != grpcCode {
		t.Fatalf("status code %v (%s), want %v", codes.Code(st.GetCode()), st.GetMessage(), grpcCode)
	}
	if field == "" {
		return &st
	}
	for _, d := range st.GetDetails() {
		var br errdetails.BadRequest
		if d.UnmarshalTo(&br) != nil {
			continue
		}
		for _, v := range br.GetFieldViolations() {
			if v.GetField() == field {
				return &st
			}
		}
	}
	t.Fatalf("no field violation names %q: %s", field, body)
	return nil
}

// TestHTTPAPI calls every RPC through the HTTP/JSON API of a real daemon
// with tokens: authentication (401) and authorization (403) as for gRPC,
// a bad request (400 with field violations), not found (404), the ingest
// stream and the verdict stream as the gateway streams them (newline-
// delimited JSON of {"result": ...}), and answers equal to gRPC's.
func TestHTTPAPI(t *testing.T) {
	t.Parallel()
	tokens := writeFile(t, "tokens.yaml", `tokens:
  - name: root
    sha256: `+sha("tok-root")+`
    roles: [admin]
    services: ["*"]
  - name: checkout-pipeline
    sha256: `+sha("tok-pipe")+`
    roles: [ingest, read]
    services: ["checkout-*"]
  - name: ingest-only
    sha256: `+sha("tok-ingest")+`
    roles: [ingest]
    services: ["*"]
`)
	grpcAddr, httpAddr := startRun(t, Options{AuthTokens: tokens})
	ctx := ctxT(t)
	root := httpAPI{t: t, base: "http://" + httpAddr, token: "tok-root"}
	pipe := httpAPI{t: t, base: root.base, token: "tok-pipe"}
	anon := httpAPI{t: t, base: root.base}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gc := canaryv1.NewCanaryServiceClient(conn)
	gctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tok-root")

	// Authentication and authorization.
	code, body := anon.do(ctx, "GET", "/v1/runs", nil)
	wantStatus(t, code, body, http.StatusUnauthorized, codes.Unauthenticated, "")
	code, body = httpAPI{t: t, base: root.base, token: "nope"}.do(ctx, "GET", "/v1/configs", nil)
	wantStatus(t, code, body, http.StatusUnauthorized, codes.Unauthenticated, "")
	code, body = pipe.do(ctx, "POST", "/v1/configs", &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: exampleYAML}})
	if st := wantStatus(t, code, body, http.StatusForbidden, codes.PermissionDenied, ""); !strings.Contains(st.GetMessage(), "lacks role admin") {
		t.Errorf("403 message %q", st.GetMessage())
	}

	// Configs: a bad one is 400 naming the field; nothing is stored.
	bad := testConfig("checkout")
	bad.Metrics[1].Tolerance = ptr(-1.0)
	code, body = root.do(ctx, "POST", "/v1/configs", &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: bad}})
	wantStatus(t, code, body, http.StatusBadRequest, codes.InvalidArgument, "config.metrics[1].tolerance")
	code, body = root.do(ctx, "GET", "/v1/configs/checkout", nil)
	wantStatus(t, code, body, http.StatusNotFound, codes.NotFound, "")
	// A body that is not JSON of the message, or has an unknown field.
	code, body = root.do(ctx, "POST", "/v1/configs", []byte(`{"config": {"name": "x", "bogus": 1}}`))
	wantStatus(t, code, body, http.StatusBadRequest, codes.InvalidArgument, "")

	var put canaryv1.PutConfigResponse
	root.call(ctx, "POST", "/v1/configs", &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("checkout")}}, &put)
	if put.GetConfig().GetVersion() != 1 || !put.GetCreated() {
		t.Fatalf("PutConfig: %v", &put)
	}
	// snake_case names are accepted too, as protojson does.
	var put2 canaryv1.PutConfigResponse
	root.call(ctx, "POST", "/v1/configs", []byte(`{"yaml": "name: team/api\nmetrics:\n  - {name: errors, category: stability, type: rate}\n"}`), &put2)
	var gotCfg canaryv1.GetConfigResponse
	root.call(ctx, "GET", "/v1/configs/team/api?version=1", nil, &gotCfg) // a name with a slash
	if gotCfg.GetConfig().GetConfig().GetName() != "team/api" {
		t.Errorf("GetConfig team/api: %v", &gotCfg)
	}
	var cfgs canaryv1.ListConfigsResponse
	pipe.call(ctx, "GET", "/v1/configs?page_size=1", nil, &cfgs)
	if len(cfgs.GetConfigs()) != 1 || cfgs.GetNextPageToken() == "" {
		t.Errorf("ListConfigs page 1: %v", &cfgs)
	}
	pipe.call(ctx, "GET", "/v1/configs?pageSize=1&pageToken="+cfgs.GetNextPageToken(), nil, &cfgs)
	if len(cfgs.GetConfigs()) != 1 {
		t.Errorf("ListConfigs page 2: %v", &cfgs)
	}

	// Runs.
	newRun := func(id, service string) *canaryv1.CreateRunRequest {
		return &canaryv1.CreateRunRequest{
			RequestId: id, Service: service, Stage: "onebox",
			Config:       &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "checkout"}},
			CanaryLabels: map[string]string{"version": "v2"},
		}
	}
	code, body = pipe.do(ctx, "POST", "/v1/runs", newRun("r0", "payments-api"))
	wantStatus(t, code, body, http.StatusForbidden, codes.PermissionDenied, "")
	code, body = pipe.do(ctx, "POST", "/v1/runs", &canaryv1.CreateRunRequest{RequestId: "r0", Stage: "onebox"})
	wantStatus(t, code, body, http.StatusBadRequest, codes.InvalidArgument, "service")
	var created canaryv1.CreateRunResponse
	pipe.call(ctx, "POST", "/v1/runs", newRun("r1", "checkout-api"), &created)
	runID := created.GetRun().GetId()
	var again canaryv1.CreateRunResponse
	pipe.call(ctx, "POST", "/v1/runs", newRun("r1", "checkout-api"), &again)
	if again.GetRun().GetId() != runID {
		t.Errorf("CreateRun retry: run %s, want %s", again.GetRun().GetId(), runID)
	}
	// judge: true also needs the read role.
	ingestOnly := httpAPI{t: t, base: root.base, token: "tok-ingest"}
	withJudge := newRun("r1", "checkout-api")
	withJudge.Judge = true
	code, body = ingestOnly.do(ctx, "POST", "/v1/runs", withJudge)
	if st := wantStatus(t, code, body, http.StatusForbidden, codes.PermissionDenied, ""); !strings.Contains(st.GetMessage(), "lacks role read") {
		t.Errorf("judge without read: %q", st.GetMessage())
	}
	ingestOnly.call(ctx, "POST", "/v1/runs", newRun("r1", "checkout-api"), &again)
	var judgedCreate canaryv1.CreateRunResponse
	pipe.call(ctx, "POST", "/v1/runs", withJudge, &judgedCreate)
	if judgedCreate.GetRun().GetId() != runID || judgedCreate.GetVerdict().GetDecision() != canaryv1.Decision_DECISION_HOLD {
		t.Errorf("CreateRun with judge: run %s verdict %v", judgedCreate.GetRun().GetId(), judgedCreate.GetVerdict())
	}
	var got canaryv1.GetRunResponse
	pipe.call(ctx, "GET", "/v1/runs/"+runID, nil, &got)
	if got.GetRun().GetService() != "checkout-api" || got.GetRun().GetState() != canaryv1.RunState_RUN_STATE_RUNNING {
		t.Errorf("GetRun: %v", &got)
	}
	code, body = pipe.do(ctx, "GET", "/v1/runs/no-such-run", nil)
	wantStatus(t, code, body, http.StatusNotFound, codes.NotFound, "")
	var runs canaryv1.ListRunsResponse
	pipe.call(ctx, "GET", "/v1/runs?service=checkout-api&state=RUN_STATE_RUNNING", nil, &runs)
	if len(runs.GetRuns()) != 1 || runs.GetRuns()[0].GetId() != runID {
		t.Errorf("ListRuns: %v", &runs)
	}

	// Ingest: one batch, a retry (duplicate), a bad one (400 naming the
	// sample), then the stream.
	rng := rand.New(rand.NewPCG(1, 2))
	b0 := makeBatch(rng, runID, "b0", scenario{Latency: 1, Errors: 1, N: 400})
	var ing canaryv1.IngestResponse
	pipe.call(ctx, "POST", "/v1/runs/"+runID+"/batches", b0, &ing)
	if ing.GetAck().GetDuplicate() || ing.GetAck().GetSamples() == 0 {
		t.Errorf("Ingest: %v", &ing)
	}
	pipe.call(ctx, "POST", "/v1/runs/"+runID+"/batches", b0, &ing)
	if !ing.GetAck().GetDuplicate() {
		t.Errorf("Ingest retry: %v", &ing)
	}
	badB := makeBatch(rng, runID, "bad", scenario{Latency: 1, Errors: 1, N: 10})
	badB.Samples[0].Metric = "nope"
	code, body = pipe.do(ctx, "POST", "/v1/runs/"+runID+"/batches", badB)
	wantStatus(t, code, body, http.StatusBadRequest, codes.InvalidArgument, "batch.samples[0].metric")

	var stream bytes.Buffer
	for _, id := range seqIDs("s", 3) {
		j, err := protojson.Marshal(&canaryv1.IngestStreamRequest{Batch: makeBatch(rng, runID, id, scenario{Latency: 1, Errors: 1, N: 400})})
		if err != nil {
			t.Fatal(err)
		}
		stream.Write(j)
		stream.WriteByte('\n')
	}
	code, body = pipe.do(ctx, "POST", "/v1/batches:stream", stream.Bytes())
	if code != http.StatusOK {
		t.Fatalf("IngestStream: HTTP %d: %s", code, body)
	}
	acks := streamResults(t, body, func() proto.Message { return &canaryv1.IngestStreamResponse{} })
	if len(acks) != 3 || acks[2].(*canaryv1.IngestStreamResponse).GetBatchesAccepted() != 3 {
		t.Errorf("IngestStream acks: %s", body)
	}

	// Judge: the same verdict as gRPC's.
	var judged canaryv1.JudgeResponse
	pipe.call(ctx, "GET", "/v1/runs/"+runID+"/verdict", nil, &judged)
	gj, err := gc.Judge(gctx, &canaryv1.JudgeRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	if judged.GetVerdict().GetDecision() != gj.GetVerdict().GetDecision() || judged.GetVerdict().GetReason() != gj.GetVerdict().GetReason() {
		t.Errorf("Judge: HTTP %v, gRPC %v", judged.GetVerdict().GetDecision(), gj.GetVerdict().GetDecision())
	}

	// WatchVerdict streams the current verdict, then the final one when
	// the run completes, and ends.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	req, err := http.NewRequestWithContext(wctx, "GET", root.base+"/v1/runs/"+runID+"/verdict:watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok-pipe")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("WatchVerdict: HTTP %d", resp.StatusCode)
	}
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(nil, 16<<20)
	first := nextResult(t, lines, &canaryv1.WatchVerdictResponse{})
	if first.GetVerdict().GetFinal() {
		t.Fatalf("first watched verdict is final: %v", first)
	}

	code, body = pipe.do(ctx, "POST", "/v1/runs/"+runID+":complete", &canaryv1.CompleteRunRequest{Reason: "bake over"})
	wantStatus(t, code, body, http.StatusForbidden, codes.PermissionDenied, "")
	var done canaryv1.CompleteRunResponse
	root.call(ctx, "POST", "/v1/runs/"+runID+":complete", &canaryv1.CompleteRunRequest{Reason: "bake over"}, &done)
	if done.GetRun().GetState() != canaryv1.RunState_RUN_STATE_COMPLETED || done.GetRun().GetFinishReason() != "bake over" {
		t.Errorf("CompleteRun: %v", &done)
	}
	for {
		w := nextResult(t, lines, &canaryv1.WatchVerdictResponse{})
		if w.GetVerdict().GetFinal() {
			if w.GetVerdict().GetDecision() != done.GetRun().GetVerdict().GetDecision() {
				t.Errorf("watched final %v, completed %v", w.GetVerdict().GetDecision(), done.GetRun().GetVerdict().GetDecision())
			}
			break
		}
	}
	if lines.Scan() {
		t.Errorf("the watch goes on after the final verdict: %s", lines.Text())
	}
	code, body = pipe.do(ctx, "GET", "/v1/runs/no-such-run/verdict:watch", nil)
	if code != http.StatusNotFound {
		// grpc-gateway sends the status before the first message when
		// the stream fails at once.
		t.Errorf("watch of an unknown run: HTTP %d %s", code, body)
	}

	// AbortRun of another run; ingest into a finished run is 400
	// FAILED_PRECONDITION.
	var c2 canaryv1.CreateRunResponse
	pipe.call(ctx, "POST", "/v1/runs", newRun("r2", "checkout-api"), &c2)
	var aborted canaryv1.AbortRunResponse
	root.call(ctx, "POST", "/v1/runs/"+c2.GetRun().GetId()+":abort", []byte(`{"reason": "cancelled"}`), &aborted)
	if aborted.GetRun().GetState() != canaryv1.RunState_RUN_STATE_ABORTED {
		t.Errorf("AbortRun: %v", &aborted)
	}
	code, body = pipe.do(ctx, "POST", "/v1/runs/"+runID+"/batches", makeBatch(rng, runID, "late", scenario{Latency: 1, Errors: 1, N: 10}))
	wantStatus(t, code, body, http.StatusBadRequest, codes.FailedPrecondition, "")

	// The history and the report.
	var hist canaryv1.ListVerdictsResponse
	pipe.call(ctx, "GET", "/v1/verdicts?service=checkout-api&since="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), nil, &hist)
	if len(hist.GetVerdicts()) != 2 {
		t.Errorf("ListVerdicts: %d verdicts, want 2", len(hist.GetVerdicts()))
	}
	// The HTTP calls are counted by the service's metrics, as gRPC calls
	// (the method as a label value): GetRunReport is called only here.
	// (Its series exist at 0 from the start: one call makes it 1.)
	metricsHas := func(method string) bool {
		method = `grpc_server_handled_total{grpc_code="OK",grpc_method="` + method + `",grpc_service="canary.v1.CanaryService",grpc_type="unary"} 1`
		resp, err := http.Get(root.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(b), method)
	}
	if metricsHas("GetRunReport") {
		t.Fatal("/metrics counts GetRunReport before any call")
	}
	var rep canaryv1.GetRunReportResponse
	pipe.call(ctx, "GET", "/v1/runs/"+runID+"/report", nil, &rep)
	if !metricsHas("GetRunReport") {
		t.Error("/metrics does not count the HTTP call of GetRunReport")
	}
	if rep.GetReport().GetRun().GetId() != runID || !rep.GetReport().GetVerdict().GetFinal() {
		t.Errorf("GetRunReport: run %s final %v", rep.GetReport().GetRun().GetId(), rep.GetReport().GetVerdict().GetFinal())
	}

	// Alarms and deploy policies.
	var pol canaryv1.PutDeployPolicyResponse
	root.call(ctx, "POST", "/v1/deploy-policies", []byte(`{"policy": {"service": "checkout-api",
		"alarms": [{"name": "pages", "matchers": ["service=\"checkout-api\""]}]}}`), &pol)
	var gotPol canaryv1.GetDeployPolicyResponse
	pipe.call(ctx, "GET", "/v1/deploy-policies/checkout-api", nil, &gotPol)
	if gotPol.GetPolicy().GetPolicy().GetService() != "checkout-api" {
		t.Errorf("GetDeployPolicy: %v", &gotPol)
	}
	var check canaryv1.CheckDeployResponse
	pipe.call(ctx, "POST", "/v1/deploys:check", &canaryv1.CheckDeployRequest{Service: "checkout-api", Stage: "prod"}, &check)
	if !check.GetAllowed() {
		t.Errorf("CheckDeploy without alarms: %v", &check)
	}
	var rep0 canaryv1.ReportAlarmResponse
	root.call(ctx, "POST", "/v1/alarms", &canaryv1.ReportAlarmRequest{Alarm: &canaryv1.AlarmEvent{
		Name: "HighErrorRate", State: canaryv1.AlarmState_ALARM_STATE_FIRING, Labels: map[string]string{"service": "checkout-api"}}}, &rep0)
	var alarms canaryv1.ListAlarmsResponse
	pipe.call(ctx, "GET", "/v1/alarms?service=checkout-api", nil, &alarms)
	if len(alarms.GetAlarms()) != 1 || alarms.GetAlarms()[0].GetName() != "HighErrorRate" {
		t.Errorf("ListAlarms: %v", &alarms)
	}
	pipe.call(ctx, "POST", "/v1/deploys:check", &canaryv1.CheckDeployRequest{Service: "checkout-api", Stage: "prod"}, &check)
	if check.GetAllowed() {
		t.Errorf("CheckDeploy with a firing alarm: %v", &check)
	}
	var overrides canaryv1.ListDeployOverridesResponse
	pipe.call(ctx, "GET", "/v1/deploy-overrides?service=checkout-api", nil, &overrides)

	// Field names are protojson's (lowerCamelCase), enums by name.
	_, body = pipe.do(ctx, "GET", "/v1/runs/"+runID, nil)
	var raw map[string]map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["run"]["state"] != "RUN_STATE_COMPLETED" || raw["run"]["createTime"] == nil {
		t.Errorf("GetRun JSON: %s", body)
	}
}

// streamResults decodes a gateway stream: one {"result": MSG} (or
// {"error": STATUS}) per line.
func streamResults(t *testing.T, body []byte, newMsg func() proto.Message) []proto.Message {
	t.Helper()
	var out []proto.Message
	for line := range strings.SplitSeq(strings.TrimSpace(string(body)), "\n") {
		m := newMsg()
		decodeStreamLine(t, []byte(line), m)
		out = append(out, m)
	}
	return out
}

// nextResult reads the next line of a gateway stream into m.
func nextResult[M proto.Message](t *testing.T, lines *bufio.Scanner, m M) M {
	t.Helper()
	if !lines.Scan() {
		t.Fatalf("stream ended: %v", lines.Err())
	}
	decodeStreamLine(t, lines.Bytes(), m)
	return m
}

func decodeStreamLine(t *testing.T, line []byte, m proto.Message) {
	t.Helper()
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(line, &env); err != nil {
		t.Fatalf("stream line %s: %v", line, err)
	}
	if env.Error != nil {
		t.Fatalf("stream error: %s", env.Error)
	}
	if err := protojson.Unmarshal(env.Result, m); err != nil {
		t.Fatalf("stream result %s: %v", env.Result, err)
	}
}
