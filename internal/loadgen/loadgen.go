// Package loadgen drives a running canaryd the way a fleet of deployments
// does, and measures how it holds up: N runs, each fed by M ingest streams
// (IngestStream, a batch at a time, acknowledged before the next) and
// watched by one WatchVerdict stream, judged on demand now and then
// (Judge), while a separate connection probes grpc.health.v1 like an
// orchestrator's liveness check. It is bounded (at most MaxRuns runs and
// MaxStreams streams, for Duration) and self-stopping, and cleans up: every
// run it created is aborted at the end, whatever happened. canaryctl bench
// is its command line.
package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Bounds of a load, so that a typo cannot take a shared daemon down.
const (
	MaxRuns          = 10_000
	MaxStreamsPerRun = 16
	MaxDuration      = time.Hour
	// streamsPerConn stays below canaryd's default MAX_CONCURRENT_STREAMS
	// (256): the streams of a load are spread over as many connections as
	// that takes.
	streamsPerConn = 200
	// setupConcurrency bounds the CreateRun and AbortRun calls in flight.
	setupConcurrency = 32
	// stopGrace bounds the wait for the streams to end after Duration.
	stopGrace = 30 * time.Second
)

// Options describe a load.
type Options struct {
	// Dial opens a connection to the daemon (with its credentials). The
	// load opens one for the health probe and one per 200 streams.
	Dial func(ctx context.Context) (*grpc.ClientConn, error)
	// Runs is the number of concurrent runs (N), StreamsPerRun the ingest
	// streams of each (M).
	Runs, StreamsPerRun int
	// Duration is how long the load runs, after the runs are created.
	Duration time.Duration
	// BatchInterval is the pause between a batch's acknowledgement and
	// the next batch on a stream; 0 sends as fast as acknowledgements come.
	BatchInterval time.Duration
	// BatchSize is the number of observations of each distribution and
	// mean metric per cohort in a batch (its rate metric gets one count).
	BatchSize int
	// JudgeInterval is the period of each run's Judge call; 0: none.
	JudgeInterval time.Duration
	// HealthInterval is the period of the health probe; 0: 100ms.
	HealthInterval time.Duration
	// Service and Stage name the runs (Service must be in the caller's
	// scope when the daemon checks tokens).
	Service, Stage string
	// MetricsURL, when set, is the daemon's /metrics: its
	// process_resident_memory_bytes is read before and during the load,
	// for the memory a live run costs.
	MetricsURL string
	// HTTPClient reads MetricsURL; nil: http.DefaultClient.
	HTTPClient *http.Client
	// Seed seeds the synthetic data.
	Seed uint64
	// Logger receives progress; nil: none.
	Logger *slog.Logger
}

// Check reports what is wrong with opts, before anything is dialled.
func Check(opts Options) error { return opts.validate() }

func (o *Options) validate() error {
	switch {
	case o.Dial == nil:
		return errors.New("loadgen: no Dial")
	case o.Runs < 1 || o.Runs > MaxRuns:
		return fmt.Errorf("loadgen: runs %d, want 1 to %d", o.Runs, MaxRuns)
	case o.StreamsPerRun < 0 || o.StreamsPerRun > MaxStreamsPerRun:
		return fmt.Errorf("loadgen: streams per run %d, want 0 to %d", o.StreamsPerRun, MaxStreamsPerRun)
	case o.Duration <= 0 || o.Duration > MaxDuration:
		return fmt.Errorf("loadgen: duration %v, want more than 0 and at most %v", o.Duration, MaxDuration)
	case o.BatchInterval < 0 || o.JudgeInterval < 0 || o.HealthInterval < 0:
		return errors.New("loadgen: negative interval")
	case o.BatchSize < 1 || o.BatchSize > 10_000:
		return fmt.Errorf("loadgen: batch size %d, want 1 to 10000", o.BatchSize)
	case o.Service == "" || o.Stage == "":
		return errors.New("loadgen: service and stage are required")
	}
	return nil
}

// Latency summarizes the latencies of one kind of call.
type Latency struct {
	N             int
	P50, P99, Max time.Duration
}

