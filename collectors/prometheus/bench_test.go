//go:build unix

package prometheus

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/canaryd/canaryd/collectors/prometheus/promconfig"
	"github.com/canaryd/canaryd/internal/testprom"
)

// cpuTime returns the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCollect measures what reading one interval of one metric
// (4 queries: 2 per cohort) costs the collector, against a real Prometheus
// serving a backfilled TSDB of pods per cohort: the wall time per query
// (Prometheus' included) and the collector's own CPU time per query
// (cpu-ns/query: this process only; Prometheus runs in its own), from which
// the cost of a canaryd pulling many runs can be extrapolated. "parallel"
// reads from 16 goroutines through one client of at most 4 connections, as
// a scheduler pulling many runs would.
func BenchmarkCollect(b *testing.B) {
	for _, pods := range []int{3, 30, 300} {
		end := time.Now().Add(-time.Hour).Truncate(time.Minute)
		start := end.Add(-10 * time.Minute)
		var bp []testprom.BackfillPod
		for i := 0; i < 2*pods; i++ {
			version := []string{"v1", "v2"}[i%2]
			bp = append(bp, testprom.BackfillPod{
				Labels:   map[string]string{"job": "shop", "instance": fmt.Sprintf("pod-%d:8080", i), "app": "shop", "version": version},
				Workload: testprom.Workload{RPS: 2, ErrorRate: 0.05, Seed: uint64(i + 1)},
			})
		}
		srv := testprom.Start(b, testprom.Options{Data: testprom.Backfill(b, start, end, 15*time.Second, bp)})
		_, pc := shop(b, 30*time.Second, 0)
		client, err := NewClient(&promconfig.Prometheus{URL: srv.URL()}, ClientOptions{MaxConnsPerHost: 4})
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range pc.Metrics {
			c, err := NewCollector(client, Target{RunID: "r", Interval: 30 * time.Second, Metrics: []Metric{m},
				Baseline: map[string]string{"app": "shop", "version": "v1"}, Canary: map[string]string{"app": "shop", "version": "v2"}})
			if err != nil {
				b.Fatal(err)
			}
			first := c.FirstEnd(start)
			read := func(i int) {
				r := c.Collect(b.Context(), first.Add(time.Duration(i%15)*30*time.Second))[0]
				if r.Err != nil || len(r.Records) != 2*pods {
					b.Fatalf("%v, %d records", r.Err, len(r.Records))
				}
			}
			queries := 2 * len(c.metrics[0].roles)
			b.Run(fmt.Sprintf("pods=%d/metric=%s", pods, m.Name), func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := cpuTime(b)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					read(i)
				}
				b.StopTimer()
				n := float64(b.N * queries)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/query")
				b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/n, "cpu-ns/query")
			})
			b.Run(fmt.Sprintf("pods=%d/metric=%s/parallel", pods, m.Name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(8) // 16 goroutines on 2 cores
				cpu0 := cpuTime(b)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for i := 0; pb.Next(); i++ {
						read(i)
					}
				})
				b.StopTimer()
				n := float64(b.N * queries)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/query")
				b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/n, "cpu-ns/query")
			})
		}
		client.Close()
	}
}
