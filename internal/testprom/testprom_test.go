package testprom

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestScrapesPods starts two pods and a Prometheus scraping them, and
// checks that their series arrive with the target labels, and that Stop
// and Restart work.
func TestScrapesPods(t *testing.T) {
	t.Parallel()
	a := StartPod(t, Workload{RPS: 200, ErrorRate: 0.5, Seed: 1})
	b := StartPod(t, Workload{RPS: 200, Seed: 2})
	srv := Start(t, Options{Targets: []Target{
		a.Target(map[string]string{"version": "v1"}),
		b.Target(map[string]string{"version": "v2"}),
	}})
	srv.WaitFor(t, `http_requests_total{code="200"}`, 2)
	srv.WaitFor(t, `http_requests_total{code="500",version="v1"}`, 1)
	srv.WaitFor(t, `http_request_duration_seconds_bucket{version="v2",le="+Inf"}`, 1)
	if n, err := srv.count(`http_requests_total{code="500",version="v2"}`); err != nil || n != 0 {
		t.Errorf("pod b without errors has %d error series (%v)", n, err)
	}

	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+"/-/ready", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("Prometheus answers after Stop")
	}
	srv.Restart()
	srv.WaitFor(t, `http_requests_total{code="200"}`, 2)
}

// TestBackfill serves an hour of backfilled data of two pods.
func TestBackfill(t *testing.T) {
	t.Parallel()
	end := time.Now().Add(-time.Hour).Truncate(time.Minute)
	start := end.Add(-time.Hour)
	data := Backfill(t, start, end, 15*time.Second, []BackfillPod{
		{Labels: map[string]string{"job": "shop", "instance": "pod-1", "version": "v1"}, Workload: Workload{RPS: 10, ErrorRate: 0.1, Seed: 1}},
		{Labels: map[string]string{"job": "shop", "instance": "pod-2", "version": "v2"}, Workload: Workload{RPS: 10, Seed: 2}},
	})
	srv := Start(t, Options{Data: data})
	// The last hour of data, at its end: every request of pod-1 (10/s
	// for 3,600 s).
	q := `sum(increase(http_requests_total{instance="pod-1"}[1h] @ ` + formatUnix(end) + `)) > 35000`
	srv.WaitFor(t, q, 1)
	srv.WaitFor(t, `http_request_duration_seconds_bucket{instance="pod-2",le="+Inf"} @ `+formatUnix(end), 1)
}

func formatUnix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
