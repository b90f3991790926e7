package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

func (s *suite) testFinishRun(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	a := newRun("run-a", "req-a", "checkout", "wave-1", t0)
	b := newRun("run-b", "req-b", "checkout", "wave-2", t0)
	mustCreate(ctx, t, st, a)
	mustCreate(ctx, t, st, b)
	aDone := finishedRun(a, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0.Add(time.Hour))
	aAbort := finishedRun(a, canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_ROLLBACK, t0.Add(3*time.Hour))
	bAbort := finishedRun(b, canaryv1.RunState_RUN_STATE_ABORTED, canaryv1.Decision_DECISION_HOLD, t0.Add(2*time.Hour))
	// Applied in order.
	steps := []struct {
		name    string
		run     *canaryv1.Run
		wantErr error
	}{
		{"complete", aDone, nil},
		{"complete again", aDone, store.ErrFinished},
		{"abort a completed run", aAbort, store.ErrFinished},
		{"abort", bAbort, nil},
		{"abort again", bAbort, store.ErrFinished},
		{"unknown run", finishedRun(newRun("run-x", "req-x", "checkout", "wave-1", t0), canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0), store.ErrNotFound},
	}
	for _, step := range steps {
		checkErr(t, step.name+": FinishRun", st.FinishRun(ctx, step.run), step.wantErr)
	}
	for _, want := range []*canaryv1.Run{aDone, bAbort} {
		got, err := st.GetRun(ctx, want.GetId())
		if err != nil || !proto.Equal(got, want) {
			t.Errorf("GetRun(%s) = %v\n%v\nwant\n%v", want.GetId(), err, got, want)
		}
	}
	got := listAll(t, 0, func(p store.Page) ([]*canaryv1.Verdict, string, error) {
		return st.ListVerdicts(ctx, store.VerdictFilter{}, p)
	})
	if want := []*canaryv1.Verdict{bAbort.GetVerdict(), aDone.GetVerdict()}; !equalLists(got, want) {
		t.Errorf("ListVerdicts = %v\nwant %v", got, want)
	}
	if _, err := st.GetRun(ctx, "run-x"); err == nil {
		t.Errorf("FinishRun of an unknown run created it")
	}
}

func (s *suite) testAfterFinish(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	run := newRun("run-a", "req-a", "checkout", "wave-1", t0)
	mustCreate(ctx, t, st, run)
	mustAppend(ctx, t, st, "run-a", "1", []byte("d1"), false)
	done := finishedRun(run, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0.Add(time.Hour))
	mustFinish(ctx, t, st, done)
	late := proto.Clone(done).(*canaryv1.Run)
	late.Counters.Batches = 42
	tests := []struct {
		name string
		call func() error
	}{
		{"AppendBatch", func() error { _, err := st.AppendBatch(ctx, "run-a", "2", []byte("d2")); return err }},
		{"UpdateRun", func() error { return st.UpdateRun(ctx, late) }},
		{"FinishRun", func() error { return st.FinishRun(ctx, late) }},
	}
	for _, tt := range tests {
		checkErr(t, tt.name, tt.call(), store.ErrFinished)
	}
	if got, want := readBatches(ctx, t, st, "run-a"), []string{"S:", "d1"}; !slices.Equal(got, want) {
		t.Errorf("ReadBatches = %q, want %q", got, want)
	}
	if got, err := st.GetRun(ctx, "run-a"); err != nil || !proto.Equal(got, done) {
		t.Errorf("GetRun = %v\n%v\nwant\n%v", err, got, done)
	}
}

