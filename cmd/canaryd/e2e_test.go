package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// The end-to-end test builds the real canaryd and canaryctl binaries,
// starts canaryd on free ports with a temporary store, and drives it only
// through canaryctl (plus the gRPC health service to know when it is up):
// configs, runs, ingest (twice: counted once), watch, complete, history;
// then it kills the daemon with SIGKILL, restarts it on the same store and
// checks that what was acknowledged is intact.

const (
	e2eExamples = "../../examples"
	// e2eTimeout bounds the whole test; e2eStep bounds each command.
	e2eTimeout = 3 * time.Minute
	e2eStep    = 30 * time.Second
)

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped with -short: it builds canaryd and canaryctl and runs them as processes")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("end-to-end test skipped: no go command in PATH to build the binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()

	dir := t.TempDir()
	start := time.Now()
	canaryd, canaryctl := e2eBuild(ctx, t, goBin, dir)
	t.Logf("built the binaries in %v", time.Since(start).Round(time.Millisecond))
	store := filepath.Join(dir, "canaryd.db")

	d := e2eStart(ctx, t, canaryd, store)
	ctl := &e2eCtl{t: t, bin: canaryctl, addr: d.grpcAddr}
	example := func(name string) string { return filepath.Join(e2eExamples, name) }

	// The versions stamped at link time.
	if out, err := exec.CommandContext(ctx, canaryd, "--version").Output(); err != nil || !strings.HasPrefix(string(out), "canaryd "+e2eVersion+" (go1.") {
		t.Errorf("canaryd --version: %q (%v), want canaryd %s (go1...)", out, err, e2eVersion)
	}
	if out := ctl.ok(ctx, 0, "version"); !strings.HasPrefix(out, "canaryctl "+e2eVersion+" (go1.") {
		t.Errorf("canaryctl version: %q, want canaryctl %s (go1...)", out, e2eVersion)
	}

	// Configs.
	out := ctl.ok(ctx, 0, "config", "put", example("canary.yaml"))
	if !strings.Contains(out, "checkout-api@1") {
		t.Fatalf("config put: got %q, want checkout-api@1", out)
	}
	if out := ctl.ok(ctx, 0, "config", "put", example("canary.yaml")); !strings.Contains(out, "unchanged") {
		t.Errorf("config put of the same file again: got %q, want it unchanged", out)
	}
	var cfg canaryv1.GetConfigResponse
	ctl.okJSON(ctx, &cfg, "config", "get", "checkout-api@1")
	if cfg.GetConfig().GetName() != "checkout-api" || cfg.GetConfig().GetVersion() != 1 {
		t.Errorf("config get: got %v", &cfg)
	}
	_, stderr, code := ctl.run(ctx, nil, "config", "put", "-", "--name", "bad")
	if code != 2 {
		t.Errorf("config put of an empty config: exit %d, want 2 (stderr %q)", code, stderr)
	}
	bad := "name: bad\nmetrics:\n  - name: latency_ms\n    category: performance\n    type: distribution\n    tolerance: -1\n"
	_, stderr, code = ctl.run(ctx, strings.NewReader(bad), "config", "put", "-")
	if code != 2 || !strings.Contains(stderr, "INVALID_ARGUMENT") || !strings.Contains(stderr, "metrics[0].tolerance") {
		t.Errorf("config put of a bad config: exit %d, stderr %q; want 2, INVALID_ARGUMENT naming metrics[0].tolerance", code, stderr)
	}

	// Runs: promote and rollback will be completed, hold stays running
	// across the restart.
	create := func(stage, reqID string) string {
		// The examples were recorded from 2026-11-22T10:00:00Z: the runs
		// replay them.
		args := []string{"run", "create", "--service", "checkout-api", "--stage", stage, "--config", "checkout-api",
			"--bake", "30m", "--baseline-label", "version=1.4", "--canary-label", "version=1.5", "--start", "2026-11-22T10:00:00Z"}
		if reqID != "" {
			args = append(args, "--request-id", reqID)
		}
		id := strings.TrimSpace(ctl.ok(ctx, 0, args...))
		if id == "" || strings.ContainsAny(id, " \n") {
			t.Fatalf("run create: got %q, want a run id", id)
		}
		return id
	}
	promote := create("onebox/us-east-1", "deploy-42/onebox")
	if again := create("onebox/us-east-1", "deploy-42/onebox"); again != promote {
		t.Errorf("run create with the same request id: got run %s, want %s", again, promote)
	}
	rollback := create("wave-1", "")
	hold := create("wave-2", "")

	// Ingest, twice for the same file: the second is all duplicates.
	type summary struct {
		Records    int `json:"records"`
		Batches    int `json:"batches"`
		Duplicates int `json:"duplicates"`
		Samples    int `json:"samples"`
	}
	var s1, s2 summary
	ctl.okJSON(ctx, &s1, "ingest", promote, example("promote.jsonl"), "--batch-size", "2000", "--window", "3")
	ctl.okJSON(ctx, &s2, "ingest", promote, example("promote.jsonl"), "--batch-size", "2000")
	promoteLines := e2eLines(t, example("promote.jsonl"))
	if want := (summary{promoteLines, 9, 0, promoteLines}); s1 != want {
		t.Errorf("first ingest: got %+v, want %+v", s1, want)
	}
	if want := (summary{promoteLines, 0, 9, 0}); s2 != want {
		t.Errorf("second ingest of the same file: got %+v, want %+v", s2, want)
	}
	var r canaryv1.GetRunResponse
	ctl.okJSON(ctx, &r, "run", "get", promote)
	if c := r.GetRun().GetCounters(); c.GetBatches() != 9 || c.GetDuplicateBatches() != 9 || int(c.GetBaselineSamples()+c.GetCanarySamples()) != promoteLines {
		t.Errorf("run get after ingesting twice: counters %v, want 9 batches, 9 duplicates, %d samples", c, promoteLines)
	}
	// From standard input, in the default batch size.
	f, err := os.Open(example("rollback.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var s3 summary
	ctl.okJSONIn(ctx, f, &s3, "ingest", rollback, "-")
	f.Close()
	if n := e2eLines(t, example("rollback.jsonl")); s3.Samples != n || s3.Duplicates != 0 {
		t.Errorf("ingest from stdin: got %+v, want %d samples", s3, n)
	}
	ctl.ok(ctx, 0, "ingest", hold, example("hold.jsonl"))

	// Watch until the final verdict: the promote run holds until it is
	// completed (its bake time has not ended), the rollback run rolls
	// back at once (a critical metric regressed).
	w := ctl.watch(ctx, "watch", promote)
	if line := w.next(t); !strings.Contains(line, "HOLD") || !strings.Contains(line, "provisional") {
		t.Errorf("watch: first line %q, want a provisional HOLD", line)
	}
	out = ctl.ok(ctx, 0, "run", "complete", promote, "--reason", "bake time elapsed")
	if !strings.Contains(out, "PROMOTE") {
		t.Errorf("run complete: got %q, want PROMOTE", out)
	}
	lines, code := w.wait(t)
	if code != 0 || len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "PROMOTE") || !strings.Contains(lines[len(lines)-1], "final") {
		t.Errorf("watch: exit %d, remaining lines %q; want exit 0 after a final PROMOTE", code, lines)
	}

	w = ctl.watch(ctx, "watch", rollback, "-o", "json")
	var first canaryv1.WatchVerdictResponse
	if err := protojson.Unmarshal([]byte(w.next(t)), &first); err != nil || first.GetVerdict().GetDecision() != canaryv1.Decision_DECISION_ROLLBACK ||
		first.GetVerdict().GetFinal() {
		t.Errorf("watch -o json: first verdict %v (%v), want a provisional ROLLBACK", &first, err)
	}
	ctl.ok(ctx, 20, "run", "complete", rollback)
	lines, code = w.wait(t)
	var last canaryv1.WatchVerdictResponse
	if len(lines) > 0 {
		protojson.Unmarshal([]byte(lines[len(lines)-1]), &last)
	}
	if lv := last.GetVerdict(); code != 20 || lv.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK || !lv.GetFinal() ||
		lv.GetRunState() != canaryv1.RunState_RUN_STATE_COMPLETED {
		t.Errorf("watch -o json: exit %d, last verdict %v; want exit 20 after a final ROLLBACK", code, lv)
	}

	// A finished run takes no more samples; unknown runs are not found.
	_, stderr, code = ctl.run(ctx, nil, "ingest", promote, example("hold.jsonl"))
	if code != 2 || !strings.Contains(stderr, "FAILED_PRECONDITION") {
		t.Errorf("ingest into a completed run: exit %d, stderr %q; want 2, FAILED_PRECONDITION", code, stderr)
	}
	_, stderr, code = ctl.run(ctx, nil, "judge", "no-such-run")
	if code != 2 || !strings.Contains(stderr, "NOT_FOUND") {
		t.Errorf("judge of an unknown run: exit %d, stderr %q; want 2, NOT_FOUND", code, stderr)
	}

	// History.
	var hist canaryv1.ListVerdictsResponse
	ctl.okJSON(ctx, &hist, "history")
	if got := e2eHistoryRuns(&hist); !reflect.DeepEqual(got, []string{rollback + " ROLLBACK", promote + " PROMOTE"}) {
		t.Errorf("history: got %q, want the rollback run then the promote run", got)
	}
	var rb canaryv1.ListVerdictsResponse
	ctl.okJSON(ctx, &rb, "history", "--decision", "ROLLBACK", "--since", "1h")
	if got := e2eHistoryRuns(&rb); !reflect.DeepEqual(got, []string{rollback + " ROLLBACK"}) {
		t.Errorf("history --decision ROLLBACK: got %q, want only the rollback run", got)
	}
	var byStage canaryv1.ListVerdictsResponse
	ctl.okJSON(ctx, &byStage, "history", "--stage", "onebox/us-east-1", "--service", "checkout-api")
	if got := e2eHistoryRuns(&byStage); !reflect.DeepEqual(got, []string{promote + " PROMOTE"}) {
		t.Errorf("history --stage onebox/us-east-1: got %q, want only the promote run", got)
	}
	if out := ctl.ok(ctx, 0, "history", "--until", "1h"); strings.Contains(out, promote) {
		t.Errorf("history --until 1h (an hour ago): got %q, want no verdicts", out)
	}

	// What must survive a crash.
	var runsBefore canaryv1.ListRunsResponse
	ctl.okJSON(ctx, &runsBefore, "run", "list")
	var holdBefore canaryv1.GetRunResponse
	ctl.okJSON(ctx, &holdBefore, "run", "get", hold)
	judgeBefore := ctl.ok(ctx, 10, "judge", hold, "-o", "json")
	histBefore := ctl.ok(ctx, 0, "history", "-o", "json")
	if len(runsBefore.Runs) != 3 {
		t.Fatalf("run list: %d runs, want 3", len(runsBefore.Runs))
	}

	d.kill(t)
	t.Logf("killed canaryd with SIGKILL after %v", time.Since(start).Round(time.Millisecond))
	d = e2eStart(ctx, t, canaryd, store)
	ctl.addr = d.grpcAddr

	var runsAfter canaryv1.ListRunsResponse
	ctl.okJSON(ctx, &runsAfter, "run", "list")
	if after, before := e2eRunsSummary(&runsAfter), e2eRunsSummary(&runsBefore); !reflect.DeepEqual(after, before) {
		t.Errorf("run list after the restart:\n got %q\nwant %q", after, before)
	}
	var holdAfter canaryv1.GetRunResponse
	ctl.okJSON(ctx, &holdAfter, "run", "get", hold)
	if ha, hb := holdAfter.GetRun(), holdBefore.GetRun(); ha.GetState() != canaryv1.RunState_RUN_STATE_RUNNING || !proto.Equal(ha.GetCounters(), hb.GetCounters()) {
		t.Errorf("run get of the running run after the restart: %s %v, want running %v", ha.GetState(), ha.GetCounters(), hb.GetCounters())
	}
	judgeAfter := ctl.ok(ctx, 10, "judge", hold, "-o", "json")
	if a, b := e2eEvidence(t, judgeBefore), e2eEvidence(t, judgeAfter); !reflect.DeepEqual(a, b) {
		t.Errorf("judge of the running run after the restart differs:\nbefore %s\nafter  %s", judgeBefore, judgeAfter)
	}
	if histAfter := ctl.ok(ctx, 0, "history", "-o", "json"); histAfter != histBefore {
		t.Errorf("history after the restart differs:\nbefore %s\nafter  %s", histBefore, histAfter)
	}
	// The batch ids survived too: the same ingest is all duplicates.
	var s4 summary
	ctl.okJSON(ctx, &s4, "ingest", hold, example("hold.jsonl"))
	if s4.Samples != 0 || s4.Batches != 0 || s4.Duplicates != 1 {
		t.Errorf("ingest of the same file after the restart: got %+v, want one duplicate batch", s4)
	}
	ctl.ok(ctx, 10, "run", "abort", hold, "--reason", "end of test")

	// A run that finishes itself: canaryctl watch exits 20 on its critical
	// ROLLBACK, with no run complete.
	auto := strings.TrimSpace(ctl.ok(ctx, 0, "run", "create", "--service", "checkout-auto", "--stage", "wave-3", "--config", "checkout-api",
		"--bake", "30m", "--start", "2026-11-22T10:00:00Z", "--finish-on-decision", "--max-duration", "2h", "--fail-closed",
		"--request-id", "argo/shop/checkout/7"))
	ctl.ok(ctx, 0, "ingest", auto, example("rollback.jsonl"))
	w = ctl.watch(ctx, "watch", auto, "-o", "json")
	lines, code = w.wait(t)
	var lastAuto canaryv1.WatchVerdictResponse
	if len(lines) > 0 {
		protojson.Unmarshal([]byte(lines[len(lines)-1]), &lastAuto)
	}
	if lv := lastAuto.GetVerdict(); code != 20 || lv.GetDecision() != canaryv1.Decision_DECISION_ROLLBACK || !lv.GetFinal() ||
		lv.GetRunState() != canaryv1.RunState_RUN_STATE_COMPLETED {
		t.Errorf("watch of a run that finishes itself: exit %d, last verdict %v; want exit 20 after a final ROLLBACK", code, lv)
	}

	// SIGTERM stops it cleanly.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
		if d.err != nil {
			t.Errorf("canaryd after SIGTERM: %v, want a clean exit\n%s", d.err, d.logs.String())
		}
		if strings.Contains(d.logs.String(), "DATA RACE") {
			t.Errorf("canaryd reported a data race:\n%s", d.logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Errorf("canaryd did not stop within 15s of SIGTERM")
	}
	t.Logf("end-to-end test took %v", time.Since(start).Round(time.Millisecond))
}

// e2eVersion is the version e2eBuild stamps into the binaries, as the
// Dockerfile does with its VERSION argument.
const e2eVersion = "v0.0.0-e2e"

// e2eBuild builds canaryd and canaryctl into dir, stamped with e2eVersion. canaryd gets the race
// detector if this test binary has it; canaryctl does not (its concurrency
// is covered by its own tests under -race, and a race-enabled binary
// starts several times slower, which the many short canaryctl runs of this
// test would pay for).
func e2eBuild(ctx context.Context, t *testing.T, goBin, dir string) (canaryd, canaryctl string) {
	t.Helper()
	race := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			race = race || (s.Key == "-race" && s.Value == "true")
		}
	}
	build := func(pkg string, race bool) string {
		out := filepath.Join(dir, filepath.Base(pkg))
		args := []string{"build", "-o", out, "-ldflags", "-X main.version=" + e2eVersion}
		if race {
			args = append(args, "-race")
		}
		args = append(args, pkg)
		if b, err := exec.CommandContext(ctx, goBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return out
	}
	return build("github.com/canaryd/canaryd/cmd/canaryd", race), build("github.com/canaryd/canaryd/cmd/canaryctl", false)
}