// Report is what a load measured.
type Report struct {
	Runs, StreamsPerRun int
	// Elapsed is the time the load ran (after the runs were created).
	Elapsed time.Duration
	// Batches and Observations acknowledged, and their rates over
	// Elapsed.
	Batches, Observations     uint64
	BatchRate, SampleRate     float64
	Create, Ack, Judge, Abort Latency
	Health                    Latency
	// Verdicts received by the watchers, and runs aborted at the end.
	Verdicts uint64
	Aborted  int
	// Errors counts the failed calls by operation and code ("ingest
	// UNAVAILABLE"); FirstErrors holds the first few messages.
	Errors      map[string]int
	FirstErrors []string
	// RSSBefore and RSSDuring are the daemon's resident memory before the
	// runs and at the end of the load (0 without MetricsURL);
	// RSSPerRun is their difference per run.
	RSSBefore, RSSDuring uint64
	RSSPerRun            float64
}

// ErrorCount is the number of failed calls.
func (r *Report) ErrorCount() int {
	n := 0
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// recorder collects latencies and errors from many goroutines.
type recorder struct {
	mu    sync.Mutex
	lat   map[string][]time.Duration
	errs  map[string]int
	first []string
	rng   *rand.Rand // for the reservoir, under mu
}

func newRecorder(seed uint64) *recorder {
	return &recorder{lat: map[string][]time.Duration{}, errs: map[string]int{}, rng: rand.New(rand.NewPCG(seed, 1))}
}

// maxSamples bounds the latencies kept per kind; beyond it, each new one
// replaces a random kept one (reservoir sampling), so quantiles stay
// unbiased and memory bounded.
const maxSamples = 1 << 20

func (r *recorder) latency(kind string, d time.Duration, seen *uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.lat[kind]
	*seen++
	if len(s) < maxSamples {
		r.lat[kind] = append(s, d)
		return
	}
	if j := r.rng.Uint64N(*seen); j < maxSamples {
		s[j] = d
	}
}

// fail records a failed call, unless it failed because the load stopped
// (ctx, the load's context, ended).
func (r *recorder) fail(ctx context.Context, op string, err error) {
	if ctx.Err() != nil {
		return
	}
	key := op + " " + strings.ToUpper(status.Code(err).String())
	if errors.Is(err, context.DeadlineExceeded) {
		key = op + " DEADLINE_EXCEEDED"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs[key]++
	if len(r.first) < 5 {
		r.first = append(r.first, op+": "+err.Error())
	}
}

func (r *recorder) summary(kind string) Latency {
	r.mu.Lock()
	s := slices.Clone(r.lat[kind])
	r.mu.Unlock()
	if len(s) == 0 {
		return Latency{}
	}
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)] }
	return Latency{N: len(s), P50: q(0.5), P99: q(0.99), Max: s[len(s)-1]}
}

// benchConfig is the config of every run: a metric of each type.
func benchConfig() *canaryv1.CanaryConfig {
	ptr := func(v float64) *float64 { return &v }
	return &canaryv1.CanaryConfig{
		Name: "bench",
		Metrics: []*canaryv1.MetricConfig{
			{Name: "latency_ms", Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
				Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION, Unit: "ms"},
			{Name: "errors", Category: canaryv1.MetricCategory_METRIC_CATEGORY_STABILITY,
				Type: canaryv1.MetricType_METRIC_TYPE_RATE, Tolerance: ptr(0.5)},
			{Name: "order_value", Category: canaryv1.MetricCategory_METRIC_CATEGORY_BUSINESS,
				Type: canaryv1.MetricType_METRIC_TYPE_MEAN},
		},
	}
}

// batch builds one batch of synthetic data of both cohorts (the canary
// identical to the baseline), and returns it with its observations.
func batch(rng *rand.Rand, runID, id string, size int) (*canaryv1.Batch, uint64) {
	b := &canaryv1.Batch{RunId: runID, BatchId: id}
	var n uint64
	for _, c := range []canaryv1.Cohort{canaryv1.Cohort_COHORT_BASELINE, canaryv1.Cohort_COHORT_CANARY} {
		lat, val := make([]float64, size), make([]float64, size)
		for i := range lat {
			lat[i] = math.Round(100*math.Exp(0.4*rng.NormFloat64())*10) / 10
			val[i] = math.Round((50+20*rng.NormFloat64())*100) / 100
		}
		reqs := float64(10 * size)
		errs := 0.0
		for range int(reqs) {
			if rng.Float64() < 0.005 {
				errs++
			}
		}
		b.Columns = append(b.Columns,
			&canaryv1.MetricColumn{Metric: "latency_ms", Cohort: c, Values: lat},
			&canaryv1.MetricColumn{Metric: "order_value", Cohort: c, Values: val},
			&canaryv1.MetricColumn{Metric: "errors", Cohort: c, Counts: []float64{errs}, Totals: []float64{reqs}})
		n += uint64(2*size + 1)
	}
	return b, n
}

