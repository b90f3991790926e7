package redisstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// TestOddIDs stores ids and names with the characters of the key syntax
// (braces, colons) and control bytes: they stay apart and in one slot each.
func TestOddIDs(t *testing.T) {
	t.Parallel()
	srv := testredis.StartWith(t, testredis.Options{Cluster: true})
	s := openCluster(t, srv, Options{})
	ctx := t.Context()
	odd := []string{"x", "x}:m", "x}:ids", "{run:x}", "}", "{", "a:b", "\x00é\t", "s1:x"}
	for i, id := range odd {
		if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: id, RequestId: id, Service: id, Stage: id, CreateTime: timestamppb.New(time.Unix(int64(i), 0))}, nil); err != nil {
			t.Fatalf("CreateRun(%q): %v", id, err)
		}
		if _, err := s.AppendBatch(ctx, id, id, []byte(id)); err != nil {
			t.Fatalf("AppendBatch(%q): %v", id, err)
		}
		if _, _, err := s.PutConfig(ctx, &canaryv1.CanaryConfig{Name: id}, ""); err != nil {
			t.Fatalf("PutConfig(%q): %v", id, err)
		}
	}
	for _, id := range odd {
		var got []string
		if err := s.ReadBatches(ctx, id, func(snap bool, d []byte) error { got = append(got, string(d)); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[1] != id {
			t.Errorf("ReadBatches(%q) = %q", id, got)
		}
		runs, _, err := s.ListRuns(ctx, store.RunFilter{Service: id, Stage: id}, store.Page{})
		if err != nil || len(runs) != 1 || runs[0].GetId() != id {
			t.Errorf("ListRuns(service %q) = %s, %v", id, ids(runs), err)
		}
		if err := s.FinishRun(ctx, &canaryv1.Run{Id: id, State: canaryv1.RunState_RUN_STATE_COMPLETED, Verdict: &canaryv1.Verdict{}}); err != nil {
			t.Errorf("FinishRun(%q): %v", id, err)
		}
		vs, _, err := s.ListVerdicts(ctx, store.VerdictFilter{Service: id}, store.Page{})
		if err != nil || verdictIDs(vs) != id {
			t.Errorf("ListVerdicts(service %q) = %q, %v", id, verdictIDs(vs), err)
		}
	}
	cs, _, err := s.ListConfigs(ctx, "", store.Page{})
	if err != nil || len(cs) != len(odd) {
		t.Errorf("ListConfigs = %d configs, %v; want %d", len(cs), err, len(odd))
	}
}

func TestOpenOptions(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	bad := []Options{
		{Prefix: "a{b"},
		{Prefix: "a}b"},
		{Retention: -time.Second},
		{VerdictRetention: -time.Second},
	}
	for _, o := range bad {
		if s, err := Open(t.Context(), srv.URL(), o); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded, want an error", o)
		}
	}
	for _, u := range []string{"http://localhost", "redis://host:port:port", ""} {
		if s, err := Open(t.Context(), u, Options{}); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", u)
		}
	}
	// A layout of another version under the prefix is refused.
	prefix := srv.Prefix(t)
	if err := srv.Client(t).Set(t.Context(), prefix+":schema", "99", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), srv.URL(), Options{Prefix: prefix}); err == nil || !strings.Contains(err.Error(), "schema") {
		if s != nil {
			s.Close()
		}
		t.Errorf("Open(schema 99) = %v, want a schema error", err)
	}
}

// TestPassword checks where Open takes the password from: the URL, then
// Options.Password, then the environment.
func TestPassword(t *testing.T) {
	srv := testredis.StartWith(t, testredis.Options{Private: true})
	if err := srv.Client(t).ConfigSet(t.Context(), "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	open := func(url string, o Options) error {
		o.Prefix = srv.Prefix(t)
		o.MaintenanceInterval = -1
		s, err := Open(t.Context(), url, o)
		if err == nil {
			s.Close()
		}
		return err
	}
	withPass := "redis://:s3cret@" + srv.Addr()
	if err := open(srv.URL(), Options{}); err == nil {
		t.Errorf("Open without a password succeeded")
	}
	if err := open(withPass, Options{}); err != nil {
		t.Errorf("Open(password in the URL) = %v", err)
	}
	if err := open(srv.URL(), Options{Password: "s3cret"}); err != nil {
		t.Errorf("Open(Options.Password) = %v", err)
	}
	t.Setenv(PasswordEnv, "s3cret")
	if err := open(srv.URL(), Options{}); err != nil {
		t.Errorf("Open(password in %s) = %v", PasswordEnv, err)
	}
	if err := open(srv.URL(), Options{Password: "wrong"}); err == nil {
		t.Errorf("Open(wrong Options.Password) succeeded; it should win over the environment")
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	s := openStore(t, testredis.Start(t), Options{MaintenanceInterval: time.Millisecond})
	ctx := t.Context()
	if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Healthy":      func() error { return s.Healthy(ctx) },
		"AppendBatch":  func() error { _, err := s.AppendBatch(ctx, "r", "1", nil); return err },
		"GetRun":       func() error { _, err := s.GetRun(ctx, "r"); return err },
		"ListRuns":     func() error { _, _, err := s.ListRuns(ctx, store.RunFilter{}, store.Page{}); return err },
		"ListConfigs":  func() error { _, _, err := s.ListConfigs(ctx, "", store.Page{}); return err },
		"GetConfig":    func() error { _, err := s.GetConfig(ctx, "c", 0); return err },
		"ListVerdicts": func() error { _, _, err := s.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{}); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after Close = %v, want ErrUnavailable", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}
