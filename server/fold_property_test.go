package server

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestVerdictsAreFolds is the property of the run engine: whatever the
// interleaving of ingest (several streams and unary calls, with retried
// batches), Judge, WatchVerdict, idle eviction and, at a random point,
// CompleteRun or AbortRun, on one daemon or on two replicas sharing a Redis,
// every verdict any call returns is the verdict of a prefix of the run's
// log: analysis.Judge on the deltas of that prefix merged in order into one
// analysis.Data, sequentially. The prefix holds every batch acknowledged
// before the call started and none sent after it ended; the verdicts of a
// watch never go back; the final verdict folds the whole log, which holds
// each acknowledged batch exactly once.
func TestVerdictsAreFolds(t *testing.T) {
	t.Parallel()
	opts := func(o *Options) {
		o.IdleTimeout = time.Minute
		o.SnapshotEvery = 1 << 20 // the test reads the whole log back
	}
	for _, tc := range []struct {
		name     string
		replicas bool
	}{{"one daemon", false}, {"two replicas", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var envs []*env
			if tc.replicas {
				a, b := redisReplicas(t, opts)
				envs = []*env{a, b}
			} else {
				envs = []*env{newEnv(t, opts)}
			}
			for round := range 3 {
				finish := canaryv1.RunState_RUN_STATE_COMPLETED
				if round%2 == 1 {
					finish = canaryv1.RunState_RUN_STATE_ABORTED
				}
				t.Run(fmt.Sprintf("round %d %v", round, finish), func(t *testing.T) {
					foldProperty(t, envs, uint64(round), finish)
				})
			}
		})
	}
}

// propBatch is one batch of the property test and what happened to it, in
// ticks of the test's logical clock.
type propBatch struct {
	idx     int
	b       *canaryv1.Batch
	sent    int64 // when it was first sent
	acked   int64 // when it was first acknowledged (new or duplicate), 0 if never
	samples uint64
}

// propVerdict is a verdict a call returned, with the ticks around the
// call; watch names the watch stream it came from ("" for Judge), and
// process the env that answered.
type propVerdict struct {
	v          *canaryv1.Verdict
	start, end int64
	watch      string
	process    int
}

type propRecorder struct {
	tick     atomic.Int64
	next     atomic.Int64 // batch indexes
	mu       sync.Mutex
	batches  []*propBatch
	verdicts []propVerdict
	final    *canaryv1.Run
	finisher int // the env that finished the run
}

func (r *propRecorder) now() int64 { return r.tick.Add(1) }

func (r *propRecorder) verdict(v *canaryv1.Verdict, start int64, watch string, process int) {
	end := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verdicts = append(r.verdicts, propVerdict{v: v, start: start, end: end, watch: watch, process: process})
}

// Each batch carries a marker: one more baseline "errors" sample, of no
// error out of idx+1 requests, so that its delta read back from the log
// names it: the delta's baseline total is markerTotal + idx.
const markerTotal = 50_000 + 1 // makeBatch's baseline requests, plus 1

// newBatch returns a new batch of run, with its marker.
func (r *propRecorder) newBatch(rng *rand.Rand, runID string) *propBatch {
	idx := int(r.next.Add(1)) - 1
	b := makeBatch(rng, runID, fmt.Sprintf("b%04d", idx), scenario{Latency: 1 + 0.2*rng.Float64(), Errors: 1, N: 20 + rng.IntN(60)})
	b.Samples = append(b.Samples, &canaryv1.Sample{
		Metric: "errors", Cohort: canaryv1.Cohort_COHORT_BASELINE,
		Observation: &canaryv1.Sample_Counts{Counts: &canaryv1.Counts{Count: 0, Total: float64(idx + 1)}},
	})
	pb := &propBatch{idx: idx, b: b, samples: batchSize(b)}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, pb)
	return pb
}

// sent and acked record the ticks of a batch.
func (r *propRecorder) sentAt(pb *propBatch, tick int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if pb.sent == 0 {
		pb.sent = tick
	}
}

func (r *propRecorder) ackedAt(pb *propBatch) {
	tick := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if pb.acked == 0 {
		pb.acked = tick
	}
}

// pick returns a batch sent before, to send again, or nil.
func (r *propRecorder) pick(rng *rand.Rand) *propBatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.batches) == 0 {
		return nil
	}
	if pb := r.batches[rng.IntN(len(r.batches))]; pb.sent != 0 {
		return pb
	}
	return nil
}