// Run creates the runs, drives the load for opts.Duration, aborts the
// runs and reports. It returns an error only when the load could not
// start (no connection, no run created); failed calls during the load are
// counted in the report. Cancelling ctx stops the load early, and still
// aborts the runs.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = 100 * time.Millisecond
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{Runs: opts.Runs, StreamsPerRun: opts.StreamsPerRun, Errors: map[string]int{}}
	rec := newRecorder(opts.Seed)
	phases := rand.New(rand.NewPCG(opts.Seed, 2))

	// Connections: one for setup, health and the watchers' share, and
	// one per streamsPerConn streams.
	streams := opts.Runs * (opts.StreamsPerRun + 1)
	nconn := 1 + (streams+streamsPerConn-1)/streamsPerConn
	conns := make([]*grpc.ClientConn, 0, nconn)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range nconn {
		c, err := opts.Dial(ctx)
		if err != nil {
			return nil, fmt.Errorf("loadgen: dial: %w", err)
		}
		conns = append(conns, c)
	}
	healthConn, err := opts.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("loadgen: dial: %w", err)
	}
	defer healthConn.Close()
	setup := canaryv1.NewCanaryServiceClient(conns[0])
	streamConn := func(k int) canaryv1.CanaryServiceClient {
		return canaryv1.NewCanaryServiceClient(conns[1+k/streamsPerConn%(len(conns)-1)])
	}

	if opts.MetricsURL != "" {
		if rep.RSSBefore, err = readRSS(ctx, opts); err != nil {
			return nil, err
		}
	}

	// Create the runs. Those created are aborted at the end, whatever
	// happens after this point.
	tag := fmt.Sprintf("%x", opts.Seed^uint64(time.Now().UnixNano()))
	ids := make([]string, opts.Runs)
	var createSeen uint64
	parallel(ctx, opts.Runs, setupConcurrency, func(i int) {
		start := time.Now()
		resp, err := setup.CreateRun(ctx, &canaryv1.CreateRunRequest{
			RequestId: fmt.Sprintf("bench-%s-%d", tag, i), Service: opts.Service, Stage: opts.Stage,
			Config:   &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: benchConfig()},
			BakeTime: durationpb.New(24 * time.Hour),
		})
		if err != nil {
			rec.fail(ctx, "create", err)
			return
		}
		rec.latency("create", time.Since(start), &createSeen)
		ids[i] = resp.GetRun().GetId()
	})
	defer func() {
		rep.Aborted = abortAll(opts, setup, ids, rec)
		rep.Abort = rec.summary("abort")
		rep.Errors, rep.FirstErrors = rec.errs, rec.first
	}()
	created := 0
	for _, id := range ids {
		if id != "" {
			created++
		}
	}
	if created == 0 {
		return rep, fmt.Errorf("loadgen: no run created: %v", rec.first)
	}
	log.Info("bench: runs created", "runs", created, "connections", len(conns)+1)

	// The load.
	// Cancelled, not timed out: a deadline would travel with every call
	// and fail them at the end (DEADLINE_EXCEEDED, raced with the
	// context's own expiry), where cancellation ends them quietly.
	loadCtx, stop := context.WithCancel(ctx)
	defer stop()
	// The ingest streams outlive the load by up to stopGrace: a batch in
	// flight when it ends gets its acknowledgement, so that every batch
	// stored is one counted.
	streamCtx, cancelStreams := context.WithCancel(ctx)
	defer cancelStreams()
	timer := time.AfterFunc(opts.Duration, stop)
	defer timer.Stop()
	var (
		wg                     sync.WaitGroup
		batches, obs, verdicts atomic.Uint64
		ackSeen, judgeSeen     uint64
		healthSeen             uint64
	)
	began := time.Now()
	k := 0
	for i, id := range ids {
		if id == "" {
			continue
		}
		for s := range opts.StreamsPerRun {
			c := streamConn(k)
			k++
			rng := rand.New(rand.NewPCG(opts.Seed, uint64(i*MaxStreamsPerRun+s)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				ingest(loadCtx, streamCtx, c, id, s, rng, opts, rec, &ackSeen, &batches, &obs)
			}()
		}
		c := streamConn(k)
		k++
		wg.Add(1)
		go func() {
			defer wg.Done()
			watch(loadCtx, c, id, rec, &verdicts)
		}()
		if opts.JudgeInterval > 0 {
			wg.Add(1)
			phase := time.Duration(phases.Int64N(int64(opts.JudgeInterval)))
			go func() {
				defer wg.Done()
				judge(loadCtx, setup, id, phase, opts.JudgeInterval, rec, &judgeSeen)
			}()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		probe(loadCtx, healthpb.NewHealthClient(healthConn), opts.HealthInterval, rec, &healthSeen)
	}()
	<-loadCtx.Done()
	rep.Elapsed = time.Since(began)
	if opts.MetricsURL != "" {
		rssCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rep.RSSDuring, err = readRSS(rssCtx, opts)
		cancel()
		if err != nil {
			rec.fail(context.Background(), "metrics", err)
		} else if rep.RSSDuring > rep.RSSBefore {
			rep.RSSPerRun = float64(rep.RSSDuring-rep.RSSBefore) / float64(created)
		}
	}
	waitGroup(&wg, stopGrace)
	cancelStreams()
	rep.Batches, rep.Observations, rep.Verdicts = batches.Load(), obs.Load(), verdicts.Load()
	if s := rep.Elapsed.Seconds(); s > 0 {
		rep.BatchRate, rep.SampleRate = float64(rep.Batches)/s, float64(rep.Observations)/s
	}
	rep.Create, rep.Ack, rep.Judge, rep.Health = rec.summary("create"), rec.summary("ack"), rec.summary("judge"), rec.summary("health")
	log.Info("bench: load ended", "batches", rep.Batches, "elapsed", rep.Elapsed)
	return rep, nil
}

// parallel calls f(0) … f(n−1), at most width at a time.
func parallel(ctx context.Context, n, width int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, width)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}

