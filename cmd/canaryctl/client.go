package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// defaultAddr is canaryd's gRPC address when neither --addr nor
// CANARY_ADDR is given.
const defaultAddr = "localhost:7070"

// defaultTimeout bounds the commands that make a few unary calls.
const defaultTimeout = 30 * time.Second

// clientFlags are the flags of every command that talks to canaryd.
type clientFlags struct {
	addr    string
	out     string
	timeout time.Duration
	// token is the bearer token sent with every call; "" sends none.
	token string
	// TLS: on with tls, or when any of the files is given; tlsCA verifies
	// the server (system roots without it), tlsCert and tlsKey are the
	// client certificate for mTLS.
	tls                    bool
	tlsCA, tlsCert, tlsKey string
	envErr                 error // a bad environment value, reported by check
	// timeoutSet reports whether --timeout was given; else a command's
	// own default applies.
	timeoutSet bool
}

// addClientFlags registers the global flags --addr, -o, --timeout, --token
// and the TLS flags on fs, with their defaults from the environment.
func addClientFlags(e *env, fs *pflag.FlagSet) *clientFlags {
	c := &clientFlags{}
	addr := e.getenv("CANARY_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	useTLS := false
	if v := e.getenv("CANARY_TLS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			c.envErr = usagef("CANARY_TLS: %v", err)
		}
		useTLS = b
	}
	fs.StringVar(&c.addr, "addr", addr, "canaryd gRPC address [CANARY_ADDR]")
	fs.StringVarP(&c.out, "output", "o", "table", "output format: table, wide, json or yaml (json and yaml: the API's messages in protojson)")
	fs.DurationVar(&c.timeout, "timeout", defaultTimeout, "deadline of the whole command (0: none; watch and ingest have none unless given)")
	fs.StringVar(&c.token, "token", e.getenv("CANARY_TOKEN"),
		"bearer token sent to canaryd (prefer the environment: a flag shows in the process list) [CANARY_TOKEN]")
	fs.BoolVar(&c.tls, "tls", useTLS, "connect with TLS, verifying canaryd against the system's roots (implied by the --tls-* flags) [CANARY_TLS]")
	fs.StringVar(&c.tlsCA, "tls-ca", e.getenv("CANARY_TLS_CA"), "connect with TLS, verifying canaryd against this PEM CA file [CANARY_TLS_CA]")
	fs.StringVar(&c.tlsCert, "tls-cert", e.getenv("CANARY_TLS_CERT"), "client certificate (PEM) for mTLS, with --tls-key [CANARY_TLS_CERT]")
	fs.StringVar(&c.tlsKey, "tls-key", e.getenv("CANARY_TLS_KEY"), "private key (PEM) of --tls-cert [CANARY_TLS_KEY]")
	return c
}

// check validates the flags once they are parsed.
func (c *clientFlags) check() error {
	if c.envErr != nil {
		return c.envErr
	}
	if err := checkOutput(c.out); err != nil {
		return err
	}
	if c.addr == "" {
		return usagef("--addr is empty")
	}
	if c.timeout < 0 {
		return usagef("--timeout must be >= 0 (got %v)", c.timeout)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	return nil
}

// transport returns the credentials of the connection: TLS when asked
// for, else plaintext.
func (c *clientFlags) transport() (credentials.TransportCredentials, error) {
	if !c.tls && c.tlsCA == "" && c.tlsCert == "" {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, usagef("--tls-ca: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usagef("--tls-ca %s: no PEM certificate in it", c.tlsCA)
		}
	}
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, usagef("--tls-cert, --tls-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}

// bearerToken sends "authorization: Bearer TOKEN" with every call. It
// does not require TLS, so that a canaryd on loopback can take tokens
// without it.
type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return false }

// client is a connection to canaryd.
type client struct {
	canaryv1.CanaryServiceClient
	conn *grpc.ClientConn
}

// connect validates the flags, applies the command's deadline to ctx
// (--timeout, else def; 0 means none) and returns a client. The caller
// calls the returned cancel function, which also closes the connection.
func (c *clientFlags) connect(ctx context.Context, def time.Duration) (context.Context, *client, func(), error) {
	if err := c.check(); err != nil {
		return nil, nil, nil, err
	}
	creds, err := c.transport()
	if err != nil {
		return nil, nil, nil, err
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}
	if c.token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearerToken(c.token)))
	}
	conn, err := grpc.NewClient(c.addr, dopts...)
	if err != nil {
		return nil, nil, nil, usageError{fmt.Errorf("--addr %s: %w", c.addr, err)}
	}
	cancel := func() {}
	timeout := def
	if c.timeoutSet {
		timeout = c.timeout
	}
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	return ctx, &client{CanaryServiceClient: canaryv1.NewCanaryServiceClient(conn), conn: conn}, func() {
		cancel()
		conn.Close()
	}, nil
}

