package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

func (s *suite) testAppendDedupe(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	mustCreate(ctx, t, st, newRun("run-a", "req-a", "checkout", "wave-1", t0))
	mustCreate(ctx, t, st, newRun("run-b", "req-b", "checkout", "wave-1", t0))
	// Applied in order.
	steps := []struct {
		run, batch, delta string
		wantDup           bool
	}{
		{"run-a", "1", "d1", false},
		{"run-a", "2", "d2", false},
		{"run-a", "1", "d1 again", true},
		{"run-a", "1", "d1 other content", true},
		{"run-b", "1", "b1", false}, // batch ids are per run
		{"run-a", "3", "d3", false},
		{"run-a", "2", "d2", true},
		{"run-a", "10", "d10", false}, // not confused with "1"
		{"run-b", "2", "", false},     // an empty delta is a delta
	}
	for _, step := range steps {
		mustAppend(ctx, t, st, step.run, step.batch, []byte(step.delta), step.wantDup)
	}
	tests := []struct {
		run  string
		want []string
	}{
		{"run-a", []string{"S:", "d1", "d2", "d3", "d10"}},
		{"run-b", []string{"S:", "b1", ""}},
	}
	for _, tt := range tests {
		if got := readBatches(ctx, t, st, tt.run); !slices.Equal(got, tt.want) {
			t.Errorf("ReadBatches(%s) = %q, want %q", tt.run, got, tt.want)
		}
	}
}

func (s *suite) testAppendErrors(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	running := newRun("run-a", "req-a", "checkout", "wave-1", t0)
	mustCreate(ctx, t, st, running)
	mustAppend(ctx, t, st, "run-a", "1", []byte("d1"), false)
	for _, state := range []canaryv1.RunState{canaryv1.RunState_RUN_STATE_COMPLETED, canaryv1.RunState_RUN_STATE_ABORTED} {
		run := newRun("run-"+state.String(), "req-"+state.String(), "checkout", "wave-1", t0)
		mustCreate(ctx, t, st, run)
		mustAppend(ctx, t, st, run.GetId(), "1", []byte("d1"), false)
		mustFinish(ctx, t, st, finishedRun(run, state, canaryv1.Decision_DECISION_PROMOTE, t0.Add(time.Hour)))
	}
	tests := []struct {
		name, run, batch string
		wantErr          error
	}{
		{"unknown run", "run-x", "1", store.ErrNotFound},
		{"empty run id", "", "1", store.ErrNotFound},
		{"completed run", "run-RUN_STATE_COMPLETED", "2", store.ErrFinished},
		{"aborted run", "run-RUN_STATE_ABORTED", "2", store.ErrFinished},
	}
	for _, tt := range tests {
		_, err := st.AppendBatch(ctx, tt.run, tt.batch, []byte("rejected"))
		checkErr(t, tt.name+": AppendBatch", err, tt.wantErr)
	}
	// Nothing was stored.
	for _, run := range []string{"run-RUN_STATE_COMPLETED", "run-RUN_STATE_ABORTED"} {
		if got, want := readBatches(ctx, t, st, run), []string{"S:", "d1"}; !slices.Equal(got, want) {
			t.Errorf("ReadBatches(%s) = %q, want %q", run, got, want)
		}
	}
	err := st.ReadBatches(ctx, "run-x", func(bool, []byte) error { return nil })
	checkErr(t, "ReadBatches(run-x)", err, store.ErrNotFound)
}