// waitGroup waits for wg, at most grace.
func waitGroup(wg *sync.WaitGroup, grace time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
	}
}

// ingest sends batches on one IngestStream (of context sctx) until ctx
// ends, each after the previous one's acknowledgement (and BatchInterval),
// then closes the stream, receiving what remains.
func ingest(ctx, sctx context.Context, c canaryv1.CanaryServiceClient, runID string, s int, rng *rand.Rand, opts Options,
	rec *recorder, seen *uint64, batches, obs *atomic.Uint64) {
	var seq uint64 // batch ids s<stream>-<seq>: unique in the run across reconnections
	for ctx.Err() == nil {
		st, err := c.IngestStream(sctx)
		if err != nil {
			rec.fail(ctx, "ingest", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		err = ingestOn(ctx, st, runID, s, &seq, rng, opts, rec, seen, batches, obs)
		if err != nil {
			rec.fail(sctx, "ingest", err)
			sleepCtx(ctx, time.Second)
		}
	}
}

func ingestOn(ctx context.Context, st canaryv1.CanaryService_IngestStreamClient, runID string, s int, seq *uint64, rng *rand.Rand,
	opts Options, rec *recorder, seen *uint64, batches, obs *atomic.Uint64) error {
	for ctx.Err() == nil {
		*seq++
		b, n := batch(rng, runID, fmt.Sprintf("s%d-%d", s, *seq), opts.BatchSize)
		start := time.Now()
		if err := st.Send(&canaryv1.IngestStreamRequest{Batch: b}); err != nil {
			if errors.Is(err, io.EOF) {
				_, err = st.Recv() // the stream's status
			}
			return err
		}
		if _, err := st.Recv(); err != nil {
			return err
		}
		rec.latency("ack", time.Since(start), seen)
		batches.Add(1)
		obs.Add(n)
		sleepCtx(ctx, opts.BatchInterval)
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// watch follows a run's verdicts until ctx ends, reconnecting on errors.
func watch(ctx context.Context, c canaryv1.CanaryServiceClient, runID string, rec *recorder, verdicts *atomic.Uint64) {
	for ctx.Err() == nil {
		st, err := c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: runID})
		if err == nil {
			for {
				if _, err = st.Recv(); err != nil {
					break
				}
				verdicts.Add(1)
			}
		}
		rec.fail(ctx, "watch", err)
		sleepCtx(ctx, time.Second)
	}
}

// judge calls Judge on a run every interval, after phase.
func judge(ctx context.Context, c canaryv1.CanaryServiceClient, runID string, phase, every time.Duration, rec *recorder, seen *uint64) {
	sleepCtx(ctx, phase)
	for ctx.Err() == nil {
		start := time.Now()
		if _, err := c.Judge(ctx, &canaryv1.JudgeRequest{RunId: runID}); err != nil {
			rec.fail(ctx, "judge", err)
		} else {
			rec.latency("judge", time.Since(start), seen)
		}
		sleepCtx(ctx, every)
	}
}

// probe checks grpc.health.v1 every interval, each check bounded by 5s.
func probe(ctx context.Context, h healthpb.HealthClient, every time.Duration, rec *recorder, seen *uint64) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		resp, err := h.Check(cctx, &healthpb.HealthCheckRequest{})
		el := time.Since(start)
		cancel()
		switch {
		case err != nil:
			rec.fail(ctx, "health", err)
		case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			rec.fail(ctx, "health", status.Errorf(codes.Unavailable, "status %s", resp.GetStatus()))
		default:
			rec.latency("health", el, seen)
		}
		sleepCtx(ctx, every)
	}
}

