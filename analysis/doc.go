// Package analysis is canaryd's judge: the statistics that compare a canary
// cohort with its baseline, the minimum-sample gate, and the verdict
// (PROMOTE, HOLD or ROLLBACK) with its per-metric evidence.
//
// The package is pure: no I/O, no gRPC, no storage. A sample travels
//
//	Record -> Data.Add (warm-up filter, per-cohort accumulators) -> Judge -> Verdict
//
// and every decision is made in judge.go.
package analysis
