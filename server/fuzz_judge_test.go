package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"runtime/debug"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// The fuzz targets of the run's state: what ingest accepts, folded into a
// run's data, must judge without a panic or a hang (FuzzJudge), and what a
// store hands back as a delta or a snapshot, however corrupt, must decode
// to an error or to data the judge takes (FuzzDecodeDelta,
// FuzzDecodeSnapshot). Their seed corpora are in testdata/fuzz; run one
// with
//
//	go test -run '^$' -fuzz '^FuzzJudge$' -fuzztime 10s ./server/

// judgeTimeout bounds one judgement of fuzzed data: far beyond what any
// judgement takes (milliseconds), short enough to report a hang.
const judgeTimeout = 20 * time.Second

// fuzzConfig has a metric of each type, with small floors so that fuzzed
// data reach the tests, windows, and the sample-ratio check (on the rate
// metric, whose exposure counts requests).
func fuzzConfig() *canaryv1.CanaryConfig {
	return &canaryv1.CanaryConfig{
		Name:   "fuzz",
		Window: durationpb.New(10 * time.Minute),
		Metrics: []*canaryv1.MetricConfig{
			{
				Name: "latency_ms", Category: canaryv1.MetricCategory_METRIC_CATEGORY_PERFORMANCE,
				Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION, Critical: ptr(true), MinSamples: ptr(uint64(3)),
			},
			{
				Name: "errors", Category: canaryv1.MetricCategory_METRIC_CATEGORY_STABILITY,
				Type: canaryv1.MetricType_METRIC_TYPE_RATE, Tolerance: ptr(0.5), MinTotal: ptr(10.0),
			},
			{
				Name: "order_value", Category: canaryv1.MetricCategory_METRIC_CATEGORY_BUSINESS,
				Type: canaryv1.MetricType_METRIC_TYPE_MEAN, MinSamples: ptr(uint64(2)),
			},
		},
	}
}

// fuzzConfigs are fuzzConfig and variants at the edges of what a config
// may say: the largest confidence and power with zero tolerances, a
// warm-up and other bad directions; the smallest confidence and power,
// one-second windows, no sample-ratio check, a tiny detectable effect.
// FuzzJudge's first byte picks one.
func fuzzConfigs() []*canaryv1.CanaryConfig {
	strict := fuzzConfig()
	strict.Name = "fuzz-strict"
	strict.Confidence, strict.Power = ptr(0.999999999), ptr(0.999999)
	strict.Window = nil
	strict.Warmup = durationpb.New(5 * time.Minute)
	for i, m := range strict.Metrics {
		m.Tolerance = ptr(0.0)
		m.BadDirection = []canaryv1.BadDirection{canaryv1.BadDirection_BAD_DIRECTION_DECREASE,
			canaryv1.BadDirection_BAD_DIRECTION_BOTH, canaryv1.BadDirection_BAD_DIRECTION_INCREASE}[i]
	}
	loose := fuzzConfig()
	loose.Name = "fuzz-loose"
	loose.Confidence, loose.Power = ptr(0.5), ptr(0.5)
	loose.Window = durationpb.New(time.Second)
	loose.Traffic = &canaryv1.TrafficCheck{Disabled: true}
	for _, m := range loose.Metrics {
		m.DetectableEffect = ptr(1e-6)
		m.Tolerance = ptr(0.9)
	}
	return []*canaryv1.CanaryConfig{fuzzConfig(), strict, loose}
}

// fuzzBytes reads the values of fuzzed batches from the fuzzer's bytes;
// past their end it reads zeros.
type fuzzBytes struct{ b []byte }

func (r *fuzzBytes) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// specials are numbers at the edges of what ingest accepts and of what
// float64 arithmetic keeps exact.
var specials = []float64{0, 1, 0.5, analysis.MaxValue, analysis.MaxValue - 1, 1 << 53, 1<<53 + 2, 1e-300,
	math.SmallestNonzeroFloat64, analysis.MaxValue / 3, 1e9, 1e12, 999.5, 2, 3, 1e6}

