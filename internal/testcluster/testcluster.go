// Package testcluster gives tests a real replicated Redis: a Redis Cluster
// of 3 primaries and 3 replicas (Start), or a primary with 2 replicas
// watched by 3 Sentinels (StartSentinel), all redis-server processes of
// the test's own on loopback ports, killed when the test ends.
//
//	c := testcluster.Start(t)
//	s, err := redisstore.Open(ctx, c.URL(), redisstore.Options{})  // redis+cluster://...
//
// These are heavy (6 processes, a few seconds to form): tests that need
// them call Gate first, which skips them unless the environment has
// EnvGate=1 (.ci/run sets it for one run of those tests). When
// redis-server or redis-cli is missing, Start skips the test with a
// message on stderr, or fails it when the environment has CI=true.
package testcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
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

	"github.com/canaryd/canaryd/internal/testproc"
)

// EnvGate names the environment variable that enables the tests that call
// Gate.
const EnvGate = "CANARYD_TEST_CLUSTER"

// startTimeout bounds the wait for the processes and for the cluster or
// the Sentinels to be ready.
const startTimeout = 2 * time.Minute

// DefaultNodeTimeout is the default of Options.NodeTimeout.
const DefaultNodeTimeout = 2 * time.Second

// Options configure Start and StartSentinel.
type Options struct {
	// NodeTimeout is the cluster-node-timeout of the cluster and the
	// down-after-milliseconds of the Sentinels: a primary that does not
	// answer this long is failed over. 0 means DefaultNodeTimeout; a
	// benchmark that loads a node for long on a busy machine wants more,
	// lest a busy primary be taken for a dead one.
	NodeTimeout time.Duration
}

func (o Options) nodeTimeout() time.Duration {
	if o.NodeTimeout <= 0 {
		return DefaultNodeTimeout
	}
	return o.NodeTimeout
}

// Gate skips t unless EnvGate is 1.
func Gate(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvGate) != "1" {
		t.Skipf("testcluster: set %s=1 to run this test on a 6-process Redis Cluster or Sentinel setup (.ci/run does)", EnvGate)
	}
}

// Node is one redis-server process.
type Node struct {
	Addr string // 127.0.0.1:port
	dir  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Cluster is a Redis Cluster of 3 primaries, each with one replica.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
}

func binaries(t testing.TB) (server, cli string) {
	t.Helper()
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		msg := "redis-server or redis-cli is not installed (apt-get install redis-server)"
		if os.Getenv("CI") == "true" {
			t.Fatalf("testcluster: %s; CI=true, so this is a failure", msg)
		}
		fmt.Fprintf(os.Stderr, "\n*** testcluster: %s: SKIPPING %s — Redis Cluster and Sentinel are NOT tested ***\n\n", msg, t.Name())
		t.Skipf("testcluster: %s", msg)
	}
	return server, cli
}

// Start starts a Redis Cluster of 3 primaries and 3 replicas
// (redis-cli --cluster create --cluster-replicas 1) with default Options
// and waits until every slot is served and every replica is in sync.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with Options.
func StartWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin, cli := binaries(t)
	c := &Cluster{t: t}
	ports := freePorts(t, 6)
	for _, p := range ports {
		n := &Node{Addr: "127.0.0.1:" + strconv.Itoa(p), dir: t.TempDir()}
		n.args = []string{
			"--port", strconv.Itoa(p), "--bind", "127.0.0.1", "--dir", n.dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "redis.log",
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(o.nodeTimeout().Milliseconds())),
			"--cluster-announce-ip", "127.0.0.1",
			"--maxmemory-policy", "noeviction",
		}
		c.Nodes = append(c.Nodes, n)
	}
	startAll(t, bin, c.Nodes)
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testcluster: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(ctx)
	return c
}

