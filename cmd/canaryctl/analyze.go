package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/collectors/jsonl"
	"github.com/canaryd/canaryd/collectors/prometheus"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// newAnalyzeCmd returns `canaryctl analyze`, which judges a finished data set offline with the fixed-sample
// tests (the whole file is one look, so the bake is complete), or with
// --sequential the anytime-valid tests a live run is judged with. The data
// set is a samples file, or with --prometheus a past window read from
// Prometheus with the config's queries.
func newAnalyzeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "analyze --config FILE (--samples FILE | --prometheus URL --start T --end T --baseline-labels k=v --canary-labels k=v)",
		Short: "Judge a finished data set offline (exit code = verdict)",
		Long: `Judge a finished data set offline, without canaryd: a samples file (JSON Lines), or a past window
read from Prometheus with the config's queries. The whole data set is one look with the fixed-sample
tests (--sequential: the anytime-valid tests of live runs). The exit code is the verdict's:
0 PROMOTE, 10 HOLD, 20 ROLLBACK.`,
		Example: `  canaryctl analyze --config examples/canary.yaml --samples examples/rollback.jsonl
  canaryctl analyze --config canary.yaml --prometheus http://prometheus:9090 \
      --start 2026-11-22T10:00:00Z --end 2026-11-22T10:30:00Z \
      --baseline-labels version=v1 --canary-labels version=v2 -o json`,
		Args: rangeArgs(0, 0, ""),
	}
	fs := cmd.Flags()
	o := &analyzeOpts{}
	fs.StringVar(&o.cfgPath, "config", "", "canary config (YAML)")
	fs.StringVar(&o.samplesPath, "samples", "", "samples (JSON Lines); - for standard input")
	fs.BoolVar(&o.live, "bake-incomplete", false, "judge as a live run whose bake time has not ended (non-critical regressions hold)")
	fs.BoolVar(&o.seq, "sequential", false, "use the anytime-valid tests of live runs instead of the fixed-sample tests")
	fs.DurationVar(&o.maxGap, "max-gap", time.Hour, "samples timed more than this apart from the rest, and fewer than 1% of them, are excluded as skewed clocks")
	o.pf.register(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runAnalyze(cmd.Context(), g, o)
	}
	return cmd
}

// analyzeOpts are the flags of analyze.
type analyzeOpts struct {
	cfgPath, samplesPath string
	live, seq            bool
	maxGap               time.Duration
	pf                   promFlags
}

func runAnalyze(ctx context.Context, g *globals, o *analyzeOpts) error {
	e := g.e
	if err := checkOutput(g.cf.out); err != nil {
		return err
	}
	if o.cfgPath == "" || (o.samplesPath == "") == (o.pf.url == "") {
		return usagef("--config and one of --samples or --prometheus are required")
	}
	src, err := os.ReadFile(o.cfgPath)
	if err != nil {
		return usageError{fmt.Errorf("read config: %w", err)}
	}
	pcfg, rest, err := prometheus.ParseConfig(src)
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", o.cfgPath, err)}
	}
	cfg, err := analysis.ParseConfig(rest)
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", o.cfgPath, err)}
	}
	judge := func(data *analysis.Data) error {
		v := analysis.Judge(data, analysis.Options{BakeComplete: !o.live, Sequential: o.seq})
		var err error
		if structured(g.cf.out) {
			// The shape of `canaryctl judge -o json`.
			err = printMessage(e.stdout, g.cf.out, &canaryv1.JudgeResponse{Verdict: apiconv.VerdictToProto(&v)})
		} else {
			err = printVerdict(e.stdout, &v)
		}
		if err != nil {
			return err
		}
		return exitCodeError{v.Decision.ExitCode()}
	}
	if o.pf.url != "" {
		data, err := o.pf.load(ctx, e, cfg, pcfg)
		if err != nil {
			return err
		}
		return judge(data)
	}
	var in io.Reader = e.stdin
	if o.samplesPath != "-" {
		f, err := os.Open(o.samplesPath)
		if err != nil {
			return usageError{fmt.Errorf("read samples: %w", err)}
		}
		defer f.Close()
		in = f
	}
	data, skewed, err := loadSamples(cfg, in, o.maxGap)
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", o.samplesPath, err)}
	}
	if len(skewed.records) > 0 {
		fmt.Fprintf(e.stderr, "canaryctl analyze: excluded %d samples timed outside %s – %s, more than %v from the rest (a skewed clock?): %s\n",
			len(skewed.records), skewed.lo.Format(time.RFC3339), skewed.hi.Format(time.RFC3339), o.maxGap, skewed.examples())
	}
	return judge(data)
}

