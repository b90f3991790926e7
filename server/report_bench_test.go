package server

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// BenchmarkReportFinished measures GetRunReport of a finished run whose
// log holds n batches (each 2 × 40 latency values, an error count and
// order values per cohort, as makeBatch makes them), on the embedded
// store: what a report page of a finished run costs the server.
func BenchmarkReportFinished(b *testing.B) {
	for _, n := range []int{100, 2000} {
		b.Run(fmt.Sprintf("batches=%d", n), func(b *testing.B) {
			e := newEnvOn(b, openTestStore(b, "embedded"), nil)
			ctx := ctxT(b)
			run := e.createRun(ctx, "bench", testConfig("checkout"), time.Hour)
			rng := rand.New(rand.NewPCG(1, 2))
			for _, id := range seqIDs("b", n) {
				e.clock.Advance(time.Second)
				e.ingest(ctx, makeBatch(rng, run.GetId(), id, scenario{Latency: 1, Errors: 1, N: 40}))
			}
			if _, err := e.c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: run.GetId(), Reason: "bench"}); err != nil {
				b.Fatal(err)
			}
			e.svc.bg.Wait()
			req := &canaryv1.GetRunReportRequest{RunId: run.GetId()}
			b.ReportAllocs()
			for b.Loop() {
				r, err := e.svc.GetRunReport(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if r.GetReport().GetMetrics()[0].GetHistogram() == nil {
					b.Fatal("no data in the report")
				}
			}
		})
	}
}
