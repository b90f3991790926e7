package server

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// BenchmarkAlarmToRollback measures the target "a firing alert to
// ROLLBACK < 1 s after Alertmanager delivers it": per iteration, the time
// from the start of a webhook delivery (Alertmanager's payload, version 4,
// over HTTP) to a Judge that returns ROLLBACK for the run the alert
// matches, among `running` other running runs with alarm rules of their
// own (every delivery matches the alert against all of them). The run has
// data (the alarm makes the judge run again). It reports p50 and p99.
//
//	go test ./server/ -run '^$' -bench AlarmToRollback -benchtime 200x
//	CANARYD_TEST_STORE=redis go test ./server/ -run '^$' -bench AlarmToRollback -benchtime 200x
func BenchmarkAlarmToRollback(b *testing.B) {
	for _, running := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("running=%d", running), func(b *testing.B) {
			e := newEnv(b, nil)
			ctx := ctxT(b)
			srv := httptest.NewServer(e.svc.AlertmanagerHandler())
			defer srv.Close()
			create := func(svc string) string {
				cfg := testConfig("bench")
				cfg.Alarms = []*canaryv1.AlarmRule{{Matchers: []string{`severity="page"`, `service="{{.Service}}"`}}}
				resp, err := e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{RequestId: svc, Service: svc, Stage: "onebox",
					Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: cfg}, BakeTime: nil})
				if err != nil {
					b.Fatal(err)
				}
				return resp.GetRun().GetId()
			}
			for i := range running {
				create(fmt.Sprintf("other-%d", i))
			}
			rng := rand.New(rand.NewPCG(1, 2))
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				svc := fmt.Sprintf("target-%d", i)
				id := create(svc)
				e.ingest(ctx, makeBatch(rng, id, "b", scenario{Latency: 1, Errors: 1, N: 200}))
				if v := e.judge(ctx, id); v.GetDecision() == canaryv1.Decision_DECISION_ROLLBACK {
					b.Fatalf("ROLLBACK before the alert: %s", v.GetReason())
				}
				body := amPayload("firing", amAlert("firing", "Errors", svc, fmt.Sprint("fp-", i), e.clock.Now()))
				b.StartTimer()
				start := time.Now()
				resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				v := e.judge(ctx, id)
				took = append(took, time.Since(start))
				if resp.StatusCode != http.StatusOK || v.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
					b.Fatalf("delivery %d: %v %s", resp.StatusCode, v.GetDecision(), v.GetReason())
				}
			}
			b.StopTimer()
			slices.Sort(took)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
			b.ReportMetric(ms(took[min(len(took)-1, len(took)*99/100)]), "p99-ms")
			b.ReportMetric(ms(took[len(took)-1]), "max-ms")
		})
	}
}
