package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/canaryd/canaryd/internal/testbatch"
)

// The helpers of this package's tests, which run the whole process (Run)
// on loopback ports: the handlers' own suite is in package server.

// testTimeout bounds every test's calls.
const testTimeout = 60 * time.Second

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func ptr[T any](v T) *T { return &v }

// exampleYAML is a config as an operator writes it.
const exampleYAML = `# the checkout config
name: checkout
metrics:
  - name: latency_ms
    category: performance
    type: distribution
  - name: errors
    category: stability
    type: rate
`

// wantCode checks err's code and, when field is set, that a BadRequest
// field violation names it.
func wantCode(t testing.TB, err error, code codes.Code, field string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a status", err)
	}
	if st.Code() != code {
		t.Fatalf("code = %v (%s), want %v", st.Code(), st.Message(), code)
	}
	if field == "" {
		return
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return
				}
			}
		}
	}
	t.Fatalf("no field violation names %q (message %q)", field, st.Message())
}

func contains(xs []string, x string) bool { return slices.Contains(xs, x) }

func sha(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// startRun serves Run with opts on free loopback ports (and a store in a
// temporary directory unless opts names one) until the test ends, and
// returns the gRPC and HTTP addresses.
func startRun(t testing.TB, opts Options) (grpcAddr, httpAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]string, 1)
	errc := make(chan error, 1)
	opts.GRPCAddr, opts.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	if opts.Store == "" {
		opts.Store = filepath.Join(t.TempDir(), "canaryd.db")
	}
	opts.Ready = func(g, h string) { ready <- [2]string{g, h} }
	go func() { errc <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("run did not stop")
		}
	})
	select {
	case a := <-ready:
		return a[0], a[1]
	case err := <-errc:
		t.Fatalf("run: %v", err)
	case <-time.After(testTimeout):
		t.Fatal("not ready in time")
	}
	return "", ""
}

// The synthetic runs of internal/testbatch.
type scenario = testbatch.Scenario

var (
	testConfig = testbatch.Config
	makeBatch  = testbatch.Make
	seqIDs     = testbatch.IDs
)