// loadSamples reads every record, validates it against the config, and
// accumulates it. Records timed far from all the others — in a group of
// fewer than 1% of the timed records, separated from the rest by more than
// maxGap, like a sample dated 1970 or 9999 by a skewed clock — are excluded
// and returned in skewed. Each cohort's warm-up counts from its earliest
// kept sample, so the records are read whole before any is added.
func loadSamples(cfg *analysis.Config, in io.Reader, maxGap time.Duration) (*analysis.Data, skewedSamples, error) {
	data := analysis.NewData(cfg)
	var recs []analysis.Record
	err := jsonl.Read(in, func(r analysis.Record) error {
		if err := data.Check(&r); err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, skewedSamples{}, err
	}
	if len(recs) == 0 {
		return nil, skewedSamples{}, errors.New("no samples")
	}
	lo, hi := timeRange(recs, maxGap)
	var skewed skewedSamples
	var start [2]time.Time
	kept := recs[:0]
	for i, r := range recs {
		if t := r.Time; !t.IsZero() {
			if t.Before(lo) || t.After(hi) {
				skewed.records = append(skewed.records, i+1)
				skewed.times = append(skewed.times, t)
				continue
			}
			if start[r.Cohort].IsZero() || t.Before(start[r.Cohort]) {
				start[r.Cohort] = t
			}
		}
		kept = append(kept, r)
	}
	skewed.lo, skewed.hi = lo, hi
	data.SetStart(analysis.Baseline, start[analysis.Baseline])
	data.SetStart(analysis.Canary, start[analysis.Canary])
	for i := range kept {
		if err := data.Add(&kept[i]); err != nil {
			return nil, skewedSamples{}, err
		}
	}
	return data, skewed, nil
}

// skewedSamples are the records loadSamples excluded (1-based record
// numbers, and their times), and the range of the times it kept.
type skewedSamples struct {
	records []int
	times   []time.Time
	lo, hi  time.Time
}

// examples names the first few excluded records.
func (s skewedSamples) examples() string {
	var parts []string
	for i, n := range s.records {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(s.records)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("record %d (%s)", n, s.times[i].Format(time.RFC3339)))
	}
	return strings.Join(parts, ", ")
}

// timeRange returns the range of the timed records' times once the groups
// of fewer than 1% of them, separated from the others by more than
// maxGap, are left out: the groups of times with no gap above maxGap,
// kept from the largest outwards while they hold 1% or more.
func timeRange(recs []analysis.Record, maxGap time.Duration) (lo, hi time.Time) {
	var ts []time.Time
	for _, r := range recs {
		if !r.Time.IsZero() {
			ts = append(ts, r.Time)
		}
	}
	if len(ts) == 0 {
		return time.Time{}, time.Time{}
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	// Groups [from, to) of consecutive times.
	type group struct{ from, to int }
	var groups []group
	from := 0
	for i := 1; i <= len(ts); i++ {
		if i == len(ts) || ts[i].Sub(ts[i-1]) > maxGap {
			groups = append(groups, group{from, i})
			from = i
		}
	}
	minSize := max(1, len(ts)/100)
	first, last := -1, -1
	for k, g := range groups {
		if g.to-g.from >= minSize {
			if first < 0 {
				first = k
			}
			last = k
		}
	}
	if first < 0 { // every group is small: keep everything
		return ts[0], ts[len(ts)-1]
	}
	return ts[groups[first].from], ts[groups[last].to-1]
}
