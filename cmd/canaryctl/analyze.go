package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/collectors/jsonl"
)

// runAnalyze judges a finished data set offline with the fixed-sample
// tests (the whole file is one look, so the bake is complete), or with
// --sequential the anytime-valid tests a live run is judged with.
func runAnalyze(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "analyze")
	cfgPath := fs.String("config", "", "canary config (YAML)")
	samplesPath := fs.String("samples", "", "samples (JSON Lines); - for standard input")
	out := outputFlag(fs)
	live := fs.Bool("bake-incomplete", false, "judge as a live run whose bake time has not ended (non-critical regressions hold)")
	seq := fs.Bool("sequential", false, "use the anytime-valid tests of live runs instead of the fixed-sample tests")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	if *cfgPath == "" || *samplesPath == "" {
		return usagef("--config and --samples are required")
	}
	src, err := os.ReadFile(*cfgPath)
	if err != nil {
		return usageError{fmt.Errorf("read config: %w", err)}
	}
	cfg, err := analysis.ParseConfig(src)
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", *cfgPath, err)}
	}
	var in io.Reader = e.stdin
	if *samplesPath != "-" {
		f, err := os.Open(*samplesPath)
		if err != nil {
			return usageError{fmt.Errorf("read samples: %w", err)}
		}
		defer f.Close()
		in = f
	}
	data, err := loadSamples(cfg, in)
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", *samplesPath, err)}
	}
	v := analysis.Judge(data, analysis.Options{BakeComplete: !*live, Sequential: *seq})
	if err := printVerdict(e.stdout, *out, &v); err != nil {
		return err
	}
	return exitCodeError{v.Decision.ExitCode()}
}

// loadSamples reads every record, validates it against the config, and
// accumulates it. Each cohort's warm-up counts from its earliest sample, so
// the records are read whole before any is added.
func loadSamples(cfg *analysis.Config, in io.Reader) (*analysis.Data, error) {
	data := analysis.NewData(cfg)
	var recs []analysis.Record
	var start [2]time.Time
	err := jsonl.Read(in, func(r analysis.Record) error {
		if err := data.Check(&r); err != nil {
			return err
		}
		if t := r.Time; !t.IsZero() && (start[r.Cohort].IsZero() || t.Before(start[r.Cohort])) {
			start[r.Cohort] = t
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, errors.New("no samples")
	}
	data.SetStart(analysis.Baseline, start[analysis.Baseline])
	data.SetStart(analysis.Canary, start[analysis.Canary])
	for i := range recs {
		if err := data.Add(&recs[i]); err != nil {
			return nil, err
		}
	}
	return data, nil
}
