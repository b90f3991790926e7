package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/collectors/jsonl"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Ingest defaults.
const (
	defaultBatchSize = 10_000
	defaultWindow    = 8
	// ingestAttempts bounds the consecutive attempts to (re)open the
	// stream that acknowledge nothing.
	ingestAttempts = 8
)

// newIngestCmd returns `canaryctl ingest`.
func newIngestCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ingest RUN FILE",
		Short: "Stream samples (JSON Lines; - for standard input) into a run",
		Long: `Stream a samples file (JSON Lines, as for analyze) into a run. Running the same command again
is idempotent: batches the service already stored count as duplicates. When canaryd is
unavailable for a while, the batches not yet acknowledged are sent again. No deadline unless
--timeout is given.`,
		Example: `  canaryctl ingest "$RUN" samples.jsonl
  my-exporter | canaryctl ingest "$RUN" - -o json`,
	}
	fs := cmd.Flags()
	runFlag := deprecatedFlag(fs, "run")
	samples := deprecatedFlag(fs, "samples")
	batchSize := fs.Int("batch-size", defaultBatchSize, "observations per batch")
	window := fs.Int("window", defaultWindow, "batches in flight ahead of their acknowledgement")
	posArgs := func(args []string) []string {
		args = withRunFlag(*runFlag, args)
		if *samples != "" {
			args = append(args, *samples)
		}
		return args
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		warnDeprecated(g.e, cmd, map[string]string{
			"run": "give the run id as the first argument", "samples": "give the file as the second argument"})
		pos := posArgs(args)
		if err := exactArgs(2, "run id and samples file (RUN FILE)")(cmd, pos); err != nil {
			return err
		}
		return runIngest(cmd.Context(), g, pos[0], pos[1], *batchSize, *window)
	}
	return cmd
}

// runIngest streams a samples file into a run over IngestStream.
//
// Batch ids are deterministic, so that running the same command again is
// idempotent: batch n is named by a hash of every record up to the end of
// batch n (in a canonical encoding, not the file's bytes) and by n. A batch
// the service already stored is acknowledged as a duplicate and counted
// once. Because the hash covers the prefix of the file, a file that was cut
// short by a bad line can be fixed and sent again: the batches before the
// line keep their ids. (Re-sending with another --batch-size changes every
// id.)
//
// Up to --window batches are in flight without their acknowledgement; when
// the stream breaks because the service is unavailable, the batches not yet
// acknowledged are sent again on a new stream.
func runIngest(ctx context.Context, g *globals, runID, path string, batchSize, window int) error {
	e, cf := g.e, g.cf
	switch {
	case batchSize < 1:
		return usagef("--batch-size must be >= 1 (got %d)", batchSize)
	case window < 1:
		return usagef("--window must be >= 1 (got %d)", window)
	}
	in, closeIn, err := openInput(e, path)
	if err != nil {
		return err
	}
	defer closeIn()
	var size int64 // 0 when unknown
	if f, ok := in.(*os.File); ok && path != "-" {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
	}

	ctx, c, done, err := cf.connect(ctx, 0)
	if err != nil {
		return err
	}
	defer done()

	// Check each record against the run's config as it is read, so that a
	// bad record is reported by its line rather than by its place in a
	// batch. The service checks again.
	run, err := call(ctx, func(ctx context.Context) (*canaryv1.GetRunResponse, error) {
		return c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: runID})
	})
	if err != nil {
		return err
	}
	var check func(*analysis.Record) error
	if cfg, err := apiconv.ConfigFromProto(run.GetRun().GetConfig()); err == nil {
		check = analysis.NewData(cfg).Check
	}

	var prog *progress
	if isTerminal(e.stderr) {
		prog = &progress{w: e.stderr, size: size}
	}
	ing := &ingester{
		client:   c,
		runID:    runID,
		window:   window,
		stderr:   e.stderr,
		progress: prog,
	}
	cr := &countingReader{r: in}
	sum, err := ing.run(ctx, func(ctx context.Context, out chan<- *outBatch) error {
		return readBatches(ctx, cr, runID, batchSize, check, out)
	})
	prog.finish()
	if err != nil {
		return err
	}
	if sum.Records == 0 {
		return usagef("%s: no samples", path)
	}
	if structured(cf.out) {
		return printValue(e.stdout, cf.out, sum)
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "run:\t%s\n", sum.RunID)
	fmt.Fprintf(tw, "read:\t%d samples in %d batches\n", sum.Records, sum.Sent)
	fmt.Fprintf(tw, "stored:\t%d samples in %d batches\n", sum.Samples, sum.Batches)
	fmt.Fprintf(tw, "duplicates:\t%d batches (already stored, counted once)\n", sum.Duplicates)
	if sum.Retries > 0 {
		fmt.Fprintf(tw, "retries:\t%d (stream broken and resumed)\n", sum.Retries)
	}
	return tw.Flush()
}

