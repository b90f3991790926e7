package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// benchConfig returns a config of k distribution metrics.
func benchConfig(b *testing.B, k int) *Config {
	var sb strings.Builder
	sb.WriteString("name: bench\nmetrics:\n")
	for i := range k {
		fmt.Fprintf(&sb, "  - {name: m%d, category: performance, type: distribution, tolerance: 0.1}\n", i)
	}
	return testConfig(b, sb.String())
}

func lognormal(rng *rand.Rand, n int, median float64) []float64 {
	vs := make([]float64, n)
	for i := range vs {
		vs[i] = median * math.Exp(0.5*rng.NormFloat64())
	}
	return vs
}

// BenchmarkAddValues measures ingest into a distribution metric's
// accumulator, past the exact phase (the steady state of a run).
func BenchmarkAddValues(b *testing.B) {
	cfg := benchConfig(b, 1)
	d := NewData(cfg)
	vs := lognormal(rand.New(rand.NewPCG(1, 1)), 10000, 80)
	d.AddValues(0, Canary, "", time.Time{}, vs[:ExactCap+1])
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		d.AddValues(0, Canary, "", time.Time{}, vs)
	}
	b.ReportMetric(float64(b.N)*float64(len(vs))/b.Elapsed().Seconds()/1e6, "Mobs/s")
	b.ReportMetric(b.Elapsed().Seconds()*1e9/(float64(b.N)*float64(len(vs))), "ns/obs")
}

// BenchmarkJudge measures one judgement of k distribution metrics with n
// observations per cohort each, with the fixed-sample and the sequential
// tests; "windows" adds 15-minute window tests over the minutes (60, or
// 720: a 12-hour bake, 360 two-minute strata) of samples from 9+1
// instances (a one-box): 4 windows and the design effect. Without windows
// the samples have no time (one stratum).
func BenchmarkJudge(b *testing.B) {
	for _, size := range []struct {
		k, n     int
		seq, win bool
		minutes  int
	}{{1, 1000, false, false, 60}, {20, 4000, false, false, 60}, {20, 10000, false, false, 60}, {20, 1000000, false, false, 60},
		{20, 4000, true, false, 60}, {20, 1000000, true, false, 60}, {20, 1000000, true, true, 60}, {20, 1000000, true, true, 720}} {
		mode := "fixed"
		if size.seq {
			mode = "sequential"
		}
		if size.win {
			mode += fmt.Sprintf("+windows/minutes=%d", size.minutes)
		}
		b.Run(fmt.Sprintf("%s/metrics=%d/n=%d", mode, size.k, size.n), func(b *testing.B) {
			cfg := benchConfig(b, size.k)
			if size.win {
				cfg.Window = 15 * time.Minute
			}
			d := NewData(cfg)
			rng := rand.New(rand.NewPCG(2, 2))
			base, canary := lognormal(rng, size.n, 80), lognormal(rng, size.n, 82)
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i := range size.k {
				if !size.win {
					d.AddValues(i, Baseline, "", time.Time{}, base)
					d.AddValues(i, Canary, "", time.Time{}, canary)
					continue
				}
				for m := range size.minutes {
					at := start.Add(time.Duration(m) * time.Minute)
					lo, hi := m*size.n/size.minutes, (m+1)*size.n/size.minutes
					d.AddValues(i, Baseline, fmt.Sprint("b", m%9), at, base[lo:hi])
					d.AddValues(i, Canary, "c", at, canary[lo:hi])
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				Judge(d, Options{BakeComplete: true, Sequential: size.seq})
			}
		})
	}
}

// BenchmarkRunState judges the run of examples/canary.yaml (4 metrics)
// after 60 minutes, or a 12-hour bake (720 minutes), at 1,000 requests per
// minute and cohort from 10 instances, with and without its 15-minute
// window, and reports the size of the encoded state (what a snapshot
// stores).
func BenchmarkRunState(b *testing.B) {
	src, err := os.ReadFile("../examples/canary.yaml")
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		win     time.Duration
		minutes int
	}{{0, 60}, {15 * time.Minute, 60}, {15 * time.Minute, 720}} {
		win := tc.win
		b.Run(fmt.Sprintf("window=%v/minutes=%d", win, tc.minutes), func(b *testing.B) {
			cfg, err := ParseConfig(src)
			if err != nil {
				b.Fatal(err)
			}
			cfg.Window = win
			d := NewData(cfg)
			rng := rand.New(rand.NewPCG(1, 1))
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for m := range tc.minutes {
				at := t0.Add(time.Duration(m) * time.Minute)
				for c := range 2 {
					for i := range 10 {
						inst := fmt.Sprint("i", i)
						d.AddValues(cfg.Metric("latency_ms"), Cohort(c), inst, at, lognormal(rng, 100, 100))
						d.Add(&Record{Metric: "errors", Cohort: Cohort(c), IsCount: true, Count: float64(rng.IntN(2)), Total: 100, Time: at, Instance: inst})
						d.Add(&Record{Metric: "conversions", Cohort: Cohort(c), IsCount: true, Count: float64(rng.IntN(5)), Total: 50, Time: at, Instance: inst})
						d.AddValues(cfg.Metric("order_value"), Cohort(c), inst, at, lognormal(rng, 10, 50))
					}
				}
			}
			buf, err := d.MarshalBinary()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				Judge(d, Options{Sequential: true})
			}
			b.ReportMetric(float64(len(buf)), "state-bytes")
		})
	}
}
