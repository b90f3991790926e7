package main_test

import (
	"context"
	"encoding/json"
	"math"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/canaryd/canaryd/internal/apiconv"
	"github.com/canaryd/canaryd/internal/testcluster"
	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestReplicas starts one redis-server and two canaryd processes on it, A
// and B, and drives them with canaryctl as a deploy platform behind a load
// balancer would: a run created through A; examples/rollback.jsonl
// streamed in halves through A and B at the same time; a batch retried
// through the other replica (counted once); A and B judge identically, and
// as `canaryctl analyze` judges the whole file; a watcher on A sees what is
// ingested through B; the run completed through B is final on A and in
// A's history.
//
// The file's first records (its earliest time, for both cohorts) go first
// through A on their own: the samples are older than the run, so each
// cohort's warm-up starts at its earliest observation, which a replica must
// have merged before it folds later batches (see server/ingest.go).
func TestReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-replica test skipped with -short: it builds canaryd and canaryctl and runs them as processes")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("multi-replica test skipped: no go command in PATH to build the binaries")
	}
	srv := testredis.StartWith(t, testredis.Options{Private: true})
	testReplicas(t, goBin, srv.URL()+"/0")
}

// TestReplicasRedisCluster is TestReplicas on a Redis Cluster of 3
// primaries and 3 replicas (redis+cluster://, min_replicas=1).
func TestReplicasRedisCluster(t *testing.T) {
	testcluster.Gate(t)
	if testing.Short() {
		t.Skip("multi-replica test skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("multi-replica test skipped: no go command in PATH to build the binaries")
	}
	c := testcluster.StartWith(t, testcluster.Options{NodeTimeout: 10 * time.Second}) // no failover here: a busy node is not a dead one
	testReplicas(t, goBin, c.URL()+"?min_replicas=1&replica_timeout=2s")
}

// TestReplicasSentinel is TestReplicas on a primary with 2 replicas
// watched by 3 Sentinels (redis+sentinel://, min_replicas=1).
func TestReplicasSentinel(t *testing.T) {
	testcluster.Gate(t)
	if testing.Short() {
		t.Skip("multi-replica test skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("multi-replica test skipped: no go command in PATH to build the binaries")
	}
	st := testcluster.StartSentinel(t, testcluster.Options{NodeTimeout: 10 * time.Second})
	testReplicas(t, goBin, st.URL()+"?min_replicas=1&replica_timeout=2s")
}

// testReplicas runs TestReplicas on the Redis of a store URL.
func testReplicas(t *testing.T, goBin, store string) {
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()

	dir := t.TempDir()
	canaryd, canaryctl := e2eBuild(ctx, t, goBin, dir)
	a := e2eStart(ctx, t, canaryd, store)
	b := e2eStart(ctx, t, canaryd, store)
	ctlA := &e2eCtl{t: t, bin: canaryctl, addr: a.grpcAddr}
	ctlB := &e2eCtl{t: t, bin: canaryctl, addr: b.grpcAddr}
	example := func(name string) string { return filepath.Join(e2eExamples, name) }

	// The file in parts: head (the records at the earliest time), the rest
	// in two halves, and the last records apart (for the watcher).
	lines, head := e2eSplit(t, "rollback.jsonl")
	tail := len(lines) - 1000
	mid := (head + tail) / 2
	part := func(name string, ls []string) string { return e2eWrite(t, dir, name, ls) }
	headF := part("head.jsonl", lines[:head])
	half1 := part("half1.jsonl", lines[head:mid])
	half2 := part("half2.jsonl", lines[mid:tail])
	tailF := part("tail.jsonl", lines[tail:])

	type summary struct {
		Records    int `json:"records"`
		Batches    int `json:"batches"`
		Duplicates int `json:"duplicates"`
		Samples    int `json:"samples"`
	}
	offline, _, code := ctlA.run(ctx, nil, "analyze", "--sequential", "--config", example("canary.yaml"), "--samples", example("rollback.jsonl"), "-o", "json")
	if code != 20 {
		t.Fatalf("canaryctl analyze: exit %d, want 20 (ROLLBACK)", code)
	}
	ctlA.ok(ctx, 0, "config", "put", example("canary.yaml"))
	id := strings.TrimSpace(ctlA.ok(ctx, 0, "run", "create", "--service", "checkout-api", "--stage", "replicas",
		"--config", "checkout-api", "--bake", "0s", "--start", "2026-11-22T10:00:00Z"))

	var sHead summary
	ctlA.okJSON(ctx, &sHead, "ingest", id, headF)
	if sHead.Batches != 1 || sHead.Samples != head {
		t.Fatalf("ingest of the head through A: %+v, want 1 batch of %d samples", sHead, head)
	}
	// B has never seen the run: it loads it from Redis.
	if out := ctlB.ok(ctx, 10, "judge", id); !strings.Contains(out, "HOLD") {
		t.Errorf("judge through B on the head only: %q, want HOLD", out)
	}

	// Both halves at the same time, through A and B.
	start := time.Now()
	var (
		wg     sync.WaitGroup
		s1, s2 summary
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		ctlA.okJSON(ctx, &s1, "ingest", id, half1, "--batch-size", "500", "--window", "4")
	}()
	go func() {
		defer wg.Done()
		ctlB.okJSON(ctx, &s2, "ingest", id, half2, "--batch-size", "500", "--window", "4")
	}()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	elapsed := time.Since(start)
	if s1.Duplicates+s2.Duplicates != 0 || s1.Samples != mid-head || s2.Samples != tail-mid {
		t.Fatalf("concurrent ingest: A %+v, B %+v; want %d and %d samples, no duplicates", s1, s2, mid-head, tail-mid)
	}
	t.Logf("ingested %d observations in %d+%d batches through A and B at once in %v",
		s1.Samples+s2.Samples, s1.Batches, s2.Batches, elapsed.Round(time.Millisecond))

	// A batch retried through the other replica is a duplicate.
	var sRetry summary
	ctlB.okJSON(ctx, &sRetry, "ingest", id, headF)
	if sRetry.Duplicates != 1 || sRetry.Samples != 0 {
		t.Errorf("the head retried through B: %+v, want 1 duplicate and no samples", sRetry)
	}

	// A watcher on A, then the last records through B only: A's watcher
	// must see them.
	w := ctlA.watch(ctx, "watch", id, "-o", "json")
	firstLine := w.next(t)
	all := verdictSamples(t, offline)
	if n := verdictSamples(t, firstLine); n >= all {
		t.Errorf("watch on A: first verdict counts %d, want less than the whole file's %d", n, all)
	}
	var sTail summary
	ctlB.okJSON(ctx, &sTail, "ingest", id, tailF)
	sent := time.Now()
	for {
		l := w.next(t)
		if n := verdictSamples(t, l); n == all {
			t.Logf("watch on A saw the batch ingested through B after %v", time.Since(sent).Round(time.Millisecond))
			if time.Since(sent) > 5*time.Second {
				t.Errorf("watch on A took %v to see data ingested through B", time.Since(sent))
			}
			break
		}
	}

	// Both replicas hold every observation once and judge alike, as the
	// offline analysis of the whole file.
	var runA, runB canaryv1.GetRunResponse
	ctlA.okJSON(ctx, &runA, "run", "get", id)
	ctlB.okJSON(ctx, &runB, "run", "get", id)
	for name, r := range map[string]*canaryv1.GetRunResponse{"A": &runA, "B": &runB} {
		if c := r.GetRun().GetCounters(); int(c.GetBatches()) != sHead.Batches+s1.Batches+s2.Batches+sTail.Batches ||
			int(c.GetBaselineSamples()+c.GetCanarySamples()) != len(lines) {
			t.Errorf("run get through %s: counters %v, want %d batches and %d samples", name, c,
				sHead.Batches+s1.Batches+s2.Batches+sTail.Batches, len(lines))
		}
	}
	// A and B merged the same deltas in the same order: identical. The
	// offline analysis adds the records in another order, so its sums
	// (means, sds) may differ in the last bits: decision and reason must
	// match exactly, numbers within a relative 1e-9.
	want := judgement(t, offline)
	gotA := judgement(t, ctlA.ok(ctx, 20, "judge", id, "-o", "json"))
	gotB := judgement(t, ctlB.ok(ctx, 20, "judge", id, "-o", "json"))
	if !reflect.DeepEqual(gotA, gotB) {
		t.Errorf("judge through A and through B differ:\nA %v\nB %v", gotA, gotB)
	}
	if gotA["decision"] != want["decision"] || gotA["reason"] != want["reason"] || !approxEqual(gotA, want) {
		t.Errorf("judge through A:\n got %v\nwant %v (canaryctl analyze)", gotA, want)
	}

	// Completed through B: A's watcher gets the final verdict, A's history
	// has it.
	ctlB.ok(ctx, 20, "run", "complete", id)
	lines2, code := w.wait(t)
	if code != 20 || len(lines2) == 0 {
		t.Errorf("watch on A after completing through B: exit %d, lines %q; want exit 20 after a final verdict", code, lines2)
	} else {
		var w canaryv1.WatchVerdictResponse
		if err := protojson.Unmarshal([]byte(lines2[len(lines2)-1]), &w); err != nil || !w.GetVerdict().GetFinal() ||
			w.GetVerdict().GetDecision() != canaryv1.Decision_DECISION_ROLLBACK {
			t.Errorf("watch on A: last verdict %s (%v), want a final ROLLBACK", lines2[len(lines2)-1], err)
		}
	}
	var hist canaryv1.ListVerdictsResponse
	ctlA.okJSON(ctx, &hist, "history", "--stage", "replicas")
	if got := e2eHistoryRuns(&hist); !reflect.DeepEqual(got, []string{id + " ROLLBACK"}) {
		t.Errorf("history through A: %q, want the run completed through B", got)
	}
	var done canaryv1.GetRunResponse
	ctlA.okJSON(ctx, &done, "run", "get", id)
	if r := done.GetRun(); r.GetState() != canaryv1.RunState_RUN_STATE_COMPLETED || !r.GetVerdict().GetFinal() {
		t.Errorf("run get through A after completing through B: %s %v", r.GetState(), r.GetVerdict())
	}
	a.kill(t)
	b.kill(t)
}

// verdictSamples sums what a verdict of watch -o json (a
// WatchVerdictResponse) counts: every metric's baseline and canary n plus
// their warm-up exclusions.
func verdictSamples(t *testing.T, s string) int {
	t.Helper()
	var w canaryv1.WatchVerdictResponse
	if err := protojson.Unmarshal([]byte(s), &w); err != nil {
		t.Fatalf("verdict: %v\n%s", err, s)
	}
	n := 0
	for _, m := range w.GetVerdict().GetMetrics() {
		b, c := m.GetBaseline(), m.GetCanary()
		n += int(b.GetN() + b.GetWarmupExcluded() + c.GetN() + c.GetWarmupExcluded())
	}
	return n
}

// judgement is what two judges of the same data must agree on: decision,
// reason, and each metric's outcome, counts and effect. s is a
// JudgeResponse (judge and analyze -o json), read as the analysis.Verdict
// it converts to.
func judgement(t *testing.T, s string) map[string]any {
	t.Helper()
	var resp canaryv1.JudgeResponse
	if err := protojson.Unmarshal([]byte(s), &resp); err != nil {
		t.Fatalf("verdict: %v\n%s", err, s)
	}
	verdict, err := json.Marshal(apiconv.VerdictFromProto(resp.GetVerdict()))
	if err != nil {
		t.Fatal(err)
	}
	s = string(verdict)
	var v struct {
		Decision string `json:"decision"`
		Reason   string `json:"reason"`
		Metrics  []struct {
			Name     string         `json:"name"`
			Outcome  string         `json:"outcome"`
			Baseline map[string]any `json:"baseline"`
			Canary   map[string]any `json:"canary"`
			Effect   map[string]any `json:"effect"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("verdict: %v\n%s", err, s)
	}
	out := map[string]any{"decision": v.Decision, "reason": v.Reason}
	for _, m := range v.Metrics {
		out[m.Name] = map[string]any{"outcome": m.Outcome, "baseline": m.Baseline, "canary": m.Canary, "effect": m.Effect}
	}
	return out
}

// approxEqual compares decoded JSON, numbers within a relative 1e-9.
func approxEqual(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, v := range a {
			if w, ok := bm[k]; !ok || !approxEqual(v, w) {
				return false
			}
		}
		return true
	case float64:
		bf, ok := b.(float64)
		return ok && math.Abs(a-bf) <= 1e-9*math.Max(math.Abs(a), math.Abs(bf))
	}
	return reflect.DeepEqual(a, b)
}