// verdictFixture stores 90 final verdicts over services (one a prefix of
// another), stages and decisions. Verdicts i and i+36 share every field and
// their time, so that ties are ordered by run id. It returns the verdicts
// and the time of verdict i.
func verdictFixture(t *testing.T, s *suite) (store.Store, []*canaryv1.Verdict, func(i int) time.Time) {
	ctx := testContext(t)
	st := s.open(t)
	services := []string{"cart", "cart2", "search"}
	stages := []string{"wave-1", "onebox/us-east-1"}
	decisions := []canaryv1.Decision{canaryv1.Decision_DECISION_PROMOTE, canaryv1.Decision_DECISION_HOLD, canaryv1.Decision_DECISION_ROLLBACK}
	at := func(i int) time.Time {
		return t0.Add(time.Duration(i%36) * (time.Minute + 1234567*time.Nanosecond))
	}
	const n = 90
	verdicts := make([]*canaryv1.Verdict, n)
	var wg sync.WaitGroup
	for w := range 6 { // concurrent writers, in no particular order
		wg.Go(func() {
			for i := w; i < n; i += 6 {
				run := newRun(fmt.Sprintf("run-%03d", i), fmt.Sprintf("req-%03d", i), services[i%3], stages[(i/3)%2], t0)
				if _, _, err := st.CreateRun(ctx, run, nil); err != nil {
					t.Errorf("CreateRun: %v", err)
					return
				}
				state := canaryv1.RunState_RUN_STATE_COMPLETED
				if i%5 == 0 {
					state = canaryv1.RunState_RUN_STATE_ABORTED
				}
				done := finishedRun(run, state, decisions[(i/6)%3], at(i))
				if err := st.FinishRun(ctx, done); err != nil {
					t.Errorf("FinishRun: %v", err)
					return
				}
				verdicts[i] = done.GetVerdict()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return st, verdicts, at
}

func matchVerdicts(vs []*canaryv1.Verdict, f store.VerdictFilter) []*canaryv1.Verdict {
	var out []*canaryv1.Verdict
	for _, v := range vs {
		ts := v.GetTime().AsTime()
		if (f.Service == "" || v.GetService() == f.Service) &&
			(f.Stage == "" || v.GetStage() == f.Stage) &&
			(f.Decision == 0 || v.GetDecision() == f.Decision) &&
			(f.Since.IsZero() || !ts.Before(f.Since)) &&
			(f.Until.IsZero() || ts.Before(f.Until)) {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b *canaryv1.Verdict) int {
		return newestFirst(a.GetTime().AsTime(), b.GetTime().AsTime(), a.GetRunId(), b.GetRunId())
	})
	return out
}

func (s *suite) testListVerdicts(t *testing.T) {
	ctx := testContext(t)
	st, verdicts, at := verdictFixture(t, s)
	windows := []struct {
		name         string
		since, until time.Time
	}{
		{"any time", time.Time{}, time.Time{}},
		{"since", at(10), time.Time{}},
		{"until", time.Time{}, at(25)},
		{"since-until", at(10), at(25)},
		{"one instant", at(12), at(12).Add(time.Nanosecond)},
		{"empty", at(12), at(12)},
		{"inverted", at(25), at(10)},
		{"wide", t0.AddDate(-1, 0, 0), t0.AddDate(1, 0, 0)},
		{"before everything", time.Time{}, t0},
		{"after everything", at(35).Add(time.Nanosecond), time.Time{}},
	}
	services := []string{"", "cart", "cart2", "nope"}
	stages := []string{"", "wave-1", "onebox/us-east-1"}
	decisions := []canaryv1.Decision{0, canaryv1.Decision_DECISION_PROMOTE, canaryv1.Decision_DECISION_HOLD, canaryv1.Decision_DECISION_ROLLBACK}
	for _, service := range services {
		for _, stage := range stages {
			for _, decision := range decisions {
				for _, w := range windows {
					f := store.VerdictFilter{Service: service, Stage: stage, Decision: decision, Since: w.since, Until: w.until}
					name := fmt.Sprintf("service=%s/stage=%s/decision=%d/%s", service, stage, decision, w.name)
					t.Run(name, func(t *testing.T) {
						want := matchVerdicts(verdicts, f)
						got := listAll(t, 7, func(p store.Page) ([]*canaryv1.Verdict, string, error) {
							return st.ListVerdicts(ctx, f, p)
						})
						if !equalLists(got, want) {
							t.Errorf("ListVerdicts(%s) = %s\nwant %s", name, verdictIDs(got), verdictIDs(want))
						}
					})
				}
			}
		}
	}
}

func (s *suite) testListVerdictsPageSizes(t *testing.T) {
	ctx := testContext(t)
	st, verdicts, at := verdictFixture(t, s)
	filters := []store.VerdictFilter{
		{},
		{Service: "cart"},
		{Stage: "wave-1", Decision: canaryv1.Decision_DECISION_ROLLBACK},
		{Service: "search", Stage: "onebox/us-east-1", Decision: canaryv1.Decision_DECISION_PROMOTE, Since: at(3)},
		{Until: at(20)},
	}
	for _, f := range filters {
		want := matchVerdicts(verdicts, f)
		for _, size := range []int{1, 2, 5, 35, 36, 89, 90, 0, store.MaxPageSize + 1} {
			t.Run(fmt.Sprintf("%+v/size=%d", f, size), func(t *testing.T) {
				got := listAll(t, size, func(p store.Page) ([]*canaryv1.Verdict, string, error) {
					return st.ListVerdicts(ctx, f, p)
				})
				if !equalLists(got, want) {
					t.Errorf("ListVerdicts = %s\nwant %s", verdictIDs(got), verdictIDs(want))
				}
			})
		}
	}
	// A page of the requested size, when there is more.
	page, next, err := st.ListVerdicts(ctx, store.VerdictFilter{}, store.Page{Size: 10})
	if err != nil || len(page) != 10 || next == "" {
		t.Errorf("ListVerdicts(size 10) = %d verdicts, next %q, err %v; want 10 and a token", len(page), next, err)
	}
}

func (s *suite) testBadPageTokens(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	for i := range 3 {
		if _, _, err := st.PutConfig(ctx, testConfig(fmt.Sprintf("c%d", i), 0.1), ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.PutConfig(ctx, testConfig("c0", 0.2+0.1*float64(i)), ""); err != nil {
			t.Fatal(err)
		}
		run := newRun(fmt.Sprintf("run-%d", i), fmt.Sprintf("req-%d", i), "checkout", "wave-1", t0.Add(time.Duration(i)*time.Second))
		mustCreate(ctx, t, st, run)
		mustFinish(ctx, t, st, finishedRun(run, canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.Decision_DECISION_PROMOTE, t0.Add(time.Duration(i)*time.Hour)))
	}
	lists := []struct {
		name string
		list func(p store.Page) (string, error)
	}{
		{"ListConfigs", func(p store.Page) (string, error) { _, next, err := st.ListConfigs(ctx, "", p); return next, err }},
		{"ListConfigs(c0)", func(p store.Page) (string, error) { _, next, err := st.ListConfigs(ctx, "c0", p); return next, err }},
		{"ListRuns", func(p store.Page) (string, error) {
			_, next, err := st.ListRuns(ctx, store.RunFilter{}, p)
			return next, err
		}},
		{"ListVerdicts", func(p store.Page) (string, error) {
			_, next, err := st.ListVerdicts(ctx, store.VerdictFilter{}, p)
			return next, err
		}},
	}
	tokens := map[string]string{}
	for _, l := range lists {
		next, err := l.list(store.Page{Size: 1})
		if err != nil || next == "" {
			t.Fatalf("%s(size 1) = token %q, err %v; want a token", l.name, next, err)
		}
		tokens[l.name] = next
		// The token works where it came from.
		if _, err := l.list(store.Page{Size: 1, Token: next}); err != nil {
			t.Errorf("%s with its own token: %v", l.name, err)
		}
	}
	garbage := []string{"garbage", "not a token", "%%%", "AAAAAAAAAAAAAAAA", "////////", "\x00\xff"}
	for _, l := range lists {
		bad := slices.Clone(garbage)
		for other, tok := range tokens {
			if other != l.name {
				bad = append(bad, tok)
			}
		}
		for _, tok := range bad {
			_, err := l.list(store.Page{Token: tok})
			checkErr(t, fmt.Sprintf("%s(token %q)", l.name, tok), err, store.ErrBadPageToken)
		}
	}
}

// testPageTokenOfOtherFilter checks that a page token only works with the
// filter it was issued for.
func (st *suite) testPageTokenOfOtherFilter(t *testing.T) {
	s := st.open(t)
	ctx := testContext(t)
	for i, service := range []string{"a", "a", "b", "b", "a"} {
		id := fmt.Sprintf("r%d", i)
		if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: id, RequestId: id, Service: service, Stage: "s"}, nil); err != nil {
			t.Fatal(err)
		}
		v := &canaryv1.Verdict{Decision: canaryv1.Decision_DECISION_PROMOTE, Time: timestamppb.New(time.Unix(int64(i), 0))}
		if err := s.FinishRun(ctx, &canaryv1.Run{Id: id, State: canaryv1.RunState_RUN_STATE_COMPLETED, Verdict: v}); err != nil {
			t.Fatal(err)
		}
	}
	// Service a has verdicts r4 (at 4s), r1 (1s) and r0 (0s); the token
	// points after r4.
	_, tok, err := s.ListVerdicts(ctx, store.VerdictFilter{Service: "a"}, store.Page{Size: 1})
	if err != nil || tok == "" {
		t.Fatalf("ListVerdicts = %q, %v", tok, err)
	}
	tests := []struct {
		f       store.VerdictFilter
		want    string
		wantErr error
	}{
		{store.VerdictFilter{Service: "a"}, "r1 r0", nil},
		{store.VerdictFilter{Service: "a", Since: time.Unix(0, 0), Until: time.Unix(100, 0)}, "r1 r0", nil},
		// A bound changed between pages still bounds the page.
		{store.VerdictFilter{Service: "a", Until: time.Unix(1, 0)}, "r0", nil},
		{store.VerdictFilter{Service: "a", Since: time.Unix(1, 0)}, "r1", nil},
		{store.VerdictFilter{Service: "b"}, "", store.ErrBadPageToken},
		{store.VerdictFilter{}, "", store.ErrBadPageToken},
		{store.VerdictFilter{Service: "a", Stage: "s"}, "", store.ErrBadPageToken},
		{store.VerdictFilter{Service: "a", Decision: canaryv1.Decision_DECISION_PROMOTE}, "", store.ErrBadPageToken},
	}
	for _, tt := range tests {
		vs, _, err := s.ListVerdicts(ctx, tt.f, store.Page{Token: tok})
		if got := verdictIDs(vs); got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("ListVerdicts(%+v, token of service a) = %q, %v; want %q, %v", tt.f, got, err, tt.want, tt.wantErr)
		}
	}
	// The verdicts' run id, service and stage were filled in from the run.
	vs, _, err := s.ListVerdicts(ctx, store.VerdictFilter{Service: "b", Stage: "s"}, store.Page{})
	if err != nil || len(vs) != 2 || vs[0].GetRunId() != "r3" || vs[0].GetService() != "b" {
		t.Errorf("ListVerdicts(b, s) = %v, %v", vs, err)
	}
}
