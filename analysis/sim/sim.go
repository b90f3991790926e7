// Package sim simulates canary runs and measures the decision quality of
// judging policies on them: how often a canary identical to its baseline
// (A/A) is rolled back when judged continuously, how often a regression is
// caught, and how soon.
//
// A Scenario generates the data of one run as a stream of Batches, one per
// simulated minute. A Policy is fed the batches one by one and answers
// PROMOTE, HOLD or ROLLBACK at each look; the first answer that is not HOLD
// ends the run for that policy. Every policy sees the same simulated data
// (one stream per run, shared by all policies). Run repeats this over many
// seeded runs, in parallel, and summarises the outcomes with 95% confidence
// intervals in a Report.
//
// The package is pure: no I/O, no global randomness, no clock. A Report is
// a deterministic function of Options (the worker count changes only the
// speed).
package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

// Batch is the data of one cohort pair over one simulated minute. It is
// shared read-only by every policy of a run.
type Batch struct {
	// Minute is the index of the batch, from 0.
	Minute int
	// Time is the simulated start of the minute.
	Time time.Time
	// Last says this is the last batch of the run: the bake ends with it.
	Last bool
	// Requests is the number of requests each cohort received during the
	// minute (indexed by analysis.Cohort).
	Requests [2]float64
	// Samples hold the data, one per metric, cohort and instance.
	Samples []Sample
}

// Sample is what one instance of one cohort reported for one metric during
// one batch.
type Sample struct {
	// Metric is the index of the metric in the scenario's config.
	Metric   int
	Cohort   analysis.Cohort
	Instance string
	// Values are the observations of a distribution or mean metric.
	Values []float64
	// Histogram, instead of Values, holds the observations of a
	// distribution metric known only through buckets
	// (Scenario.LatencyBuckets); policies must not modify it.
	Histogram *analysis.Histogram
	// Count and Total are the events and exposure of a rate metric.
	Count, Total float64
}

// Policy decides a canary run from the batches it is fed. A Policy holds the
// state of one run; it is not shared between runs or goroutines.
type Policy interface {
	// Observe adds one batch. Batches come in order, each once.
	Observe(b *Batch)
	// Decide answers at a look, after the batch of that look was observed;
	// b is that batch (b.Last is true when the bake ends with it). PROMOTE
	// and ROLLBACK end the run for this policy.
	Decide(b *Batch) analysis.Decision
}

// PolicySpec names a policy and makes a fresh one for each run.
type PolicySpec struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// EndOnly makes the policy look once, at the last batch, instead of
	// after every batch.
	EndOnly bool `json:"end_only"`
	// New returns the policy for one run of scenario sc judged with cfg.
	// A policy may use what a real run declares (sc.ExpectedShare), never
	// how its data are generated.
	New func(cfg *analysis.Config, sc *Scenario) Policy `json:"-"`
}

// Options configure Run.
type Options struct {
	// Runs is the number of simulated runs of each scenario and effect.
	Runs int
	// Seed makes the simulation reproducible.
	Seed uint64
	// Scenarios and Policies to simulate; every policy runs on the same
	// data of every scenario.
	Scenarios []Scenario
	Policies  []PolicySpec
	// Effects are the regressions simulated, as multiples of the target
	// metric's tolerance; 0 is the A/A run. Default DefaultEffects and
	// every scenario's FalsePromoteEffect, in increasing order.
	Effects []float64
	// Workers is the number of goroutines; 0 means runtime.GOMAXPROCS.
	// It does not change the Report.
	Workers int
}

// DefaultEffects are A/A and regressions of 1× (the tolerance boundary),
// 2× (the tolerance plus the default detectable effect: a PROMOTE there is
// false) and 4× the tolerance. Run adds each scenario's
// FalsePromoteEffect when it differs.
var DefaultEffects = []float64{0, 1, 2, 4}

// Errors returned by Options.validate.
var ErrOptions = errors.New("invalid simulation options")

