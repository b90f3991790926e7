package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/internal/report/reporttest"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// reportFake is the fake service with a GetRunReport that answers one
// report.
type reportFake struct {
	*fakeService
	report *canaryv1.RunReport
}

func (f *reportFake) GetRunReport(_ context.Context, req *canaryv1.GetRunReportRequest) (*canaryv1.GetRunReportResponse, error) {
	if req.GetRunId() != f.report.GetRun().GetId() {
		return nil, status.Errorf(codes.NotFound, "run %s not found", req.GetRunId())
	}
	return &canaryv1.GetRunReportResponse{Report: f.report}, nil
}

// startReportFake serves f on a loopback port and returns its address.
func startReportFake(t *testing.T, f *reportFake) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	canaryv1.RegisterCanaryServiceServer(gs, f)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func TestReport(t *testing.T) {
	t.Parallel()
	rep := reporttest.Replay(t, "rollback", reporttest.Options{}).Report()
	addr := startReportFake(t, &reportFake{fakeService: &fakeService{}, report: rep})
	id := rep.GetRun().GetId()

	code, out, errOut := ctl(t, "", "report", "--addr", addr, id)
	if code != 0 || !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, `id="decision">ROLLBACK<`) {
		t.Fatalf("report: exit %d, stderr %q, %.200q", code, errOut, out)
	}
	if strings.Contains(out, "<script") || strings.Contains(out, "http-equiv=\"refresh\"") {
		t.Error("the file has a script or refreshes itself")
	}
	code, out, errOut = ctl(t, "", "report", "--addr", addr, "-o", "json", id)
	var got canaryv1.RunReport
	if err := protojson.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("report -o json: exit %d, %v, stderr %q", code, err, errOut)
	}
	if !proto.Equal(&got, rep) {
		t.Error("the JSON is not the report")
	}
	if code, _, errOut = ctl(t, "", "report", "--addr", addr, "nope"); code != exitUsage || !strings.Contains(errOut, "not found") {
		t.Errorf("unknown run: exit %d, %q", code, errOut)
	}
	if code, _, _ = ctl(t, "", "report", "--addr", addr, "-o", "xml", id); code != exitUsage {
		t.Errorf("-o xml: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ = ctl(t, "", "report", "--addr", addr); code != exitUsage {
		t.Errorf("no run id: exit %d, want %d", code, exitUsage)
	}
}
