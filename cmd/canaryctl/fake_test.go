package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// fakeService is a CanaryService for canaryctl's tests: it records the
// requests it receives and answers from its fields. The real service is
// tested over bufconn in package server and end to end in cmd/canaryd;
// this one can misbehave on purpose (break a stream, hold its acks).
type fakeService struct {
	canaryv1.UnimplementedCanaryServiceServer

	mu   sync.Mutex
	reqs []proto.Message // unary requests, in order

	// Ingest: batches are stored when received (before their ack), so
	// that a batch whose ack is lost is a duplicate when sent again.
	stored     map[string]uint64 // batch id -> observations
	streams    int
	breakAfter int // the first stream fails UNAVAILABLE after receiving this many batches (0: never)
	ackDelay   time.Duration
	maxUnacked int // most batches received and not yet acknowledged
	rejectID   string

	run        *canaryv1.Run
	unaryErr   error // returned by Judge, GetRun and the list calls when set
	judgeCalls int
	verdict    *canaryv1.Verdict
	watches    [][]*canaryv1.Verdict // verdicts of each successive WatchVerdict; a stream whose last is not final ends UNAVAILABLE
	watchHangs bool                  // a stream whose last verdict is not final stays open instead
	history    []*canaryv1.Verdict
	pageSize   int // page size of the list calls (0: all)
}

// startFake serves f on a loopback port and returns its address.
func startFake(t *testing.T, f *fakeService) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	canaryv1.RegisterCanaryServiceServer(gs, f)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	if f.stored == nil {
		f.stored = map[string]uint64{}
	}
	return lis.Addr().String()
}

func (f *fakeService) record(m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, proto.Clone(m))
}

// snapshot returns the counters of f under its lock.
func (f *fakeService) snapshot() (streams, maxUnacked, judgeCalls int, stored map[string]uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stored = make(map[string]uint64, len(f.stored))
	for k, v := range f.stored {
		stored[k] = v
	}
	return f.streams, f.maxUnacked, f.judgeCalls, stored
}

func (f *fakeService) requests() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proto.Message(nil), f.reqs...)
}

func (f *fakeService) PutConfig(_ context.Context, req *canaryv1.PutConfigRequest) (*canaryv1.PutConfigResponse, error) {
	f.record(req)
	return &canaryv1.PutConfigResponse{Created: true, Config: &canaryv1.ConfigVersion{Name: "checkout-api", Version: 3, Yaml: req.GetYaml()}}, nil
}

func (f *fakeService) CreateRun(_ context.Context, req *canaryv1.CreateRunRequest) (*canaryv1.CreateRunResponse, error) {
	f.record(req)
	return &canaryv1.CreateRunResponse{Run: &canaryv1.Run{Id: "run-1", RequestId: req.GetRequestId(), BakeTime: durationpb.New(time.Minute)}}, nil
}

func (f *fakeService) GetRun(_ context.Context, req *canaryv1.GetRunRequest) (*canaryv1.GetRunResponse, error) {
	f.record(req)
	if f.unaryErr != nil {
		return nil, f.unaryErr
	}
	if f.run == nil || f.run.GetId() != req.GetRunId() {
		return nil, status.Errorf(codes.NotFound, "run %q not found", req.GetRunId())
	}
	return &canaryv1.GetRunResponse{Run: f.run}, nil
}

func (f *fakeService) ListRuns(_ context.Context, req *canaryv1.ListRunsRequest) (*canaryv1.ListRunsResponse, error) {
	f.record(req)
	if f.run == nil {
		return &canaryv1.ListRunsResponse{}, nil
	}
	return &canaryv1.ListRunsResponse{Runs: []*canaryv1.Run{f.run}}, nil
}

func (f *fakeService) Judge(_ context.Context, req *canaryv1.JudgeRequest) (*canaryv1.JudgeResponse, error) {
	f.record(req)
	f.mu.Lock()
	f.judgeCalls++
	f.mu.Unlock()
	if f.unaryErr != nil {
		return nil, f.unaryErr
	}
	return &canaryv1.JudgeResponse{Verdict: f.verdict}, nil
}

func (f *fakeService) CompleteRun(_ context.Context, req *canaryv1.CompleteRunRequest) (*canaryv1.CompleteRunResponse, error) {
	f.record(req)
	return &canaryv1.CompleteRunResponse{Run: &canaryv1.Run{Id: req.GetRunId(), Verdict: f.verdict}}, nil
}

