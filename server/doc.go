// Package server is canaryd's gRPC service: named canary configs, canary
// runs, the ingest of their samples, live and final verdicts, and the
// history of final verdicts, on a Store (store.Store with store.Tailer:
// the embedded store, or Redis shared by replicas; one protocol for both).
//
// How a batch flows, from the wire to the verdict:
//
//  1. Ingest or IngestStream (ingest.go) receives it; prepare validates it
//     whole against its run's config (validate.go: a rejected batch stores
//     nothing) and folds it into a delta, an analysis.Data, encoded
//     (blob.go). The run is in memory (a liveRun, live.go), loaded from the
//     store on first use, with a lease that keeps it there.
//  2. appendBatch appends the delta to the run's log in the store, durably
//     and once per batch id (a duplicate is appended nowhere).
//  3. settle folds the run's log into the run up to the new delta
//     (fold.go: catchUp reads the deltas after the run's cursor, in log
//     order, whichever process appended them), which wakes the run's
//     watchers; then the batch is acknowledged. A run's state is thus the
//     fold of its acknowledged batches in log order, the same in every
//     process.
//  4. Judge, WatchVerdict and GetRun bring the run up to date with the
//     store first (follow.go: fresh); a verdict is judged on a copy of the
//     fold, without the run's lock, in one of the judge slots, and cached
//     per data version (judge.go). WatchVerdict streams follow a run's log
//     (one follower per watched run) for the batches of other processes.
//  5. CompleteRun and AbortRun (runs.go) close the run to new batches in
//     the store, fold its log to the end, judge the final verdict, and
//     store it with the run finished, provided nothing was appended after
//     the position it folds.
//
// A run in memory moves through one lifecycle (lifecycle.go: loading,
// live, finishing, finished, evicted) under one lock (liveRun.mu); runs
// idle for Options.IdleTimeout leave memory (live.go: evictIdle) and are
// reloaded from their snapshot and the deltas after it, and every
// Options.SnapshotEvery deltas the fold is written back as a snapshot.
// Errors become gRPC statuses in one place (errors.go). Runs whose config
// has a source are read by package puller, whose batches take this same
// path; its progress comes as pull records in the run's log (pull.go),
// with which the judge holds the metrics whose intervals are missing.
package server
