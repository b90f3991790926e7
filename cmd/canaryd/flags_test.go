package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/app"
	"github.com/canaryd/canaryd/puller"
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

// envOf returns a getenv of the variables in m.
func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestParseDefaults: without flags or environment, every option is its
// documented default.
func TestParseDefaults(t *testing.T) {
	t.Parallel()
	o, lo, err := parse(nil, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := app.Options{
		GRPCAddr: app.DefaultGRPCAddr, HTTPAddr: app.DefaultHTTPAddr, Store: app.DefaultStore,
		Retention: 7 * 24 * time.Hour, CompactThreshold: 64 << 20, StoreWait: 5 * time.Minute,
		IdleTimeout: server.DefaultIdleTimeout, ClockSkew: server.DefaultClockSkew,
		MaxBatchSamples: server.DefaultMaxBatchSamples, DrainTimeout: app.DefaultDrainTimeout,
		StreamIdleTimeout: server.DefaultStreamIdleTimeout, MaxConcurrentStreams: server.DefaultMaxConcurrentStreams,
		KeepaliveMinTime: server.DefaultKeepaliveMinTime, JudgeConcurrency: server.DefaultJudgeConcurrency(),
		Pull: app.PullOptions{Workers: puller.DefaultWorkers, Timeout: puller.DefaultQueryTimeout, LeaseTTL: puller.DefaultLeaseTTL,
			Backlog: puller.DefaultBacklog, ScanInterval: puller.DefaultScanInterval},
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("defaults:\n%+v\nwant\n%+v", o, want)
	}
	if lo.level != slog.LevelInfo || lo.format != "text" {
		t.Errorf("log options %+v, want info and text", lo)
	}
}

// TestParseEnvironment: every option takes its environment variable, and
// its flag wins over it.
func TestParseEnvironment(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env, flag, envValue, flagValue string
		get                            func(app.Options, logOptions) any
		fromEnv, fromFlag              any
	}{
		{"CANARYD_GRPC_ADDR", "--grpc-addr", ":9090", ":9191", func(o app.Options, _ logOptions) any { return o.GRPCAddr }, ":9090", ":9191"},
		{"CANARYD_HTTP_ADDR", "--http-addr", ":9092", ":9193", func(o app.Options, _ logOptions) any { return o.HTTPAddr }, ":9092", ":9193"},
		{"CANARYD_STORE", "--store", "redis://r:6379/0", "/var/lib/c.db", func(o app.Options, _ logOptions) any { return o.Store }, "redis://r:6379/0", "/var/lib/c.db"},
		{"CANARYD_RETENTION", "--retention", "48h", "1h", func(o app.Options, _ logOptions) any { return o.Retention }, 48 * time.Hour, time.Hour},
		{"CANARYD_VERDICT_RETENTION", "--verdict-retention", "8760h", "24h", func(o app.Options, _ logOptions) any { return o.VerdictRetention }, 8760 * time.Hour, 24 * time.Hour},
		{"CANARYD_COMPACT_THRESHOLD", "--compact-threshold", "0", "-1", func(o app.Options, _ logOptions) any { return o.CompactThreshold }, int64(1), int64(-1)},
		{"CANARYD_STORE_WAIT", "--store-wait", "0s", "30s", func(o app.Options, _ logOptions) any { return o.StoreWait }, time.Duration(0), 30 * time.Second},
		{"CANARYD_IDLE_TIMEOUT", "--idle-timeout", "1m", "2m", func(o app.Options, _ logOptions) any { return o.IdleTimeout }, time.Minute, 2 * time.Minute},
		{"CANARYD_CLOCK_SKEW", "--clock-skew", "1m", "30s", func(o app.Options, _ logOptions) any { return o.ClockSkew }, time.Minute, 30 * time.Second},
		{"CANARYD_MAX_BATCH_SAMPLES", "--max-batch-samples", "500", "600", func(o app.Options, _ logOptions) any { return o.MaxBatchSamples }, 500, 600},
		{"CANARYD_DRAIN_TIMEOUT", "--drain-timeout", "3s", "4s", func(o app.Options, _ logOptions) any { return o.DrainTimeout }, 3 * time.Second, 4 * time.Second},
		{"CANARYD_SHUTDOWN_TIMEOUT", "--shutdown-timeout", "5s", "6s", func(o app.Options, _ logOptions) any { return o.DrainTimeout }, 5 * time.Second, 6 * time.Second},
		{"CANARYD_TLS_CERT", "--tls-cert", "a.pem", "b.pem", func(o app.Options, _ logOptions) any { return o.TLSCert }, "a.pem", "b.pem"},
		{"CANARYD_TLS_KEY", "--tls-key", "a.key", "b.key", func(o app.Options, _ logOptions) any { return o.TLSKey }, "a.key", "b.key"},
		{"CANARYD_CLIENT_CA", "--client-ca", "ca.pem", "ca2.pem", func(o app.Options, _ logOptions) any { return o.ClientCA }, "ca.pem", "ca2.pem"},
		{"CANARYD_AUTH_TOKENS", "--auth-tokens", "t.yaml", "u.yaml", func(o app.Options, _ logOptions) any { return o.AuthTokens }, "t.yaml", "u.yaml"},
		{"CANARYD_REFLECTION", "--reflection", "false", "true", func(o app.Options, _ logOptions) any { return o.DisableReflection }, true, false},
		{"CANARYD_LOG_LEVEL", "--log-level", "debug", "error", func(_ app.Options, lo logOptions) any { return lo.level }, slog.LevelDebug, slog.LevelError},
		{"CANARYD_LOG_FORMAT", "--log-format", "JSON", "text", func(_ app.Options, lo logOptions) any { return lo.format }, "json", "text"},
	} {
		t.Run(tt.env, func(t *testing.T) {
			env := envOf(map[string]string{tt.env: tt.envValue})
			o, lo, err := parse(nil, env, io.Discard)
			if err != nil {
				t.Fatalf("%s=%s: %v", tt.env, tt.envValue, err)
			}
			if got := tt.get(o, lo); got != tt.fromEnv {
				t.Errorf("%s=%s: %v, want %v", tt.env, tt.envValue, got, tt.fromEnv)
			}
			o, lo, err = parse([]string{tt.flag + "=" + tt.flagValue}, env, io.Discard)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.flag, tt.flagValue, err)
			}
			if got := tt.get(o, lo); got != tt.fromFlag {
				t.Errorf("%s=%s beside %s=%s: %v, want %v", tt.flag, tt.flagValue, tt.env, tt.envValue, got, tt.fromFlag)
			}
		})
	}
	// The current name of the drain timeout wins over its former one.
	o, _, err := parse(nil, envOf(map[string]string{"CANARYD_DRAIN_TIMEOUT": "3s", "CANARYD_SHUTDOWN_TIMEOUT": "9s"}), io.Discard)
	if err != nil || o.DrainTimeout != 3*time.Second {
		t.Errorf("both drain variables: %v, %v; want 3s", o.DrainTimeout, err)
	}
	// --compact-threshold is in MiB.
	if o, _, err := parse([]string{"--compact-threshold", "5"}, envOf(nil), io.Discard); err != nil || o.CompactThreshold != 5<<20 {
		t.Errorf("--compact-threshold 5: %d, %v; want 5 MiB", o.CompactThreshold, err)
	}
}