// num reads a number: a small whole number, a fraction, a special, or any
// float64 (which ingest mostly rejects).
func (r *fuzzBytes) num() float64 {
	switch s := r.byte(); s % 4 {
	case 0:
		return float64(r.byte())
	case 1:
		return float64(binary.LittleEndian.Uint16([]byte{r.byte(), r.byte()})) / 16
	case 2:
		return specials[int(r.byte())%len(specials)]
	default:
		var b [8]byte
		for i := range b {
			b[i] = r.byte()
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b[:]))
	}
}

// whole reads a whole number, mostly small.
func (r *fuzzBytes) whole() float64 { return math.Trunc(math.Abs(r.num())) }

// fuzzBatches builds up to 8 batches for the run of fuzzConfig from the
// fuzzer's bytes: samples and columns of every kind (values, counts,
// explicit and exponential histograms) for either cohort, timed anywhere in
// the run's first hour (start) or untimed, from a few instances.
func fuzzBatches(data []byte, runID string, start time.Time) []*canaryv1.Batch {
	r := &fuzzBytes{b: data}
	metrics := []string{"latency_ms", "errors", "order_value"}
	var out []*canaryv1.Batch
	b := &canaryv1.Batch{RunId: runID, BatchId: "0"}
	flush := func() {
		if len(b.Samples)+len(b.Columns) > 0 {
			out = append(out, b)
		}
		b = &canaryv1.Batch{RunId: runID, BatchId: fmt.Sprint(len(out))}
	}
	for len(r.b) > 0 && len(out) < 8 {
		op := r.byte()
		metric := metrics[int(r.byte())%len(metrics)]
		cohort := canaryv1.Cohort(1 + r.byte()%2)
		var ts *timestamppb.Timestamp
		if t := r.byte(); t < 200 {
			ts = timestamppb.New(start.Add(time.Duration(t) * 18 * time.Second))
		}
		instance := ""
		if i := r.byte(); i < 8 {
			instance = fmt.Sprintf("pod-%d", i)
		}
		switch op % 8 {
		case 0:
			v := r.num()
			if r.byte()%4 == 0 {
				v = -v
			}
			b.Samples = append(b.Samples, &canaryv1.Sample{Metric: metric, Cohort: cohort, Time: ts, Instance: instance,
				Observation: &canaryv1.Sample_Value{Value: v}})
		case 1:
			total := r.num()
			count := min(r.whole(), total)
			b.Samples = append(b.Samples, &canaryv1.Sample{Metric: metric, Cohort: cohort, Time: ts, Instance: instance,
				Observation: &canaryv1.Sample_Counts{Counts: &canaryv1.Counts{Count: math.Trunc(count), Total: total}}})
		case 2:
			// A column of up to 64 values, repeated up to 64 times.
			k, rep := 1+int(r.byte())%64, 1+int(r.byte())%64
			vs := make([]float64, k)
			for i := range vs {
				vs[i] = r.num()
			}
			col := &canaryv1.MetricColumn{Metric: metric, Cohort: cohort, Time: ts, Instance: instance}
			for range rep {
				col.Values = append(col.Values, vs...)
			}
			b.Columns = append(b.Columns, col)
		case 3:
			k, rep := 1+int(r.byte())%16, 1+int(r.byte())%64
			col := &canaryv1.MetricColumn{Metric: metric, Cohort: cohort, Time: ts, Instance: instance}
			var cs, ts []float64
			for range k {
				t := r.num()
				cs, ts = append(cs, min(r.whole(), math.Trunc(t))), append(ts, t)
			}
			for range rep {
				col.Counts, col.Totals = append(col.Counts, cs...), append(col.Totals, ts...)
			}
			b.Columns = append(b.Columns, col)
		case 4, 5:
			h := fuzzHistogram(r, op%8 == 5)
			if r.byte()%2 == 0 {
				b.Samples = append(b.Samples, &canaryv1.Sample{Metric: metric, Cohort: cohort, Time: ts, Instance: instance,
					Observation: &canaryv1.Sample_Histogram{Histogram: h}})
			} else {
				b.Columns = append(b.Columns, &canaryv1.MetricColumn{Metric: metric, Cohort: cohort, Time: ts,
					Instance: instance, Histograms: []*canaryv1.Histogram{h, h}})
			}
		default:
			flush()
		}
	}
	flush()
	return out
}

