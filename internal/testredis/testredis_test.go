package testredis

import (
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestRestartKeepsAcknowledgedWrites checks Stop (SIGKILL) and Start on the
// same port and directory with an append-only file.
func TestRestartKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	srv := StartWith(t, Options{AppendOnly: true})
	c := srv.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
	srv.Start()
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Errorf("GET k after the restart = %q, %v; want v", v, err)
	}
}

// TestSharedServer checks the REDIS_URL mode: the test gets the shared
// server and a namespace whose keys are deleted when it ends, and the other
// keys stay.
func TestSharedServer(t *testing.T) {
	own := StartWith(t, Options{Private: true})
	c := own.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "other", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvURL, own.URL())
	var prefix string
	t.Run("shared", func(t *testing.T) {
		srv := Start(t)
		if !srv.Shared() || srv.URL() != own.URL() {
			t.Fatalf("Start with %s set = %s, shared %v", EnvURL, srv.URL(), srv.Shared())
		}
		prefix = srv.Prefix(t)
		if other := srv.Prefix(t); other == prefix {
			t.Errorf("two prefixes are both %q", prefix)
		}
		for _, k := range []string{":a", ":{run:x}:m", ":b"} {
			if err := c.Set(ctx, prefix+k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if n, err := c.Exists(ctx, prefix+":a", prefix+":{run:x}:m", prefix+":b").Result(); err != nil || n != 0 {
		t.Errorf("%d keys of the namespace left after the test, %v", n, err)
	}
	if err := c.Get(ctx, "other").Err(); errors.Is(err, redis.Nil) {
		t.Errorf("a key outside the namespace was deleted")
	}
	// A private server is still started on request.
	if srv := StartWith(t, Options{Private: true}); srv.Shared() || srv.URL() == own.URL() {
		t.Errorf("StartWith(Private) = %s, shared %v", srv.URL(), srv.Shared())
	}
}
