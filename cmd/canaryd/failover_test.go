package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/testcluster"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestFailoverRedisCluster kills, during ingest through two canaryd
// replicas on a 3+3 Redis Cluster with min_replicas=1, the primary that
// holds the run, and checks that no acknowledged batch is lost and none is
// counted twice: examples/rollback.jsonl goes in 24 parts, half through A
// and half through B, each part one `canaryctl ingest` (which resends the
// batches a failed stream did not acknowledge); the primary of the run's
// slot is killed once both replicas have had parts acknowledged. After the
// cluster has promoted the replica, every part is sent again and must be
// all duplicates (a batch acknowledged and then lost would be stored
// again), the run counts every record of the file exactly once, and A and
// B judge as `canaryctl analyze` judges the whole file.
func TestFailoverRedisCluster(t *testing.T) {
	testcluster.Gate(t)
	if testing.Short() {
		t.Skip("failover test skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("failover test skipped: no go command in PATH to build the binaries")
	}
	c := testcluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	dir := t.TempDir()
	canaryd, canaryctl := e2eBuild(ctx, t, goBin, dir)
	store := c.URL() + "?min_replicas=1&replica_timeout=2s"
	a := e2eStart(ctx, t, canaryd, store)
	b := e2eStart(ctx, t, canaryd, store)
	ctlA := &e2eCtl{t: t, bin: canaryctl, addr: a.grpcAddr}
	ctlB := &e2eCtl{t: t, bin: canaryctl, addr: b.grpcAddr}
	example := func(name string) string { return filepath.Join(e2eExamples, name) }

	lines, head := e2eSplit(t, "rollback.jsonl")
	write := func(name string, ls []string) string { return e2eWrite(t, dir, name, ls) }
	const nParts = 24
	parts := []string{write("head.jsonl", lines[:head])}
	for i := range nParts {
		lo := head + i*(len(lines)-head)/nParts
		hi := head + (i+1)*(len(lines)-head)/nParts
		parts = append(parts, write(fmt.Sprintf("part%02d.jsonl", i), lines[lo:hi]))
	}

	offline, _, code := ctlA.run(ctx, nil, "analyze", "--sequential", "--config", example("canary.yaml"), "--samples", example("rollback.jsonl"), "-o", "json")
	if code != 20 {
		t.Fatalf("canaryctl analyze: exit %d, want 20 (ROLLBACK)", code)
	}
	ctlA.ok(ctx, 0, "config", "put", example("canary.yaml"))
	id := strings.TrimSpace(ctlA.ok(ctx, 0, "run", "create", "--service", "checkout-api", "--stage", "failover",
		"--config", "checkout-api", "--bake", "0s", "--start", "2026-11-22T10:00:00Z"))
	type summary struct {
		Batches    int `json:"batches"`
		Duplicates int `json:"duplicates"`
		Samples    int `json:"samples"`
		Retries    int `json:"retries"`
	}
	ingest := func(ctl *e2eCtl, part string) (summary, error) {
		out, stderr, code := ctl.run(ctx, nil, "ingest", id, part, "--batch-size", "200", "--window", "4", "-o", "json")
		var s summary
		if code != 0 {
			return s, fmt.Errorf("canaryctl ingest %s: exit %d: %s", filepath.Base(part), code, stderr)
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			return s, fmt.Errorf("canaryctl ingest %s: %v: %s", filepath.Base(part), err, out)
		}
		return s, nil
	}
	if s, err := ingest(ctlA, parts[0]); err != nil || s.Batches != 1 {
		t.Fatalf("head through A: %+v, %v", s, err)
	}

	// The primary of the run's slot, to be killed.
	victim := c.PrimaryOf(ctx, "canaryd:{run:"+id+"}:m")
	t.Logf("run %s is on primary %s", id, victim.Addr)

	var (
		mu        sync.Mutex
		sums      = map[int]summary{}
		errs      []error
		ackedBy   = map[string]int{} // replica -> parts acknowledged
		killed    = make(chan struct{})
		killedAt  time.Time
		firstAck  time.Time // first part acknowledged after the kill
		wg        sync.WaitGroup
		killOnce  sync.Once
		replicaOf = map[*e2eCtl]string{ctlA: "A", ctlB: "B"}
	)
	// The kill, then, once the cluster has promoted the victim's replica,
	// the victim restarted as a supervisor would: it rejoins as the
	// replica of the new primary, which min_replicas=1 needs to take
	// writes again.
	var promotedAfter, restartedAfter time.Duration
	kill := func() {
		killOnce.Do(func() {
			victim.Kill()
			mu.Lock()
			killedAt = time.Now()
			mu.Unlock()
			for {
				if p := c.LookupPrimary(ctx, "canaryd:{run:"+id+"}:m"); p != nil && p != victim {
					break
				}
				if ctx.Err() != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			promotedAfter = time.Since(killedAt)
			if err := victim.Start(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			restartedAfter = time.Since(killedAt)
			close(killed)
		})
	}
	for r, ctl := range []*e2eCtl{ctlA, ctlB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1 + r; i < len(parts); i += 2 {
				s, err := ingest(ctl, parts[i])
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				sums[i] = s
				ackedBy[replicaOf[ctl]]++
				trigger := ackedBy["A"] >= 3 && ackedBy["B"] >= 3
				if !killedAt.IsZero() && firstAck.IsZero() {
					firstAck = time.Now()
				}
				mu.Unlock()
				if trigger {
					kill()
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("ingest: %v", errs)
	}
	select {
	case <-killed:
	default:
		t.Fatal("the primary was never killed: parts went too fast to interleave")
	}
	healthy, hcancel := context.WithTimeout(ctx, 30*time.Second)
	c.WaitHealthy(healthy)
	hcancel()
	retries, dups := 0, 0
	for _, s := range sums {
		retries += s.Retries
		dups += s.Duplicates
	}
	t.Logf("killed primary %s; its replica promoted after %v; the node restarted (a replica again) after %v; "+
		"first part acknowledged %v after the kill; %d stream retries, %d batches acknowledged as duplicates "+
		"(stored, then the WAIT or the stream failed)",
		victim.Addr, promotedAfter.Round(time.Millisecond), restartedAfter.Round(time.Millisecond),
		firstAck.Sub(killedAt).Round(time.Millisecond), retries, dups)
	if now := c.PrimaryOf(ctx, "canaryd:{run:"+id+"}:m"); now == victim {
		t.Fatalf("the killed node serves the run's slot again")
	}

	// Every part again, through the other replica: all duplicates.
	batches := 1
	for i := 1; i < len(parts); i++ {
		ctl := ctlB
		if i%2 == 0 {
			ctl = ctlA
		}
		s, err := ingest(ctl, parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if s.Samples != 0 || s.Batches != 0 || s.Duplicates == 0 {
			t.Errorf("part %d sent again after the failover: %+v; want only duplicates (an acknowledged batch was lost)", i, s)
		}
		batches += s.Duplicates
	}

	// Every record counted once, by both replicas; both judge as analyze.
	for name, ctl := range map[string]*e2eCtl{"A": ctlA, "B": ctlB} {
		var r canaryv1.GetRunResponse
		ctl.okJSON(ctx, &r, "run", "get", id)
		if c := r.GetRun().GetCounters(); int(c.GetBatches()) != batches || int(c.GetBaselineSamples()+c.GetCanarySamples()) != len(lines) {
			t.Errorf("run get through %s: counters %v, want %d batches and %d samples", name, c, batches, len(lines))
		}
	}
	want := judgement(t, offline)
	gotA := judgement(t, ctlA.ok(ctx, 20, "judge", id, "-o", "json"))
	gotB := judgement(t, ctlB.ok(ctx, 20, "judge", id, "-o", "json"))
	if !reflect.DeepEqual(gotA, gotB) {
		t.Errorf("judge through A and through B differ:\nA %v\nB %v", gotA, gotB)
	}
	if gotA["decision"] != want["decision"] || gotA["reason"] != want["reason"] || !approxEqual(gotA, want) {
		t.Errorf("judge through A:\n got %v\nwant %v (canaryctl analyze)", gotA, want)
	}
	ctlB.ok(ctx, 20, "run", "complete", id)
	var hist canaryv1.ListVerdictsResponse
	ctlA.okJSON(ctx, &hist, "history", "--stage", "failover")
	if got := e2eHistoryRuns(&hist); !reflect.DeepEqual(got, []string{id + " ROLLBACK"}) {
		t.Errorf("history through A: %q, want the run completed through B", got)
	}
	a.kill(t)
	b.kill(t)
}