// ingestSummary is the outcome of an ingest.
type ingestSummary struct {
	RunID string `json:"run_id"`
	// Records read from the input, and the batches they made.
	Records uint64 `json:"records"`
	Sent    uint64 `json:"batches_sent"`
	// Batches and samples stored by this ingest; duplicates are batches
	// the service already had (e.g. from an earlier run of the same
	// command, or sent again after a broken stream).
	Batches    uint64 `json:"batches"`
	Duplicates uint64 `json:"duplicates"`
	Samples    uint64 `json:"samples"`
	// Retries counts the streams opened again after a transient error.
	Retries int `json:"retries"`
}

// outBatch is one batch ready to send.
type outBatch struct {
	id      string
	req     *canaryv1.IngestStreamRequest
	samples int
	// lines are the first and last input lines of the batch; offset is the
	// input read when the batch was cut (for the progress bar).
	firstLine, lastLine int
	offset              int64
}

// ingester sends batches over IngestStream, keeping at most window of
// them unacknowledged, and resumes on a new stream after a transient
// error.
type ingester struct {
	client   canaryv1.CanaryServiceClient
	runID    string
	window   int
	stderr   io.Writer
	progress *progress // nil when stderr is not a terminal

	pending []*outBatch // unacknowledged, in order
	eof     bool        // the producer has no more batches
	sum     ingestSummary
}

// run sends what produce makes and returns the summary. produce runs in
// its own goroutine and does not close its channel: run does.
func (g *ingester) run(ctx context.Context, produce func(context.Context, chan<- *outBatch) error) (ingestSummary, error) {
	g.sum.RunID = g.runID
	// On an early return the producer is cancelled but not waited for: it
	// may be blocked reading a standard input that never ends.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *outBatch, 1)
	var prodErr error // set before batches is closed
	go func() {
		defer close(batches)
		prodErr = produce(pctx, batches)
	}()

	for failures := 0; ; {
		acked := g.sum.Batches + g.sum.Duplicates
		err := g.stream(ctx, batches)
		if err == nil {
			break
		}
		if g.sum.Batches+g.sum.Duplicates > acked {
			failures = 0
		}
		if !retryable(err) || failures+1 >= ingestAttempts || ctx.Err() != nil {
			return g.sum, g.explain(err)
		}
		g.progress.clear()
		fmt.Fprintf(g.stderr, "canaryctl ingest: %v; sending %d unacknowledged batches again on a new stream\n", rpcError(err), len(g.pending))
		if err := sleep(ctx, backoff(failures)); err != nil {
			return g.sum, rpcError(err)
		}
		failures++
		g.sum.Retries++
	}
	// Every batch was acknowledged, so batches is closed (g.eof).
	if prodErr != nil {
		if n := g.sum.Batches + g.sum.Duplicates; n > 0 {
			prodErr = usageError{fmt.Errorf("%w\n(the %d batches before it are stored: fix the input and run the same command again, they will count once)", prodErr, n)}
		}
		return g.sum, prodErr
	}
	return g.sum, nil
}

// explain converts a stream error; for a batch the service rejected as
// invalid, it names the batch's input lines.
func (g *ingester) explain(err error) error {
	if status.Code(err) != codes.InvalidArgument {
		return rpcError(err)
	}
	err = rpcError(err)
	for _, b := range g.pending {
		if strings.Contains(err.Error(), fmt.Sprintf("%q", b.id)) {
			return fmt.Errorf("lines %d-%d: %w", b.firstLine, b.lastLine, err)
		}
	}
	return err
}

// recvResult is what one Recv of the stream returned.
type recvResult struct {
	resp *canaryv1.IngestStreamResponse
	err  error
}

