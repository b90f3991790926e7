package redisstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// layout1Fixture writes a store of layout 1 (schema "1": one {runs} and one
// {hist} slot) under prefix p with raw commands, as a canaryd of that
// layout left it: 40 runs of 3 services and 2 stages, a third of them
// finished with their verdict in the history, some with a request id, and
// run-05 finished but not indexed yet (its pending mark left by a replica
// that died after the commit). It returns the runs as stored (finished
// ones with their final state).
func layout1Fixture(ctx context.Context, t *testing.T, rc redis.UniversalClient, p string) []*canaryv1.Run {
	t.Helper()
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	services := []string{"checkout", "search", "cart"}
	var runs []*canaryv1.Run
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	zadd := func(key, mem string) { must(rc.ZAdd(ctx, key, redis.Z{Member: mem}).Err()) }
	must(rc.Set(ctx, p+":schema", "1", 0).Err())
	for i := range 40 {
		id := fmt.Sprintf("run-%02d", i)
		run := &canaryv1.Run{
			Id: id, Service: services[i%3], Stage: "wave-" + strconv.Itoa(1+i%2), ConfigName: "cfg",
			State:      canaryv1.RunState_RUN_STATE_RUNNING,
			CreateTime: timestamppb.New(t0.Add(time.Duration(i/2) * time.Second)), // pairs share a time
		}
		if i%3 == 1 {
			run.RequestId = "req-" + id
		}
		data, err := proto.Marshal(run)
		must(err)
		meta := p + ":{run:" + id + "}:m"
		must(rc.HSet(ctx, meta, "run", data, "state", "1", "folded", "0", "ctok", "t").Err())
		if run.RequestId != "" {
			must(rc.HSet(ctx, p+":{runs}:req", run.RequestId,
				requestValue(id, run.CreateTime.AsTime(), []byte("fp-"+id))).Err())
		}
		state := int32(canaryv1.RunState_RUN_STATE_RUNNING)
		if i%3 == 0 || i == 5 {
			d := canaryv1.Decision_DECISION_PROMOTE
			st := canaryv1.RunState_RUN_STATE_COMPLETED
			if i%2 == 1 {
				d, st = canaryv1.Decision_DECISION_ROLLBACK, canaryv1.RunState_RUN_STATE_ABORTED
			}
			at := t0.Add(time.Hour + time.Duration(40-i)*time.Second)
			v := &canaryv1.Verdict{RunId: id, Service: run.Service, Stage: run.Stage, Decision: d,
				Time: timestamppb.New(at), Final: true, Reason: "fixture"}
			fin, err := proto.Marshal(&canaryv1.Run{State: st, FinishTime: timestamppb.New(at), FinishReason: "done", Verdict: v})
			must(err)
			must(rc.HSet(ctx, meta, "state", strconv.Itoa(int(st)), "fin", fin, "exp", "0").Err())
			run.State, run.FinishTime, run.FinishReason, run.Verdict = st, timestamppb.New(at), "done", v
			if i == 5 {
				// Committed, not indexed: index entries still RUNNING, no
				// history entry, a pending mark.
				must(rc.HSet(ctx, p+":{hist}:pending", id, t0.UnixMilli()).Err())
			} else {
				state = int32(st)
				vd, err := proto.Marshal(v)
				must(err)
				must(rc.HSet(ctx, p+":{hist}:v", id, vd).Err())
				names, mem := indexEntries(v.Service, v.Stage, int32(d), at, id)
				for _, n := range names {
					zadd(p+":{hist}:vi:"+n, mem)
				}
			}
		}
		names, mem := indexEntries(run.Service, run.Stage, state, run.CreateTime.AsTime(), id)
		for _, n := range names {
			zadd(p+":{runs}:ri:"+n, mem)
		}
		runs = append(runs, run)
	}
	return runs
}

