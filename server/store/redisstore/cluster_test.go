package redisstore

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/testcluster"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
	"github.com/canaryd/canaryd/server/store/storetest"
)

func newPrefix() string { return "test-" + strings.ToLower(rand.Text()[:12]) }

// conformanceOn runs the conformance suite on the stores of url, each in
// a namespace of its own.
func conformanceOn(t *testing.T, url string, extra Options) {
	open := func(t *testing.T, o Options) store.Store {
		if o.Prefix == "" {
			o.Prefix = newPrefix()
		}
		o.MinReplicas, o.ReplicaTimeout = extra.MinReplicas, extra.ReplicaTimeout
		return openStoreURL(t, url, o)
	}
	storetest.Run(t,
		func(t *testing.T) store.Store { return open(t, Options{}) },
		storetest.Reopen(func(t *testing.T, s store.Store) store.Store {
			prefix := s.(*Store).opts.Prefix
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, Options{Prefix: prefix})
		}),
		storetest.Retention(func(t *testing.T, o storetest.RetentionOptions) store.Store {
			return open(t, Options{Retention: o.Retention, VerdictRetention: o.VerdictRetention, Now: o.Now})
		}, func(ctx context.Context, s store.Store) error {
			_, err := s.(*Store).Maintain(ctx)
			return err
		}))
}

// TestConformanceRedisCluster runs the conformance suite through Open's
// redis+cluster:// URL on a Redis Cluster of 3 primaries and 3 replicas,
// with min_replicas=1 (every write waits for its primary's replica), and
// checks that the history of the runs the suite finished is spread over
// the 3 primaries.
func TestConformanceRedisCluster(t *testing.T) {
	t.Parallel()
	c := testcluster.Start(t)
	conformanceOn(t, c.URL()+"?min_replicas=1&replica_timeout=5s", Options{})

	// The shards of the history live on every primary.
	ctx := t.Context()
	s := openStoreURL(t, c.URL(), Options{Prefix: newPrefix()})
	for i := range 64 {
		id := "spread-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: id, Service: "svc", Stage: "s", ConfigName: "c"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishRun(ctx, finished(id, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	cc := c.Client(t)
	for _, p := range c.Primaries(ctx) {
		n := 0
		for sh := range NumShards {
			if owner := c.PrimaryOf(ctx, s.k.verdicts(sh)); owner == p {
				n += int(cc.HLen(ctx, s.k.verdicts(sh)).Val())
			}
		}
		if n == 0 {
			t.Errorf("primary %s holds no verdict of the 64: the history is not spread", p.Addr)
		}
		t.Logf("primary %s: %d of 64 verdicts", p.Addr, n)
	}
	if vs, _, err := s.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{Size: 100}); err != nil || len(vs) != 64 {
		t.Errorf("ListVerdicts = %d, %v; want 64", len(vs), err)
	}
}

// TestConformanceSentinel runs the conformance suite through Open's
// redis+sentinel:// URL (a primary, 2 replicas, 3 Sentinels), with
// min_replicas=1.
func TestConformanceSentinel(t *testing.T) {
	t.Parallel()
	st := testcluster.StartSentinel(t)
	conformanceOn(t, st.URL()+"?min_replicas=1&replica_timeout=5s", Options{})
}
