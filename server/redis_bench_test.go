package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store/redisstore"
)

// BenchmarkRedisReplicasIngest streams batches of latency observations
// (half baseline, half canary, as two columns) into one run through two
// Services on one Redis (two replicas, each with its own redisstore.Store
// and loopback TCP server), one IngestStream per replica at the same time.
// Every batch is acknowledged once Redis stored it and its replica caught
// up with the run's tail. It reports observations/s in total; Redis, both
// replicas and the clients share the machine.
//
//	go test -run '^$' -bench BenchmarkRedisReplicasIngest -benchtime 400x ./server/
func BenchmarkRedisReplicasIngest(b *testing.B) {
	for _, size := range []int{1_000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) { benchRedisReplicas(b, size) })
	}
}

func benchRedisReplicas(b *testing.B, size int) {
	srv := testredis.Start(b)
	prefix := srv.Prefix(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var clients [2]canaryv1.CanaryServiceClient
	for i := range clients {
		st, err := redisstore.Open(ctx, srv.URL(), redisstore.Options{Prefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		clients[i] = serveTCP(b, st, nil)
	}
	resp, err := clients[0].CreateRun(ctx, &canaryv1.CreateRunRequest{
		RequestId: "bench", Service: "bench", Stage: "bench",
		Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("bench")},
	})
	if err != nil {
		b.Fatal(err)
	}
	runID := resp.GetRun().GetId()

	batch := benchBatches(runID, size)

	b.ReportAllocs()
	b.SetBytes(int64(8 * size))
	b.ResetTimer()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		stored  uint64
		firstEr error
	)
	for r, c := range clients {
		wg.Go(func() {
			n, err := streamBatches(ctx, c, r, b.N, batch)
			mu.Lock()
			defer mu.Unlock()
			stored += n
			if err != nil && firstEr == nil {
				firstEr = err
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if firstEr != nil {
		b.Fatal(firstEr)
	}
	if stored != uint64(b.N*size) {
		b.Fatalf("stored %d observations, want %d", stored, b.N*size)
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "obs/s")
}

// streamBatches sends the batches i < n with i%2 == r on one stream and
// returns the observations acknowledged.
func streamBatches(ctx context.Context, c canaryv1.CanaryServiceClient, r, n int, batch func(int) *canaryv1.IngestStreamRequest) (uint64, error) {
	stream, err := c.IngestStream(ctx)
	if err != nil {
		return 0, err
	}
	sendErr := make(chan error, 1)
	go func() {
		for i := r; i < n; i += 2 {
			if err := stream.Send(batch(i)); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	var last *canaryv1.IngestStreamResponse
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		last = resp
	}
	if err := <-sendErr; err != nil {
		return 0, err
	}
	return last.GetSamples(), nil
}