// TestMigrateLayout1 writes a layout-1 store with raw commands, opens it
// (which migrates it to layout 2), and checks that every listing, page by
// page, and every filter gives what the fixture holds, that request ids
// still deduplicate, that the interrupted finish is completed by
// Maintain, and that no layout-1 key is left. It runs on a plain
// redis-server and on a one-node cluster (every command of the migration
// on one slot).
func TestMigrateLayout1(t *testing.T) {
	t.Parallel()
	for _, cluster := range []bool{false, true} {
		t.Run(map[bool]string{false: "Single", true: "Cluster"}[cluster], func(t *testing.T) {
			t.Parallel()
			srv := testredis.StartWith(t, testredis.Options{Cluster: cluster, Private: true})
			ctx := t.Context()
			p := srv.Prefix(t)
			rc := srv.Client(t)
			want := layout1Fixture(ctx, t, rc, p)
			var s *Store
			if cluster {
				s = openCluster(t, srv, Options{Prefix: p})
			} else {
				s = openStore(t, srv, Options{Prefix: p})
			}
			if v := rc.Get(ctx, p+":schema").Val(); v != schemaVersion {
				t.Fatalf("schema after Open = %q, want %q", v, schemaVersion)
			}
			if m, err := s.Maintain(ctx); err != nil || m.Indexed != 1 {
				t.Fatalf("Maintain = %+v, %v; want run-05 indexed", m, err)
			}
			checkMigrated(ctx, t, s, want)

			// No layout-1 key is left (a one-node server: SCAN sees all).
			var left []string
			it := rc.Scan(ctx, 0, p+":*", 1000).Iterator()
			for it.Next(ctx) {
				if k := it.Val(); slices.Contains([]string{"{runs}", "{hist}"}, tagOf(k)) {
					left = append(left, k)
				}
			}
			if len(left) > 0 {
				t.Errorf("layout-1 keys left: %q", left)
			}

			// A retried request finds its run; a finish after the
			// migration goes to the sharded history.
			retry := &canaryv1.Run{Id: "other", RequestId: "req-run-01", Service: "search", Stage: "wave-2", ConfigName: "cfg"}
			got, created, err := s.CreateRun(ctx, retry, []byte("fp-run-01"))
			if err != nil || created || got.GetId() != "run-01" {
				t.Errorf("CreateRun(retry of req-run-01) = %v, %v, %v; want run-01 not created", got.GetId(), created, err)
			}
			if _, _, err := s.CreateRun(ctx, retry, []byte("other")); err == nil {
				t.Errorf("CreateRun(req-run-01, another fingerprint) succeeded, want ErrConflict")
			}
			if err := s.FinishRun(ctx, finished("run-01", canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE,
				time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC))); err != nil {
				t.Fatal(err)
			}
			vs, _, err := s.ListVerdicts(ctx, store.VerdictFilter{Service: "search"}, store.Page{Size: 1})
			if err != nil || verdictIDs(vs) != "run-01" {
				t.Errorf("newest verdict of search = %s, %v; want run-01", verdictIDs(vs), err)
			}
			// Opening again finds layout 2 and migrates nothing.
			s2 := openStore(t, srv, Options{Prefix: p})
			if cluster {
				s2 = openCluster(t, srv, Options{Prefix: p})
			}
			if runs, _, err := s2.ListRuns(ctx, store.RunFilter{}, store.Page{Size: 1000}); err != nil || len(runs) != len(want) {
				t.Errorf("ListRuns after reopening = %d runs, %v; want %d", len(runs), err, len(want))
			}
		})
	}
}

// tagOf returns the hash tag of a key, with its braces.
func tagOf(k string) string {
	i := slices.Index([]byte(k), '{')
	if i < 0 {
		return ""
	}
	j := slices.Index([]byte(k[i:]), '}')
	if j < 0 {
		return ""
	}
	return k[i : i+j+1]
}

// checkMigrated lists the runs and the verdicts of the store, with every
// filter the fixture makes interesting, page by page (pages of 7 cross the
// shards' boundaries), and compares them with want.
func checkMigrated(ctx context.Context, t *testing.T, s *Store, want []*canaryv1.Run) {
	t.Helper()
	desc := func(a, b *canaryv1.Run) int {
		return cmp.Or(b.CreateTime.AsTime().Compare(a.CreateTime.AsTime()), cmp.Compare(b.Id, a.Id))
	}
	for _, f := range []store.RunFilter{
		{},
		{Service: "checkout"},
		{Service: "search", Stage: "wave-2"},
		{State: canaryv1.RunState_RUN_STATE_RUNNING},
		{State: canaryv1.RunState_RUN_STATE_COMPLETED},
		{Service: "cart", State: canaryv1.RunState_RUN_STATE_ABORTED},
	} {
		var exp []*canaryv1.Run
		for _, r := range want {
			if (f.Service == "" || r.Service == f.Service) && (f.Stage == "" || r.Stage == f.Stage) && (f.State == 0 || r.State == f.State) {
				exp = append(exp, r)
			}
		}
		slices.SortFunc(exp, desc)
		var got []*canaryv1.Run
		tok := ""
		for pages := 0; ; pages++ {
			runs, next, err := s.ListRuns(ctx, f, store.Page{Size: 7, Token: tok})
			if err != nil || pages > 10 {
				t.Fatalf("ListRuns(%+v) page %d: %v", f, pages, err)
			}
			got = append(got, runs...)
			if tok = next; tok == "" {
				break
			}
		}
		if ids(got) != ids(exp) {
			t.Errorf("ListRuns(%+v) =\n %s\nwant\n %s", f, ids(got), ids(exp))
		}
		for i := range min(len(got), len(exp)) {
			if got[i].GetState() != exp[i].GetState() || got[i].GetService() != exp[i].GetService() ||
				!proto.Equal(got[i].GetVerdict(), exp[i].GetVerdict()) {
				t.Errorf("ListRuns(%+v)[%d] = %v, want %v", f, i, got[i], exp[i])
			}
		}
	}
	for _, f := range []store.VerdictFilter{
		{},
		{Service: "checkout"},
		{Decision: canaryv1.Decision_DECISION_ROLLBACK},
		{Service: "search", Stage: "wave-2", Decision: canaryv1.Decision_DECISION_ROLLBACK},
	} {
		var exp []*canaryv1.Verdict
		for _, r := range want {
			v := r.GetVerdict()
			if v != nil && (f.Service == "" || v.Service == f.Service) && (f.Stage == "" || v.Stage == f.Stage) &&
				(f.Decision == 0 || v.Decision == f.Decision) {
				exp = append(exp, v)
			}
		}
		slices.SortFunc(exp, func(a, b *canaryv1.Verdict) int {
			return cmp.Or(b.Time.AsTime().Compare(a.Time.AsTime()), cmp.Compare(b.RunId, a.RunId))
		})
		var got []*canaryv1.Verdict
		tok := ""
		for pages := 0; ; pages++ {
			vs, next, err := s.ListVerdicts(ctx, f, store.Page{Size: 7, Token: tok})
			if err != nil || pages > 10 {
				t.Fatalf("ListVerdicts(%+v) page %d: %v", f, pages, err)
			}
			got = append(got, vs...)
			if tok = next; tok == "" {
				break
			}
		}
		if verdictIDs(got) != verdictIDs(exp) || len(exp) == 0 && f.Decision == 0 {
			t.Errorf("ListVerdicts(%+v) =\n %s\nwant\n %s", f, verdictIDs(got), verdictIDs(exp))
		}
		for i := range min(len(got), len(exp)) {
			if !proto.Equal(got[i], exp[i]) {
				t.Errorf("ListVerdicts(%+v)[%d] = %v, want %v", f, i, got[i], exp[i])
			}
		}
	}
}

