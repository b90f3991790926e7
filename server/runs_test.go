package server

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

func TestCreateRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	if _, err := e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("checkout")}}); err != nil {
		t.Fatal(err)
	}
	req := &canaryv1.CreateRunRequest{
		RequestId: "deploy-42/wave-1", Service: "checkout", Stage: "wave-1",
		Config:         &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "checkout"}},
		BaselineLabels: map[string]string{"version": "v1"},
		CanaryLabels:   map[string]string{"version": "v2"},
		BakeTime:       durationpb.New(30 * time.Minute),
	}
	r1, err := e.c.CreateRun(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	run := r1.GetRun()
	if len(run.GetId()) != 32 || run.GetState() != canaryv1.RunState_RUN_STATE_RUNNING ||
		run.GetConfigName() != "checkout" || run.GetConfigVersion() != 1 || run.GetConfig() == nil ||
		!run.GetCreateTime().AsTime().Equal(e.clock.Now()) {
		t.Fatalf("created run: %v", run)
	}

	// A new config version does not change what a retry returns: the run
	// pinned version 1.
	cfg2 := testConfig("checkout")
	cfg2.Confidence = ptr(0.95)
	if _, err := e.c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: cfg2}}); err != nil {
		t.Fatal(err)
	}
	r2, err := e.c.CreateRun(ctx, req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !proto.Equal(r2.GetRun(), run) {
		t.Errorf("retry returned another run:\n%v\n%v", r2.GetRun(), run)
	}
	// The same request id with a different request.
	other := proto.Clone(req).(*canaryv1.CreateRunRequest)
	other.Stage = "wave-2"
	_, err = e.c.CreateRun(ctx, other)
	wantCode(t, err, codes.AlreadyExists, "")

	// Pinning: a new run on the latest version gets version 2.
	req3 := proto.Clone(req).(*canaryv1.CreateRunRequest)
	req3.RequestId = "deploy-43/wave-1"
	r3, err := e.c.CreateRun(ctx, req3)
	if err != nil {
		t.Fatal(err)
	}
	if r3.GetRun().GetConfigVersion() != 2 || r3.GetRun().GetConfig().GetConfidence() != 0.95 {
		t.Errorf("latest config: version %d", r3.GetRun().GetConfigVersion())
	}
	// An explicit version.
	req4 := proto.Clone(req).(*canaryv1.CreateRunRequest)
	req4.RequestId = "deploy-44"
	req4.Config = &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "checkout", Version: 1}}
	if r, err := e.c.CreateRun(ctx, req4); err != nil || r.GetRun().GetConfigVersion() != 1 {
		t.Errorf("checkout@1: %v %v", r, err)
	}
	// Inline YAML.
	req5 := proto.Clone(req).(*canaryv1.CreateRunRequest)
	req5.RequestId = "deploy-45"
	req5.Config = &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: exampleYAML}
	r5, err := e.c.CreateRun(ctx, req5)
	if err != nil || r5.GetRun().GetConfigVersion() != 0 || r5.GetRun().GetConfigName() != "checkout" ||
		len(r5.GetRun().GetConfig().GetMetrics()) != 2 {
		t.Errorf("inline yaml: %v %v", r5, err)
	}

	// Unknown configs.
	req6 := proto.Clone(req).(*canaryv1.CreateRunRequest)
	req6.RequestId = "deploy-46"
	req6.Config = &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "checkout", Version: 9}}
	_, err = e.c.CreateRun(ctx, req6)
	wantCode(t, err, codes.NotFound, "")

	// ListRuns: newest first, filters, pagination.
	list, err := e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{Service: "checkout", PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetRuns()) != 2 || list.GetNextPageToken() == "" {
		t.Errorf("first page: %d runs, token %q", len(list.GetRuns()), list.GetNextPageToken())
	}
	if _, err := e.c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: "0123"}); err == nil {
		t.Error("unknown run found")
	} else {
		wantCode(t, err, codes.NotFound, "")
	}
	_, err = e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{PageSize: -3})
	wantCode(t, err, codes.InvalidArgument, "page_size")
	_, err = e.c.ListRuns(ctx, &canaryv1.ListRunsRequest{PageToken: "x"})
	wantCode(t, err, codes.InvalidArgument, "page_token")
}

// TestFinishRules: completing twice returns the same run, aborting a
// completed run (or completing an aborted one) is FAILED_PRECONDITION.
func TestFinishRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)
	a := e.createRun(ctx, "a", testConfig("checkout"), 0)
	b := e.createRun(ctx, "b", testConfig("checkout"), 0)

	c1, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: a.GetId(), Reason: "done"})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	c2, err := e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: a.GetId(), Reason: "again"})
	if err != nil || !proto.Equal(c1.GetRun(), c2.GetRun()) {
		t.Errorf("complete twice: %v", err)
	}
	_, err = e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: a.GetId()})
	wantCode(t, err, codes.FailedPrecondition, "")

	if _, err := e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: b.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: b.GetId()}); err != nil {
		t.Errorf("abort twice: %v", err)
	}
	_, err = e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: b.GetId()})
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = e.c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: "nope"})
	wantCode(t, err, codes.NotFound, "")

	// The stored record is the finished one.
	if r := e.getRun(ctx, b.GetId()); r.GetState() != canaryv1.RunState_RUN_STATE_ABORTED || !r.GetVerdict().GetFinal() {
		t.Errorf("aborted run: %v", r)
	}
}