func (s *suite) testReadAndSnapshot(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	mustCreate(ctx, t, st, newRun("run-a", "req-a", "checkout", "wave-1", t0))
	big := strings.Repeat("x", 256<<10) // deltas larger than a page
	type step struct {
		name     string
		appends  []string // batch ids; the delta is "d"+id (or big for "big")
		snapshot int      // n for Snapshot, -1 for none
		state    string
		want     []string // ReadBatches afterwards
	}
	steps := []step{
		{"no data", nil, -1, "", []string{"S:"}},
		{"three deltas", []string{"1", "2", "3"}, -1, "", []string{"S:", "d1", "d2", "d3"}},
		{"fold two", nil, 2, "s12", []string{"S:s12", "d3"}},
		{"append after a snapshot", []string{"4", "1"}, -1, "", []string{"S:s12", "d3", "d4"}},
		{"fold all", nil, 2, "s1234", []string{"S:s1234"}},
		{"ids stay deduplicated", []string{"2", "3", "4", "5"}, -1, "", []string{"S:s1234", "d5"}},
		{"snapshot folding nothing", nil, 0, "s1234'", []string{"S:s1234'", "d5"}},
		{"big deltas", []string{"big", "6"}, -1, "", []string{"S:s1234'", "d5", big, "d6"}},
		{"fold one", nil, 1, "s12345", []string{"S:s12345", big, "d6"}},
	}
	appended := map[string]bool{}
	for _, step := range steps {
		for _, id := range step.appends {
			delta := "d" + id
			if id == "big" {
				delta = big
			}
			mustAppend(ctx, t, st, "run-a", id, []byte(delta), appended[id])
			appended[id] = true
		}
		if step.snapshot >= 0 {
			if err := st.Snapshot(ctx, "run-a", step.snapshot, []byte(step.state)); err != nil {
				t.Fatalf("%s: Snapshot(%d) = %v", step.name, step.snapshot, err)
			}
		}
		if got := readBatches(ctx, t, st, "run-a"); !slices.Equal(got, step.want) {
			t.Fatalf("%s: ReadBatches = %.40q, want %.40q", step.name, got, step.want)
		}
	}
	err := st.Snapshot(ctx, "run-x", 0, []byte("s"))
	checkErr(t, "Snapshot(run-x)", err, store.ErrNotFound)

	// ReadBatches stops at fn's error and returns it.
	stop := fmt.Errorf("stop")
	calls := 0
	err = st.ReadBatches(ctx, "run-a", func(bool, []byte) error { calls++; return stop })
	if err == nil || calls != 1 {
		t.Errorf("ReadBatches with a failing fn = %v after %d calls, want its error after 1 call", err, calls)
	}
}

