// Command gen writes the example sample files of examples/: a one-box
// canary taking 10% of the traffic of a checkout service, for 30 minutes,
// with a warm-up spike in its first minutes.
//
//	go run ./examples/gen -out examples
//
// promote.jsonl: the canary behaves as the baseline.
// rollback.jsonl: the canary is 30% slower and fails 3 times as often.
// hold.jsonl: only the first 8 minutes, too little to decide.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

type scenario struct {
	name      string
	minutes   int
	latency   float64 // canary latency factor
	errFactor float64 // canary error-rate factor
}

func main() {
	out := flag.String("out", "examples", "output directory")
	flag.Parse()
	for _, s := range []scenario{
		{"promote", 30, 1, 1},
		{"rollback", 30, 1.3, 3},
		{"hold", 8, 1, 1},
	} {
		if err := write(filepath.Join(*out, s.name+".jsonl"), s); err != nil {
			log.Fatal(err)
		}
	}
}

func write(path string, s scenario) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	rng := rand.New(rand.NewPCG(42, uint64(len(s.name))))
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	const share = 0.1 // the canary's share of traffic
	for sec := 0; sec < s.minutes*60; sec += 10 {
		t := start.Add(time.Duration(sec) * time.Second).Format(time.RFC3339)
		for _, cohort := range []string{"baseline", "canary"} {
			c := cohort == "canary"
			frac, lat, errRate := 1-share, 1.0, 0.005
			if c {
				frac, lat, errRate = share, s.latency, 0.005*s.errFactor
				if sec < 180 { // warm-up: cold caches
					lat *= 3
				}
			}
			// Latency: 40 (baseline) or ~5 (canary) observations per 10 s.
			for range poisson(rng, 45*frac) {
				v := 80 * lat * math.Exp(0.4*rng.NormFloat64())
				fmt.Fprintf(w, `{"metric":"latency_ms","cohort":%q,"value":%.1f,"time":%q}`+"\n", cohort, v, t)
			}
			// Errors per request: 50,000 requests a minute in all.
			req := poisson(rng, 50000.0/6*frac)
			fmt.Fprintf(w, `{"metric":"errors","cohort":%q,"count":%d,"total":%d,"time":%q}`+"\n",
				cohort, binomial(rng, req, errRate), req, t)
			// Conversions per session: 15,000 sessions a minute, 5% convert.
			sess := poisson(rng, 15000.0/6*frac)
			conv := binomial(rng, sess, 0.05)
			fmt.Fprintf(w, `{"metric":"conversions","cohort":%q,"count":%d,"total":%d,"time":%q}`+"\n", cohort, conv, sess, t)
			// Order values of about a third of the conversions.
			for range poisson(rng, float64(conv)/3) {
				v := 50 * math.Exp(0.5*rng.NormFloat64()-0.125)
				fmt.Fprintf(w, `{"metric":"order_value","cohort":%q,"value":%.2f,"time":%q}`+"\n", cohort, v, t)
			}
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// poisson draws a Poisson variate (normal approximation above 50).
func poisson(rng *rand.Rand, mean float64) int {
	if mean > 50 {
		return max(0, int(math.Round(mean+math.Sqrt(mean)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// binomial draws a Binomial(n, p) variate for small p (Poisson approximation).
func binomial(rng *rand.Rand, n int, p float64) int {
	return min(n, poisson(rng, float64(n)*p))
}
