package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canaryd/canaryd/internal/testcluster"
	"github.com/canaryd/canaryd/internal/testredis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store/redisstore"
)

// BenchmarkRedisCapacity measures ingest through 2 and 4 replicas (each a
// Service with its own redisstore.Store and loopback gRPC server, in this
// process) on one redis-server and on a Redis Cluster of 3 primaries and 3
// replicas (internal/testcluster), each replica streaming batches of 10k
// latency observations into a run of its own (runs spread over the
// primaries by their hash tag). On the cluster it also runs with
// min_replicas=1 (every append waits for its primary's replica). It
// reports observations/s in total, and the CPU seconds the whole machine
// spent per million observations (user+system of every process, from
// /proc/stat), which is what bounds it on a small machine.
//
//	go test -run '^$' -bench BenchmarkRedisCapacity -benchtime 100x ./server/
func BenchmarkRedisCapacity(b *testing.B) {
	single := testredis.StartWith(b, testredis.Options{Private: true})
	cluster := testcluster.StartWith(b, testcluster.Options{NodeTimeout: 15 * time.Second})
	for _, tc := range []struct {
		name string
		url  string
	}{
		{"primaries=1", single.URL()},
		{"primaries=3", cluster.URL()},
		{"primaries=3/min_replicas=1", cluster.URL() + "?min_replicas=1"},
	} {
		for _, replicas := range []int{2, 4} {
			b.Run(fmt.Sprintf("%s/replicas=%d", tc.name, replicas), func(b *testing.B) {
				benchCapacity(b, tc.url, replicas, 10_000)
			})
		}
	}
}

func benchCapacity(b *testing.B, url string, replicas, size int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	clients := make([]canaryv1.CanaryServiceClient, replicas)
	for i := range clients {
		st, err := redisstore.Open(ctx, url, redisstore.Options{Prefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		clients[i] = serveTCP(b, st, nil)
	}
	batches := make([]func(int) *canaryv1.IngestStreamRequest, replicas)
	for i, c := range clients {
		resp, err := c.CreateRun(ctx, &canaryv1.CreateRunRequest{
			RequestId: fmt.Sprintf("bench-%d", i), Service: "bench", Stage: "bench",
			Config: &canaryv1.CreateRunRequest_InlineConfig{InlineConfig: testConfig("bench")},
		})
		if err != nil {
			b.Fatal(err)
		}
		batches[i] = benchBatches(resp.GetRun().GetId(), size)
	}
	b.ReportAllocs()
	cpu0 := machineCPU(b)
	b.ResetTimer()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		stored  uint64
		firstEr error
	)
	for r, c := range clients {
		wg.Go(func() {
			// Every batch i < b.N of the replica's own run (r = 0, step 2
			// sends i = 0, 2, ...: batch(i/2)).
			n, err := streamBatches(ctx, c, 0, 2*b.N, func(i int) *canaryv1.IngestStreamRequest { return batches[r](i / 2) })
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
	cpu := machineCPU(b) - cpu0
	if firstEr != nil {
		b.Fatal(firstEr)
	}
	if want := uint64(replicas * b.N * size); stored != want {
		b.Fatalf("stored %d observations, want %d", stored, want)
	}
	obs := float64(replicas * b.N * size)
	b.ReportMetric(obs/b.Elapsed().Seconds(), "obs/s")
	b.ReportMetric(cpu.Seconds()/(obs/1e6), "cpu-s/Mobs")
}

// machineCPU returns the CPU time (user + system) used so far by this
// process and by its child processes that still run (the redis-server
// processes the harness started), from getrusage and /proc/<pid>/stat:
// the cost of the whole setup, without the other load of the machine.
func machineCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Logf("no /proc: the CPU of redis-server is not counted: %v", err)
		return total
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name in parentheses: state ppid ... utime(14) stime(15).
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self || pid == self {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return total
}
