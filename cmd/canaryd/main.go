// Command canaryd is the canary-analysis service: it serves the
// canary.v1.CanaryService over gRPC on an embedded durable store, or as one
// of several interchangeable replicas sharing a Redis
// (--store redis://host:port/db).
//
//	canaryd [--grpc-addr :7070] [--http-addr :7071] [--store ./canaryd.db | redis://host:6379/0]
//	        [--retention 168h] [--verdict-retention 0]
//	        [--tls-cert FILE --tls-key FILE [--client-ca FILE]] [--auth-tokens FILE] [--reflection=false]
//
// Every flag has an environment equivalent, used when the flag is not
// given: --grpc-addr CANARYD_GRPC_ADDR, --http-addr CANARYD_HTTP_ADDR,
// --store CANARYD_STORE, --retention CANARYD_RETENTION, --verdict-retention
// CANARYD_VERDICT_RETENTION, --compact-threshold CANARYD_COMPACT_THRESHOLD,
// --store-wait CANARYD_STORE_WAIT, --idle-timeout CANARYD_IDLE_TIMEOUT,
// --max-batch-samples CANARYD_MAX_BATCH_SAMPLES, --clock-skew
// CANARYD_CLOCK_SKEW, --drain-timeout
// CANARYD_DRAIN_TIMEOUT (--shutdown-timeout and CANARYD_SHUTDOWN_TIMEOUT,
// its former names, still work), --tls-cert CANARYD_TLS_CERT, --tls-key
// CANARYD_TLS_KEY, --client-ca CANARYD_CLIENT_CA, --auth-tokens
// CANARYD_AUTH_TOKENS, --reflection CANARYD_REFLECTION, --stream-idle-timeout
// CANARYD_STREAM_IDLE_TIMEOUT, --max-concurrent-streams
// CANARYD_MAX_CONCURRENT_STREAMS, --keepalive-min-time
// CANARYD_KEEPALIVE_MIN_TIME, --judge-concurrency CANARYD_JUDGE_CONCURRENCY,
// --pull-workers CANARYD_PULL_WORKERS, --pull-timeout CANARYD_PULL_TIMEOUT,
// --pull-lease CANARYD_PULL_LEASE, --pull-backlog CANARYD_PULL_BACKLOG,
// --pull-scan CANARYD_PULL_SCAN,
// --log-level CANARYD_LOG_LEVEL, --log-format CANARYD_LOG_FORMAT. README.md
// ("Limits") lists every limit.
//
// gRPC (default :7070) carries the API, grpc.health.v1 and server
// reflection (`grpcurl -plaintext localhost:7070 list`); HTTP (default
// :7071) serves /metrics and /healthz. SIGINT or SIGTERM drains it (see
// --drain-timeout) and closes the store.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/canaryd/canaryd/internal/app"
	"github.com/canaryd/canaryd/internal/buildinfo"
	"github.com/canaryd/canaryd/puller"
	"github.com/canaryd/canaryd/server"
	"github.com/canaryd/canaryd/server/store/embedded"
	"github.com/canaryd/canaryd/server/store/redisstore"
)

// version is stamped at link time: go build -ldflags "-X main.version=v1.2.3"
// (the Dockerfile passes its VERSION argument). Empty, the module version
// from the build info is used.
var version string

// errShowVersion is parse's answer to --version.
var errShowVersion = errors.New("--version")

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run parses the command line and serves until a signal; it returns the
// exit code: 0 after a clean shutdown, 1 on a failure, 2 on bad usage.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	opts, logOpts, err := parse(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errShowVersion) {
		fmt.Fprintf(stdout, "canaryd %s\n", buildinfo.Get(version))
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "canaryd:", err)
		return 2
	}
	opts.Logger = newLogger(stderr, logOpts)
	opts.Build = buildinfo.Get(version)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, opts); err != nil {
		opts.Logger.Error("canaryd failed", "err", err)
		return 1
	}
	return 0
}

