package testalertmanager

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// webhook is Alertmanager's webhook payload (version 4), the part the
// test reads.
type webhook struct {
	Version string `json:"version"`
	Status  string `json:"status"`
	Alerts  []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
	} `json:"alerts"`
}

// TestDeliversToWebhook posts a firing alert and then its resolution, and
// checks that both reach the webhook, in version 4 of the payload.
func TestDeliversToWebhook(t *testing.T) {
	t.Parallel()
	got := make(chan webhook, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p webhook
		if err := json.Unmarshal(b, &p); err != nil {
			t.Errorf("webhook body %s: %v", b, err)
		}
		got <- p
	}))
	defer hook.Close()
	am := Start(t, Options{WebhookURL: hook.URL + "/v1/alertmanager"})

	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	alert := Alert{
		Labels:      map[string]string{"alertname": "HighErrorRate", "severity": "page", "service": "checkout-api"},
		Annotations: map[string]string{"summary": "5xx above 5%"},
		StartsAt:    start,
	}
	sent := time.Now()
	am.Post(t, alert)
	wait := func(status string) webhook {
		t.Helper()
		select {
		case p := <-got:
			if p.Version != "4" || p.Status != status || len(p.Alerts) != 1 || p.Alerts[0].Labels["alertname"] != "HighErrorRate" ||
				p.Alerts[0].Annotations["summary"] != "5xx above 5%" || !p.Alerts[0].StartsAt.Equal(start) {
				t.Fatalf("webhook payload %+v, want one %s HighErrorRate alert, version 4", p, status)
			}
			return p
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s notification within 20s", status)
		}
		return webhook{}
	}
	wait("firing")
	t.Logf("firing alert delivered %v after it was posted", time.Since(sent).Round(time.Millisecond))
	alert.EndsAt = time.Now().Add(-time.Second)
	am.Post(t, alert)
	wait("resolved")
}
