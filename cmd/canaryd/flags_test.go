package main

import (
	"io"
	"testing"
	"time"

	"github.com/canaryd/canaryd/server"
)

// TestLimitFlags: the limit flags default to the server's defaults, take
// their environment variables, are overridden by the flags, and reject
// values out of range.
func TestLimitFlags(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	o, _, err := parse(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.StreamIdleTimeout != server.DefaultStreamIdleTimeout || o.MaxConcurrentStreams != server.DefaultMaxConcurrentStreams ||
		o.KeepaliveMinTime != server.DefaultKeepaliveMinTime || o.JudgeConcurrency != server.DefaultJudgeConcurrency() {
		t.Fatalf("defaults: %+v", o)
	}
	vars := map[string]string{
		"CANARYD_STREAM_IDLE_TIMEOUT":    "30s",
		"CANARYD_MAX_CONCURRENT_STREAMS": "100",
		"CANARYD_KEEPALIVE_MIN_TIME":     "1m",
		"CANARYD_JUDGE_CONCURRENCY":      "3",
	}
	o, _, err = parse(nil, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.StreamIdleTimeout != 30*time.Second || o.MaxConcurrentStreams != 100 || o.KeepaliveMinTime != time.Minute || o.JudgeConcurrency != 3 {
		t.Fatalf("from the environment: %+v", o)
	}
	o, _, err = parse([]string{"--stream-idle-timeout", "5m", "--max-concurrent-streams", "10", "--keepalive-min-time", "20s",
		"--judge-concurrency", "2"}, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.StreamIdleTimeout != 5*time.Minute || o.MaxConcurrentStreams != 10 || o.KeepaliveMinTime != 20*time.Second || o.JudgeConcurrency != 2 {
		t.Fatalf("from the flags: %+v", o)
	}
	for _, args := range [][]string{
		{"--max-concurrent-streams", "0"},
		{"--max-concurrent-streams", "4294967296"},
		{"--judge-concurrency", "0"},
		{"--stream-idle-timeout", "soon"},
	} {
		if _, _, err := parse(args, env(nil), io.Discard); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