// URL is the redis+cluster:// URL of the cluster (every node a seed).
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return "redis+cluster://" + strings.Join(addrs, ",") + "/"
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// WaitHealthy waits until every live node reports cluster_state:ok, every
// slot has a primary that is up, and every live replica is in sync.
func (c *Cluster) WaitHealthy(ctx context.Context) {
	c.t.Helper()
	var last string
	for {
		ok := true
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			info, err := n.do(ctx, "CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				ok, last = false, fmt.Sprintf("%s: %v %s", n.Addr, err, firstLines(info, 3))
				break
			}
			repl, err := n.do(ctx, "INFO", "replication")
			if err != nil || strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				ok, last = false, fmt.Sprintf("%s: replica not in sync: %v", n.Addr, err)
				break
			}
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("testcluster: cluster not healthy within %v: %s", startTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PrimaryOf returns the node that serves key as primary now, and fails
// the test if none does.
func (c *Cluster) PrimaryOf(ctx context.Context, key string) *Node {
	c.t.Helper()
	n := c.LookupPrimary(ctx, key)
	if n == nil {
		c.t.Fatalf("testcluster: no primary serves the slot of %q", key)
	}
	return n
}

// LookupPrimary returns the node that serves key as primary now, by the
// first live node's view, or nil when none does (a failover is under way).
// Unlike PrimaryOf it may be called from any goroutine.
func (c *Cluster) LookupPrimary(ctx context.Context, key string) *Node {
	slot := 0
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		v, err := n.do(ctx, "CLUSTER", "KEYSLOT", key)
		if err != nil {
			continue
		}
		slot, _ = strconv.Atoi(v)
		break
	}
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		nodes, err := n.do(ctx, "CLUSTER", "NODES")
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(strings.TrimSpace(nodes), "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, _ := strings.Cut(r, "-")
				if hi == "" {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil && slot >= a && slot <= b {
					addr, _, _ := strings.Cut(f[1], "@")
					for _, m := range c.Nodes {
						if m.Addr == addr {
							return m
						}
					}
				}
			}
		}
		break
	}
	return nil
}

// Primaries returns the nodes that are primaries now.
func (c *Cluster) Primaries(ctx context.Context) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		if repl, err := n.do(ctx, "INFO", "replication"); err == nil && strings.Contains(repl, "role:master") {
			out = append(out, n)
		}
	}
	return out
}

// Sentinel is a primary with 2 replicas and the 3 Sentinels that watch
// them as "mymaster".
type Sentinel struct {
	t         testing.TB
	Data      []*Node // Data[0] the primary at the start
	Sentinels []*Node
}

// MasterName is the name the Sentinels know the primary by.
const MasterName = "mymaster"

// StartSentinel starts a primary, 2 replicas and 3 Sentinels
// (redis-server --sentinel) and waits until the Sentinels see the
// replicas and each other and both replicas are in sync.
func StartSentinel(t testing.TB, o Options) *Sentinel {
	t.Helper()
	bin, _ := binaries(t)
	s := &Sentinel{t: t}
	ports := freePorts(t, 6)
	primary := "127.0.0.1:" + strconv.Itoa(ports[0])
	for i, p := range ports[:3] {
		n := &Node{Addr: "127.0.0.1:" + strconv.Itoa(p), dir: t.TempDir()}
		n.args = []string{
			"--port", strconv.Itoa(p), "--bind", "127.0.0.1", "--dir", n.dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "redis.log",
			"--replica-announce-ip", "127.0.0.1", "--maxmemory-policy", "noeviction",
		}
		if i > 0 {
			n.args = append(n.args, "--replicaof", "127.0.0.1", strconv.Itoa(ports[0]))
		}
		s.Data = append(s.Data, n)
	}
	startAll(t, bin, s.Data)
	for _, p := range ports[3:] {
		n := &Node{Addr: "127.0.0.1:" + strconv.Itoa(p), dir: t.TempDir()}
		conf := filepath.Join(n.dir, "sentinel.conf")
		host, pport, _ := net.SplitHostPort(primary)
		text := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
logfile sentinel.log
sentinel announce-ip 127.0.0.1
sentinel monitor %s %s %s 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, p, n.dir, MasterName, host, pport, MasterName, o.nodeTimeout().Milliseconds(), MasterName, MasterName)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		n.args = []string{conf, "--sentinel"}
		s.Sentinels = append(s.Sentinels, n)
	}
	startAll(t, bin, s.Sentinels)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		ready := true
		for _, n := range s.Sentinels {
			v, err := n.do(ctx, "SENTINEL", "MASTER", MasterName)
			f := strings.Split(v, "\n")
			m := map[string]string{}
			for i := 0; i+1 < len(f); i += 2 {
				m[f[i]] = f[i+1]
			}
			if err != nil || m["num-slaves"] != "2" || m["num-other-sentinels"] != "2" {
				ready = false
			}
		}
		// And both replicas are in sync with the primary.
		if repl, err := s.Data[0].do(ctx, "INFO", "replication"); err != nil || strings.Count(repl, "state=online") != 2 {
			ready = false
		}
		if ready {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testcluster: the Sentinels did not see 2 replicas and each other within %v", startTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return s
}