// fuzzHistogram reads an explicit-bucket histogram (cumulative counts at
// increasing bounds, the last maybe +Inf) or an exponential one.
func fuzzHistogram(r *fuzzBytes, exponential bool) *canaryv1.Histogram {
	h := &canaryv1.Histogram{}
	if r.byte()%2 == 0 {
		h.Sum = ptr(r.num())
	}
	n := 1 + int(r.byte())%12
	if exponential {
		e := &canaryv1.ExponentialBuckets{Schema: int32(int8(r.byte())) % 10, ZeroThreshold: r.num(), ZeroCount: r.whole()}
		span := &canaryv1.BucketSpan{Offset: int32(int8(r.byte())) * 4, Length: uint32(n)}
		e.PositiveSpans = []*canaryv1.BucketSpan{span}
		for range n {
			e.PositiveCounts = append(e.PositiveCounts, r.whole())
		}
		h.Buckets = &canaryv1.Histogram_Exponential{Exponential: e}
		return h
	}
	ex := &canaryv1.ExplicitBuckets{}
	bound, count := 0.0, 0.0
	for range n {
		bound += r.num()
		count += r.whole()
		ex.UpperBounds, ex.CumulativeCounts = append(ex.UpperBounds, bound), append(ex.CumulativeCounts, count)
	}
	if r.byte()%2 == 0 {
		ex.UpperBounds[n-1] = math.Inf(1)
	}
	h.Buckets = &canaryv1.Histogram_Explicit{Explicit: ex}
	return h
}

// checkVerdict fails unless v is a verdict the service can report: a known
// decision, and p-values in [0, 1].
func checkVerdict(t *testing.T, v analysis.Verdict) {
	t.Helper()
	switch v.Decision {
	case analysis.Promote, analysis.Hold, analysis.Rollback:
	default:
		t.Fatalf("decision %q", v.Decision)
	}
	for _, m := range v.Metrics {
		if !(m.P >= 0 && m.P <= 1) || !(m.AdjustedP >= 0 && m.AdjustedP <= 1) {
			t.Fatalf("metric %s: p=%v, adjusted p=%v", m.Name, m.P, m.AdjustedP)
		}
	}
}

// judgeBounded judges d with opts, failing the test if the judge panics or
// does not return within judgeTimeout.
func judgeBounded(t *testing.T, d *analysis.Data, opts analysis.Options) analysis.Verdict {
	t.Helper()
	type result struct {
		v     analysis.Verdict
		panic any
		stack []byte
	}
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() {
			if res.panic = recover(); res.panic != nil {
				res.stack = debug.Stack()
			}
			done <- res
		}()
		res.v = analysis.Judge(d, opts)
	}()
	select {
	case res := <-done:
		if res.panic != nil {
			t.Fatalf("judge (%+v) panicked: %v\n%s", opts, res.panic, res.stack)
		}
		return res.v
	case <-time.After(judgeTimeout):
		t.Fatalf("judge (%+v) did not return within %s", opts, judgeTimeout)
	}
	return analysis.Verdict{}
}

// fuzzRuns are the runs of fuzzConfigs on a service, into which FuzzJudge
// and FuzzReport ingest their data.
type fuzzRuns struct {
	e     *env
	runs  []*canaryv1.Run
	acfgs []*analysis.Config
}

func newFuzzRuns(f *testing.F) *fuzzRuns {
	fz := &fuzzRuns{e: newEnv(f, func(o *Options) { o.MaxBatchSamples = 10_000 })}
	for i, cfg := range fuzzConfigs() {
		run := fz.e.createRun(context.Background(), fmt.Sprint("fuzz-", i), cfg, time.Hour)
		acfg, err := apiconv.ConfigFromProto(run.GetConfig())
		if err != nil {
			f.Fatal(err)
		}
		fz.runs, fz.acfgs = append(fz.runs, run), append(fz.acfgs, acfg)
	}
	fz.e.clock.Advance(time.Hour) // samples may be timed over the runs' first hour
	return fz
}

