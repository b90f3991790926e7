// Package gateway serves the CanaryService as HTTP/JSON: the routes of the
// google.api.http annotations of proto/canary/v1/canary.proto, translated
// by grpc-gateway v2 (canary.pb.gw.go), with the canonical protojson
// mapping of the messages, errors as an HTTP status and a google.rpc.Status
// body, and the same Bearer tokens as gRPC.
//
// # Why a loopback gRPC connection
//
// grpc-gateway can call the service's methods directly
// (RegisterCanaryServiceHandlerServer), but then no gRPC interceptor runs:
// the auth guard (authentication, authorization, audit log), the error
// mapping, panic recovery, the request limits and the self-metrics would
// all have to be re-implemented for HTTP, and the streaming methods
// (IngestStream, WatchVerdict) are not supported at all. Instead, the
// Gateway runs a second grpc.Server with the service's own ServerOptions
// (so the same interceptor chain, codec and limits) on an in-memory
// listener, and the gateway's handlers are clients of it. An HTTP call is
// therefore exactly a gRPC call: the same code, audit line, metrics and
// errors. The Authorization header becomes the "authorization" metadata,
// and no other header is forwarded. The cost, an in-memory HTTP/2 hop and
// a protobuf encode/decode, is measured in BENCHMARKS.md.
//
// The in-memory connection has no TLS, so HTTP callers cannot be
// identified by a client certificate: with mTLS alone (no tokens file)
// every HTTP call is UNAUTHENTICATED; HTTP callers authenticate with a
// Bearer token.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Defaults of Options.
const (
	// DefaultMaxConcurrentCalls bounds the HTTP API calls in progress at
	// once, all HTTP clients together (they share one in-memory
	// connection); further calls wait until one ends.
	DefaultMaxConcurrentCalls = 4096
	// DefaultRequestTimeout bounds the reading of a request body.
	DefaultRequestTimeout = 2 * time.Minute
	// bufSize is the buffer of the in-memory connection.
	bufSize = 1 << 20
)

// Service is what a Gateway serves: a CanaryService with the gRPC server
// options its interceptors need (server.Service).
type Service interface {
	// ServerOptions returns the options of a gRPC server for the service.
	ServerOptions() []grpc.ServerOption
	// Register registers the service on a gRPC server.
	Register(grpc.ServiceRegistrar)
}

// Options configure a Gateway.
type Options struct {
	// Service is served. Required.
	Service Service
	// MaxMessageSize is the largest gRPC message the service accepts; the
	// body of an HTTP request may be 4 times as large (JSON is larger than
	// protobuf), and a larger one is refused with 413. Required.
	MaxMessageSize int
	// MaxConcurrentCalls bounds the calls in progress; 0 means
	// DefaultMaxConcurrentCalls.
	MaxConcurrentCalls uint32
	// RequestTimeout bounds the reading of a request's body (the stream of
	// POST /v1/batches:stream excepted); 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
}

func (o *Options) validate() error {
	switch {
	case o.Service == nil:
		return errors.New("gateway: service is required")
	case o.MaxMessageSize <= 0:
		return fmt.Errorf("gateway: max message size %d is not positive", o.MaxMessageSize)
	case o.RequestTimeout < 0:
		return fmt.Errorf("gateway: request timeout %v is negative", o.RequestTimeout)
	}
	return nil
}

// Gateway is the HTTP/JSON API: an http.Handler of the /v1/ routes. Create
// it with New and Close it when the HTTP server has stopped.
type Gateway struct {
	o    Options
	lis  *bufconn.Listener
	gs   *grpc.Server
	conn *grpc.ClientConn
	mux  *runtime.ServeMux
	log  *slog.Logger
	done chan error
}

// Marshaler is the JSON form of the API's messages: the canonical proto3
// JSON mapping (lowerCamelCase names, enums by name, Timestamps and
// Durations as strings, 64-bit integers as strings), fields with their
// zero value left out. Requests may use the proto field names
// (snake_case) too; an unknown field is an error.
func Marshaler() *runtime.JSONPb {
	return &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
}

