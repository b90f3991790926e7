package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// alarmConfig is testConfig with alarm rules: the service's pages, and
// any critical alarm of a one-box stage.
func alarmConfig(name string) *canaryv1.CanaryConfig {
	c := testConfig(name)
	c.Alarms = []*canaryv1.AlarmRule{
		{Matchers: []string{`severity="page"`, `service="{{.Service}}"`}},
		{Name: "onebox", Matchers: []string{`severity=~"critical|page"`, `stage=~"{{.Stage}}.*"`}},
	}
	return c
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (e *env) reportAlarm(ctx context.Context, ev *canaryv1.AlarmEvent) *canaryv1.ReportAlarmResponse {
	e.t.Helper()
	resp, err := e.c.ReportAlarm(ctx, &canaryv1.ReportAlarmRequest{Alarm: ev})
	if err != nil {
		e.t.Fatalf("report alarm %s: %v", ev.GetName(), err)
	}
	return resp
}

func (e *env) runAlarms(ctx context.Context, runID string) []*canaryv1.AlarmEvent {
	e.t.Helper()
	resp, err := e.c.ListAlarms(ctx, &canaryv1.ListAlarmsRequest{RunId: runID})
	if err != nil {
		e.t.Fatalf("list alarms of %s: %v", runID, err)
	}
	return resp.GetAlarms()
}

// TestAlarmRollsBack: a firing alarm that matches a running run's rules
// makes its verdict ROLLBACK at once, naming the alarm, its summary and
// start; one that matches no rule changes nothing; a repeat stores
// nothing; the resolution is recorded and the run stays ROLLBACK, up to
// its final verdict in the history; the run's alarms are listed while it
// runs and after it finished.
func TestAlarmRollsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "r1", alarmConfig("alarmed"), time.Hour)
	other := e.createRun(ctx, "r2", testConfig("plain"), time.Hour) // no rules
	rng := rand.New(rand.NewPCG(1, 2))
	for _, id := range []string{run.GetId(), other.GetId()} {
		e.ingest(ctx, makeBatch(rng, id, "b1", scenario{Latency: 1, Errors: 1, N: 50}))
	}
	if v := e.judge(ctx, run.GetId()); v.GetDecision() != canaryv1.Decision_DECISION_HOLD {
		t.Fatalf("before the alarm: %v %s", v.GetDecision(), v.GetReason())
	}

	// Another service's page matches no rule of the run.
	resp := e.reportAlarm(ctx, &canaryv1.AlarmEvent{Name: "PaymentsDown", State: canaryv1.AlarmState_ALARM_STATE_FIRING,
		Labels: map[string]string{"severity": "page", "service": "payments"}})
	if len(resp.GetRunIds()) != 0 {
		t.Errorf("a non-matching alarm was recorded with runs %v", resp.GetRunIds())
	}
	if v := e.judge(ctx, run.GetId()); v.GetDecision() != canaryv1.Decision_DECISION_HOLD {
		t.Fatalf("after a non-matching alarm: %v %s", v.GetDecision(), v.GetReason())
	}

	start := e.clock.Now().Add(-time.Minute)
	firing := &canaryv1.AlarmEvent{Name: "CheckoutErrors", Summary: "5xx above 5% for 2m", State: canaryv1.AlarmState_ALARM_STATE_FIRING,
		Labels: map[string]string{"severity": "page", "service": "checkout"}, StartTime: timestamppb.New(start), Fingerprint: "fp1"}
	resp = e.reportAlarm(ctx, firing)
	if !slices.Equal(resp.GetRunIds(), []string{run.GetId()}) {
		t.Fatalf("recorded with runs %v, want [%s]", resp.GetRunIds(), run.GetId())
	}
	v := e.judge(ctx, run.GetId())
	if v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		t.Fatalf("after the alarm: %v %s", v.GetDecision(), v.GetReason())
	}
	for _, want := range []string{"CheckoutErrors", "5xx above 5% for 2m", start.Format(time.RFC3339)} {
		if !strings.Contains(v.GetReason(), want) {
			t.Errorf("reason %q does not name %q", v.GetReason(), want)
		}
	}
	if got := e.getRun(ctx, run.GetId()).GetVerdict().GetDecision(); got != canaryv1.Decision_DECISION_ROLLBACK {
		t.Errorf("GetRun verdict %v", got)
	}
	if v := e.judge(ctx, other.GetId()); v.GetDecision() == canaryv1.Decision_DECISION_ROLLBACK {
		t.Errorf("the run without rules rolled back: %s", v.GetReason())
	}

	if got := testutil.ToFloat64(e.svc.metrics.alarmRuns); got != 1 {
		t.Errorf("canaryd_alarm_run_records_total = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.svc.metrics.alarms.WithLabelValues("api", "firing")); got != 2 {
		t.Errorf(`canaryd_alarms_total{source="api",state="firing"} = %v, want 2`, got)
	}
	// A repeat (Alertmanager's repeat_interval, a retry) stores nothing.
	_, before := e.storedDeltas(ctx, run.GetId())
	e.reportAlarm(ctx, firing)
	if _, after := e.storedDeltas(ctx, run.GetId()); after != before {
		t.Errorf("a repeated alarm was appended again: %d entries, then %d", before, after)
	}
	if got := e.getRun(ctx, run.GetId()).GetCounters().GetBatches(); got != 1 {
		t.Errorf("alarms counted as batches: %d", got)
	}

	e.clock.Advance(5 * time.Minute)
	resolved := &canaryv1.AlarmEvent{Name: "CheckoutErrors", State: canaryv1.AlarmState_ALARM_STATE_RESOLVED,
		Labels: firing.GetLabels(), Fingerprint: "fp1"} // no start: that of the firing event
	e.reportAlarm(ctx, resolved)
	alarms := e.runAlarms(ctx, run.GetId())
	if len(alarms) != 2 || alarms[0].GetState() != canaryv1.AlarmState_ALARM_STATE_FIRING ||
		alarms[1].GetState() != canaryv1.AlarmState_ALARM_STATE_RESOLVED || !alarms[1].GetStartTime().AsTime().Equal(start) {
		t.Fatalf("run alarms: %v", alarms)
	}
	v = e.judge(ctx, run.GetId())
	if v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK || !strings.Contains(v.GetReason(), "resolved") {
		t.Errorf("after the resolution: %v %s", v.GetDecision(), v.GetReason())
	}

	fin, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: run.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if fv := fin.GetRun().GetVerdict(); fv.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK || !strings.Contains(fv.GetReason(), "CheckoutErrors") {
		t.Errorf("final verdict: %v %s", fv.GetDecision(), fv.GetReason())
	}
	hist, err := e.c.ListVerdicts(ctx, &canaryv1.ListVerdictsRequest{Decision: canaryv1.Decision_DECISION_ROLLBACK})
	if err != nil || len(hist.GetVerdicts()) != 1 || hist.GetVerdicts()[0].GetRunId() != run.GetId() {
		t.Errorf("history: %v, %v", hist.GetVerdicts(), err)
	}
	if got := e.runAlarms(ctx, run.GetId()); len(got) != 2 {
		t.Errorf("alarms of the finished run: %v", got)
	}
	rep, err := e.c.GetRunReport(ctx, &canaryv1.GetRunReportRequest{RunId: run.GetId()})
	if err != nil || len(rep.GetReport().GetAlarms()) != 2 {
		t.Errorf("report alarms: %v, %v", rep.GetReport().GetAlarms(), err)
	}
	// The alarms canaryd knows: both, newest first; by service.
	all, err := e.c.ListAlarms(ctx, &canaryv1.ListAlarmsRequest{})
	if err != nil || len(all.GetAlarms()) != 2 {
		t.Fatalf("known alarms: %v, %v", all.GetAlarms(), err)
	}
	firingOnly, err := e.c.ListAlarms(ctx, &canaryv1.ListAlarmsRequest{Service: "payments", State: canaryv1.AlarmState_ALARM_STATE_FIRING})
	if err != nil || len(firingOnly.GetAlarms()) != 1 || firingOnly.GetAlarms()[0].GetName() != "PaymentsDown" {
		t.Errorf("firing payments alarms: %v, %v", firingOnly.GetAlarms(), err)
	}
}

