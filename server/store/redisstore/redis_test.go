package redisstore

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/canaryd/canaryd/internal/testredis"
	"github.com/canaryd/canaryd/server/store"
	"github.com/canaryd/canaryd/server/store/storetest"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial of the restart tests to a global
	// logger; the tests check the errors themselves.
	redis.SetLogger(discardLogger{})
	os.Exit(m.Run())
}

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openStore opens a Store on srv in a namespace of t's own (unless
// opts.Prefix is set), closed at the end of the test. The maintenance loop
// is off unless opts.MaintenanceInterval is set.
func openStore(t testing.TB, srv *testredis.Server, opts Options) *Store {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = srv.Prefix(t)
	}
	return openStoreURL(t, srv.URL(), opts)
}

// openStoreURL opens a Store on url, closed at the end of the test.
func openStoreURL(t testing.TB, url string, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.MaintenanceInterval == 0 {
		opts.MaintenanceInterval = -1
	}
	s, err := Open(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// openCluster opens a Store through a ClusterClient.
func openCluster(t testing.TB, srv *testredis.Server, opts Options) *Store {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = srv.Prefix(t)
	}
	opts.Logger = testLogger(t)
	opts.MaintenanceInterval = -1
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 []string{srv.Addr()},
		Protocol:              2,
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
	})
	s, err := OpenClient(t.Context(), c, opts)
	if err != nil {
		t.Fatalf("OpenClient(cluster %s): %v", srv.Addr(), err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	storetest.Run(t,
		func(t *testing.T) store.Store { return openStore(t, srv, Options{}) },
		storetest.Reopen(func(t *testing.T, s store.Store) store.Store {
			prefix := s.(*Store).opts.Prefix
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openStore(t, srv, Options{Prefix: prefix})
		}),
		storetest.Retention(func(t *testing.T, o storetest.RetentionOptions) store.Store {
			return openStore(t, srv, Options{Retention: o.Retention, VerdictRetention: o.VerdictRetention, Now: o.Now})
		}, func(ctx context.Context, s store.Store) error {
			_, err := s.(*Store).Maintain(ctx)
			return err
		}))
}

// TestConformanceCluster runs the suite through a ClusterClient against a
// redis-server in cluster mode, which refuses any script or transaction
// whose keys span hash slots: it proves that every operation keeps to one
// slot per command.
func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	srv := testredis.StartWith(t, testredis.Options{Cluster: true})
	storetest.Run(t,
		func(t *testing.T) store.Store { return openCluster(t, srv, Options{}) },
		storetest.Reopen(func(t *testing.T, s store.Store) store.Store {
			prefix := s.(*Store).opts.Prefix
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openCluster(t, srv, Options{Prefix: prefix})
		}))
}