// Retries of unary calls: every unary call canaryctl makes is idempotent
// (CreateRun through its request id, PutConfig because identical content is
// not stored twice, CompleteRun and AbortRun because finishing a finished
// run returns it unchanged), so a call that found the server unavailable is
// retried a few times, e.g. across a restart of canaryd.
const (
	unaryAttempts = 4
	retryBase     = 200 * time.Millisecond
	retryMax      = 5 * time.Second
)

// retryable reports whether a call that failed with err may be retried.
func retryable(err error) bool {
	return status.Code(err) == codes.Unavailable
}

// backoff returns the pause before retry n (0-based): exponential from
// retryBase, capped at retryMax.
func backoff(n int) time.Duration {
	d := retryBase << min(n, 10)
	return min(d, retryMax)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unary connects with the command's flags (defaultTimeout unless
// --timeout is given), runs one idempotent unary call f on the client
// with call's retries, and closes the connection.
func unary[T any](ctx context.Context, cf *clientFlags, f func(context.Context, *client) (T, error)) (T, error) {
	ctx, c, done, err := cf.connect(ctx, defaultTimeout)
	if err != nil {
		var zero T
		return zero, err
	}
	defer done()
	return call(ctx, func(ctx context.Context) (T, error) { return f(ctx, c) })
}

// paged connects with the command's flags, lists pages with paginate and
// closes the connection.
func paged[T any](ctx context.Context, cf *clientFlags, p *pageFlags, list func(ctx context.Context, c *client, size int32, token string) ([]T, string, error)) ([]T, string, error) {
	ctx, c, done, err := cf.connect(ctx, defaultTimeout)
	if err != nil {
		return nil, "", err
	}
	defer done()
	return paginate(ctx, p, func(ctx context.Context, size int32, token string) ([]T, string, error) {
		return list(ctx, c, size, token)
	})
}

// call runs one idempotent unary call, retrying it while the server is
// unavailable, and converts its error with rpcError. When the timeout
// ends the retries of an unavailable server, the error is that it was
// unavailable, not the timeout.
func call[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	var (
		resp        T
		err         error
		unavailable error // the last UNAVAILABLE
	)
	for n := 0; n < unaryAttempts; n++ {
		if n > 0 {
			if serr := sleep(ctx, backoff(n-1)); serr != nil {
				break
			}
		}
		resp, err = f(ctx)
		if err == nil || !retryable(err) {
			break
		}
		unavailable = err
	}
	if unavailable != nil && status.Code(err) == codes.DeadlineExceeded && ctx.Err() != nil {
		err = unavailable
	}
	if err != nil {
		return resp, rpcError(err)
	}
	return resp, nil
}

// rpcError turns a gRPC status into an error that says the code, the
// message and the BadRequest field violations, one a line. Errors in the
// request (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
// FAILED_PRECONDITION) exit with 2, the others with 1.
func rpcError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var b strings.Builder
	b.WriteString(codeName(st.Code()))
	b.WriteString(": ")
	b.WriteString(st.Message())
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		for _, v := range br.GetFieldViolations() {
			fmt.Fprintf(&b, "\n  %s: %s", v.GetField(), v.GetDescription())
		}
	}
	if st.Code() == codes.Unauthenticated {
		b.WriteString("\n  (canaryctl sends the bearer token of --token or CANARY_TOKEN)")
	}
	e := &statusError{code: st.Code(), msg: b.String()}
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition:
		return usageError{e}
	}
	return e
}

// statusError is a gRPC error as canaryctl reports it.
type statusError struct {
	code codes.Code
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// codeName returns the canonical name of a code, e.g. INVALID_ARGUMENT.
func codeName(c codes.Code) string {
	s := c.String() // "InvalidArgument", or "Code(17)"
	if strings.HasPrefix(s, "Code(") {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' && s[i-1] >= 'a' && s[i-1] <= 'z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// openInput opens a file named on the command line; "-" is stdin.
func openInput(e *env, path string) (io.Reader, func(), error) {
	if path == "-" {
		return e.stdin, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, usageError{err}
	}
	return f, func() { f.Close() }, nil
}

// isTerminal reports whether w is a character device (a terminal).
// golang.org/x/term is not a dependency; this is its cheap approximation.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