// TestAlarmFoldedByEveryProcess: the alarm is an entry of the run's log,
// folded into snapshots: a second service on the same store (a replica,
// or a restart) sees the ROLLBACK, after snapshots folded the alarm.
func TestAlarmFoldedByEveryProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.SnapshotEvery = 1 })
	ctx := ctxT(t)
	run := e.createRun(ctx, "r1", alarmConfig("alarmed"), time.Hour)
	rng := rand.New(rand.NewPCG(1, 2))
	e.reportAlarm(ctx, &canaryv1.AlarmEvent{Name: "Onebox", State: canaryv1.AlarmState_ALARM_STATE_FIRING,
		Labels: map[string]string{"severity": "critical", "stage": "wave-1-east"}})
	for i := range 3 { // snapshots after every entry: the alarm goes into them
		e.ingest(ctx, makeBatch(rng, run.GetId(), fmt.Sprint("b", i), scenario{Latency: 1, Errors: 1, N: 50}))
	}
	deadline := time.Now().Add(10 * time.Second)
	for snaps, _ := e.storedDeltas(ctx, run.GetId()); snaps == 0; snaps, _ = e.storedDeltas(ctx, run.GetId()) {
		if time.Now().After(deadline) {
			t.Fatal("no snapshot written")
		}
		time.Sleep(10 * time.Millisecond)
	}
	other, err := New(Options{Store: e.store, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	resp, err := other.Judge(ctx, &canaryv1.JudgeRequest{RunId: run.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.GetVerdict(); v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK || !strings.Contains(v.GetReason(), "Onebox") {
		t.Errorf("the other process's verdict: %v %s", v.GetDecision(), v.GetReason())
	}
	la, err := other.ListAlarms(ctx, &canaryv1.ListAlarmsRequest{RunId: run.GetId()})
	if err != nil || len(la.GetAlarms()) != 1 {
		t.Errorf("the other process's run alarms: %v, %v", la.GetAlarms(), err)
	}
	// An alarm through the other process reaches this one's run too.
	other.ReportAlarm(ctx, &canaryv1.ReportAlarmRequest{Alarm: &canaryv1.AlarmEvent{Name: "Second", State: canaryv1.AlarmState_ALARM_STATE_FIRING,
		Labels: map[string]string{"severity": "page", "service": "checkout"}}})
	if got := e.runAlarms(ctx, run.GetId()); len(got) != 2 {
		t.Errorf("this process sees %d alarms, want 2", len(got))
	}
}

// TestRunCreatedWhileAlarmFires: a run whose rules match an alarm that is
// firing when it is created is ROLLBACK at once; a resolved one does not
// count.
func TestRunCreatedWhileAlarmFires(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	e.reportAlarm(ctx, &canaryv1.AlarmEvent{Name: "Old", State: canaryv1.AlarmState_ALARM_STATE_RESOLVED,
		Labels: map[string]string{"severity": "page", "service": "checkout"}, StartTime: timestamppb.New(e.clock.Now().Add(-time.Hour))})
	run := e.createRun(ctx, "r0", alarmConfig("alarmed"), time.Hour)
	if v := e.judge(ctx, run.GetId()); v.GetDecision() == canaryv1.Decision_DECISION_ROLLBACK {
		t.Fatalf("a resolved alarm rolled a new run back: %s", v.GetReason())
	}
	e.reportAlarm(ctx, &canaryv1.AlarmEvent{Name: "Burning", State: canaryv1.AlarmState_ALARM_STATE_FIRING,
		Labels: map[string]string{"severity": "page", "service": "checkout"}})
	run = e.createRun(ctx, "r1", alarmConfig("alarmed"), time.Hour)
	if v := e.judge(ctx, run.GetId()); v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK || !strings.Contains(v.GetReason(), "Burning") {
		t.Errorf("a run created while its alarm fires: %v %s", v.GetDecision(), v.GetReason())
	}
}

// TestAlarmConfigValidation: alarm rules are validated with the config,
// violations naming the field; a rejected config stores nothing; YAML
// configs carry alarms.
func TestAlarmConfigValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	bad := alarmConfig("bad")
	bad.Alarms = append(bad.Alarms, &canaryv1.AlarmRule{Matchers: []string{`severity="page`}}, &canaryv1.AlarmRule{})
	_, err := e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: bad}})
	wantCode(t, err, codes.InvalidArgument, "config.alarms[2].matchers[0]")
	wantCode(t, err, codes.InvalidArgument, "config.alarms[3].matchers")
	if _, err := e.c.GetConfig(ctx, &canaryv1.GetConfigRequest{Name: "bad"}); err == nil {
		t.Error("a rejected config was stored")
	}
	yaml := "name: y\nalarms:\n  - matchers: ['severity=\"page\"', 'team=\"{{.Team}}\"']\nmetrics:\n  - {name: errors, category: stability, type: rate}\n"
	_, err = e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: yaml}})
	wantCode(t, err, codes.InvalidArgument, "yaml.alarms[0].matchers[1]")
	yaml = strings.Replace(yaml, "{{.Team}}", "checkout", 1)
	put, err := e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: yaml}})
	if err != nil {
		t.Fatal(err)
	}
	if got := put.GetConfig().GetConfig().GetAlarms(); len(got) != 1 || got[0].GetMatchers()[1] != `team="checkout"` {
		t.Errorf("stored alarms: %v", got)
	}
	_, err = e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{RequestId: "x", Service: "s", Stage: "t",
		Config: &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: "name: z\nalarms: [{matchers: ['a=~\"(\"']}]\nmetrics:\n  - {name: errors, category: stability, type: rate}\n"}})
	wantCode(t, err, codes.InvalidArgument, "inline_yaml.alarms[0].matchers[0]")
	_, err = e.c.ReportAlarm(ctx, &canaryv1.ReportAlarmRequest{Alarm: &canaryv1.AlarmEvent{State: canaryv1.AlarmState_ALARM_STATE_FIRING}})
	wantCode(t, err, codes.InvalidArgument, "alarm.name")
	_, err = e.c.ReportAlarm(ctx, &canaryv1.ReportAlarmRequest{Alarm: &canaryv1.AlarmEvent{Name: "x"}})
	wantCode(t, err, codes.InvalidArgument, "alarm.state")
}