// foldProperty runs one round of TestVerdictsAreFolds on a new run.
func foldProperty(t *testing.T, envs []*env, seed uint64, finish canaryv1.RunState) {
	ctx := ctxT(t)
	run := envs[0].createRun(ctx, fmt.Sprintf("prop-%d", seed), testConfig("checkout"), 10*time.Hour)
	id := run.GetId()
	rec := &propRecorder{}
	const (
		workers = 4
		ops     = 30
	)
	var (
		wg        sync.WaitGroup
		watches   sync.WaitGroup
		finishing atomic.Bool // set before the finish starts
		finishOne sync.Once
	)
	// Advancing the clocks together keeps the replicas' clocks equal.
	var clockMu sync.Mutex
	evict := func() {
		clockMu.Lock()
		defer clockMu.Unlock()
		for _, e := range envs {
			e.clock.Advance(2 * time.Minute)
		}
		for _, e := range envs {
			e.svc.evictIdle()
		}
	}
	finishRun := func(i int) {
		e := envs[i]
		finishOne.Do(func() {
			finishing.Store(true)
			var (
				r   *canaryv1.Run
				err error
			)
			if finish == canaryv1.RunState_RUN_STATE_COMPLETED {
				var resp *canaryv1.CompleteRunResponse
				resp, err = e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id, Reason: "property"})
				r = resp.GetRun()
			} else {
				var resp *canaryv1.AbortRunResponse
				resp, err = e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: id, Reason: "property"})
				r = resp.GetRun()
			}
			if err != nil {
				t.Errorf("finish: %v", err)
				return
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.final, rec.finisher = r, i
		})
	}
	watch := func(i int, name string) {
		e := envs[i]
		start := rec.now()
		ws, err := e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: id})
		if err != nil {
			t.Errorf("watch %s: %v", name, err)
			return
		}
		watches.Go(func() {
			for {
				resp, err := ws.Recv()
				if errors.Is(err, io.EOF) {
					return
				}
				if err != nil {
					t.Errorf("watch %s: %v", name, err)
					return
				}
				rec.verdict(resp.GetVerdict(), start, name, i)
			}
		})
	}

	for w := range workers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			var stream canaryv1.CanaryService_IngestStreamClient
			send := func(pb *propBatch) {
				e := envs[rng.IntN(len(envs))]
				useStream := rng.IntN(2) == 0
				rec.sentAt(pb, rec.now())
				var err error
				if useStream {
					if stream == nil {
						if stream, err = e.c.IngestStream(ctx); err != nil {
							t.Errorf("worker %d: open stream: %v", w, err)
							return
						}
					}
					if err = stream.Send(&canaryv1.IngestStreamRequest{Batch: pb.b}); err == nil {
						_, err = stream.Recv()
					}
					if err != nil {
						stream = nil // a stream ends at its first refused batch
					}
				} else {
					_, err = e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: pb.b})
				}
				switch {
				case err == nil:
					rec.ackedAt(pb)
				case status.Code(err) == codes.FailedPrecondition && finishing.Load():
					// Refused: the run is being finished, or finished.
				default:
					t.Errorf("worker %d: ingest %s: %v", w, pb.b.GetBatchId(), err)
				}
			}
			defer func() {
				if stream != nil {
					stream.CloseSend()
					for {
						if _, err := stream.Recv(); err != nil {
							break
						}
					}
				}
			}()
			for op := range ops {
				if t.Failed() {
					return
				}
				i := rng.IntN(len(envs))
				e := envs[i]
				switch k := rng.IntN(20); {
				case k < 10:
					send(rec.newBatch(rng, id))
				case k < 12:
					if pb := rec.pick(rng); pb != nil {
						send(pb) // a retry: acknowledged as a duplicate
					}
				case k < 16:
					start := rec.now()
					resp, err := e.c.Judge(ctx, &canaryv1.JudgeRequest{RunId: id})
					if err != nil {
						t.Errorf("worker %d: judge: %v", w, err)
						return
					}
					rec.verdict(resp.GetVerdict(), start, "", i)
				case k < 17:
					watch(i, fmt.Sprintf("w%d-%d", w, op))
				case k < 19:
					evict()
				default:
					if w == 0 && op > ops/2 {
						finishRun(i)
					}
				}
			}
		})
	}
	wg.Wait()
	finishRun(0) // if no worker did
	watches.Wait()
	if t.Failed() {
		t.FailNow()
	}
	checkFolds(t, envs[0], id, rec, finish)
}

