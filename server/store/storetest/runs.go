package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

func (s *suite) testCreateRun(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	first := newRun("run-1", "req-1", "checkout", "wave-1", t0)
	// Applied in order.
	steps := []struct {
		name        string
		run         *canaryv1.Run
		fingerprint string
		want        *canaryv1.Run // nil: want the error
		wantCreated bool
		wantErr     error
	}{
		{"new request", first, "A", first, true, nil},
		{"retry with the same fingerprint", newRun("run-1b", "req-1", "checkout", "wave-1", t0.Add(time.Second)), "A", first, false, nil},
		{"same request id, other fingerprint", newRun("run-1c", "req-1", "checkout", "wave-2", t0), "B", nil, false, store.ErrConflict},
		{"same request id, no fingerprint", newRun("run-1d", "req-1", "checkout", "wave-1", t0), "", nil, false, store.ErrConflict},
		{"other request, same fingerprint", newRun("run-2", "req-2", "checkout", "wave-1", t0), "A", newRun("run-2", "req-2", "checkout", "wave-1", t0), true, nil},
		{"retry of the first again", newRun("run-1e", "req-1", "checkout", "wave-1", t0), "A", first, false, nil},
	}
	for _, step := range steps {
		got, created, err := st.CreateRun(ctx, step.run, []byte(step.fingerprint))
		checkErr(t, step.name+": CreateRun", err, step.wantErr)
		if step.want != nil && (!proto.Equal(got, step.want) || created != step.wantCreated) {
			t.Errorf("%s: CreateRun = created %v,\n%v\nwant created %v,\n%v", step.name, created, got, step.wantCreated, step.want)
		}
	}
	// Nothing was stored by the retries and the conflicts.
	for _, id := range []string{"run-1b", "run-1c", "run-1d", "run-1e"} {
		_, err := st.GetRun(ctx, id)
		checkErr(t, "GetRun("+id+")", err, store.ErrNotFound)
	}
	got := listAll(t, 0, func(p store.Page) ([]*canaryv1.Run, string, error) {
		return st.ListRuns(ctx, store.RunFilter{}, p)
	})
	if ids := runIDs(got); ids != "run-2 run-1" {
		t.Errorf("ListRuns = %s, want run-2 run-1", ids)
	}
}

func (s *suite) testGetRun(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	running := newRun("run-a", "req-a", "checkout", "wave-1", t0)
	mustCreate(ctx, t, st, running)
	done := newRun("run-b", "req-b", "checkout", "wave-2", t0.Add(time.Minute))
	mustCreate(ctx, t, st, done)
	doneFinal := finishedRun(done, canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_HOLD, t0.Add(time.Hour))
	mustFinish(ctx, t, st, doneFinal)
	tests := []struct {
		id      string
		want    *canaryv1.Run
		wantErr error
	}{
		{"run-a", running, nil},
		{"run-b", doneFinal, nil},
		{"run-c", nil, store.ErrNotFound},
		{"run", nil, store.ErrNotFound},
		{"", nil, store.ErrNotFound},
	}
	for _, tt := range tests {
		got, err := st.GetRun(ctx, tt.id)
		checkErr(t, fmt.Sprintf("GetRun(%q)", tt.id), err, tt.wantErr)
		if tt.want != nil && !proto.Equal(got, tt.want) {
			t.Errorf("GetRun(%q) =\n%v\nwant\n%v", tt.id, got, tt.want)
		}
	}
}

// runFixture creates runs over services (one a prefix of another), stages
// and states, with ties in create time, and returns them as stored.
func runFixture(t *testing.T, s *suite) (store.Store, []*canaryv1.Run) {
	ctx := testContext(t)
	st := s.open(t)
	services := []string{"cart", "cart2", "search"}
	stages := []string{"wave-1", "onebox/us-east-1"}
	var runs []*canaryv1.Run
	for i := range 36 {
		run := newRun(fmt.Sprintf("run-%02d", i), fmt.Sprintf("req-%02d", i),
			services[i%3], stages[(i/3)%2], t0.Add(time.Duration(i/2)*time.Second)) // pairs share a create time
		mustCreate(ctx, t, st, run)
		switch i % 4 {
		case 1:
			run = finishedRun(run, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0.Add(time.Hour))
			mustFinish(ctx, t, st, run)
		case 2:
			run = finishedRun(run, canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_ROLLBACK, t0.Add(time.Hour))
			mustFinish(ctx, t, st, run)
		}
		runs = append(runs, run)
	}
	return st, runs
}