// TestParseErrors: a bad value in a flag or a variable is an error that
// names it, and so are arguments; -h is flag.ErrHelp. run answers 2 and 0
// for them without serving.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"CANARYD_IDLE_TIMEOUT": "soon"}, "CANARYD_IDLE_TIMEOUT"},
		{nil, map[string]string{"CANARYD_MAX_BATCH_SAMPLES": "many"}, "CANARYD_MAX_BATCH_SAMPLES"},
		{nil, map[string]string{"CANARYD_REFLECTION": "maybe"}, "CANARYD_REFLECTION"},
		{nil, map[string]string{"CANARYD_DRAIN_TIMEOUT": "10"}, "CANARYD_DRAIN_TIMEOUT"},
		{[]string{"--log-level", "loud"}, nil, "--log-level"},
		{[]string{"--log-format", "xml"}, nil, "--log-format must be text or json"},
		{[]string{"--retention", "a week"}, nil, "retention"},
		{[]string{"--no-such-flag"}, nil, "no-such-flag"},
		{[]string{"serve"}, nil, `unexpected arguments ["serve"]`},
	} {
		_, _, err := parse(tt.args, envOf(tt.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v %v: %v, want an error with %q", tt.args, tt.env, err, tt.want)
		}
		var stderr bytes.Buffer
		if code := run(tt.args, envOf(tt.env), io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "canaryd") {
			t.Errorf("run %v %v: exit %d (%q), want 2 and a message", tt.args, tt.env, code, stderr.String())
		}
	}
	if _, _, err := parse([]string{"-h"}, envOf(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
	var usage bytes.Buffer
	if code := run([]string{"-h"}, envOf(nil), io.Discard, &usage); code != 0 || !strings.Contains(usage.String(), "CANARYD_GRPC_ADDR") {
		t.Errorf("run -h: exit %d, usage %q", code, usage.String())
	}
	// --version: the build info (the stamped version is tested end to end).
	var stdout bytes.Buffer
	if code := run([]string{"--version"}, envOf(nil), &stdout, io.Discard); code != 0 || !strings.HasPrefix(stdout.String(), "canaryd ") ||
		!strings.Contains(stdout.String(), "(go1.") {
		t.Errorf("run --version: exit %d, stdout %q", code, stdout.String())
	}
}

// TestNewLogger: --log-format json logs JSON lines, text logfmt, at the
// level asked.
func TestNewLogger(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	newLogger(&b, logOptions{level: slog.LevelWarn, format: "json"}).Info("dropped")
	newLogger(&b, logOptions{level: slog.LevelWarn, format: "json"}).Warn("kept", "k", 1)
	if !strings.HasPrefix(b.String(), `{"time":`) || !strings.Contains(b.String(), `"msg":"kept","k":1`) || strings.Contains(b.String(), "dropped") {
		t.Errorf("json logger wrote %q", b.String())
	}
	b.Reset()
	newLogger(&b, logOptions{level: slog.LevelInfo, format: "text"}).Info("hello", "k", 1)
	if !strings.Contains(b.String(), "level=INFO msg=hello k=1") {
		t.Errorf("text logger wrote %q", b.String())
	}
}

// TestPullFlags: the pull flags default to the puller's defaults, take
// their environment variables, are overridden by the flags, and reject
// values out of range; --pull-workers 0 turns the puller off.
func TestPullFlags(t *testing.T) {
	t.Parallel()
	o, _, err := parse(nil, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := app.PullOptions{Workers: puller.DefaultWorkers, Timeout: puller.DefaultQueryTimeout, LeaseTTL: puller.DefaultLeaseTTL,
		Backlog: puller.DefaultBacklog, ScanInterval: puller.DefaultScanInterval}
	if o.Pull != want {
		t.Fatalf("defaults: %+v, want %+v", o.Pull, want)
	}
	vars := map[string]string{"CANARYD_PULL_WORKERS": "8", "CANARYD_PULL_TIMEOUT": "5s", "CANARYD_PULL_LEASE": "9s",
		"CANARYD_PULL_BACKLOG": "2h", "CANARYD_PULL_SCAN": "3s"}
	if o, _, err = parse(nil, envOf(vars), io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := (app.PullOptions{Workers: 8, Timeout: 5 * time.Second, LeaseTTL: 9 * time.Second, Backlog: 2 * time.Hour, ScanInterval: 3 * time.Second}); o.Pull != want {
		t.Fatalf("from the environment: %+v, want %+v", o.Pull, want)
	}
	if o, _, err = parse([]string{"--pull-workers", "0", "--pull-timeout", "1s", "--pull-lease", "2s", "--pull-backlog", "10m", "--pull-scan", "1s"},
		envOf(vars), io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := (app.PullOptions{Timeout: time.Second, LeaseTTL: 2 * time.Second, Backlog: 10 * time.Minute, ScanInterval: time.Second, Disabled: true}); o.Pull != want {
		t.Fatalf("from the flags: %+v, want %+v", o.Pull, want)
	}
	for _, args := range [][]string{
		{"--pull-workers", "-1"},
		{"--pull-timeout", "0"},
		{"--pull-lease", "500ms"},
		{"--pull-backlog", "-1h"},
		{"--pull-scan", "0s"},
		{"--pull-timeout", "soon"},
	} {
		if _, _, err := parse(args, envOf(nil), io.Discard); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