// New starts the in-memory gRPC server of o.Service and returns the
// gateway to it.
func New(o Options) (*Gateway, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.MaxConcurrentCalls == 0 {
		o.MaxConcurrentCalls = DefaultMaxConcurrentCalls
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The service's options first; the later MaxConcurrentStreams wins:
	// every HTTP client shares this one connection.
	gs := grpc.NewServer(append(o.Service.ServerOptions(), grpc.MaxConcurrentStreams(o.MaxConcurrentCalls))...)
	o.Service.Register(gs)
	lis := bufconn.Listen(bufSize)
	g := &Gateway{o: o, lis: lis, gs: gs, log: log, done: make(chan error, 1)}
	go func() { g.done <- gs.Serve(lis) }()

	conn, err := grpc.NewClient("passthrough:///canaryd-gateway",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)),
	)
	if err != nil {
		gs.Stop()
		return nil, fmt.Errorf("gateway: connect to the in-memory server: %w", err)
	}
	g.conn = conn
	g.mux = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, Marshaler()),
		// Only the Authorization header is forwarded (the gateway always
		// passes it on as "authorization"); nothing else becomes metadata.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
	)
	if err := canaryv1.RegisterCanaryServiceHandler(context.Background(), g.mux, conn); err != nil {
		conn.Close()
		gs.Stop()
		return nil, fmt.Errorf("gateway: register handlers: %w", err)
	}
	return g, nil
}

// Conn is the gateway's connection to the in-memory server: other HTTP
// handlers (the Flagger webhooks) call the CanaryService through it, with
// the same interceptors as every call.
func (g *Gateway) Conn() grpc.ClientConnInterface { return g.conn }

// ServeHTTP serves the /v1/ routes. A request body larger than 4 times the
// service's message size is refused: 413 (RESOURCE_EXHAUSTED) when its
// Content-Length says so, else 400 once the limit is read. Its reading is
// bounded by RequestTimeout, except for the ingest stream.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	limit := 4 * int64(g.o.MaxMessageSize)
	if r.ContentLength > limit {
		// As gRPC refuses a message over its limit: RESOURCE_EXHAUSTED,
		// before anything is read.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		fmt.Fprintf(w, `{"code":%d,"message":"request body of %d bytes is larger than %d: split the batch"}`,
			codes.ResourceExhausted, r.ContentLength, limit)
		return
	}
	if r.Body != nil {
		// A body of unknown length is cut at the limit (400, "request body
		// too large").
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	}
	rc := http.NewResponseController(w)
	if r.URL.Path != "/v1/batches:stream" {
		// Not every ResponseWriter supports deadlines (httptest's does
		// not): the limit is then the server's.
		_ = rc.SetReadDeadline(time.Now().Add(g.o.RequestTimeout))
	} else {
		// The ingest stream answers each batch while it reads the next:
		// over HTTP/1.1, net/http closes the request body at the first
		// write of the response unless full duplex is enabled (the acks
		// after the first were lost: "invalid Read on closed Body").
		_ = rc.EnableFullDuplex()
	}
	g.mux.ServeHTTP(w, r)
}

// Close stops the gateway: its connection closes (calls still in
// progress are cut) and the in-memory server stops, within timeout. Call
// it after the HTTP server has stopped, which waits for the calls of the
// HTTP requests in progress.
func (g *Gateway) Close(timeout time.Duration) error {
	cerr := g.conn.Close()
	stopped := make(chan struct{})
	go func() {
		g.gs.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		g.log.Warn("gateway: graceful stop timed out; cutting the remaining calls", "timeout", timeout)
		g.gs.Stop()
		<-stopped
	}
	if err := <-g.done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return errors.Join(fmt.Errorf("gateway: serve: %w", err), cerr)
	}
	if cerr != nil {
		return fmt.Errorf("gateway: close connection: %w", cerr)
	}
	return nil
}
