package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store/embedded"
)

// tcpServer serves a Service with opts (store set here) on loopback TCP,
// with the gRPC server options of ServerOptions, as Run does.
func tcpServer(t *testing.T, opt func(*Options)) (*Service, string) {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "canaryd.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Store: st}
	if opt != nil {
		opt(&opts)
	}
	svc, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(svc.ServerOptions()...)
	svc.Register(gs)
	go gs.Serve(lis)
	t.Cleanup(func() {
		svc.Shutdown()
		gs.Stop()
		if err := svc.Close(); err != nil {
			t.Errorf("close service: %v", err)
		}
		st.Close()
	})
	return svc, lis.Addr().String()
}

func dialT(t *testing.T, addr string) canaryv1.CanaryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return canaryv1.NewCanaryServiceClient(conn)
}

// TestIngestStreamIdle: an ingest stream that keeps sending batches stays
// open longer than the idle timeout; once it stops sending, it is ended
// with DEADLINE_EXCEEDED after the timeout; and a stream that never sends
// a batch is ended too.
func TestIngestStreamIdle(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	e := newEnv(t, func(o *Options) { o.StreamIdleTimeout = idle })
	ctx := ctxT(t)
	run := e.createRun(ctx, "idle", testConfig("checkout"), time.Hour)

	stream, err := e.c.IngestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; time.Since(start) < 4*idle; i++ {
		b := &canaryv1.Batch{RunId: run.GetId(), BatchId: strconv.Itoa(i), Columns: []*canaryv1.MetricColumn{
			{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Values: []float64{80}},
		}}
		if err := stream.Send(&canaryv1.IngestStreamRequest{Batch: b}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("ack %d (after %v of activity): %v", i, time.Since(start), err)
		}
		time.Sleep(idle / 4)
	}
	_, err = stream.Recv() // the client now sends nothing
	wantCode(t, err, codes.DeadlineExceeded, "")
	if !strings.Contains(err.Error(), "idle") {
		t.Fatalf("error %v does not say the stream was idle", err)
	}

	silent, err := e.c.IngestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = silent.Recv()
	wantCode(t, err, codes.DeadlineExceeded, "")
}

