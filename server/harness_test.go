package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/canaryd/canaryd/internal/testbatch"
	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store/embedded"
	"github.com/canaryd/canaryd/server/store/redisstore"
)

// storeEnv names the environment variable that selects the backend of the
// handler suite: "redis" runs every test of newEnv against a Redis store
// (testredis), anything else against the embedded store.
//
//	CANARYD_TEST_STORE=redis go test -race ./server/
const storeEnv = "CANARYD_TEST_STORE"

// openTestStore opens the store of one test: backend "redis" or
// "embedded".
func openTestStore(t testing.TB, backend string) Store {
	t.Helper()
	if backend == "redis" {
		srv := testredis.Start(t)
		st, err := redisstore.Open(context.Background(), srv.URL(), redisstore.Options{Prefix: srv.Prefix(t)})
		if err != nil {
			t.Fatalf("open redis store: %v", err)
		}
		t.Logf("store: redis %s", srv.URL())
		return st
	}
	st, err := embedded.Open(filepath.Join(t.TempDir(), "canaryd.db"), embedded.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st
}

// testTimeout bounds every test's calls.
const testTimeout = 60 * time.Second

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a Service on a store (embedded in a temp dir, or Redis, see
// storeEnv), served over bufconn.
type env struct {
	t     testing.TB
	svc   *Service
	store Store
	clock *clock
	reg   *prometheus.Registry
	conn  *grpc.ClientConn
	c     canaryv1.CanaryServiceClient
}

// newEnv starts a service; opt may adjust its options.
func newEnv(t testing.TB, opt func(*Options)) *env {
	t.Helper()
	return newEnvOn(t, openTestStore(t, os.Getenv(storeEnv)), opt)
}

// newEnvOn starts a service on st, which it closes at the end of the test.
func newEnvOn(t testing.TB, st Store, opt func(*Options)) *env {
	t.Helper()
	var err error
	e := &env{t: t, store: st, clock: newClock(), reg: prometheus.NewRegistry()}
	opts := Options{Store: st, Now: e.clock.Now, Registerer: e.reg, MaxBatchSamples: 100_000}
	if opt != nil {
		opt(&opts)
	}
	e.svc, err = New(opts)
	if err != nil {
		t.Fatalf("new service: %v", err)
	}
	lis := bufconn.Listen(4 << 20)
	gs := grpc.NewServer(e.svc.ServerOptions()...)
	e.svc.Register(gs)
	go gs.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	e.conn = conn
	e.c = canaryv1.NewCanaryServiceClient(conn)
	t.Cleanup(func() {
		conn.Close()
		e.svc.Shutdown()
		gs.Stop()
		if err := e.svc.Close(); err != nil {
			t.Errorf("close service: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return e
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func ptr[T any](v T) *T { return &v }

// createRun creates a running run with cfg inline and a bake time.
func (e *env) createRun(ctx context.Context, reqID string, cfg *canaryv1.CanaryConfig, bake time.Duration) *canaryv1.Run {
	e.t.Helper()
	resp, err := e.c.CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: reqID, Service: "checkout", Stage: "wave-1",
		Config:   &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: cfg},
		BakeTime: durationpb.New(bake),
	})
	if err != nil {
		e.t.Fatalf("create run: %v", err)
	}
	return resp.GetRun()
}

func batchSize(b *canaryv1.Batch) uint64 {
	n := len(b.GetSamples())
	for _, c := range b.GetColumns() {
		n += len(c.GetValues()) + len(c.GetCounts())
	}
	return uint64(n)
}

func (e *env) ingest(ctx context.Context, b *canaryv1.Batch) *canaryv1.IngestAck {
	e.t.Helper()
	resp, err := e.c.Ingest(ctx, &canaryv1.IngestRequest{Batch: b})
	if err != nil {
		e.t.Fatalf("ingest %s: %v", b.GetBatchId(), err)
	}
	return resp.GetAck()
}

func (e *env) judge(ctx context.Context, runID string) *canaryv1.Verdict {
	e.t.Helper()
	resp, err := e.c.Judge(ctx, &canaryv1.JudgeRequest{RunId: runID})
	if err != nil {
		e.t.Fatalf("judge: %v", err)
	}
	return resp.GetVerdict()
}

func (e *env) getRun(ctx context.Context, runID string) *canaryv1.Run {
	e.t.Helper()
	resp, err := e.c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: runID})
	if err != nil {
		e.t.Fatalf("get run: %v", err)
	}
	return resp.GetRun()
}

// storedDeltas counts what the store holds for a run: snapshot (0 or 1)
// and deltas after it.
func (e *env) storedDeltas(ctx context.Context, runID string) (snapshots, deltas int) {
	e.t.Helper()
	err := e.store.ReadBatches(ctx, runID, func(snapshot bool, _ []byte) error {
		if snapshot {
			snapshots++
		} else {
			deltas++
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("read batches: %v", err)
	}
	return snapshots, deltas
}

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
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return
				}
				fields = append(fields, v.GetField())
			}
		}
	}
	t.Fatalf("no field violation names %q (got %v; message %q)", field, fields, st.Message())
}

// The synthetic runs of internal/testbatch.
type scenario = testbatch.Scenario

var (
	testConfig = testbatch.Config
	makeBatch  = testbatch.Make
	seqIDs     = testbatch.IDs
)