// fold ingests the batches that fuzzed bytes make through the service's
// validation (prepare) and folds the accepted ones as the service does
// (foldDelta). The first byte picks the config, and how many times the
// data are doubled after folding: up to 2³¹ times the same batches,
// acknowledged under other batch ids (totals of 10²⁸ requests).
func (fz *fuzzRuns) fold(t *testing.T, data []byte) (*canaryv1.Run, *analysis.Config, *analysis.Data) {
	t.Helper()
	var k, doublings int
	if len(data) > 0 {
		k, doublings, data = int(data[0])%len(fz.runs), int(data[0])/len(fz.runs)%32, data[1:]
	}
	run, acfg := fz.runs[k], fz.acfgs[k]
	start := runStart(run)
	d := newData(acfg, start)
	counters := &canaryv1.RunCounters{}
	var pull *canaryv1.PullStatus
	for _, pb := range fuzzBatches(data, run.GetId(), start) {
		b, err := fz.e.svc.prepare(context.Background(), pb)
		if err != nil {
			if ae, ok := err.(*apiError); !ok || len(ae.violations) == 0 {
				t.Fatalf("rejection without field violations: %v", err)
			}
			continue
		}
		fz.e.svc.release(b.lr)
		if err := foldDelta(acfg, d, counters, &pull, new([]*canaryv1.AlarmEvent), b.blob); err != nil {
			t.Fatalf("fold the delta of an accepted batch: %v", err)
		}
	}
	for range doublings {
		b, err := d.MarshalBinary()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		c, err := analysis.UnmarshalData(acfg, b)
		if err != nil {
			t.Fatalf("decode the data of accepted batches: %v", err)
		}
		d.Merge(c)
	}
	return run, acfg, d
}

// fuzzShare is the canary's expected share of traffic for fuzzed bytes:
// 0.1 (the sample-ratio check on) when their length is even, else 0.
func fuzzShare(data []byte) float64 {
	return 0.1 * float64(max(len(data)-1, 0)%2)
}

// FuzzJudge ingests batches of arbitrary data through the service's
// validation (prepare), folds the accepted ones into a run's data as the
// service does (foldDelta), maybe many times over, and judges it
// fixed-sample and sequentially:
// the judge must return a verdict, without a panic or a hang, for every
// metric type, histograms included. The data must also survive a snapshot:
// encoded and decoded, they judge the same.
func FuzzJudge(f *testing.F) {
	f.Add([]byte{0, 0, 1, 10, 0, 0, 50, 0, 0, 1, 2, 10, 1, 0, 60})
	f.Add([]byte{1, 1, 1, 20, 1, 2, 3, 0, 7, 1, 1, 2, 20, 1, 2, 3, 0, 9})
	f.Add([]byte{2, 2, 1, 255, 2, 9, 9, 0, 1, 1, 2, 0, 1, 3, 2, 2, 2, 255, 3, 9, 9, 0, 2, 0, 3, 0, 4})
	f.Add([]byte{4, 0, 1, 30, 1, 0, 0, 5, 0, 100, 2, 3, 0, 200, 0, 1, 3, 5, 4, 0, 2, 30, 1, 0, 0, 5, 0, 90})
	f.Add([]byte{5, 0, 2, 30, 1, 1, 0, 2, 6, 0, 10, 0, 3, 0, 5, 0, 1, 5, 0, 1, 30, 9, 1, 2, 3, 0, 4, 0, 2, 7})
	f.Add([]byte{3, 1, 2, 100, 1, 0, 8, 2, 3, 2, 3, 7, 3, 1, 1, 100, 1, 0, 8, 2, 3, 2, 3, 7})
	fz := newFuzzRuns(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, acfg, d := fz.fold(t, data)
		share := fuzzShare(data)
		var verdicts []analysis.Verdict
		for _, seq := range []bool{false, true} {
			v := judgeBounded(t, d, analysis.Options{BakeComplete: true, Sequential: seq, ExpectedShare: share})
			checkVerdict(t, v)
			verdicts = append(verdicts, v)
		}
		snap, err := encodeSnapshot(snapshotHeader{batches: 1}, d)
		if err != nil {
			t.Fatalf("encode snapshot: %v", err)
		}
		_, d2, err := decodeSnapshot(acfg, snap)
		if err != nil {
			t.Fatalf("decode snapshot: %v", err)
		}
		for i, seq := range []bool{false, true} {
			v := judgeBounded(t, d2, analysis.Options{BakeComplete: true, Sequential: seq, ExpectedShare: share})
			if v.Decision != verdicts[i].Decision || v.Reason != verdicts[i].Reason {
				t.Fatalf("after a snapshot (sequential %v): %s %q, before %s %q", seq, v.Decision, v.Reason,
					verdicts[i].Decision, verdicts[i].Reason)
			}
		}
	})
}