// URL is the redis+sentinel:// URL of the setup.
func (s *Sentinel) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr
	}
	return "redis+sentinel://" + strings.Join(addrs, ",") + "/" + MasterName
}

// Primary returns the data node that is primary now, by the Sentinels.
func (s *Sentinel) Primary(ctx context.Context) *Node {
	s.t.Helper()
	for _, sn := range s.Sentinels {
		if !sn.Running() {
			continue
		}
		v, err := sn.do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName)
		if err != nil {
			continue
		}
		addr := strings.ReplaceAll(v, "\n", ":")
		for _, n := range s.Data {
			if n.Addr == addr {
				return n
			}
		}
	}
	s.t.Fatalf("testcluster: no Sentinel names a primary")
	return nil
}

// Start starts a killed node again, with its directory (for a cluster
// node, its nodes.conf: it rejoins the cluster, as a replica of the
// replica promoted in its place), and waits until it answers PING. It
// may be called from any goroutine; the node is killed at the end of
// the test as before.
func (n *Node) Start() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	if n.Running() {
		return fmt.Errorf("testcluster: start %s: it runs", n.Addr)
	}
	if err := n.start(bin); err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		if _, err := n.do(context.Background(), "PING"); err == nil {
			return nil
		}
		if !n.Running() || time.Now().After(deadline) {
			return fmt.Errorf("testcluster: %s did not answer PING: %s", n.Addr, n.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Running reports whether the node's process runs.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Kill kills the node with SIGKILL, as a crash would, and waits until it
// has exited.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

func startAll(t testing.TB, bin string, nodes []*Node) {
	t.Helper()
	for _, n := range nodes {
		if err := n.start(bin); err != nil {
			t.Fatalf("testcluster: %v", err)
		}
		t.Cleanup(n.Kill)
	}
	deadline := time.Now().Add(startTimeout)
	for _, n := range nodes {
		for {
			if _, err := n.do(context.Background(), "PING"); err == nil {
				break
			}
			if !n.Running() || time.Now().After(deadline) {
				t.Fatalf("testcluster: %s did not answer PING: %s", n.Addr, n.logTail())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (n *Node) start(bin string) error {
	cmd := exec.Command(bin, n.args...)
	cmd.Dir = n.dir
	testproc.SetPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server on %s: %w", n.Addr, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		n.mu.Lock()
		if n.cmd == cmd {
			n.cmd = nil
		}
		n.mu.Unlock()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	return nil
}

// do sends one command over a fresh connection (RESP2) and returns its
// reply flattened to text: a bulk string as it is, an array's elements
// joined by newlines (nested ones by spaces).
func (n *Node) do(ctx context.Context, args ...string) (string, error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", n.Addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn), "\n")
}

func readReply(r *bufio.Reader, sep string) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		parts := make([]string, 0, max(n, 0))
		for range n {
			p, err := readReply(r, " ")
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, sep), nil
	}
	return "", fmt.Errorf("unknown reply %q", line)
}

func (n *Node) logTail() string {
	for _, name := range []string{"redis.log", "sentinel.log"} {
		if b, err := os.ReadFile(filepath.Join(n.dir, name)); err == nil {
			return firstLines(lastLines(string(b), 5), 5)
		}
	}
	return "(no log)"
}

func lastLines(s string, k int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-k):], " | ")
}

func firstLines(s string, k int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[:min(k, len(lines))], " | ")
}

// freePorts returns k distinct free loopback ports whose port + 10000 (the
// cluster bus port) is free too.
func freePorts(t testing.TB, k int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(out) < k {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testcluster: free port: %v", err)
		}
		ls = append(ls, l)
		p := l.Addr().(*net.TCPAddr).Port
		if p+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		ls = append(ls, bus)
		out = append(out, p)
	}
	return out
}
