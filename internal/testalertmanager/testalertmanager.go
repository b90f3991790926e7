// Package testalertmanager gives tests a real Alertmanager: Debian's
// `prometheus-alertmanager` (0.25), started on a free loopback port with a
// temporary directory, clustering off, and killed when the test ends. It
// routes every alert to one webhook receiver (the URL the test gives,
// e.g. canaryd's POST /v1/alertmanager) with short group timings, so that
// an alert posted to its API is delivered within about a second.
//
//	am := testalertmanager.Start(t, testalertmanager.Options{WebhookURL: hook.URL})
//	am.Post(t, testalertmanager.Alert{Labels: map[string]string{"alertname": "HighErrors", "severity": "page"}})
//
// Without the binary (apt-get install prometheus-alertmanager), Start
// skips the test with a message on stderr, or fails it when the
// environment has CI=true.
package testalertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/testproc"
)

// Options configure an Alertmanager.
type Options struct {
	// WebhookURL receives every notification (webhook payload version 4).
	// Required.
	WebhookURL string
	// GroupWait, GroupInterval and RepeatInterval are the route's timings;
	// 0 means 100ms, 1s and 1h.
	GroupWait, GroupInterval, RepeatInterval time.Duration
	// BearerToken, if set, is sent with every notification
	// (http_config.authorization, type Bearer).
	BearerToken string
}

// Server is an Alertmanager for one test.
type Server struct {
	t    testing.TB
	url  string
	proc *testproc.Process
}

// Start starts an Alertmanager for t and stops it when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := testproc.LookPath(t, "prometheus-alertmanager", "prometheus-alertmanager", "the Alertmanager webhook")
	if o.WebhookURL == "" {
		t.Fatal("testalertmanager: Options.WebhookURL is required")
	}
	if o.GroupWait == 0 {
		o.GroupWait = 100 * time.Millisecond
	}
	if o.GroupInterval == 0 {
		o.GroupInterval = time.Second
	}
	if o.RepeatInterval == 0 {
		o.RepeatInterval = time.Hour
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	// group_by: ['...'] makes every alert its own group, notified on its
	// own.
	text := fmt.Sprintf(`route:
  receiver: webhook
  group_by: ['...']
  group_wait: %s
  group_interval: %s
  repeat_interval: %s
receivers:
  - name: webhook
    webhook_configs:
      - url: %q
        send_resolved: true
`, ms(o.GroupWait), ms(o.GroupInterval), ms(o.RepeatInterval), o.WebhookURL)
	if o.BearerToken != "" {
		text += fmt.Sprintf("        http_config:\n          authorization:\n            type: Bearer\n            credentials: %q\n", o.BearerToken)
	}
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t}
	for attempt := 0; ; attempt++ {
		port, err := testproc.FreePort()
		if err != nil {
			t.Fatalf("testalertmanager: free port: %v", err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.url = "http://" + addr
		s.proc = &testproc.Process{
			Name: "alertmanager", Bin: bin, Dir: dir,
			Args: []string{
				"--config.file=" + cfg,
				"--storage.path=" + filepath.Join(dir, "data"),
				"--web.listen-address=" + addr,
				"--cluster.listen-address=", // no gossip port
				"--log.level=warn",
			},
			Ready: s.url + "/-/ready", Log: filepath.Join(dir, "alertmanager.log"),
		}
		err = s.proc.Start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("testalertmanager: %v", err)
		}
		t.Logf("testalertmanager: %v; trying another port", err)
	}
	t.Cleanup(s.proc.Kill)
	return s
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

// URL is the base URL of the server, http://127.0.0.1:port.
func (s *Server) URL() string { return s.url }

// Alert is an alert as Alertmanager's API v2 takes it.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Post posts alerts to the API (POST /api/v2/alerts), as Prometheus does.
// An alert whose EndsAt has passed resolves a firing one with the same
// labels.
func (s *Server) Post(t testing.TB, alerts ...Alert) {
	t.Helper()
	body, err := json.Marshal(alerts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/api/v2/alerts", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("testalertmanager: post alerts: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		t.Fatalf("testalertmanager: post alerts: %s: %s", resp.Status, b.String())
	}
}

// Stop kills the server with SIGKILL and waits until it has exited.
func (s *Server) Stop() { s.proc.Kill() }