// TestTrickle: a client that trickles a request one byte at a time,
// faster than the idle timeout, never completes a message: the call is
// ended after the timeout, over a raw HTTP/2 connection. An IngestStream
// is idle (DEADLINE_EXCEEDED, its own timeout); a unary call or a watch
// is cancelled while the server reads its request (see tapRequest).
func TestTrickle(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	_, addr := tcpServer(t, func(o *Options) { o.StreamIdleTimeout = idle })
	for _, tc := range []struct {
		method string
		code   codes.Code
	}{
		{canaryv1.CanaryService_IngestStream_FullMethodName, codes.DeadlineExceeded},
		{canaryv1.CanaryService_GetRun_FullMethodName, codes.Canceled},
		{canaryv1.CanaryService_WatchVerdict_FullMethodName, codes.Canceled},
	} {
		t.Run(tc.method, func(t *testing.T) {
			t.Parallel()
			c := dialH2(t, addr)
			c.headers(1, tc.method)
			// A message announced as 1,000 bytes long, sent a byte every
			// 20 ms.
			msg := make([]byte, 5, 1005)
			binary.BigEndian.PutUint32(msg[1:], 1000)
			msg = append(msg, bytes.Repeat([]byte{0}, 1000)...)
			deadline := time.Now().Add(testTimeout)
			for i := 0; ; i++ {
				if st, ok := c.grpcStatus(1); ok {
					if st != strconv.Itoa(int(tc.code)) {
						t.Fatalf("grpc-status %s, want %d (%v)", st, tc.code, tc.code)
					}
					t.Logf("ended after %d bytes", i)
					return
				}
				if i == len(msg) || time.Now().After(deadline) {
					t.Fatalf("call still open after %d bytes trickled", i)
				}
				if err := c.data(1, msg[i:i+1]); err != nil {
					// The server may reset the stream while we write; the
					// status is read above.
					t.Logf("write: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// TestRequestTimerStops: the bound on receiving a request does not bound
// the call: a Judge slower than StreamIdleTimeout answers, and a watch
// stays open beyond it.
func TestRequestTimerStops(t *testing.T) {
	t.Parallel()
	const idle = 200 * time.Millisecond
	e := newEnv(t, func(o *Options) { o.StreamIdleTimeout = idle })
	ctx := ctxT(t)
	e.svc.judgeHook = func() { time.Sleep(2 * idle) }
	run := e.createRun(ctx, "slow", testConfig("checkout"), time.Hour)
	e.judge(ctx, run.GetId())

	w, err := e.c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: run.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * idle)
	e.ingest(ctx, &canaryv1.Batch{RunId: run.GetId(), BatchId: "1", Columns: []*canaryv1.MetricColumn{
		{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_BASELINE, Values: []float64{80}},
	}})
	if _, err := w.Recv(); err != nil {
		t.Fatalf("watch after %v: %v", 2*idle, err)
	}
}

// TestKeepalivePolicy: the server accepts client pings spaced by at least
// KeepaliveMinTime, even without calls in progress (PermitWithoutStream),
// and answers a client that pings more often with GOAWAY
// ENHANCE_YOUR_CALM ("too_many_pings"). Its SETTINGS announce
// MaxConcurrentStreams and the header list bound.
func TestKeepalivePolicy(t *testing.T) {
	t.Parallel()
	const minTime = 200 * time.Millisecond
	_, addr := tcpServer(t, func(o *Options) { o.KeepaliveMinTime = minTime })

	polite := dialH2(t, addr)
	if got := polite.setting(http2.SettingMaxConcurrentStreams); got != DefaultMaxConcurrentStreams {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", got, DefaultMaxConcurrentStreams)
	}
	if got := polite.setting(http2.SettingMaxHeaderListSize); got != maxHeaderListSize {
		t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE = %d, want %d", got, maxHeaderListSize)
	}
	for i := range 5 {
		if err := polite.ping(byte(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(minTime + minTime/2)
	}
	if polite.pingAcks() != 5 {
		t.Fatalf("%d of 5 pings acknowledged", polite.pingAcks())
	}
	if ga := polite.goAway(); ga != nil {
		t.Fatalf("pings every %v: GOAWAY %v %q", minTime+minTime/2, ga.code, ga.debug)
	}

	rude := dialH2(t, addr)
	for i := range 5 {
		if err := rude.ping(byte(i)); err != nil {
			break // the server may close the connection after its GOAWAY
		}
	}
	deadline := time.Now().Add(testTimeout)
	for rude.goAway() == nil && time.Now().Before(deadline) && !rude.closed() {
		time.Sleep(10 * time.Millisecond)
	}
	ga := rude.goAway()
	if ga == nil {
		t.Fatal("pings back to back: no GOAWAY")
	}
	if ga.code != http2.ErrCodeEnhanceYourCalm || ga.debug != "too_many_pings" {
		t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", ga.code, ga.debug)
	}
}

// TestMaxConcurrentStreams: with MaxConcurrentStreams 2, a real gRPC client
// with two watchers open on its connection cannot start a third call until
// one of them ends.
func TestMaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	_, addr := tcpServer(t, func(o *Options) { o.MaxConcurrentStreams = 2 })
	c := dialT(t, addr)
	ctx := ctxT(t)
	resp, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: "streams", Service: "s", Stage: "s",
		Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("checkout")},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetRun().GetId()
	var cancels []context.CancelFunc
	for range 2 {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		cancels = append(cancels, cancel)
		w, err := c.WatchVerdict(wctx, &canaryv1.WatchVerdictRequest{RunId: id})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil { // the stream is open on the server
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = c.GetRun(short, &canaryv1.GetRunRequest{RunId: id})
	wantCode(t, err, codes.DeadlineExceeded, "")
	cancels[0]()
	if _, err := c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: id}); err != nil {
		t.Fatalf("with one watcher ended: %v", err)
	}
}

// TestMaxHeaderListSize: a call whose metadata exceed maxHeaderListSize is
// refused (a gRPC client refuses to send it, as the server's SETTINGS
// announce); just under it, it is served.
func TestMaxHeaderListSize(t *testing.T) {
	t.Parallel()
	_, addr := tcpServer(t, nil)
	c := dialT(t, addr)
	for _, tc := range []struct {
		n    int
		code codes.Code
	}{{maxHeaderListSize - 1024, codes.OK}, {maxHeaderListSize, codes.Internal}} {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-padding", strings.Repeat("a", tc.n))
		_, err := c.ListConfigs(ctx, &canaryv1.ListConfigsRequest{})
		if got := status.Code(err); got != tc.code {
			t.Fatalf("%d bytes of metadata: %v, want %v", tc.n, err, tc.code)
		}
	}
}

// h2Client is a raw HTTP/2 client connection, for what a gRPC client does
// not let a test do (trickle a message, ping at will). A goroutine reads
// the server's frames.
type h2Client struct {
	t    *testing.T
	conn net.Conn
	wmu  sync.Mutex // guards fr's writes and enc
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder

	mu       sync.Mutex
	settings map[http2.SettingID]uint32
	acks     int
	ga       *goAway
	statuses map[uint32]string // grpc-status by stream
	done     bool
	ready    chan struct{} // closed on the server's first SETTINGS
}

func dialH2(t *testing.T, addr string) *h2Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &h2Client{t: t, conn: conn, fr: http2.NewFramer(conn, conn), settings: map[http2.SettingID]uint32{},
		statuses: map[uint32]string{}, ready: make(chan struct{})}
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.write(func() error { return c.fr.WriteSettings() }); err != nil {
		t.Fatal(err)
	}
	go c.read()
	select {
	case <-c.ready:
	case <-time.After(testTimeout):
		t.Fatal("no SETTINGS from the server")
	}
	return c
}

func (c *h2Client) write(f func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return f()
}

func (c *h2Client) read() {
	defer func() {
		c.mu.Lock()
		c.done = true
		c.mu.Unlock()
	}()
	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			c.mu.Lock()
			f.ForeachSetting(func(s http2.Setting) error { c.settings[s.ID] = s.Val; return nil })
			c.mu.Unlock()
			c.write(func() error { return c.fr.WriteSettingsAck() })
			if first {
				first = false
				close(c.ready)
			}
		case *http2.PingFrame:
			if f.IsAck() {
				c.mu.Lock()
				c.acks++
				c.mu.Unlock()
			}
		case *http2.GoAwayFrame:
			c.mu.Lock()
			c.ga = &goAway{code: f.ErrCode, debug: string(f.DebugData())} // copied: the frame is reused
			c.mu.Unlock()
		case *http2.MetaHeadersFrame:
			for _, hf := range f.RegularFields() {
				if hf.Name == "grpc-status" {
					c.mu.Lock()
					c.statuses[f.StreamID] = hf.Value
					c.mu.Unlock()
				}
			}
		}
	}
}

// headers opens a gRPC call on stream id.
func (c *h2Client) headers(id uint32, method string) {
	c.t.Helper()
	err := c.write(func() error {
		c.hbuf.Reset()
		for _, kv := range [][2]string{
			{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", "canaryd"},
			{"content-type", "application/grpc"}, {"te", "trailers"},
		} {
			c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *h2Client) data(id uint32, b []byte) error {
	return c.write(func() error { return c.fr.WriteData(id, false, b) })
}

func (c *h2Client) ping(b byte) error {
	return c.write(func() error { return c.fr.WritePing(false, [8]byte{b}) })
}

func (c *h2Client) setting(id http2.SettingID) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.settings[id]
}

func (c *h2Client) pingAcks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acks
}

// goAway is a GOAWAY frame received.
type goAway struct {
	code  http2.ErrCode
	debug string
}

func (c *h2Client) goAway() *goAway {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ga
}

func (c *h2Client) closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// grpcStatus returns the grpc-status the server sent on stream id, if any.
func (c *h2Client) grpcStatus(id uint32) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.statuses[id]
	return st, ok
}
