package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

func restartDelta(id string) []byte { return []byte("delta of " + id) }

// TestRedisCrashAndRestart kills redis-server (SIGKILL) while writers
// append, checks that every call fails with store.ErrUnavailable while it
// is down, restarts it on the same port and append-only file, and checks
// that the same Store recovers by itself with every acknowledged batch
// stored once.
func TestRedisCrashAndRestart(t *testing.T) {
	t.Parallel()
	srv := testredis.StartWith(t, testredis.Options{AppendOnly: true, Private: true})
	s := openStore(t, srv, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const runID = "run-1"
	run := &canaryv1.Run{Id: runID, RequestId: "req-1", Service: "checkout", Stage: "wave-1", CreateTime: timestamppb.New(time.Unix(1000, 0))}
	if _, _, err := s.CreateRun(ctx, run, []byte("fp")); err != nil {
		t.Fatal(err)
	}

	var (
		mu      sync.Mutex
		acked   = map[string]bool{} // stored by a call that returned nil
		failed  []string            // a call returned an error: stored or not
		stop    atomic.Bool
		wg      sync.WaitGroup
		errored atomic.Int64
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("w%d-%05d", w, i)
				dup, err := s.AppendBatch(ctx, runID, id, restartDelta(id))
				mu.Lock()
				switch {
				case err == nil && dup:
					t.Errorf("AppendBatch(%s) = dup on its first call", id)
				case err == nil:
					acked[id] = true
				case errors.Is(err, store.ErrUnavailable):
					failed = append(failed, id)
					errored.Add(1)
				default:
					t.Errorf("AppendBatch(%s) = %v, want nil or ErrUnavailable", id, err)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	waitFor(t, "acknowledged batches", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 200 })
	srv.Stop()
	waitFor(t, "failed appends", func() bool { return errored.Load() >= 8 })

	// While Redis is down every call fails, as unavailable, and in bounded time.
	downCalls := map[string]func() error{
		"Healthy":     func() error { return s.Healthy(ctx) },
		"AppendBatch": func() error { _, err := s.AppendBatch(ctx, runID, "down", restartDelta("down")); return err },
		"GetRun":      func() error { _, err := s.GetRun(ctx, runID); return err },
		"ReadBatches": func() error { return s.ReadBatches(ctx, runID, func(bool, []byte) error { return nil }) },
		"UpdateRun":   func() error { return s.UpdateRun(ctx, run) },
		"FinishRun": func() error {
			return s.FinishRun(ctx, &canaryv1.Run{Id: runID, State: canaryv1.RunState_RUN_STATE_COMPLETED, Verdict: &canaryv1.Verdict{}})
		},
		"ListVerdicts": func() error { _, _, err := s.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{}); return err },
		"PutConfig":    func() error { _, _, err := s.PutConfig(ctx, &canaryv1.CanaryConfig{Name: "c"}, ""); return err },
	}
	for name, call := range downCalls {
		start := time.Now()
		err := call()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with Redis down = %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s with Redis down took %v", name, d)
		}
	}
	mu.Lock()
	failed = append(failed, "down")
	mu.Unlock()

	srv.Start()
	// The same Store recovers by itself.
	waitFor(t, "Healthy after the restart", func() bool { return s.Healthy(ctx) == nil })
	waitFor(t, "appends after the restart", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 400 })
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		return
	}

	// A batch whose call failed is retried: it may or may not have been
	// stored before the crash, and is stored once either way.
	for _, id := range failed {
		if _, err := s.AppendBatch(ctx, runID, id, restartDelta(id)); err != nil {
			t.Fatalf("retry AppendBatch(%s) = %v", id, err)
		}
		acked[id] = true
	}
	for id := range acked {
		dup, err := s.AppendBatch(ctx, runID, id, restartDelta(id))
		if err != nil || !dup {
			t.Fatalf("AppendBatch(%s) again = dup %v, %v; want dup", id, dup, err)
		}
	}
	seen := map[string]int{}
	err := s.ReadBatches(ctx, runID, func(snap bool, d []byte) error {
		if !snap {
			seen[strings.TrimPrefix(string(d), "delta of ")]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("batch %s read %d times, want 1", id, seen[id])
		}
	}
	if len(seen) != len(acked) {
		t.Errorf("read %d distinct batches, want the %d acknowledged", len(seen), len(acked))
	}
	t.Logf("%d batches acknowledged, %d calls failed while Redis was down", len(acked), len(failed))
}

// TestUnreachableAtOpen checks that Open fails, as unavailable, when
// nothing answers.
func TestUnreachableAtOpen(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = Open(t.Context(), "redis://"+addr+"?dial_timeout=200ms", Options{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open(nothing listening) = %v, want ErrUnavailable", err)
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	s := &Store{quit: make(chan struct{})}
	reply := func(msg string) error {
		// A server error reply as the client returns it.
		c := redis.NewCmd(context.Background())
		c.SetErr(redisReply(msg))
		return c.Err()
	}
	tests := []struct {
		err             error
		wantUnavailable bool
	}{
		{reply("LOADING Redis is loading the dataset in memory"), true},
		{reply("READONLY You can't write against a read only replica."), true},
		{reply("MASTERDOWN Link with MASTER is down"), true},
		{reply("CLUSTERDOWN The cluster is down"), true},
		{reply("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{reply("BUSY Redis is busy running a script."), true},
		{reply("OOM command not allowed when used memory > 'maxmemory'."), true},
		{reply("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."), true},
		{reply("ERR max number of clients reached"), true},
		{reply("ERR user_script:1: Script attempted to access a non local key"), false},
		{reply("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{context.DeadlineExceeded, true},
		{redis.ErrPoolTimeout, true},
	}
	for _, tt := range tests {
		err := s.fail(context.Background(), tt.err)
		if got := errors.Is(err, store.ErrUnavailable); got != tt.wantUnavailable {
			t.Errorf("fail(%v) = %v; unavailable %v, want %v", tt.err, err, got, tt.wantUnavailable)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("fail(%v) = %v, does not wrap it", tt.err, err)
		}
	}
}

// redisReply is an error reply of the server.
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

// waitFor polls cond for up to 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHealthyWhenRedisRefusesWrites: a Redis that answers PING but refuses
// writes (OOM at maxmemory with noeviction) makes AppendBatch fail with
// ErrUnavailable and Healthy report it, until it takes writes again.
func TestHealthyWhenRedisRefusesWrites(t *testing.T) {
	t.Parallel()
	srv := testredis.StartWith(t, testredis.Options{Private: true})
	s := openStore(t, srv, Options{})
	rc := srv.Client(t)
	ctx := t.Context()
	if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r", Service: "checkout"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Healthy(ctx); err != nil {
		t.Fatalf("Healthy = %v before the limit", err)
	}
	if err := rc.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING at maxmemory: %v (the test needs a Redis that still answers it)", err)
	}
	if _, err := s.AppendBatch(ctx, "r", "b1", []byte("delta")); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("AppendBatch at maxmemory = %v, want ErrUnavailable", err)
	}
	if err := s.Healthy(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Healthy at maxmemory = %v, want ErrUnavailable", err)
	}
	if err := rc.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Healthy(ctx); err != nil {
		t.Errorf("Healthy after the limit is lifted = %v", err)
	}
	if _, err := s.AppendBatch(ctx, "r", "b1", []byte("delta")); err != nil {
		t.Errorf("AppendBatch after the limit is lifted = %v", err)
	}
}
