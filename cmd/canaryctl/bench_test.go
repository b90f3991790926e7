package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/app"
)

// TestBench runs canaryctl bench briefly against a real canaryd
// (internal/app on loopback, an embedded store): it exits 0 with a JSON
// report of a load without errors whose runs were all aborted.
func TestBench(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			Store: filepath.Join(t.TempDir(), "canaryd.db"), Ready: func(g, h string) { ready <- [2]string{g, h} }})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("canaryd: %v", err)
		}
	}()
	var addrs [2]string
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("canaryd: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("canaryd not ready within 30s")
	}
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--addr", addrs[0], "bench", "--runs", "2", "--streams", "2", "--duration", "1s",
		"--batch-interval", "10ms", "--judge-interval", "200ms", "--metrics-url", "http://" + addrs[1] + "/metrics",
		"-o", "json"}, strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	var rep struct {
		Batches    uint64         `json:"batches"`
		ErrorCount int            `json:"error_count"`
		Aborted    int            `json:"aborted"`
		Ack        map[string]any `json:"ack"`
		Health     map[string]any `json:"health"`
		RSS        uint64         `json:"rss_during_bytes"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	if rep.Batches == 0 || rep.ErrorCount != 0 || rep.Aborted != 2 || rep.Ack["calls"] == 0.0 || rep.Health["calls"] == 0.0 || rep.RSS == 0 {
		t.Errorf("report %+v", rep)
	}
	// Bounds are usage errors, before anything is dialled.
	code = run(ctx, []string{"--addr", addrs[0], "bench", "--runs", "20000"}, strings.NewReader(""), &stdout, &stderr)
	if code != exitUsage {
		t.Errorf("--runs 20000: exit %d, want %d", code, exitUsage)
	}
}