func (f *fakeService) ListVerdicts(_ context.Context, req *canaryv1.ListVerdictsRequest) (*canaryv1.ListVerdictsResponse, error) {
	f.record(req)
	if f.unaryErr != nil {
		return nil, f.unaryErr
	}
	start := 0
	if req.GetPageToken() != "" {
		start = int(req.GetPageToken()[0] - '0')
	}
	end := len(f.history)
	if n := int(req.GetPageSize()); n > 0 && start+n < end {
		end = start + n
	}
	if f.pageSize > 0 && start+f.pageSize < end {
		end = start + f.pageSize
	}
	resp := &canaryv1.ListVerdictsResponse{Verdicts: f.history[start:end]}
	if end < len(f.history) {
		resp.NextPageToken = string(rune('0' + end))
	}
	return resp, nil
}

func (f *fakeService) WatchVerdict(req *canaryv1.WatchVerdictRequest, stream canaryv1.CanaryService_WatchVerdictServer) error {
	f.mu.Lock()
	if len(f.watches) == 0 {
		f.mu.Unlock()
		return status.Error(codes.NotFound, "no such run")
	}
	vs := f.watches[0]
	f.watches = f.watches[1:]
	f.mu.Unlock()
	for _, v := range vs {
		if err := stream.Send(&canaryv1.WatchVerdictResponse{Verdict: v}); err != nil {
			return err
		}
	}
	if len(vs) > 0 && vs[len(vs)-1].GetFinal() {
		return nil
	}
	if f.watchHangs {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	return status.Error(codes.Unavailable, "server shutting down")
}

// IngestStream stores each batch when it arrives and acknowledges the
// received batches once no more arrive for ackDelay (so that the client's
// window fills up), in order.
func (f *fakeService) IngestStream(stream canaryv1.CanaryService_IngestStreamServer) error {
	f.mu.Lock()
	f.streams++
	first := f.streams == 1
	f.mu.Unlock()
	type msg struct {
		req *canaryv1.IngestStreamRequest
		err error
	}
	in := make(chan msg)
	go func() {
		for {
			req, err := stream.Recv()
			select {
			case in <- msg{req, err}:
			case <-stream.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var (
		unacked  []*canaryv1.IngestAck
		received int
		sum      canaryv1.IngestStreamResponse
	)
	flush := func() error {
		for _, a := range unacked {
			if a.GetDuplicate() {
				sum.Duplicates++
			} else {
				sum.BatchesAccepted++
				sum.Samples += a.GetSamples()
			}
			if err := stream.Send(&canaryv1.IngestStreamResponse{Ack: a, BatchesAccepted: sum.BatchesAccepted, Duplicates: sum.Duplicates, Samples: sum.Samples}); err != nil {
				return err
			}
		}
		unacked = nil
		return nil
	}
	for {
		var timeout <-chan time.Time
		if len(unacked) > 0 {
			timeout = time.After(f.ackDelay)
		}
		select {
		case m := <-in:
			if errors.Is(m.err, io.EOF) {
				return flush()
			}
			if m.err != nil {
				return m.err
			}
			b := m.req.GetBatch()
			if b.GetBatchId() == f.rejectID {
				if err := flush(); err != nil {
					return err
				}
				return status.Errorf(codes.InvalidArgument, "batch %q: batch.columns[0].values[1]: must be finite", b.GetBatchId())
			}
			n := batchObservations(b)
			f.mu.Lock()
			_, dup := f.stored[b.GetBatchId()]
			if !dup {
				f.stored[b.GetBatchId()] = n
			}
			unacked = append(unacked, &canaryv1.IngestAck{RunId: b.GetRunId(), BatchId: b.GetBatchId(), Duplicate: dup, Samples: map[bool]uint64{false: n}[dup]})
			f.maxUnacked = max(f.maxUnacked, len(unacked))
			f.mu.Unlock()
			received++
			if first && f.breakAfter > 0 && received == f.breakAfter {
				// Acknowledge all but the last (stored, its ack lost),
				// then break.
				unacked = unacked[:len(unacked)-1]
				if err := flush(); err != nil {
					return err
				}
				return status.Error(codes.Unavailable, "connection reset")
			}
		case <-timeout:
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// batchObservations counts the observations of a batch as the service
// does: a record, a column value or a count/total pair each.
func batchObservations(b *canaryv1.Batch) uint64 {
	n := uint64(len(b.GetSamples()))
	for _, c := range b.GetColumns() {
		n += uint64(len(c.GetValues()) + len(c.GetCounts()) + len(c.GetHistograms()))
	}
	return n
}

// ctl runs canaryctl with args and returns its exit code and output.
func ctl(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}