// e2eEnv is the environment of the binaries: with the race detector, a
// process would otherwise sleep a second at exit (atexit_sleep_ms); a race
// still makes it exit with status 66 and print "DATA RACE".
func e2eEnv() []string {
	return append(os.Environ(), "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
}

// e2eDaemon is a running canaryd.
type e2eDaemon struct {
	cmd                *exec.Cmd
	grpcAddr, httpAddr string
	logs               *e2eBuffer
	exited             chan struct{} // closed when the process has exited
	err                error         // its Wait error, set before exited is closed
}

// e2eStart starts canaryd on free ports (port 0; the addresses come from
// its "listening" log line) and waits until it reports SERVING.
func e2eStart(ctx context.Context, t *testing.T, bin, store string) *e2eDaemon {
	t.Helper()
	return e2eStartWith(ctx, t, bin, store, e2eSecurity{})
}

// e2eSecurity are the security flags of a canaryd (args) and the TLS
// config that reaches it (nil: plaintext).
type e2eSecurity struct {
	args []string
	tls  *tls.Config
}

// e2eStartWith is e2eStart with security flags.
func e2eStartWith(ctx context.Context, t testing.TB, bin, store string, sec e2eSecurity) *e2eDaemon {
	t.Helper()
	args := append([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--store", store, "--log-format", "json"}, sec.args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(e2eEnv(), "CANARYD_GRPC_ADDR=", "CANARYD_HTTP_ADDR=", "CANARYD_STORE=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &e2eDaemon{cmd: cmd, logs: &e2eBuffer{}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start canaryd: %v", err)
	}
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.logs.WriteLine(sc.Text())
			var rec struct {
				Msg  string `json:"msg"`
				GRPC string `json:"grpc"`
				HTTP string `json:"http"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				addrs <- [2]string{rec.GRPC, rec.HTTP}
			}
		}
		d.err = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
			return
		default:
		}
		cmd.Process.Kill()
		<-d.exited
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("canaryd logs (%s):\n%s", cmd.Args, d.logs.String())
		}
	})

	wait, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	select {
	case a := <-addrs:
		d.grpcAddr, d.httpAddr = a[0], a[1]
	case <-d.exited:
		t.Fatalf("canaryd exited before listening: %v\n%s", d.err, d.logs.String())
	case <-wait.Done():
		t.Fatalf("canaryd did not log its addresses within 20s\n%s", d.logs.String())
	}
	creds, scheme, web := insecure.NewCredentials(), "http", http.DefaultClient
	if sec.tls != nil {
		creds, scheme = credentials.NewTLS(sec.tls), "https"
		web = &http.Client{Transport: &http.Transport{TLSClientConfig: sec.tls}}
	}
	conn, err := grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for {
		cctx, ccancel := context.WithTimeout(wait, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{Service: "canary.v1.CanaryService"})
		ccancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		select {
		case <-wait.Done():
			t.Fatalf("canaryd not SERVING within 20s (last: %v %v)\n%s", resp.GetStatus(), err, d.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	req, _ := http.NewRequestWithContext(wait, http.MethodGet, scheme+"://"+d.httpAddr+"/healthz", nil)
	resp, err := web.Do(req)
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz: %s", resp.Status)
	}
	return d
}

// kill kills the daemon with SIGKILL and waits for it to exit.
func (d *e2eDaemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill canaryd: %v", err)
	}
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("canaryd did not exit within 10s of SIGKILL")
	}
	if strings.Contains(d.logs.String(), "DATA RACE") {
		t.Errorf("canaryd reported a data race:\n%s", d.logs.String())
	}
}

// e2eCtl runs canaryctl against one daemon.
type e2eCtl struct {
	t    *testing.T
	bin  string
	addr string
}

// run runs canaryctl with CANARY_ADDR set, within e2eStep.
func (c *e2eCtl) run(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, e2eStep)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(e2eEnv(), "CANARY_ADDR="+c.addr)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		code = ee.ExitCode()
	default:
		c.t.Fatalf("canaryctl %s: %v (context: %v)\nstderr: %s", strings.Join(args, " "), err, ctx.Err(), errb.String())
	}
	return out.String(), errb.String(), code
}

// ok runs canaryctl and fails the test unless it exits with want.
func (c *e2eCtl) ok(ctx context.Context, want int, args ...string) string {
	c.t.Helper()
	out, stderr, code := c.run(ctx, nil, args...)
	if code != want {
		c.t.Fatalf("canaryctl %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, stderr)
	}
	return out
}

// okJSON runs canaryctl with -o json and decodes its output into v.
func (c *e2eCtl) okJSON(ctx context.Context, v any, args ...string) {
	c.t.Helper()
	c.okJSONIn(ctx, nil, v, args...)
}

func (c *e2eCtl) okJSONIn(ctx context.Context, stdin io.Reader, v any, args ...string) {
	c.t.Helper()
	args = append(args, "-o", "json")
	out, stderr, code := c.run(ctx, stdin, args...)
	if code != 0 {
		c.t.Fatalf("canaryctl %s: exit %d, want 0\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, stderr)
	}
	var err error
	if m, ok := v.(proto.Message); ok {
		err = protojson.Unmarshal([]byte(out), m) // the API's messages
	} else {
		err = json.Unmarshal([]byte(out), v) // canaryctl's own summaries
	}
	if err != nil {
		c.t.Fatalf("canaryctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// e2eWatch is a canaryctl watch running in the background.
type e2eWatch struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *e2eBuffer
	cancel context.CancelFunc
}

func (c *e2eCtl) watch(ctx context.Context, args ...string) *e2eWatch {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, e2eStep)
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(e2eEnv(), "CANARY_ADDR="+c.addr)
	w := &e2eWatch{cmd: cmd, lines: make(chan string, 100), stderr: &e2eBuffer{}, cancel: cancel}
	cmd.Stderr = w.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
	}()
	c.t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	return w
}

// next returns the next line of output.
func (w *e2eWatch) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-w.lines:
		if !ok {
			t.Fatalf("watch ended early: %s", w.stderr.String())
		}
		return l
	case <-time.After(e2eStep):
		t.Fatalf("watch printed nothing within %v", e2eStep)
	}
	return ""
}

// wait returns the remaining lines and the exit code.
func (w *e2eWatch) wait(t *testing.T) ([]string, int) {
	t.Helper()
	var lines []string
	for l := range w.lines {
		lines = append(lines, l)
	}
	err := w.cmd.Wait()
	w.cancel()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return lines, 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return lines, ee.ExitCode()
	}
	t.Fatalf("watch: %v\n%s", err, w.stderr.String())
	return nil, 0
}

// e2eRunsSummary lists the runs with their state, counters and final
// decision.
func e2eRunsSummary(rs *canaryv1.ListRunsResponse) []string {
	var out []string
	for _, r := range rs.GetRuns() {
		dec := "-"
		if v := r.GetVerdict(); v.GetFinal() {
			dec = v.GetDecision().String()
		}
		c := r.GetCounters()
		out = append(out, fmt.Sprintf("%s %s batches=%d duplicates=%d baseline=%d canary=%d %s", r.GetId(), r.GetState(),
			c.GetBatches(), c.GetDuplicateBatches(), c.GetBaselineSamples(), c.GetCanarySamples(), dec))
	}
	return out
}

// e2eHistoryRuns lists the verdicts of a history as "RUN DECISION".
func e2eHistoryRuns(h *canaryv1.ListVerdictsResponse) []string {
	var out []string
	for _, v := range h.GetVerdicts() {
		out = append(out, v.GetRunId()+" "+strings.TrimPrefix(v.GetDecision().String(), "DECISION_"))
	}
	return out
}

// e2eEvidence decodes a JudgeResponse without the fields that change on each
// judgement (time and sequence).
func e2eEvidence(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("verdict: %v\n%s", err, s)
	}
	v, _ := m["verdict"].(map[string]any) // a JudgeResponse
	delete(v, "time")
	delete(v, "sequence")
	return m
}

// e2eLines counts the non-blank lines of a file.
func e2eLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			n++
		}
	}
	return n
}

// e2eBuffer is a buffer safe for concurrent use.
type e2eBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *e2eBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *e2eBuffer) WriteLine(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.WriteString(s)
	b.b.WriteByte('\n')
}

func (b *e2eBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// e2eSplit returns the records of an example JSON Lines file, one a line
// (each with its newline), and how many at its start share the earliest
// time.
func e2eSplit(t *testing.T, name string) (lines []string, head int) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(e2eExamples, name))
	if err != nil {
		t.Fatal(err)
	}
	lines = strings.SplitAfter(strings.TrimRight(string(raw), "\n")+"\n", "\n")
	lines = lines[:len(lines)-1] // after the last newline
	timeOf := func(l string) string {
		var r struct {
			Time string `json:"time"`
		}
		json.Unmarshal([]byte(l), &r)
		return r.Time
	}
	for head < len(lines) && timeOf(lines[head]) == timeOf(lines[0]) {
		head++
	}
	return lines, head
}

// e2eWrite writes lines to the file name in dir and returns its path.
func e2eWrite(t *testing.T, dir, name string, lines []string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
