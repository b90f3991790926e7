package server

import (
	"fmt"
	"testing"
)

// BenchmarkIngestStreamAuth is BenchmarkIngestStream with a tokens file:
// the stream is authenticated once, and its run's service looked up once
// (consecutive batches of one run are not looked up again).
//
//	go test -run '^$' -bench 'BenchmarkIngestStream' -benchtime 400x ./server/
func BenchmarkIngestStreamAuth(b *testing.B) {
	policy := authPolicy(b, "  - name: bench\n    sha256: "+sha("tok-bench")+"\n    roles: [ingest]\n    services: [\"bench\"]\n")
	for _, size := range []int{1_000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			benchIngestStream(b, size, func(o *Options) { o.Auth = policy }, "tok-bench")
		})
	}
}