// abortAll aborts the runs created, and returns how many it aborted.
func abortAll(opts Options, c canaryv1.CanaryServiceClient, ids []string, rec *recorder) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var n atomic.Int64
	var seen uint64
	parallel(ctx, len(ids), setupConcurrency, func(i int) {
		if ids[i] == "" {
			return
		}
		start := time.Now()
		_, err := c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: ids[i], Reason: "canaryctl bench: load ended"})
		if err != nil {
			rec.fail(ctx, "abort", err)
			return
		}
		rec.latency("abort", time.Since(start), &seen)
		n.Add(1)
	})
	return int(n.Load())
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// readRSS reads process_resident_memory_bytes from the daemon's /metrics.
func readRSS(ctx context.Context, opts Options) (uint64, error) {
	hc := opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, opts.MetricsURL, nil)
	if err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("loadgen: metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("loadgen: metrics: %w", err)
			}
			return uint64(f), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	return 0, errors.New("loadgen: metrics: no process_resident_memory_bytes")
}

// Print writes the report for people.
func (r *Report) Print(w io.Writer) {
	ms := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 1, 64) + "ms" }
	lat := func(name string, l Latency) {
		if l.N == 0 {
			fmt.Fprintf(w, "%-14s none\n", name)
			return
		}
		fmt.Fprintf(w, "%-14s p50 %s  p99 %s  max %s  (%d calls)\n", name, ms(l.P50), ms(l.P99), ms(l.Max), l.N)
	}
	fmt.Fprintf(w, "load:          %d runs × %d ingest streams + 1 watcher each, %s\n", r.Runs, r.StreamsPerRun,
		r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "throughput:    %.0f batches/s, %.0f observations/s (%d batches, %d observations)\n",
		r.BatchRate, r.SampleRate, r.Batches, r.Observations)
	lat("ack latency:", r.Ack)
	lat("judge latency:", r.Judge)
	lat("health check:", r.Health)
	lat("create run:", r.Create)
	lat("abort run:", r.Abort)
	fmt.Fprintf(w, "verdicts:      %d received by the watchers\n", r.Verdicts)
	if r.RSSDuring > 0 {
		fmt.Fprintf(w, "daemon RSS:    %.1f MiB before, %.1f MiB under load: %.1f KiB per live run\n",
			float64(r.RSSBefore)/(1<<20), float64(r.RSSDuring)/(1<<20), r.RSSPerRun/1024)
	}
	fmt.Fprintf(w, "aborted:       %d runs\n", r.Aborted)
	fmt.Fprintf(w, "errors:        %d\n", r.ErrorCount())
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-28s %d\n", k, r.Errors[k])
	}
	for _, e := range r.FirstErrors {
		fmt.Fprintf(w, "  e.g. %s\n", e)
	}
}
