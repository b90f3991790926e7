package app

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestRun serves on free ports and checks health, reflection, the API,
// /metrics and /healthz, then a clean shutdown on cancel.
func TestRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	ready := make(chan [2]string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(runCtx, Options{
			GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0",
			Store:    filepath.Join(t.TempDir(), "canaryd.db"),
			Ready:    func(g, h string) { ready <- [2]string{g, h} },
		})
	}()
	var addrs [2]string
	select {
	case addrs = <-ready:
	case err := <-errc:
		t.Fatalf("run: %v", err)
	case <-ctx.Done():
		t.Fatal("not ready in time")
	}

	conn, err := grpc.NewClient(addrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "canary.v1.CanaryService"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v %v", hc, err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range rr.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	if !contains(services, "canary.v1.CanaryService") || !contains(services, "grpc.health.v1.Health") {
		t.Errorf("reflection lists %v", services)
	}
	rs.CloseSend()

	c := canaryv1.NewCanaryServiceClient(conn)
	if _, err := c.PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: exampleYAML}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetConfig(ctx, &canaryv1.GetConfigRequest{Name: "nope"}); err == nil {
		t.Error("unknown config found")
	}

	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addrs[1]+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="PutConfig",grpc_service="canary.v1.CanaryService",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="NotFound",grpc_method="GetConfig",grpc_service="canary.v1.CanaryService",grpc_type="unary"} 1`,
		// Initialized at zero for every method before its first call.
		`grpc_server_started_total{grpc_method="CompleteRun",grpc_service="canary.v1.CanaryService",grpc_type="unary"} 0`,
		`grpc_server_handling_seconds_bucket{grpc_method="PutConfig",grpc_service="canary.v1.CanaryService",grpc_type="unary",le="0.0005"}`,
		`canaryd_verdicts_total{decision="ROLLBACK",final="true"} 0`,
		`canaryd_store_up 1`,
		`canaryd_store_operation_duration_seconds_count{operation="put_config"} 1`,
		`canaryd_store_errors_total{kind="unavailable",operation="append_batch"} 0`,
		`canaryd_runs{state="running"} 0`,
		`canaryd_build_info{goversion="` + runtime.Version() + `"`,
		`canaryd_ingest_batches_total{result="accepted"} 0`,
		`canaryd_judge_duration_seconds_count 0`,
		`go_goroutines`,
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}

	stop()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run returned %v after cancel", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
	}
}

func TestRunBadStore(t *testing.T) {
	t.Parallel()
	for spec, want := range map[string]string{
		"redis://127.0.0.1:1/0": "store unavailable", // nothing listens on port 1
		"s3://bucket/x":         "unknown scheme",
	} {
		err := Run(context.Background(), Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: spec})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("store %s: %v, want an error with %q", spec, err, want)
		}
	}
}
