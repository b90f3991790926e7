// Package testredis gives tests a real Redis: the one REDIS_URL names, or a
// redis-server of their own, started on a free port with a temporary
// directory and killed when the test ends.
//
//	srv := testredis.Start(t)
//	s, err := redisstore.Open(ctx, srv.URL(), redisstore.Options{Prefix: srv.Prefix(t)})
//
// Tests never flush a database: each one works in its own key namespace
// (Server.Prefix), whose keys are deleted at the end of the test when the
// server is shared (REDIS_URL).
//
// When neither REDIS_URL nor redis-server is available, Start skips the test
// with a message on stderr, or fails it when the environment has CI=true,
// so that CI cannot pass without running the Redis tests.
package testredis

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvURL names the environment variable with the URL of a shared Redis to
// test against instead of starting redis-server.
const EnvURL = "REDIS_URL"

// startTimeout bounds the wait for a started redis-server to answer PING
// (an append-only file is replayed before it does).
const startTimeout = 30 * time.Second

// Options select the kind of server a test needs.
type Options struct {
	// AppendOnly runs redis-server with appendonly yes and appendfsync
	// always, so that every write it acknowledged survives SIGKILL.
	// Without it the server keeps nothing on disk (save "", appendonly no).
	AppendOnly bool
	// Private starts a server of the test's own even when REDIS_URL is
	// set; Stop and Start need one.
	Private bool
	// Cluster starts redis-server in cluster mode, one node serving every
	// hash slot, so that a ClusterClient talks to it and commands whose
	// keys span several slots fail as they would on a real cluster.
	// Implies Private.
	Cluster bool
}

// Server is a Redis for one test.
type Server struct {
	t        testing.TB
	opts     Options
	url      string
	addr     string // host:port
	dir      string // of a private server
	external bool   // REDIS_URL: shared, never stopped or flushed

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start returns a Redis for t with default Options.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith returns a Redis for t: the one REDIS_URL names unless o asks
// for a private or cluster server, otherwise a new redis-server that is
// killed at the end of the test.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Cluster {
		o.Private = true
	}
	if u := os.Getenv(EnvURL); u != "" && !o.Private && !o.AppendOnly {
		opt, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("testredis: %s=%q: %v", EnvURL, u, err)
		}
		return &Server{t: t, opts: o, url: u, addr: opt.Addr, external: true}
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, o)
	}
	s := &Server{t: t, opts: o, dir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testredis: free port: %v", err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.url = "redis://" + s.addr
		err = s.start(bin)
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("testredis: %v", err)
		}
		t.Logf("testredis: %v; trying another port", err)
	}
	t.Cleanup(func() { s.kill() })
	if o.Cluster {
		s.assignSlots()
	}
	return s
}

func missing(t testing.TB, o Options) {
	t.Helper()
	msg := "redis-server is not installed (apt-get install redis-server)"
	if os.Getenv(EnvURL) == "" {
		msg += " and " + EnvURL + " is not set"
	} else {
		msg += fmt.Sprintf(" and this test needs a private server (%+v), not %s", o, EnvURL)
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("testredis: %s; CI=true, so this is a failure", msg)
	}
	fmt.Fprintf(os.Stderr, "\n*** testredis: %s: SKIPPING %s — the Redis backend is NOT tested ***\n\n", msg, t.Name())
	t.Skipf("testredis: %s", msg)
}

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return s.url }

// Addr is the host:port of the server.
func (s *Server) Addr() string { return s.addr }

// Shared reports whether the server is the shared one of REDIS_URL.
func (s *Server) Shared() bool { return s.external }

// Prefix returns a key namespace of t's own on the server: a prefix no
// other test uses. On a shared server the keys under it are deleted when
// t ends.
func (s *Server) Prefix(t testing.TB) string {
	t.Helper()
	p := "test-" + strings.ToLower(rand.Text()[:12])
	if s.external {
		t.Cleanup(func() { s.deletePrefix(t, p) })
	}
	return p
}

func (s *Server) deletePrefix(t testing.TB, prefix string) {
	opt, err := redis.ParseURL(s.url)
	if err != nil {
		t.Errorf("testredis: %v", err)
		return
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	it := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	var batch []string
	flush := func() {
		if len(batch) > 0 {
			if err := c.Unlink(ctx, batch...).Err(); err != nil {
				t.Errorf("testredis: delete the keys of %s: %v", prefix, err)
			}
			batch = batch[:0]
		}
	}
	for it.Next(ctx) {
		if batch = append(batch, it.Val()); len(batch) == 500 {
			flush()
		}
	}
	flush()
	if err := it.Err(); err != nil {
		t.Errorf("testredis: scan the keys of %s: %v", prefix, err)
	}
}

// Client returns a plain client of the server for the test to inspect it
// (a cluster client for a cluster server), closed when the test ends.
func (s *Server) Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	var c redis.UniversalClient
	if s.opts.Cluster {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{s.addr}})
	} else {
		opt, err := redis.ParseURL(s.url)
		if err != nil {
			t.Fatalf("testredis: %v", err)
		}
		c = redis.NewClient(opt)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Stop kills the server with SIGKILL, as a crash would, and waits until it
// has exited. Only private servers can be stopped.
func (s *Server) Stop() {
	s.t.Helper()
	if s.external {
		s.t.Fatalf("testredis: cannot stop the shared server of %s; ask for Options{Private: true}", EnvURL)
	}
	s.kill()
}

// Start starts a stopped server again on the same port and directory (so
// with the data of its append-only file, if Options.AppendOnly) and waits
// until it answers PING.
func (s *Server) Start() {
	s.t.Helper()
	if s.external {
		s.t.Fatalf("testredis: cannot restart the shared server of %s", EnvURL)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.t.Fatalf("testredis: %v", err)
	}
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		s.t.Fatalf("testredis: Start: the server is running")
	}
	if err := s.start(bin); err != nil {
		s.t.Fatalf("testredis: restart: %v", err)
	}
}

func (s *Server) args() []string {
	_, port, _ := net.SplitHostPort(s.addr)
	a := []string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--daemonize", "no",
		"--logfile", "redis.log",
		"--enable-debug-command", "local",
	}
	if s.opts.AppendOnly {
		a = append(a, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		a = append(a, "--appendonly", "no")
	}
	if s.opts.Cluster {
		a = append(a, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-announce-ip", "127.0.0.1")
	}
	return a
}

// start runs redis-server and waits until it answers PING.
func (s *Server) start(bin string) error {
	cmd := exec.Command(bin, s.args()...)
	cmd.Dir = s.dir
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("redis-server on %s exited at start: %s", s.addr, s.logTail())
		default:
		}
		if ping(s.addr) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %s", s.addr, startTimeout, s.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// assignSlots gives every hash slot to the one node of a cluster server
// and waits until the cluster is up.
func (s *Server) assignSlots() {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		s.t.Fatalf("testredis: CLUSTER ADDSLOTSRANGE: %v", err)
	}
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return
		}
		if ctx.Err() != nil {
			s.t.Fatalf("testredis: cluster not ok: %v %q", err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends PING over a fresh connection and wants +PONG (not -LOADING).
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return errors.New(strings.TrimSpace(line))
	}
	return nil
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], " | ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
