package server

import (
	"bytes"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// rawCodec is a client codec that sends pre-encoded bytes as they are (a
// client of another language, or a hostile one, can send any bytes) and
// decodes replies with the proto codec.
type rawCodec struct{}

type rawMsg []byte

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(rawMsg))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

// corrupt encodes m, whose strings hold the placeholder "ZZZZ", with the
// placeholder replaced by 4 bytes that are not UTF-8.
func corrupt(t *testing.T, m proto.Message) rawMsg {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("ZZZZ")) {
		t.Fatal("no placeholder")
	}
	return bytes.ReplaceAll(b, []byte("ZZZZ"), []byte{0xff, 0xfe, 0xc0, 0x80})
}

// TestInvalidUTF8: a string field that is not UTF-8 answers
// INVALID_ARGUMENT naming the field (grpc-go alone answers INTERNAL), for
// unary and streaming calls; other undecodable bytes answer
// INVALID_ARGUMENT too; nothing is stored.
func TestInvalidUTF8(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	run := e.createRun(ctx, "utf8", testConfig("checkout"), 0)
	raw := grpc.ForceCodecV2(rawCodec{})
	conn := e.conn

	unary := []struct {
		method string
		req    rawMsg
		field  string
	}{
		{canaryv1.CanaryService_CreateRun_FullMethodName, corrupt(t, &canaryv1.CreateRunRequest{
			RequestId: "r", Service: "ZZZZ", Stage: "s",
			Config: &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: "name: x"}}), "service"},
		{canaryv1.CanaryService_CreateRun_FullMethodName, corrupt(t, &canaryv1.CreateRunRequest{
			RequestId: "r", Service: "s", Stage: "s", BaselineLabels: map[string]string{"version": "ZZZZ"}}),
			`baseline_labels["version"]`},
		{canaryv1.CanaryService_CreateRun_FullMethodName, corrupt(t, &canaryv1.CreateRunRequest{
			RequestId: "r", Service: "s", Stage: "s", CanaryLabels: map[string]string{"ZZZZ": "v2"}}), "canary_labels"},
		{canaryv1.CanaryService_Ingest_FullMethodName, corrupt(t, &canaryv1.IngestRequest{Batch: &canaryv1.Batch{
			RunId: run.GetId(), BatchId: "b1", Samples: []*canaryv1.Sample{
				{Metric: "latency_ms", Observation: &canaryv1.Sample_Value{Value: 1}},
				{Metric: "ZZZZ", Observation: &canaryv1.Sample_Value{Value: 1}},
			}}}), "batch.samples[1].metric"},
		{canaryv1.CanaryService_Ingest_FullMethodName, corrupt(t, &canaryv1.IngestRequest{Batch: &canaryv1.Batch{
			RunId: run.GetId(), BatchId: "b1", Columns: []*canaryv1.MetricColumn{{Metric: "ZZZZ", Values: []float64{1}}},
		}}), "batch.columns[0].metric"},
		{canaryv1.CanaryService_Judge_FullMethodName, corrupt(t, &canaryv1.JudgeRequest{RunId: "ZZZZ"}), "run_id"},
	}
	for _, tt := range unary {
		var resp canaryv1.CreateRunResponse // any message: no reply is expected
		err := conn.Invoke(ctx, tt.method, tt.req, &resp, raw)
		wantCode(t, err, codes.InvalidArgument, tt.field)
		if msg := status.Convert(err).Message(); msg != tt.field+": must be valid UTF-8" {
			t.Errorf("%s: message %q", tt.method, msg)
		}
	}

	// Malformed wire data (a truncated message) is a client error too.
	whole, _ := proto.Marshal(&canaryv1.JudgeRequest{RunId: run.GetId()})
	err := conn.Invoke(ctx, canaryv1.CanaryService_Judge_FullMethodName, rawMsg(whole[:len(whole)-3]), new(canaryv1.JudgeResponse), raw)
	wantCode(t, err, codes.InvalidArgument, "")

	// A stream: the bad batch ends it with INVALID_ARGUMENT naming the
	// field, after the good batch before it was acknowledged.
	st, err := conn.NewStream(ctx, &canaryv1.CanaryService_ServiceDesc.Streams[0],
		canaryv1.CanaryService_IngestStream_FullMethodName, raw)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := proto.Marshal(&canaryv1.IngestStreamRequest{Batch: &canaryv1.Batch{RunId: run.GetId(), BatchId: "ok",
		Samples: []*canaryv1.Sample{{Metric: "latency_ms", Cohort: canaryv1.Cohort_COHORT_CANARY, Observation: &canaryv1.Sample_Value{Value: 1}}}}})
	bad := corrupt(t, &canaryv1.IngestStreamRequest{Batch: &canaryv1.Batch{RunId: run.GetId(), BatchId: "bad",
		Samples: []*canaryv1.Sample{{Metric: "ZZZZ", Observation: &canaryv1.Sample_Value{Value: 1}}}}})
	for _, m := range []rawMsg{good, bad} {
		if err := st.SendMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	var ack canaryv1.IngestStreamResponse
	if err := st.RecvMsg(&ack); err != nil || ack.GetAck().GetBatchId() != "ok" {
		t.Fatalf("first reply = %v, %v; want the ack of the good batch", &ack, err)
	}
	err = st.RecvMsg(&ack)
	wantCode(t, err, codes.InvalidArgument, "batch.samples[0].metric")

	// Nothing of the bad requests was stored: one run, one batch.
	runs, err := e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{})
	if err != nil || len(runs.GetRuns()) != 1 {
		t.Errorf("runs = %d, %v; want only the test's own", len(runs.GetRuns()), err)
	}
	if _, n := e.storedDeltas(ctx, run.GetId()); n != 1 {
		t.Errorf("stored deltas = %d, want 1 (the good batch)", n)
	}
}
