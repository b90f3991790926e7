package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// fakeService answers GetConfig with the name it was asked for.
type fakeService struct {
	canaryv1.UnimplementedCanaryServiceServer
}

func (fakeService) ServerOptions() []grpc.ServerOption { return nil }
func (f fakeService) Register(r grpc.ServiceRegistrar) { canaryv1.RegisterCanaryServiceServer(r, f) }

func (fakeService) GetConfig(_ context.Context, req *canaryv1.GetConfigRequest) (*canaryv1.GetConfigResponse, error) {
	return &canaryv1.GetConfigResponse{Config: &canaryv1.ConfigVersion{Name: req.GetName(), Version: req.GetVersion()}}, nil
}

// TestGateway checks the gateway's own behaviour: routing to the service
// over the in-memory connection, a body over 4× the message size refused
// (413), an unimplemented method (501), and Close.
func TestGateway(t *testing.T) {
	g, err := New(Options{Service: fakeService{}, MaxMessageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/v1/configs/team/api?version=3")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got canaryv1.GetConfigResponse
	if err := protojson.Unmarshal(b, &got); err != nil || resp.StatusCode != 200 || got.GetConfig().GetName() != "team/api" || got.GetConfig().GetVersion() != 3 {
		t.Errorf("GetConfig: %d %s", resp.StatusCode, b)
	}

	resp, err = http.Post(srv.URL+"/v1/configs", "application/json", strings.NewReader(`{"yaml": "`+strings.Repeat("x", 1000)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), `"code":8`) {
		t.Errorf("oversize body: %d %s, want 413 RESOURCE_EXHAUSTED", resp.StatusCode, b)
	}
	// Without a Content-Length, the body is cut at the limit.
	req, err := http.NewRequest("POST", srv.URL+"/v1/configs", io.MultiReader(strings.NewReader(`{"yaml": "`+strings.Repeat("x", 1000)+`"}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "too large") {
		t.Errorf("oversize chunked body: %d %s, want 400", resp.StatusCode, b)
	}

	resp, err = http.Post(srv.URL+"/v1/configs", "application/json", strings.NewReader(`{"yaml": "name: x"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(b), `"code":12`) {
		t.Errorf("unimplemented: %d %s", resp.StatusCode, b)
	}
	if err := g.Close(5 * time.Second); err != nil {
		t.Errorf("close: %v", err)
	}
}
