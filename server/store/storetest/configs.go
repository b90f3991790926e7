package storetest

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

func (s *suite) testConfigVersioning(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	// Applied in order: each put is compared with the latest version only,
	// by its config alone: a version keeps the YAML text of the put that
	// created it.
	steps := []struct {
		name        string
		cfg         *canaryv1.CanaryConfig
		yaml        string
		wantVersion uint32
		wantCreated bool
		wantYAML    string
	}{
		{"first put", testConfig("checkout", 0.10), "# v1\nname: checkout\n", 1, true, "# v1\nname: checkout\n"},
		{"identical content", testConfig("checkout", 0.10), "", 1, false, "# v1\nname: checkout\n"},
		{"identical content, other text", testConfig("checkout", 0.10), "name: checkout\n", 1, false, "# v1\nname: checkout\n"},
		{"changed", testConfig("checkout", 0.15), "", 2, true, ""},
		{"identical again", testConfig("checkout", 0.15), "name: checkout # again\n", 2, false, ""},
		{"back to the content of v1", testConfig("checkout", 0.10), "", 3, true, ""},
		{"other name starts at 1", testConfig("checkout-v2", 0.10), "name: checkout-v2\n", 1, true, "name: checkout-v2\n"},
		{"first name continues", testConfig("checkout", 0.20), "name: checkout\n", 4, true, "name: checkout\n"},
	}
	for _, step := range steps {
		v, created, err := st.PutConfig(ctx, step.cfg, step.yaml)
		if err != nil {
			t.Fatalf("%s: PutConfig = %v", step.name, err)
		}
		if v.GetVersion() != step.wantVersion || created != step.wantCreated {
			t.Errorf("%s: PutConfig = version %d, created %v; want version %d, created %v",
				step.name, v.GetVersion(), created, step.wantVersion, step.wantCreated)
		}
		if v.GetName() != step.cfg.GetName() || !proto.Equal(v.GetConfig(), step.cfg) {
			t.Errorf("%s: PutConfig returned %v, want config %v", step.name, v, step.cfg)
		}
		if v.GetYaml() != step.wantYAML {
			t.Errorf("%s: PutConfig returned yaml %q, want %q", step.name, v.GetYaml(), step.wantYAML)
		}
		if v.GetCreateTime() == nil {
			t.Errorf("%s: PutConfig returned no create_time", step.name)
		}
		got, err := st.GetConfig(ctx, step.cfg.GetName(), step.wantVersion)
		if err != nil || !proto.Equal(got, v) {
			t.Errorf("%s: GetConfig(%s, %d) = %v, %v; want %v", step.name, step.cfg.GetName(), step.wantVersion, got, err, v)
		}
	}
}

func (s *suite) testGetConfig(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	want := map[uint32]*canaryv1.ConfigVersion{}
	for i, tol := range []float64{0.1, 0.2, 0.3} {
		v, _, err := st.PutConfig(ctx, testConfig("search", tol), "")
		if err != nil {
			t.Fatalf("PutConfig: %v", err)
		}
		want[uint32(i+1)] = v
	}
	if _, _, err := st.PutConfig(ctx, testConfig("searchable", 0.5), ""); err != nil {
		t.Fatalf("PutConfig: %v", err)
	}
	tests := []struct {
		name    string
		config  string
		version uint32
		want    *canaryv1.ConfigVersion
		wantErr error
	}{
		{"latest", "search", 0, want[3], nil},
		{"first", "search", 1, want[1], nil},
		{"middle", "search", 2, want[2], nil},
		{"last by number", "search", 3, want[3], nil},
		{"version past the latest", "search", 4, nil, store.ErrNotFound},
		{"unknown name", "nope", 0, nil, store.ErrNotFound},
		{"unknown name with version", "nope", 1, nil, store.ErrNotFound},
		{"prefix of a name", "searc", 0, nil, store.ErrNotFound},
		{"empty name", "", 0, nil, store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := st.GetConfig(ctx, tt.config, tt.version)
			checkErr(t, fmt.Sprintf("GetConfig(%q, %d)", tt.config, tt.version), err, tt.wantErr)
			if tt.want != nil && !proto.Equal(got, tt.want) {
				t.Errorf("GetConfig(%q, %d) = %v, want %v", tt.config, tt.version, got, tt.want)
			}
		})
	}
}

func (s *suite) testListConfigs(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	versions := map[string]int{"a": 1, "b": 3, "b.c": 2, "ba": 1, "c": 1}
	latest := map[string]*canaryv1.ConfigVersion{}
	all := map[string][]*canaryv1.ConfigVersion{} // newest first
	for _, name := range []string{"c", "b", "a", "ba", "b.c"} {
		for i := range versions[name] {
			v, created, err := st.PutConfig(ctx, testConfig(name, 0.1*float64(i+1)), "")
			if err != nil || !created {
				t.Fatalf("PutConfig(%s) = created %v, err %v", name, created, err)
			}
			latest[name] = v
			all[name] = append([]*canaryv1.ConfigVersion{v}, all[name]...)
		}
	}
	byName := []*canaryv1.ConfigVersion{latest["a"], latest["b"], latest["b.c"], latest["ba"], latest["c"]}
	tests := []struct {
		name string
		list string
		want []*canaryv1.ConfigVersion
	}{
		{"every config by name", "", byName},
		{"versions of b", "b", all["b"]},
		{"versions of b.c", "b.c", all["b.c"]},
		{"versions of a", "a", all["a"]},
		{"unknown name", "nope", nil},
	}
	for _, tt := range tests {
		for _, size := range []int{1, 2, 3, 0} {
			t.Run(fmt.Sprintf("%s/size=%d", tt.name, size), func(t *testing.T) {
				got := listAll(t, size, func(p store.Page) ([]*canaryv1.ConfigVersion, string, error) {
					return st.ListConfigs(ctx, tt.list, p)
				})
				if !equalLists(got, tt.want) {
					t.Errorf("ListConfigs(%q) =\n%v\nwant\n%v", tt.list, got, tt.want)
				}
			})
		}
	}
}