func (o *Options) validate() error {
	switch {
	case o.Runs < 1:
		return fmt.Errorf("%w: runs must be >= 1 (got %d)", ErrOptions, o.Runs)
	case len(o.Scenarios) == 0:
		return fmt.Errorf("%w: no scenario", ErrOptions)
	case len(o.Policies) == 0:
		return fmt.Errorf("%w: no policy", ErrOptions)
	case o.Workers < 0:
		return fmt.Errorf("%w: workers must be >= 0", ErrOptions)
	}
	for _, e := range o.Effects {
		if !(e >= 0) || math.IsInf(e, 0) {
			return fmt.Errorf("%w: effects must be finite and >= 0 (got %v)", ErrOptions, e)
		}
	}
	for _, p := range o.Policies {
		if p.New == nil {
			return fmt.Errorf("%w: policy %q has no constructor", ErrOptions, p.Name)
		}
	}
	return nil
}

// outcome is what one policy did in one run.
type outcome struct {
	decision analysis.Decision // final: PROMOTE, ROLLBACK, or HOLD at the end
	minutes  float64           // simulated minutes to the decision
	canary   float64           // canary requests seen by then
}

// Run simulates every scenario × effect × run and feeds the same data to
// every policy. It returns early with ctx's error when ctx is done.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	workers := opts.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	nS := len(opts.Scenarios)
	cfgs := make([]*analysis.Config, nS)
	for i := range opts.Scenarios {
		cfg, err := opts.Scenarios[i].Config()
		if err != nil {
			return nil, fmt.Errorf("scenario %s: %w", opts.Scenarios[i].Name, err)
		}
		cfgs[i] = cfg
	}
	if len(opts.Effects) == 0 {
		opts.Effects = slices.Clone(DefaultEffects)
		for i := range opts.Scenarios {
			if e := opts.Scenarios[i].FalsePromoteEffect(cfgs[i]); e > 0 && !slices.Contains(opts.Effects, e) {
				opts.Effects = append(opts.Effects, e)
			}
		}
		slices.Sort(opts.Effects)
	}
	nE, nP, nR := len(opts.Effects), len(opts.Policies), opts.Runs
	// outcomes[((s*nE+e)*nR+r)*nP+p]
	outcomes := make([]outcome, nS*nE*nR*nP)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				s, e, r := j/(nE*nR), j/nR%nE, j%nR
				sc := &opts.Scenarios[s]
				rng := rand.New(rand.NewPCG(opts.Seed, streamOf(sc.Name, opts.Effects[e], r)))
				simulate(sc, cfgs[s], opts.Effects[e], rng, opts.Policies, outcomes[j*nP:(j+1)*nP])
			}
		}()
	}
	var err error
feed:
	for j := range nS * nE * nR {
		select {
		case jobs <- j:
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	return summarize(&opts, outcomes), nil
}

// streamOf derives the random stream of one run from the scenario's name,
// the effect and the run's index, so that a scenario's data do not depend
// on which other scenarios, effects or policies are simulated with it.
func streamOf(scenario string, effect float64, run int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(scenario))
	x := h.Sum64() ^ math.Float64bits(effect)*0x9e3779b97f4a7c15 ^ uint64(run)*0xbf58476d1ce4e5b9
	// splitmix64 finaliser
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// simulate runs one scenario run through every policy, batch by batch,
// until every policy has decided or the bake ends.
func simulate(sc *Scenario, cfg *analysis.Config, effect float64, rng *rand.Rand, specs []PolicySpec, out []outcome) {
	g := sc.newRun(cfg, effect, rng)
	pols := make([]Policy, len(specs))
	for i := range specs {
		pols[i] = specs[i].New(cfg, sc)
		out[i] = outcome{decision: analysis.Hold, minutes: float64(sc.Minutes)}
	}
	active := len(pols)
	var canary float64
	for m := 0; m < sc.Minutes && active > 0; m++ {
		b := g.next(m)
		canary += b.Requests[analysis.Canary]
		for i, p := range pols {
			if p == nil {
				continue
			}
			p.Observe(b)
			if specs[i].EndOnly && !b.Last {
				continue
			}
			d := p.Decide(b)
			if d != analysis.Hold {
				out[i] = outcome{decision: d, minutes: float64(m + 1), canary: canary}
				pols[i] = nil
				active--
			}
		}
	}
	for i := range pols {
		if pols[i] != nil {
			out[i].canary = canary
		}
	}
}
