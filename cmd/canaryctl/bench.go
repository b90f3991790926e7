package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/canaryd/canaryd/internal/loadgen"
)

// benchFlags are the flags of canaryctl bench.
type benchFlags struct {
	runs, streams, batchSize                         int
	duration, batchInterval, judgeEvery, healthEvery time.Duration
	service, stage, metricsURL                       string
	seed                                             uint64
}

func newBenchCmd(g *globals) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a running canaryd: N runs × M ingest streams + a watcher each, for a while",
		Long: `Drive a running canaryd as a fleet of deployments would, and measure how it holds up: --runs
runs, each fed by --streams IngestStreams (a batch at a time, each acknowledged before the next,
then --batch-interval) and followed by one WatchVerdict stream, judged every --judge-interval,
while a connection of its own checks grpc.health.v1 every --health-interval. After --duration
it stops, aborts every run it created, and prints throughput, ack, judge and health-check
latency (p50/p99), and the failed calls. With --metrics-url (canaryd's /metrics) it also reads
the daemon's resident memory before and under the load: the memory a live run costs.

The load is bounded (at most 10,000 runs, 16 streams each, one hour) and synthetic: the canary
behaves like its baseline. Its runs are created in --service / --stage (the token's scope must
cover it). Exit code 1 if any call failed.`,
		Example: `  canaryctl bench --runs 1000 --streams 1 --duration 60s --metrics-url http://localhost:7071/metrics
  canaryctl bench --runs 10 --streams 4 --batch-interval 0 --duration 30s -o json`,
		Args: rangeArgs(0, 0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.Context(), g, f) },
	}
	fs := cmd.Flags()
	fs.IntVar(&f.runs, "runs", 10, "concurrent runs (N)")
	fs.IntVar(&f.streams, "streams", 1, "ingest streams per run (M)")
	fs.DurationVar(&f.duration, "duration", 30*time.Second, "how long the load runs, after its runs are created")
	fs.DurationVar(&f.batchInterval, "batch-interval", time.Second, "pause after each acknowledgement on a stream (0: none)")
	fs.IntVar(&f.batchSize, "batch-size", 20, "observations of each distribution and mean metric per cohort in a batch")
	fs.DurationVar(&f.judgeEvery, "judge-interval", 10*time.Second, "period of each run's Judge call (0: none)")
	fs.DurationVar(&f.healthEvery, "health-interval", 100*time.Millisecond, "period of the health check")
	fs.StringVar(&f.service, "service", "bench", "service of the runs")
	fs.StringVar(&f.stage, "stage", "load", "stage of the runs")
	fs.StringVar(&f.metricsURL, "metrics-url", "", "canaryd's /metrics URL, for its resident memory (optional)")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the synthetic data")
	return cmd
}

// dialer returns a function that opens a connection to canaryd with the
// global flags' address and credentials.
func (c *clientFlags) dialer() (func(context.Context) (*grpc.ClientConn, error), error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	creds, err := c.transport()
	if err != nil {
		return nil, err
	}
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if c.token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearerToken(c.token)))
	}
	return func(context.Context) (*grpc.ClientConn, error) {
		conn, err := grpc.NewClient(c.addr, dopts...)
		if err != nil {
			return nil, usageError{fmt.Errorf("--addr %s: %w", c.addr, err)}
		}
		return conn, nil
	}, nil
}

func runBench(ctx context.Context, g *globals, f benchFlags) error {
	dial, err := g.cf.dialer()
	if err != nil {
		return err
	}
	opts := loadgen.Options{
		Dial: dial, Runs: f.runs, StreamsPerRun: f.streams, Duration: f.duration,
		BatchInterval: f.batchInterval, BatchSize: f.batchSize, JudgeInterval: f.judgeEvery,
		HealthInterval: f.healthEvery, Service: f.service, Stage: f.stage, MetricsURL: f.metricsURL,
		Seed:   f.seed,
		Logger: slog.New(slog.NewTextHandler(g.e.stderr, nil)),
	}
	if err := loadgen.Check(opts); err != nil {
		return usageError{err}
	}
	if g.cf.timeoutSet && g.cf.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.cf.timeout)
		defer cancel()
	}
	rep, err := loadgen.Run(ctx, opts)
	if rep != nil {
		switch g.cf.out {
		case outJSON, outYAML:
			if werr := printValue(g.e.stdout, g.cf.out, benchJSON(rep)); werr != nil && err == nil {
				err = werr
			}
		default:
			rep.Print(g.e.stdout)
		}
	}
	if err != nil {
		return err
	}
	if n := rep.ErrorCount(); n > 0 {
		return fmt.Errorf("%d calls failed", n)
	}
	return nil
}

// benchJSON is the report of a load as JSON: latencies in milliseconds.
func benchJSON(r *loadgen.Report) map[string]any {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	lat := func(l loadgen.Latency) map[string]any {
		return map[string]any{"calls": l.N, "p50_ms": ms(l.P50), "p99_ms": ms(l.P99), "max_ms": ms(l.Max)}
	}
	return map[string]any{
		"runs": r.Runs, "streams_per_run": r.StreamsPerRun, "elapsed_s": r.Elapsed.Seconds(),
		"batches": r.Batches, "observations": r.Observations,
		"batches_per_s": r.BatchRate, "observations_per_s": r.SampleRate,
		"ack": lat(r.Ack), "judge": lat(r.Judge), "health": lat(r.Health), "create": lat(r.Create), "abort": lat(r.Abort),
		"verdicts": r.Verdicts, "aborted": r.Aborted,
		"rss_before_bytes": r.RSSBefore, "rss_during_bytes": r.RSSDuring, "rss_per_run_bytes": r.RSSPerRun,
		"errors": r.Errors, "error_count": r.ErrorCount(), "first_errors": r.FirstErrors,
	}
}