type logOptions struct {
	level  slog.Level
	format string
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (app.Options, logOptions, error) {
	var (
		o   app.Options
		lo  logOptions
		err error
	)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	envDuration := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" || err != nil {
			return def
		}
		d, perr := time.ParseDuration(v)
		if perr != nil {
			err = fmt.Errorf("%s: %w", name, perr)
		}
		return d
	}
	envInt := func(name string, def int) int {
		v := getenv(name)
		if v == "" || err != nil {
			return def
		}
		n, perr := strconv.Atoi(v)
		if perr != nil {
			err = fmt.Errorf("%s: %w", name, perr)
		}
		return n
	}

	envBool := func(name string, def bool) bool {
		v := getenv(name)
		if v == "" || err != nil {
			return def
		}
		b, perr := strconv.ParseBool(v)
		if perr != nil {
			err = fmt.Errorf("%s: %w", name, perr)
		}
		return b
	}

	fs := flag.NewFlagSet("canaryd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.GRPCAddr, "grpc-addr", env("CANARYD_GRPC_ADDR", app.DefaultGRPCAddr),
		"gRPC listen address (API, health, reflection) [CANARYD_GRPC_ADDR]")
	fs.StringVar(&o.HTTPAddr, "http-addr", env("CANARYD_HTTP_ADDR", app.DefaultHTTPAddr),
		"HTTP listen address (JSON API under /v1/, report pages, webhooks, /metrics, /healthz) [CANARYD_HTTP_ADDR]")
	fs.StringVar(&o.Store, "store", env("CANARYD_STORE", app.DefaultStore),
		"store: a file path for the embedded store, or redis://host:port/db (rediss:// for TLS; password in the URL or CANARYD_REDIS_PASSWORD) for the Redis store replicas share [CANARYD_STORE]")
	fs.DurationVar(&o.Retention, "retention", envDuration("CANARYD_RETENTION", redisstore.DefaultRetention),
		"keep the raw data (batches, snapshots) of a finished run this long [CANARYD_RETENTION]")
	fs.DurationVar(&o.VerdictRetention, "verdict-retention", envDuration("CANARYD_VERDICT_RETENTION", 0),
		"keep final verdicts (and their run records) this long; 0 keeps them forever [CANARYD_VERDICT_RETENTION]")
	compactMiB := fs.Int64("compact-threshold", int64(envInt("CANARYD_COMPACT_THRESHOLD", embedded.DefaultCompactThreshold>>20)),
		"embedded store: at start, compact the file when its free pages take this many MiB and a quarter of it; 0 whenever a quarter is free, -1 never [CANARYD_COMPACT_THRESHOLD]")
	fs.DurationVar(&o.StoreWait, "store-wait", envDuration("CANARYD_STORE_WAIT", 5*time.Minute),
		"at start, keep retrying an unavailable store (Redis not up yet) this long [CANARYD_STORE_WAIT]")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", envDuration("CANARYD_IDLE_TIMEOUT", server.DefaultIdleTimeout),
		"drop runs without activity from memory after this long (reloaded on demand) [CANARYD_IDLE_TIMEOUT]")
	fs.DurationVar(&o.ClockSkew, "clock-skew", envDuration("CANARYD_CLOCK_SKEW", server.DefaultClockSkew),
		"ingest rejects samples timed more than this before their run's start or after the present [CANARYD_CLOCK_SKEW]")
	fs.IntVar(&o.MaxBatchSamples, "max-batch-samples", envInt("CANARYD_MAX_BATCH_SAMPLES", server.DefaultMaxBatchSamples),
		"largest ingest batch accepted, in observations [CANARYD_MAX_BATCH_SAMPLES]")
	drain := envDuration("CANARYD_DRAIN_TIMEOUT", envDuration("CANARYD_SHUTDOWN_TIMEOUT", app.DefaultDrainTimeout))
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", drain,
		"on SIGTERM, stop accepting, finish the calls in flight (ingest streams acknowledge what they received, then end with UNAVAILABLE), and cut what still runs after this long [CANARYD_DRAIN_TIMEOUT]")
	fs.DurationVar(&o.DrainTimeout, "shutdown-timeout", drain,
		"deprecated name of --drain-timeout [CANARYD_SHUTDOWN_TIMEOUT]")
	fs.StringVar(&o.TLSCert, "tls-cert", env("CANARYD_TLS_CERT", ""),
		"serve gRPC and HTTP over TLS with this PEM certificate (with --tls-key) [CANARYD_TLS_CERT]")
	fs.StringVar(&o.TLSKey, "tls-key", env("CANARYD_TLS_KEY", ""), "PEM private key of --tls-cert [CANARYD_TLS_KEY]")
	fs.StringVar(&o.ClientCA, "client-ca", env("CANARYD_CLIENT_CA", ""),
		"require gRPC clients to present a certificate signed by a CA of this PEM file (mTLS); its subject CN, else its first DNS or URI SAN, names the caller [CANARYD_CLIENT_CA]")
	fs.StringVar(&o.AuthTokens, "auth-tokens", env("CANARYD_AUTH_TOKENS", ""),
		"YAML file of bearer tokens and mTLS names with their roles and services; without it and --client-ca the API is open [CANARYD_AUTH_TOKENS]")
	reflection := fs.Bool("reflection", envBool("CANARYD_REFLECTION", true), "serve gRPC server reflection [CANARYD_REFLECTION]")
	fs.DurationVar(&o.StreamIdleTimeout, "stream-idle-timeout", envDuration("CANARYD_STREAM_IDLE_TIMEOUT", server.DefaultStreamIdleTimeout),
		"end an ingest stream that sent no batch for this long [CANARYD_STREAM_IDLE_TIMEOUT]")
	maxStreams := fs.Uint("max-concurrent-streams", uint(envInt("CANARYD_MAX_CONCURRENT_STREAMS", server.DefaultMaxConcurrentStreams)),
		"calls in progress per client connection; more wait in the client [CANARYD_MAX_CONCURRENT_STREAMS]")
	fs.DurationVar(&o.KeepaliveMinTime, "keepalive-min-time", envDuration("CANARYD_KEEPALIVE_MIN_TIME", server.DefaultKeepaliveMinTime),
		"disconnect clients that ping more often than this [CANARYD_KEEPALIVE_MIN_TIME]")
	fs.IntVar(&o.JudgeConcurrency, "judge-concurrency", envInt("CANARYD_JUDGE_CONCURRENCY", server.DefaultJudgeConcurrency()),
		"judges computed at the same time; more wait for a slot [CANARYD_JUDGE_CONCURRENCY]")
	fs.IntVar(&o.Pull.Workers, "pull-workers", envInt("CANARYD_PULL_WORKERS", puller.DefaultWorkers),
		"runs read from their config's source (Prometheus) at the same time; 0: this replica pulls no run [CANARYD_PULL_WORKERS]")
	fs.DurationVar(&o.Pull.Timeout, "pull-timeout", envDuration("CANARYD_PULL_TIMEOUT", puller.DefaultQueryTimeout),
		"bound of one query to a source [CANARYD_PULL_TIMEOUT]")
	fs.DurationVar(&o.Pull.LeaseTTL, "pull-lease", envDuration("CANARYD_PULL_LEASE", puller.DefaultLeaseTTL),
		"a run's pull lease: how long a run goes unread after its replica dies [CANARYD_PULL_LEASE]")
	fs.DurationVar(&o.Pull.Backlog, "pull-backlog", envDuration("CANARYD_PULL_BACKLOG", puller.DefaultBacklog),
		"how far back intervals missed during an outage are caught up [CANARYD_PULL_BACKLOG]")
	fs.DurationVar(&o.Pull.ScanInterval, "pull-scan", envDuration("CANARYD_PULL_SCAN", puller.DefaultScanInterval),
		"how often the running runs are listed for pulling [CANARYD_PULL_SCAN]")
	level := fs.String("log-level", env("CANARYD_LOG_LEVEL", "info"), "debug, info, warn or error [CANARYD_LOG_LEVEL]")
	fs.StringVar(&lo.format, "log-format", env("CANARYD_LOG_FORMAT", "text"), "text or json [CANARYD_LOG_FORMAT]")
	showVersion := fs.Bool("version", false, "print the version (with the Go version and the commit) and exit")
	if err != nil {
		return o, lo, err
	}
	if perr := fs.Parse(args); perr != nil {
		return o, lo, perr
	}
	if *showVersion {
		return o, lo, errShowVersion
	}
	o.DisableReflection = !*reflection
	if fs.NArg() > 0 {
		return o, lo, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case *compactMiB < 0:
		o.CompactThreshold = -1
	case *compactMiB == 0:
		o.CompactThreshold = 1 // any free page (and a quarter of the file)
	default:
		o.CompactThreshold = *compactMiB << 20
	}
	if *maxStreams < 1 || *maxStreams > math.MaxUint32 {
		return o, lo, fmt.Errorf("--max-concurrent-streams must be in [1, %d] (got %d)", uint32(math.MaxUint32), *maxStreams)
	}
	o.MaxConcurrentStreams = uint32(*maxStreams)
	if o.JudgeConcurrency < 1 {
		return o, lo, fmt.Errorf("--judge-concurrency must be >= 1 (got %d)", o.JudgeConcurrency)
	}
	switch {
	case o.Pull.Workers < 0:
		return o, lo, fmt.Errorf("--pull-workers must be >= 0 (got %d)", o.Pull.Workers)
	case o.Pull.Timeout <= 0, o.Pull.LeaseTTL <= 0, o.Pull.Backlog <= 0, o.Pull.ScanInterval <= 0:
		return o, lo, fmt.Errorf("--pull-timeout, --pull-lease, --pull-backlog and --pull-scan must be > 0")
	case o.Pull.LeaseTTL < time.Second:
		return o, lo, fmt.Errorf("--pull-lease must be >= 1s (got %v): it is renewed every third of it", o.Pull.LeaseTTL)
	}
	o.Pull.Disabled = o.Pull.Workers == 0
	if perr := lo.level.UnmarshalText([]byte(*level)); perr != nil {
		return o, lo, fmt.Errorf("--log-level: %w", perr)
	}
	switch lo.format = strings.ToLower(lo.format); lo.format {
	case "text", "json":
	default:
		return o, lo, fmt.Errorf("--log-format must be text or json (got %q)", lo.format)
	}
	return o, lo, nil
}

func newLogger(w io.Writer, lo logOptions) *slog.Logger {
	ho := &slog.HandlerOptions{Level: lo.level}
	if lo.format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}
