package server

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

const exampleYAML = `# the checkout config
name: checkout
warmup: 5m
metrics:
  - name: latency_ms
    category: performance
    type: distribution
    critical: true
    min_samples: 200
  - name: errors
    category: stability
    type: rate
    tolerance: 0.5
`

func TestConfigs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := ctxT(t)

	put := func(req *canaryv1.PutConfigRequest) *canaryv1.PutConfigResponse {
		t.Helper()
		resp, err := e.c.PutConfig(ctx, req)
		if err != nil {
			t.Fatalf("put config: %v", err)
		}
		return resp
	}
	r1 := put(&canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("checkout")}})
	if !r1.GetCreated() || r1.GetConfig().GetVersion() != 1 || r1.GetConfig().GetName() != "checkout" {
		t.Fatalf("first put: %v", r1)
	}
	// Stored with every default applied.
	lat := r1.GetConfig().GetConfig().GetMetrics()[0]
	if lat.Tolerance == nil || lat.GetTolerance() != 0.1 || lat.DetectableEffect == nil || lat.GetMinSamples() != 200 ||
		lat.GetBadDirection() != canaryv1.BadDirection_BAD_DIRECTION_INCREASE || r1.GetConfig().GetConfig().GetConfidence() != 0.99 {
		t.Errorf("defaults not applied: %v", r1.GetConfig().GetConfig())
	}
	// The same content again stores nothing.
	if r := put(&canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("checkout")}}); r.GetCreated() || r.GetConfig().GetVersion() != 1 {
		t.Errorf("identical put: created=%v version=%d", r.GetCreated(), r.GetConfig().GetVersion())
	}
	// YAML, with the name given by the request only.
	noName := exampleYAML[len("# the checkout config\nname: checkout\n"):]
	r2 := put(&canaryv1.PutConfigRequest{Name: "checkout", Source: &canaryv1.PutConfigRequest_Yaml{Yaml: noName}})
	if !r2.GetCreated() || r2.GetConfig().GetVersion() != 2 || r2.GetConfig().GetConfig().GetWarmup().AsDuration().Minutes() != 5 {
		t.Fatalf("yaml put: %v", r2)
	}
	// The text as sent is kept (without the name the server added).
	if got := r2.GetConfig().GetYaml(); got != noName {
		t.Errorf("yaml put: yaml %q, want the text as sent %q", got, noName)
	}
	if got := r1.GetConfig().GetYaml(); got != "" {
		t.Errorf("put as a message: yaml %q, want none", got)
	}
	// YAML and proto forms of the same config are the same version, which
	// keeps the text it was created with.
	if r := put(&canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Yaml{Yaml: exampleYAML}}); r.GetCreated() || r.GetConfig().GetVersion() != 2 || r.GetConfig().GetYaml() != noName {
		t.Errorf("same yaml again: created=%v version=%d yaml %q", r.GetCreated(), r.GetConfig().GetVersion(), r.GetConfig().GetYaml())
	}
	if r := put(&canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: r2.GetConfig().GetConfig()}}); r.GetCreated() {
		t.Errorf("proto form of the yaml config stored a new version %d", r.GetConfig().GetVersion())
	}
	put(&canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("search")}})

	get := func(name string, version uint32) *canaryv1.ConfigVersion {
		t.Helper()
		resp, err := e.c.GetConfig(ctx, &canaryv1.GetConfigRequest{Name: name, Version: version})
		if err != nil {
			t.Fatalf("get %s@%d: %v", name, version, err)
		}
		return resp.GetConfig()
	}
	if v := get("checkout", 0); v.GetVersion() != 2 || v.GetYaml() != noName {
		t.Errorf("latest: version %d yaml %q, want 2 and the text put", v.GetVersion(), v.GetYaml())
	}
	if v := get("checkout", 1); !proto.Equal(v.GetConfig(), r1.GetConfig().GetConfig()) || v.GetYaml() != "" {
		t.Errorf("version 1 changed: %v", v)
	}
	_, err := e.c.GetConfig(ctx, &canaryv1.GetConfigRequest{Name: "checkout", Version: 3})
	wantCode(t, err, codes.NotFound, "")
	_, err = e.c.GetConfig(ctx, &canaryv1.GetConfigRequest{Name: "nope"})
	wantCode(t, err, codes.NotFound, "")
	_, err = e.c.GetConfig(ctx, &canaryv1.GetConfigRequest{})
	wantCode(t, err, codes.InvalidArgument, "name")

	versions, err := e.c.ListConfigs(ctx, &canaryv1.ListConfigsRequest{Name: "checkout"})
	if err != nil {
		t.Fatal(err)
	}
	if got := versions.GetConfigs(); len(got) != 2 || got[0].GetVersion() != 2 || got[1].GetVersion() != 1 ||
		got[0].GetYaml() != noName || got[1].GetYaml() != "" {
		t.Errorf("versions of checkout: %v", got)
	}
	var names []string
	req := &canaryv1.ListConfigsRequest{PageSize: 1}
	for {
		resp, err := e.c.ListConfigs(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range resp.GetConfigs() {
			names = append(names, c.GetName())
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if len(names) != 2 || names[0] != "checkout" || names[1] != "search" {
		t.Errorf("configs by name: %v", names)
	}
	_, err = e.c.ListConfigs(ctx, &canaryv1.ListConfigsRequest{PageSize: -1})
	wantCode(t, err, codes.InvalidArgument, "page_size")
	_, err = e.c.ListConfigs(ctx, &canaryv1.ListConfigsRequest{PageToken: "garbage"})
	wantCode(t, err, codes.InvalidArgument, "page_token")
}