// checkFolds checks the verdicts of rec against the run's log.
func checkFolds(t *testing.T, e *env, id string, rec *propRecorder, finish canaryv1.RunState) {
	ctx := ctxT(t)
	run := rec.final
	cfg, err := apiconv.ConfigFromProto(run.GetConfig())
	if err != nil {
		t.Fatal(err)
	}
	errorsIdx := -1
	for i, m := range cfg.Metrics {
		if m.Name == "errors" {
			errorsIdx = i
		}
	}
	// The log, in order: each delta and the batch it is (its marker).
	var (
		deltas []*analysis.Data
		order  []int // batch index at each position
	)
	err = e.store.ReadBatches(ctx, id, func(snapshot bool, b []byte) error {
		if snapshot {
			if len(b) != 0 {
				return errors.New("the log has a snapshot")
			}
			return nil
		}
		_, d, err := decodeDelta(cfg, b)
		if err != nil {
			return err
		}
		total := d.Metric(errorsIdx).Cohorts[analysis.Baseline].Total
		deltas = append(deltas, d)
		order = append(order, int(total)-markerTotal)
		return nil
	})
	if err != nil {
		t.Fatalf("read the log: %v", err)
	}
	position := map[int]int{} // batch index -> position in the log (1-based)
	for p, idx := range order {
		if _, dup := position[idx]; dup {
			t.Fatalf("batch %d is twice in the log", idx)
		}
		position[idx] = p + 1
	}
	var stored uint64 // samples of the batches in the log
	for _, pb := range rec.batches {
		_, ok := position[pb.idx]
		switch {
		case pb.acked != 0 && !ok:
			t.Fatalf("batch %d acknowledged, not in the log", pb.idx)
		case ok && pb.sent == 0:
			t.Fatalf("batch %d in the log, never sent", pb.idx)
		case ok:
			stored += pb.samples
		}
	}
	if len(position) != len(order) {
		t.Fatalf("the log holds %d deltas of %d distinct batches", len(order), len(position))
	}

	// expected returns the verdict of the first k deltas, folded in order.
	memo := map[[2]int]*canaryv1.Verdict{}
	expected := func(k int, bake bool) *canaryv1.Verdict {
		key := [2]int{k, 0}
		if bake {
			key[1] = 1
		}
		if v, ok := memo[key]; ok {
			return v
		}
		d := newData(cfg, runStart(run))
		for _, delta := range deltas[:k] {
			d.Merge(delta)
		}
		av := analysis.Judge(d, analysis.Options{BakeComplete: bake, Sequential: true, ExpectedShare: run.GetCanaryTrafficShare()})
		v := verdictToProto(&av, run)
		memo[key] = v
		return v
	}
	evidence := func(v *canaryv1.Verdict) *canaryv1.Verdict {
		v = proto.Clone(v).(*canaryv1.Verdict)
		v.Time, v.Sequence, v.Final, v.RunState = nil, 0, false, canaryv1.RunState_RUN_STATE_UNSPECIFIED
		return v
	}
	// bounds returns the prefix lengths a verdict of a call between the
	// ticks start and end may fold: at least every batch acknowledged
	// before start, nothing sent after end.
	bounds := func(start, end int64) (lo, hi int) {
		for _, pb := range rec.batches {
			p, ok := position[pb.idx]
			if !ok {
				continue
			}
			if pb.acked != 0 && pb.acked < start {
				lo = max(lo, p)
			}
			if pb.sent < end {
				hi = max(hi, p)
			}
		}
		return lo, hi
	}

	// The final verdict folds the whole log.
	fv := run.GetVerdict()
	if !fv.GetFinal() || run.GetState() != finish || fv.GetRunState() != finish {
		t.Fatalf("final run: state %v, verdict %v", run.GetState(), fv)
	}
	if want := expected(len(deltas), finish == canaryv1.RunState_RUN_STATE_COMPLETED); !proto.Equal(evidence(fv), evidence(want)) {
		t.Errorf("final verdict is not the fold of the whole log (%d deltas):\ngot  %v\nwant %v", len(deltas), fv, want)
	}
	if c := run.GetCounters(); c.GetBatches() != uint64(len(deltas)) || c.GetBaselineSamples()+c.GetCanarySamples() != stored {
		t.Errorf("final counters %v, want %d batches and %d samples", c, len(deltas), stored)
	}

	lastK := map[string]int{} // per watch: the prefix of its last verdict
	lastSeq := map[string]uint64{}
	checked := 0
	for _, pv := range rec.verdicts {
		v := pv.v
		if v.GetFinal() {
			if !proto.Equal(v, fv) {
				t.Errorf("a final verdict differs from the stored one:\n%v\n%v", v, fv)
			}
			continue
		}
		// Sequences are per process: the finisher's provisional ones stay
		// below the final one.
		if pv.process == rec.finisher && v.GetSequence() >= fv.GetSequence() {
			t.Errorf("provisional sequence %d, not below the final %d", v.GetSequence(), fv.GetSequence())
		}
		lo, hi := bounds(pv.start, pv.end)
		if pv.watch != "" {
			lo = max(lo, lastK[pv.watch])
			if v.GetSequence() < lastSeq[pv.watch] {
				t.Errorf("watch %s: sequence went back from %d to %d", pv.watch, lastSeq[pv.watch], v.GetSequence())
			}
			lastSeq[pv.watch] = v.GetSequence()
		}
		k := -1
		for c := lo; c <= hi; c++ {
			if proto.Equal(evidence(v), evidence(expected(c, false))) {
				k = c
				break
			}
		}
		if k < 0 {
			t.Errorf("verdict seq %d (watch %q) is the fold of no prefix of the log in [%d, %d]:\n%v", v.GetSequence(), pv.watch, lo, hi, v)
			continue
		}
		if pv.watch != "" {
			lastK[pv.watch] = k
		}
		checked++
	}
	t.Logf("%d deltas in the log, %d provisional verdicts checked, final %v", len(deltas), checked, fv.GetDecision())
}