// amPayload is a webhook delivery as Alertmanager 0.25 posts it.
func amPayload(status string, alerts ...string) string {
	return fmt.Sprintf(`{"receiver":"canaryd","status":%q,"alerts":[%s],"groupLabels":{},"commonLabels":{},`+
		`"commonAnnotations":{},"externalURL":"http://am:9093","version":"4","groupKey":"{}:{}","truncatedAlerts":0}`,
		status, strings.Join(alerts, ","))
}

func amAlert(status, name, service, fp string, start time.Time) string {
	return fmt.Sprintf(`{"status":%q,"labels":{"alertname":%q,"severity":"page","service":%q},`+
		`"annotations":{"summary":"%s is burning"},"startsAt":%q,"endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom/graph","fingerprint":%q}`,
		status, name, service, name, start.Format(time.RFC3339Nano), fp)
}

func postWebhook(t *testing.T, url, token, body string) (int, webhookResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var wr webhookResponse
	if err := json.Unmarshal(b, &wr); err != nil {
		t.Fatalf("webhook answer %d %q: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, wr
}

// TestAlertmanagerWebhook: the webhook receiver records Alertmanager's
// alerts as ReportAlarm does, with the same tokens: 401 without one, 403
// without the ingest role, 400 for a payload that is not version 4; an
// alert of a service out of a scoped token's scope is skipped.
func TestAlertmanagerWebhook(t *testing.T) {
	t.Parallel()
	policy := authPolicy(t, fmt.Sprintf("  - {name: read-all, sha256: %s, roles: [read], services: [\"*\"]}\n"+
		"  - {name: ingest-all, sha256: %s, roles: [ingest], services: [\"*\"]}\n", sha("tok-read-all"), sha("tok-ingest-all")))
	e := newEnv(t, func(o *Options) { o.Auth = policy })
	ctx := withToken(ctxT(t), "tok-root")
	srv := httptest.NewServer(e.svc.AlertmanagerHandler())
	defer srv.Close()
	run := e.createRun(ctx, "r1", alarmConfig("alarmed"), time.Hour)
	start := e.clock.Now().Add(-30 * time.Second)
	body := amPayload("firing", amAlert("firing", "CheckoutErrors", "checkout", "aa11", start),
		amAlert("firing", "PaymentsErrors", "payments", "bb22", start))

	for _, tc := range []struct {
		token string
		code  int
	}{{"", http.StatusUnauthorized}, {"nope", http.StatusUnauthorized}, {"tok-read-all", http.StatusForbidden}} {
		if code, wr := postWebhook(t, srv.URL, tc.token, body); code != tc.code {
			t.Errorf("token %q: %d %+v, want %d", tc.token, code, wr, tc.code)
		}
	}
	if got := e.runAlarms(ctx, run.GetId()); len(got) != 0 {
		t.Fatalf("refused deliveries recorded %v", got)
	}
	if code, wr := postWebhook(t, srv.URL, "tok-ingest", `{"version":"3","alerts":[]}`); code != http.StatusBadRequest || wr.Error == "" {
		t.Errorf("version 3: %d %+v", code, wr)
	}
	// tok-ingest may use checkout-* only: the payments alert is skipped.
	code, wr := postWebhook(t, srv.URL, "tok-ingest", strings.ReplaceAll(body, `"service":"checkout"`, `"service":"checkout-api"`))
	if code != http.StatusOK || wr.Alerts != 1 || wr.Skipped != 1 {
		t.Errorf("scoped token: %d %+v", code, wr)
	}
	code, wr = postWebhook(t, srv.URL, "tok-ingest-all", body)
	if code != http.StatusOK || wr.Alerts != 2 || !slices.Equal(wr.Runs, []string{run.GetId()}) {
		t.Fatalf("delivery: %d %+v", code, wr)
	}
	v := e.judge(ctx, run.GetId())
	if v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK || !strings.Contains(v.GetReason(), "CheckoutErrors") ||
		!strings.Contains(v.GetReason(), "CheckoutErrors is burning") || !strings.Contains(v.GetReason(), start.Format(time.RFC3339)) {
		t.Errorf("verdict after the delivery: %v %s", v.GetDecision(), v.GetReason())
	}
	got := e.runAlarms(ctx, run.GetId())
	if len(got) != 1 || got[0].GetSource() != "alertmanager" || got[0].GetReportedBy() != "ingest-all" || got[0].GetUrl() != "http://prom/graph" {
		t.Errorf("recorded: %v", got)
	}
	// Resolved: recorded with the run.
	code, _ = postWebhook(t, srv.URL, "tok-ingest-all", amPayload("resolved",
		strings.Replace(amAlert("resolved", "CheckoutErrors", "checkout", "aa11", start), `"endsAt":"0001-01-01T00:00:00Z"`,
			`"endsAt":"`+e.clock.Now().Format(time.RFC3339)+`"`, 1)))
	if got := e.runAlarms(ctx, run.GetId()); code != http.StatusOK || len(got) != 2 || got[1].GetState() != canaryv1.AlarmState_ALARM_STATE_RESOLVED {
		t.Errorf("resolved: %d %v", code, got)
	}
}

// TestAlertmanagerWebhookOpen: without tokens the webhook is open, like
// the API; GET is refused by the route (POST only, on the app's mux).
func TestAlertmanagerWebhookOpen(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	srv := httptest.NewServer(e.svc.AlertmanagerHandler())
	defer srv.Close()
	code, wr := postWebhook(t, srv.URL, "", amPayload("firing", amAlert("firing", "A", "checkout", "f", e.clock.Now())))
	if code != http.StatusOK || wr.Alerts != 1 {
		t.Errorf("open webhook: %d %+v", code, wr)
	}
	resp, err := http.Post(srv.URL, "application/json", bytes.NewReader([]byte("{")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed JSON: %d", resp.StatusCode)
	}
}

// failingDocs is a Store whose PutDoc fails with store.ErrUnavailable
// while fail is set.
type failingDocs struct {
	Store
	fail atomic.Bool
}

func (f *failingDocs) PutDoc(ctx context.Context, kind, key string, value []byte) error {
	if f.fail.Load() {
		return fmt.Errorf("put %s: %w", kind, store.ErrUnavailable)
	}
	return f.Store.PutDoc(ctx, kind, key, value)
}

// TestAlertmanagerWebhookStoreDown: while the store fails, a delivery is
// answered 503 (Alertmanager retries it) and the run is not rolled back
// by half a record; the retry, once the store is back, is recorded.
func TestAlertmanagerWebhookStoreDown(t *testing.T) {
	t.Parallel()
	st := &failingDocs{Store: openTestStore(t, os.Getenv(storeEnv))}
	e := newEnvOn(t, st, nil)
	ctx := ctxT(t)
	srv := httptest.NewServer(e.svc.AlertmanagerHandler())
	defer srv.Close()
	run := e.createRun(ctx, "r1", alarmConfig("alarmed"), time.Hour)
	body := amPayload("firing", amAlert("firing", "CheckoutErrors", "checkout", "aa11", e.clock.Now()))
	st.fail.Store(true)
	if code, wr := postWebhook(t, srv.URL, "", body); code != http.StatusServiceUnavailable || wr.Error == "" {
		t.Errorf("store down: %d %+v, want 503", code, wr)
	}
	if v := e.judge(ctx, run.GetId()); v.GetDecision() == canaryv1.Decision_DECISION_ROLLBACK {
		t.Errorf("rolled back by a delivery that failed: %s", v.GetReason())
	}
	st.fail.Store(false)
	if code, wr := postWebhook(t, srv.URL, "", body); code != http.StatusOK || !slices.Equal(wr.Runs, []string{run.GetId()}) {
		t.Fatalf("retry: %d %+v", code, wr)
	}
	if v := e.judge(ctx, run.GetId()); v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
		t.Errorf("after the retry: %v %s", v.GetDecision(), v.GetReason())
	}
}