func (s *suite) testConcurrentAppend(t *testing.T) {
	ctx := testContext(t)
	st := s.open(t)
	runs := []string{"run-a", "run-b"}
	for _, id := range runs {
		mustCreate(ctx, t, st, newRun(id, "req-"+id, "checkout", "wave-1", t0))
	}
	const (
		writers   = 16
		perWriter = 24 // own batches of each writer, alternating runs
		shared    = 20 // batch ids every writer sends to run-a at the same time
	)
	delta := func(run, id string) []byte {
		return bytes.Repeat([]byte(run+"/"+id+";"), 100)
	}
	var (
		mu     sync.Mutex
		stored = map[string]int{} // run/batch → times AppendBatch returned dup = false
		wg     sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				run, id := runs[i%2], fmt.Sprintf("w%02d-%03d", w, i)
				for try := range 2 { // every batch is retried once
					dup, err := st.AppendBatch(ctx, run, id, delta(run, id))
					if err != nil {
						t.Errorf("AppendBatch(%s, %s) = %v", run, id, err)
						return
					}
					if dup != (try == 1) {
						t.Errorf("AppendBatch(%s, %s) try %d: dup = %v", run, id, try, dup)
					}
					if !dup {
						mu.Lock()
						stored[run+"/"+id]++
						mu.Unlock()
					}
				}
				if i < shared {
					id := fmt.Sprintf("shared-%03d", i)
					dup, err := st.AppendBatch(ctx, "run-a", id, delta("run-a", id))
					if err != nil {
						t.Errorf("AppendBatch(run-a, %s) = %v", id, err)
						return
					}
					if !dup {
						mu.Lock()
						stored["run-a/"+id]++
						mu.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	want := map[string]bool{}
	for w := range writers {
		for i := range perWriter {
			want[runs[i%2]+"/"+fmt.Sprintf("w%02d-%03d", w, i)] = true
		}
	}
	for i := range shared {
		want[fmt.Sprintf("run-a/shared-%03d", i)] = true
	}
	if len(stored) != len(want) {
		t.Errorf("%d batches acknowledged as new, want %d", len(stored), len(want))
	}
	for key, n := range stored {
		if n != 1 || !want[key] {
			t.Errorf("batch %s acknowledged as new %d times", key, n)
		}
	}
	// Every stored batch is read back exactly once, with its content.
	read := map[string]int{}
	for _, run := range runs {
		for i, d := range readBatches(ctx, t, st, run) {
			if i == 0 {
				continue
			}
			key, _, _ := strings.Cut(d, ";")
			r, id, _ := strings.Cut(key, "/")
			if r != run || !bytes.Equal([]byte(d), delta(r, id)) {
				t.Errorf("ReadBatches(%s): unexpected delta %.60q", run, d)
			}
			read[key]++
		}
	}
	if len(read) != len(want) {
		t.Errorf("read %d distinct batches, want %d", len(read), len(want))
	}
	for key, n := range read {
		if n != 1 || !want[key] {
			t.Errorf("batch %s read %d times", key, n)
		}
	}
}

// testInvalidInput: every malformed call is a plain error (no sentinel),
// and stores nothing.
func (st *suite) testInvalidInput(t *testing.T) {
	s := st.open(t)
	ctx := testContext(t)
	long := strings.Repeat("x", store.MaxIDLen+1)
	if _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r", RequestId: "q"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(ctx, "r", 0, []byte("s0")); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"PutConfig without name": func() error { _, _, err := s.PutConfig(ctx, &canaryv1.CanaryConfig{}, ""); return err },
		"CreateRun without id":   func() error { _, _, err := s.CreateRun(ctx, &canaryv1.Run{RequestId: "q2"}, nil); return err },
		"CreateRun with a long service": func() error {
			_, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r2", Service: long}, nil)
			return err
		},
		"CreateRun finished": func() error {
			_, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r3", State: canaryv1.RunState_RUN_STATE_COMPLETED}, nil)
			return err
		},
		"CreateRun reusing a run id": func() error { _, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r", RequestId: "q4"}, nil); return err },
		"CreateRun reusing a run id, no request id": func() error {
			_, _, err := s.CreateRun(ctx, &canaryv1.Run{Id: "r", Service: "other"}, nil)
			return err
		},
		"AppendBatch without id":     func() error { _, err := s.AppendBatch(ctx, "r", "", []byte("d")); return err },
		"AppendBatch with a long id": func() error { _, err := s.AppendBatch(ctx, "r", long, []byte("d")); return err },
		"FinishRun without verdict": func() error {
			return s.FinishRun(ctx, &canaryv1.Run{Id: "r", State: canaryv1.RunState_RUN_STATE_COMPLETED})
		},
		"FinishRun to RUNNING": func() error {
			return s.FinishRun(ctx, &canaryv1.Run{Id: "r", State: canaryv1.RunState_RUN_STATE_RUNNING, Verdict: &canaryv1.Verdict{}})
		},
		"FinishRun with a long verdict service": func() error {
			return s.FinishRun(ctx, &canaryv1.Run{Id: "r", State: canaryv1.RunState_RUN_STATE_COMPLETED, Verdict: &canaryv1.Verdict{Service: long}})
		},
		"Snapshot folding more than stored": func() error { return s.Snapshot(ctx, "r", 1, []byte("s1")) },
		"Snapshot with negative n":          func() error { return s.Snapshot(ctx, "r", -1, []byte("s1")) },
	}
	for name, call := range calls {
		err := call()
		if err == nil {
			t.Errorf("%s succeeded, want an error", name)
			continue
		}
		for _, sentinel := range []error{store.ErrNotFound, store.ErrFinished, store.ErrConflict, store.ErrUnavailable} {
			if errors.Is(err, sentinel) {
				t.Errorf("%s = %v, want a plain error", name, err)
			}
		}
	}
	// Nothing was stored.
	var got []string
	err := s.ReadBatches(ctx, "r", func(snap bool, d []byte) error { got = append(got, string(d)); return nil })
	if err != nil || strings.Join(got, ",") != "s0" {
		t.Errorf("ReadBatches = %q, %v; want [s0]", got, err)
	}
	runs, _, err := s.ListRuns(ctx, store.RunFilter{}, store.Page{})
	if err != nil || len(runs) != 1 || runs[0].GetState() != canaryv1.RunState_RUN_STATE_RUNNING {
		t.Errorf("ListRuns = %v, %v; want the one running run", runs, err)
	}
	if runs, _, err := s.ListRuns(ctx, store.RunFilter{Service: "other"}, store.Page{}); err != nil || len(runs) != 0 {
		t.Errorf("ListRuns(service other) = %s, %v; want none", runIDs(runs), err)
	}
}
