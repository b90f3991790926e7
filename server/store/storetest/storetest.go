// Package storetest is the conformance suite of store.Store and
// store.Tailer: every backend runs it from its own tests,
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... a new, empty store ... },
//			storetest.Reopen(func(t *testing.T, s store.Store) store.Store { ... }))
//	}
//
// The suite uses only the store.Store and store.Tailer interfaces. Each subtest opens its own
// store with open, which must return a new, empty store and arrange for it
// to be closed (t.Cleanup); subtests run in parallel unless Serial is given.
//
// Where the contract in package store leaves a detail open, the suite pins
// it down, and backends agree on it:
//   - ReadBatches always calls fn(true, snapshot) first, with nil (or empty)
//     data when the run has no snapshot;
//   - ReadBatches, AppendBatch and UpdateRun on an unknown run return
//     store.ErrNotFound, as do GetConfig of an unknown name or version;
//   - ListConfigs of an unknown name returns an empty page, not an error;
//   - equal times sort by run id descending in ListVerdicts and ListRuns
//     (the reverse of (time, id) order), and ListRuns orders by
//     Run.CreateTime;
//   - a page token of one listing used with another listing, or a token
//     the store did not issue, is store.ErrBadPageToken;
//   - a finished run's batches can still be read.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/canaryd/canaryd/server/store"
)

// Option configures Run.
type Option func(*config)

type config struct {
	reopen func(t *testing.T, s store.Store) store.Store
	serial bool

	retentionOpen func(t *testing.T, o RetentionOptions) store.Store
	maintain      func(ctx context.Context, s store.Store) error
}

// Reopen enables the persistence tests: reopen must close s and return a
// store opened again on the same data (same file, same Redis keys).
func Reopen(reopen func(t *testing.T, s store.Store) store.Store) Option {
	return func(c *config) { c.reopen = reopen }
}

// Serial runs the subtests one at a time, for backends whose stores opened
// by open share state.
func Serial() Option {
	return func(c *config) { c.serial = true }
}

// Run runs the conformance suite against the stores open returns.
func Run(t *testing.T, open func(t *testing.T) store.Store, opts ...Option) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	s := &suite{open: open, config: c}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Healthy", s.testHealthy},
		{"Configs/Versioning", s.testConfigVersioning},
		{"Configs/Get", s.testGetConfig},
		{"Configs/List", s.testListConfigs},
		{"Runs/CreateIdempotent", s.testCreateRun},
		{"Runs/Get", s.testGetRun},
		{"Runs/List", s.testListRuns},
		{"Runs/ListDefaultPageSize", s.testListRunsDefaultPage},
		{"Runs/Update", s.testUpdateRun},
		{"Batches/AppendDedupe", s.testAppendDedupe},
		{"Batches/AppendErrors", s.testAppendErrors},
		{"Batches/ReadAndSnapshot", s.testReadAndSnapshot},
		{"Batches/ConcurrentAppend", s.testConcurrentAppend},
		{"Tailer/ReadFrom", s.testReadFrom},
		{"Tailer/FinishThrough", s.testFinishThrough},
		{"Tailer/CloseRun", s.testCloseRun},
		{"Tailer/WaitBatches", s.testWaitBatches},
		{"Finish/Finish", s.testFinishRun},
		{"Finish/AfterFinish", s.testAfterFinish},
		{"Verdicts/Filters", s.testListVerdicts},
		{"Verdicts/PageSizes", s.testListVerdictsPageSizes},
		{"Verdicts/PageTokenOfOtherFilter", s.testPageTokenOfOtherFilter},
		{"BadPageTokens", s.testBadPageTokens},
		{"InvalidInput", s.testInvalidInput},
		{"Persistence", s.testPersistence},
		{"Trajectory/PutGet", s.testTrajectory},
		{"Trajectory/Persistence", s.testTrajectoryPersistence},
		{"Retention/RawData", s.testRawRetention},
		{"Retention/Verdicts", s.testVerdictRetention},
		{"Docs", s.testDocs},
		{"Lease", s.testLease},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !c.serial {
				t.Parallel()
			}
			tt.fn(t)
		})
	}
}

type suite struct {
	open func(t *testing.T) store.Store
	config
}

// timeout bounds every store call of a subtest.
const timeout = 2 * time.Minute

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) testHealthy(t *testing.T) {
	st := s.open(t)
	if err := st.Healthy(testContext(t)); err != nil {
		t.Fatalf("Healthy() = %v, want nil", err)
	}
}