// seedState returns the encoded delta and snapshot of a little data of
// every metric type, for the seed corpora of the decoders.
func seedState(tb testing.TB, cfg *analysis.Config, start time.Time) (delta, snapshot []byte) {
	tb.Helper()
	d := newData(cfg, start)
	at := start.Add(90 * time.Second)
	for c := range 2 {
		cohort := analysis.Cohort(c)
		recs := []analysis.Record{
			{Metric: "latency_ms", Cohort: cohort, Value: 12.5, Time: at, Instance: "pod-1"},
			{Metric: "latency_ms", Cohort: cohort, Time: at.Add(time.Minute), Histogram: &analysis.Histogram{
				Bounds: []float64{10, 100, math.Inf(1)}, Counts: []float64{3, 4, 1}, Sum: 300, HasSum: true}},
			{Metric: "errors", Cohort: cohort, IsCount: true, Count: 2, Total: 1000, Time: at, Instance: "pod-2"},
			{Metric: "order_value", Cohort: cohort, Value: -3.25, Time: at},
			{Metric: "order_value", Cohort: cohort, Value: 1e15},
		}
		for i := range recs {
			if err := d.Add(&recs[i]); err != nil {
				tb.Fatal(err)
			}
		}
	}
	delta, err := encodeDelta(at, d)
	if err != nil {
		tb.Fatal(err)
	}
	snapshot, err = encodeSnapshot(snapshotHeader{batches: 7, duplicates: 1, lastIngest: at}, d)
	if err != nil {
		tb.Fatal(err)
	}
	return delta, snapshot
}

// fuzzDecoded judges data decoded from fuzzed bytes (which must not
// panic or hang), and checks that they encode back to what decodes to the
// same state.
func fuzzDecoded(t *testing.T, cfg *analysis.Config, d *analysis.Data) {
	t.Helper()
	for _, seq := range []bool{false, true} {
		checkVerdict(t, judgeBounded(t, d, analysis.Options{BakeComplete: true, Sequential: seq}))
	}
	b, err := d.MarshalBinary()
	if err != nil {
		t.Fatalf("decoded data do not encode: %v", err)
	}
	d2, err := analysis.UnmarshalData(cfg, b)
	if err != nil {
		t.Fatalf("decoded data encode to what does not decode: %v", err)
	}
	b2, err := d2.MarshalBinary()
	if err != nil || string(b2) != string(b) {
		t.Fatalf("encoding is not stable: %v", err)
	}
}

// FuzzDecodeDelta decodes arbitrary bytes as a batch's delta, as a run's
// fold reads them from either store (the stores keep them as opaque
// bytes): an error or data that judge, never a panic.
func FuzzDecodeDelta(f *testing.F) {
	acfg, err := apiconv.ConfigFromProto(fuzzConfig())
	if err != nil {
		f.Fatal(err)
	}
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	delta, snap := seedState(f, acfg, start)
	f.Add(delta)
	f.Add(snap)
	f.Add(delta[:len(delta)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		_, d, err := decodeDelta(acfg, b)
		if err != nil {
			return
		}
		fuzzDecoded(t, acfg, d)
	})
}

// FuzzDecodeSnapshot is FuzzDecodeDelta for a run's snapshot, the fold of
// its log that a store keeps beside its newest deltas.
func FuzzDecodeSnapshot(f *testing.F) {
	acfg, err := apiconv.ConfigFromProto(fuzzConfig())
	if err != nil {
		f.Fatal(err)
	}
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	delta, snap := seedState(f, acfg, start)
	f.Add(snap)
	f.Add(delta)
	f.Add(snap[:len(snap)-3])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, d, err := decodeSnapshot(acfg, b)
		if err != nil {
			return
		}
		fuzzDecoded(t, acfg, d)
		b2, err := encodeSnapshot(h, d)
		if err != nil {
			t.Fatalf("decoded snapshot does not encode: %v", err)
		}
		if _, _, err := decodeSnapshot(acfg, b2); err != nil {
			t.Fatalf("decoded snapshot encodes to what does not decode: %v", err)
		}
	})
}
