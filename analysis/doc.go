// Package analysis is canaryd's judge: the statistics that compare a canary
// cohort with its baseline, the minimum-sample gate, and the verdict
// (PROMOTE, HOLD or ROLLBACK) with its per-metric evidence.
//
// The package is pure: no I/O, no gRPC, no storage. A sample travels
//
//	Record -> Data.Add (warm-up filter, per-cohort accumulators) -> Judge -> Verdict
//
// and every decision is made in judge.go. The tests within time strata
// (contrast.go, ratestrat.go, traffic.go) and the design effects of
// instances (instances.go) are the judge's own; the general statistics
// they are built from — moments, Student's t, the exact rate test, Holm,
// the mixture SPRT, the beta-mixture e-value, the root finder — are in the
// subpackage stat, with Mann-Whitney for the simulator's Kayenta policy.
package analysis