func (s *suite) testListRuns(t *testing.T) {
	ctx := testContext(t)
	st, runs := runFixture(t, s)
	for _, service := range []string{"", "cart", "cart2", "nope"} {
		for _, stage := range []string{"", "wave-1", "onebox/us-east-1"} {
			for _, state := range []canaryv1.RunState{0, canaryv1.RunState_RUN_STATE_RUNNING, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.RunState_RUN_STATE_ABORTED} {
				f := store.RunFilter{Service: service, Stage: stage, State: state}
				var want []*canaryv1.Run
				for _, r := range runs {
					if (service == "" || r.GetService() == service) && (stage == "" || r.GetStage() == stage) && (state == 0 || r.GetState() == state) {
						want = append(want, r)
					}
				}
				slices.SortFunc(want, func(a, b *canaryv1.Run) int {
					return newestFirst(a.GetCreateTime().AsTime(), b.GetCreateTime().AsTime(), a.GetId(), b.GetId())
				})
				for _, size := range []int{1, 4, 0} {
					t.Run(fmt.Sprintf("%+v/size=%d", f, size), func(t *testing.T) {
						got := listAll(t, size, func(p store.Page) ([]*canaryv1.Run, string, error) {
							return st.ListRuns(ctx, f, p)
						})
						if !equalLists(got, want) {
							t.Errorf("ListRuns(%+v) = %s\nwant %s", f, runIDs(got), runIDs(want))
						}
					})
				}
			}
		}
	}
}

func (s *suite) testListRunsDefaultPage(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	const n = store.DefaultPageSize + 10
	for i := range n {
		mustCreate(ctx, t, st, newRun(fmt.Sprintf("run-%03d", i), fmt.Sprintf("req-%03d", i), "checkout", "wave-1", t0.Add(time.Duration(i)*time.Second)))
	}
	page, next, err := st.ListRuns(ctx, store.RunFilter{}, store.Page{})
	if err != nil || len(page) != store.DefaultPageSize || next == "" {
		t.Fatalf("ListRuns(size 0) = %d runs, next %q, err %v; want %d runs and a token", len(page), next, err, store.DefaultPageSize)
	}
	if page[0].GetId() != fmt.Sprintf("run-%03d", n-1) {
		t.Errorf("first run = %s, want the newest, run-%03d", page[0].GetId(), n-1)
	}
	rest, next, err := st.ListRuns(ctx, store.RunFilter{}, store.Page{Token: next})
	if err != nil || len(rest) != 10 || next != "" {
		t.Errorf("second page = %d runs, next %q, err %v; want 10 runs and no token", len(rest), next, err)
	}
}

func (s *suite) testUpdateRun(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	running := newRun("run-a", "req-a", "checkout", "wave-1", t0)
	mustCreate(ctx, t, st, running)
	done := newRun("run-b", "req-b", "checkout", "wave-1", t0)
	mustCreate(ctx, t, st, done)
	doneFinal := finishedRun(done, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0.Add(time.Hour))
	mustFinish(ctx, t, st, doneFinal)

	updated := proto.Clone(running).(*canaryv1.Run)
	updated.Verdict = verdictFor(updated, canaryv1.Decision_DECISION_HOLD, t0.Add(time.Minute), false)
	updated.Counters = &canaryv1.RunCounters{Batches: 4, DuplicateBatches: 1, BaselineSamples: 400, CanarySamples: 380, LastIngestTime: timestamppb.New(t0.Add(time.Minute))}
	again := proto.Clone(updated).(*canaryv1.Run)
	again.Verdict.Decision = canaryv1.Decision_DECISION_PROMOTE
	again.Verdict.Sequence++
	again.Counters.Batches++

	lateUpdate := proto.Clone(doneFinal).(*canaryv1.Run)
	lateUpdate.Counters = &canaryv1.RunCounters{Batches: 99}

	tests := []struct {
		name    string
		update  *canaryv1.Run
		wantErr error
		get     string
		want    *canaryv1.Run // GetRun(get) afterwards
	}{
		{"verdict and counters", updated, nil, "run-a", updated},
		{"again", again, nil, "run-a", again},
		{"unknown run", newRun("run-x", "req-x", "checkout", "wave-1", t0), store.ErrNotFound, "run-a", again},
		{"finished run", lateUpdate, store.ErrFinished, "run-b", doneFinal},
	}
	for _, tt := range tests {
		err := st.UpdateRun(ctx, tt.update)
		checkErr(t, tt.name+": UpdateRun", err, tt.wantErr)
		got, err := st.GetRun(ctx, tt.get)
		if err != nil || !proto.Equal(got, tt.want) {
			t.Errorf("%s: GetRun(%s) = %v\n%v\nwant\n%v", tt.name, tt.get, err, got, tt.want)
		}
	}
	if _, err := st.GetRun(ctx, "run-x"); err == nil {
		t.Errorf("UpdateRun of an unknown run created it")
	}
}