// stream sends the pending batches, then new ones from batches, on one
// stream, until every batch is acknowledged (nil) or the stream fails.
func (g *ingester) stream(ctx context.Context, batches <-chan *outBatch) error {
	if g.eof && len(g.pending) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := g.client.IngestStream(ctx)
	if err != nil {
		return err
	}
	// At most window acknowledgements and one error arrive: the receiver
	// never blocks, so the service is never stalled by an unread ack.
	acks := make(chan recvResult, g.window+1)
	go func() {
		for {
			resp, err := st.Recv()
			acks <- recvResult{resp, err}
			if err != nil {
				return
			}
		}
	}()

	sent := 0 // g.pending[:sent] were sent on this stream
	broken, closed := false, false
	for {
		for !broken && sent < len(g.pending) {
			if err := st.Send(g.pending[sent].req); err != nil {
				broken = true // the stream's status comes from Recv
				break
			}
			sent++
		}
		if !broken && !closed && g.eof && sent == len(g.pending) {
			if err := st.CloseSend(); err != nil {
				broken = true
			}
			closed = true
		}
		var in <-chan *outBatch
		if !broken && !g.eof && len(g.pending) < g.window {
			in = batches
		}
		select {
		case b, ok := <-in:
			if !ok {
				g.eof = true
				continue
			}
			g.pending = append(g.pending, b)
			g.sum.Records += uint64(b.samples)
			g.sum.Sent++
		case r := <-acks:
			if errors.Is(r.err, io.EOF) {
				if !closed {
					// Not per the API; resume on a new stream.
					return status.Error(codes.Unavailable, "the service ended the stream before the client closed it")
				}
				if len(g.pending) > 0 {
					return fmt.Errorf("the service ended the stream with %d batches unacknowledged", len(g.pending))
				}
				return nil
			}
			if r.err != nil {
				return r.err
			}
			ack := r.resp.GetAck()
			if len(g.pending) == 0 || sent == 0 || ack.GetBatchId() != g.pending[0].id {
				return fmt.Errorf("the service acknowledged batch %q out of order", ack.GetBatchId())
			}
			b := g.pending[0]
			g.pending[0] = nil
			g.pending = g.pending[1:]
			sent--
			if ack.GetDuplicate() {
				g.sum.Duplicates++
			} else {
				g.sum.Batches++
				g.sum.Samples += ack.GetSamples()
			}
			g.progress.update(b.offset, &g.sum)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// readBatches reads records, checks them and sends them in batches of size
// observations on out. A bad record stops it with an error naming its line;
// the records of the batch it was in are not sent, so that sending the
// fixed input again gives the earlier batches the same ids.
func readBatches(ctx context.Context, cr *countingReader, runID string, size int, check func(*analysis.Record) error, out chan<- *outBatch) error {
	h := sha256.New()
	var (
		recs  []analysis.Record
		line  int
		first int
		n     int
		buf   []byte
	)
	weight := 0 // of recs: a record each, a histogram its buckets
	emit := func() error {
		n++
		weight = 0
		sum := h.Sum(nil)
		b := &outBatch{
			id:        fmt.Sprintf("%x-%d", sum[:12], n),
			samples:   len(recs),
			firstLine: first,
			lastLine:  line,
			offset:    cr.n,
		}
		b.req = &canaryv1.IngestStreamRequest{Batch: buildBatch(runID, b.id, recs)}
		recs = recs[:0]
		select {
		case out <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	err := jsonl.Read(cr, func(r analysis.Record) error {
		line++
		if check != nil {
			if err := check(&r); err != nil {
				return err
			}
		}
		if len(recs) == 0 {
			first = line
		}
		buf = appendRecord(buf[:0], &r)
		h.Write(buf)
		recs = append(recs, r)
		if weight += recordWeight(&r); weight >= size {
			return emit()
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return usageError{err}
	}
	if len(recs) > 0 {
		return emit()
	}
	return nil
}

// recordWeight is what a record counts toward --batch-size: one, or the
// buckets of a histogram, which weigh on the message size as many values
// do.
func recordWeight(r *analysis.Record) int {
	if r.Histogram != nil {
		return max(1, len(r.Histogram.Bounds))
	}
	return 1
}

// appendRecord appends the canonical encoding of r that batch ids hash.
func appendRecord(b []byte, r *analysis.Record) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.Metric)))
	b = append(b, r.Metric...)
	b = append(b, byte(r.Cohort))
	switch h := r.Histogram; {
	case r.IsCount:
		b = append(b, 1)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.Count))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.Total))
	case h != nil:
		b = append(b, 2)
		b = binary.AppendUvarint(b, uint64(len(h.Bounds)))
		for k := range h.Bounds {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(h.Bounds[k]))
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(h.Counts[k]))
		}
		if h.HasSum {
			b = append(b, 1)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(h.Sum))
		} else {
			b = append(b, 0)
		}
	default:
		b = append(b, 0)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.Value))
	}
	if r.Time.IsZero() {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.LittleEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	}
	b = binary.AppendUvarint(b, uint64(len(r.Instance)))
	return append(b, r.Instance...)
}