// BenchmarkMigrateLayout1 measures the migration of a layout-1 store of
// CANARYD_BENCH_RUNS runs (default 100,000; half finished, with their
// verdicts in the history; all with request ids), written with pipelined
// raw commands, by Open on a plain redis-server. It reports runs migrated
// per second.
//
//	go test -run '^$' -bench BenchmarkMigrateLayout1 -benchtime 1x ./server/store/redisstore/
func BenchmarkMigrateLayout1(b *testing.B) {
	n := envInt(b, "CANARYD_BENCH_RUNS", 100_000)
	srv := testredis.StartWith(b, testredis.Options{Private: true})
	rc := srv.Client(b)
	ctx := b.Context()
	var elapsed time.Duration
	for range b.N {
		p := srv.Prefix(b)
		t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
		pipe := rc.Pipeline()
		pipe.Set(ctx, p+":schema", "1", 0)
		for i := range n {
			id := fmt.Sprintf("01JD%022d", i)
			run := &canaryv1.Run{Id: id, RequestId: "req-" + id, Service: fmt.Sprintf("svc-%d", i%200),
				Stage: fmt.Sprintf("stage-%d", i%10), ConfigName: "cfg", State: canaryv1.RunState_RUN_STATE_RUNNING,
				CreateTime: timestamppb.New(t0.Add(time.Duration(i) * time.Second))}
			data, _ := proto.Marshal(run)
			meta := p + ":{run:" + id + "}:m"
			pipe.HSet(ctx, meta, "run", data, "state", "1", "folded", "0")
			pipe.HSet(ctx, p+":{runs}:req", run.RequestId, requestValue(id, run.CreateTime.AsTime(), []byte("fp")))
			state := int32(1)
			if i%2 == 0 {
				state = int32(canaryv1.RunState_RUN_STATE_COMPLETED)
				at := run.CreateTime.AsTime().Add(time.Hour)
				v := &canaryv1.Verdict{RunId: id, Service: run.Service, Stage: run.Stage,
					Decision: canaryv1.Decision_DECISION_PROMOTE, Time: timestamppb.New(at), Final: true, Reason: "bench"}
				fin, _ := proto.Marshal(&canaryv1.Run{State: canaryv1.RunState_RUN_STATE_COMPLETED, Verdict: v})
				pipe.HSet(ctx, meta, "state", "2", "fin", fin)
				vd, _ := proto.Marshal(v)
				pipe.HSet(ctx, p+":{hist}:v", id, vd)
				names, mem := indexEntries(v.Service, v.Stage, int32(v.Decision), at, id)
				for _, nm := range names {
					pipe.ZAdd(ctx, p+":{hist}:vi:"+nm, redis.Z{Member: mem})
				}
			}
			names, mem := indexEntries(run.Service, run.Stage, state, run.CreateTime.AsTime(), id)
			for _, nm := range names {
				pipe.ZAdd(ctx, p+":{runs}:ri:"+nm, redis.Z{Member: mem})
			}
			if pipe.Len() > 5000 {
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		s := openStore(b, srv, Options{Prefix: p})
		elapsed += time.Since(start)
		if runs, _, err := s.ListRuns(ctx, store.RunFilter{}, store.Page{Size: 10}); err != nil || len(runs) != 10 {
			b.Fatalf("ListRuns after the migration: %d, %v", len(runs), err)
		}
	}
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "runs/s")
}
