package auth

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// fixedRuns answers one service for every run: the benchmark measures the
// guard, not the service's run lookup (an in-memory map lookup for a run
// in use, measured with the service in BenchmarkIngestStreamAuth).
type fixedRuns string

func (f fixedRuns) RunService(context.Context, string) (string, error) { return string(f), nil }

// BenchmarkGuardUnary measures what the guard adds to one unary Ingest:
// authenticating the token among n entries (a SHA-256 and n constant-time
// comparisons) and checking the run's service against the token's globs.
//
//	go test -run '^$' -bench BenchmarkGuardUnary ./server/auth/
func BenchmarkGuardUnary(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			var src strings.Builder
			src.WriteString("tokens:\n")
			for i := range n {
				fmt.Fprintf(&src, "  - name: t%d\n    sha256: %s\n    roles: [ingest]\n    services: [\"checkout-*\", \"search\"]\n", i, hashOf(fmt.Sprint("tok-", i)))
			}
			p, err := Parse([]byte(src.String()))
			if err != nil {
				b.Fatal(err)
			}
			g, err := NewGuard(Options{Policy: p, Runs: fixedRuns("checkout-api")})
			if err != nil {
				b.Fatal(err)
			}
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", fmt.Sprintf("Bearer tok-%d", n-1)))
			req := &canaryv1.IngestRequest{Batch: &canaryv1.Batch{RunId: "r1", BatchId: "b1"}}
			info := &grpc.UnaryServerInfo{FullMethod: canaryv1.CanaryService_Ingest_FullMethodName}
			handler := func(context.Context, any) (any, error) { return nil, nil }
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := g.Unary(ctx, req, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