// Kinds of records, for columnKey.
const (
	kindValue = iota
	kindCount
	kindHistogram
)

// columnKey groups the records that can share a MetricColumn.
type columnKey struct {
	metric   string
	cohort   analysis.Cohort
	kind     int
	hasTime  bool
	time     int64
	instance string
}

// buildBatch converts records into a batch: records of the same metric,
// cohort, kind, time and instance become one MetricColumn (a packed array
// of values, of counts and totals, or a list of histograms); a record
// alone in its group is sent as a Sample.
func buildBatch(runID, batchID string, recs []analysis.Record) *canaryv1.Batch {
	type group struct {
		rec                    *analysis.Record // the first
		values, counts, totals []float64
		histograms             []*canaryv1.Histogram
	}
	var groups []*group
	index := map[columnKey]*group{}
	for i := range recs {
		r := &recs[i]
		k := columnKey{metric: r.Metric, cohort: r.Cohort, kind: kindValue, instance: r.Instance}
		switch {
		case r.IsCount:
			k.kind = kindCount
		case r.Histogram != nil:
			k.kind = kindHistogram
		}
		if !r.Time.IsZero() {
			k.hasTime, k.time = true, r.Time.UnixNano()
		}
		g := index[k]
		if g == nil {
			g = &group{rec: r}
			index[k] = g
			groups = append(groups, g)
		}
		switch k.kind {
		case kindCount:
			g.counts = append(g.counts, r.Count)
			g.totals = append(g.totals, r.Total)
		case kindHistogram:
			g.histograms = append(g.histograms, apiconv.HistogramToProto(r.Histogram))
		default:
			g.values = append(g.values, r.Value)
		}
	}
	b := &canaryv1.Batch{RunId: runID, BatchId: batchID}
	for _, g := range groups {
		r := g.rec
		var ts *timestamppb.Timestamp
		if !r.Time.IsZero() {
			ts = timestamppb.New(r.Time)
		}
		if len(g.values)+len(g.counts)+len(g.histograms) == 1 {
			s := &canaryv1.Sample{Metric: r.Metric, Cohort: cohortToProto(r.Cohort), Time: ts, Instance: r.Instance}
			switch {
			case r.IsCount:
				s.Observation = &canaryv1.Sample_Counts{Counts: &canaryv1.Counts{Count: r.Count, Total: r.Total}}
			case r.Histogram != nil:
				s.Observation = &canaryv1.Sample_Histogram{Histogram: g.histograms[0]}
			default:
				s.Observation = &canaryv1.Sample_Value{Value: r.Value}
			}
			b.Samples = append(b.Samples, s)
			continue
		}
		b.Columns = append(b.Columns, &canaryv1.MetricColumn{
			Metric:     r.Metric,
			Cohort:     cohortToProto(r.Cohort),
			Values:     g.values,
			Counts:     g.counts,
			Totals:     g.totals,
			Histograms: g.histograms,
			Time:       ts,
			Instance:   r.Instance,
		})
	}
	return b
}

func cohortToProto(c analysis.Cohort) canaryv1.Cohort {
	if c == analysis.Canary {
		return canaryv1.Cohort_COHORT_CANARY
	}
	return canaryv1.Cohort_COHORT_BASELINE
}

// countingReader counts the bytes read through it (for the progress bar;
// the JSON Lines reader reads ahead, so it is approximate).
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// progress draws a progress bar on a terminal. A nil *progress draws
// nothing.
type progress struct {
	w    io.Writer
	size int64 // of the input; 0 when unknown
	last time.Time
	drew bool
}

const progressWidth = 30

func (p *progress) update(offset int64, s *ingestSummary) {
	if p == nil {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.draw(offset, s)
	}
}

func (p *progress) draw(offset int64, s *ingestSummary) {
	stats := fmt.Sprintf("%d samples stored, %d batches (+%d duplicates)", s.Samples, s.Batches, s.Duplicates)
	if p.size <= 0 {
		fmt.Fprintf(p.w, "\r\x1b[Kingest: %s", stats)
	} else {
		f := min(float64(offset)/float64(p.size), 1)
		full := int(f * progressWidth)
		fmt.Fprintf(p.w, "\r\x1b[Kingest [%s%s] %3.0f%%  %s", strings.Repeat("#", full), strings.Repeat(".", progressWidth-full), f*100, stats)
	}
	p.drew = true
}

// clear erases the bar before another message.
func (p *progress) clear() {
	if p != nil && p.drew {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drew = false
	}
}

// finish erases the bar; the summary follows on stdout.
func (p *progress) finish() { p.clear() }
