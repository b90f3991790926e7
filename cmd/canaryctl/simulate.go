package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/analysis/sim"
)

// runSimulate measures the decision quality of the judging policies on
// simulated canary runs (analysis/sim) and prints it with the command line
// that reproduces it. The figures depend only on the flags other than
// --workers.
func runSimulate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "simulate")
	runs := fs.Int("runs", 200, "simulated runs per scenario and effect")
	seed := fs.Uint64("seed", 1, "random seed")
	scenario := fs.String("scenario", "all", "scenario name, comma-separated names, or all")
	policy := fs.String("policy", "all", "policy name, comma-separated names, or all")
	effects := fs.String("effects", "0,1,2,4", "regressions as multiples of the target metric's tolerance (0 = A/A)")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "parallel workers (does not change the figures)")
	traffic := fs.Float64("traffic", 1, "multiply every scenario's requests per minute by this factor")
	minutes := fs.Int("minutes", 0, "bake length in simulated minutes (0: each scenario's own, 60 for the built-in ones)")
	kconf := fs.Float64("kayenta-confidence", sim.KayentaConfidence, "confidence of the kayenta policy's Mann-Whitney test at each look")
	window := fs.Duration("window", -1, "window of the judged configs' window tests; 0 turns them off (default: each scenario's, 15m for the built-in ones)")
	out := outputFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	opts := sim.Options{Runs: *runs, Seed: *seed, Workers: *workers}
	var err error
	if opts.Scenarios, err = pick("scenario", *scenario, sim.Scenarios(), func(s sim.Scenario) string { return s.Name }); err != nil {
		return err
	}
	if opts.Policies, err = pick("policy", *policy, sim.Policies(), func(p sim.PolicySpec) string { return p.Name }); err != nil {
		return err
	}
	for _, f := range strings.Split(*effects, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 {
			return usagef("--effects: %q is not a number >= 0", f)
		}
		opts.Effects = append(opts.Effects, v)
	}
	if *runs < 1 || *workers < 1 {
		return usagef("--runs and --workers must be >= 1")
	}
	if !(*traffic > 0) || *traffic > 1e6 {
		return usagef("--traffic must be in (0, 1e6]")
	}
	if *minutes < 0 || *minutes > 100_000 {
		return usagef("--minutes must be in [0, 100000]")
	}
	if !(*kconf > 0 && *kconf < 1) {
		return usagef("--kayenta-confidence must be in (0, 1)")
	}
	for i := range opts.Policies {
		if p := &opts.Policies[i]; p.Name == sim.PolicyKayenta && *kconf != sim.KayentaConfidence {
			conf := *kconf
			p.New = func(cfg *analysis.Config) sim.Policy { return sim.NewKayenta(cfg, conf) }
			p.Description = fmt.Sprintf("Kayenta-style as above, at %g confidence", conf)
		}
	}
	for i := range opts.Scenarios {
		s := &opts.Scenarios[i]
		s.RequestsPerMinute[0] *= *traffic
		s.RequestsPerMinute[1] *= *traffic
		if *minutes > 0 {
			s.Minutes = *minutes
		}
		if *window >= 0 {
			s.ConfigWindow = *window
		}
	}
	command := fmt.Sprintf("canaryctl simulate --runs %d --seed %d --scenario %s --policy %s --effects %s",
		*runs, *seed, *scenario, *policy, *effects)
	if *traffic != 1 {
		command += fmt.Sprintf(" --traffic %g", *traffic)
	}
	if *minutes > 0 {
		command += fmt.Sprintf(" --minutes %d", *minutes)
	}
	if *window >= 0 {
		command += fmt.Sprintf(" --window %s", *window)
	}
	if *kconf != sim.KayentaConfidence {
		command += fmt.Sprintf(" --kayenta-confidence %g", *kconf)
	}
	began := time.Now()
	rep, err := sim.Run(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "simulated %d runs × %d policies in %s with %d workers\n",
		*runs*len(opts.Scenarios)*len(opts.Effects), len(opts.Policies), time.Since(began).Round(time.Millisecond), *workers)
	if *out == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Command string `json:"command"`
			*sim.Report
		}{command, rep})
	}
	return printSimulation(e.stdout, command, rep)
}

// pick selects items by comma-separated names, or all of them.
func pick[T any](flag, names string, all []T, name func(T) string) ([]T, error) {
	if names == "all" {
		return all, nil
	}
	var out []T
	for _, n := range strings.Split(names, ",") {
		found := false
		for _, it := range all {
			if name(it) == strings.TrimSpace(n) {
				out, found = append(out, it), true
			}
		}
		if !found {
			known := make([]string, len(all))
			for i, it := range all {
				known[i] = name(it)
			}
			return nil, usagef("--%s: unknown %q (known: %s, all)", flag, n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// printSimulation writes the report as a table: one row per scenario,
// policy and effect.
func printSimulation(w io.Writer, command string, rep *sim.Report) error {
	fmt.Fprintf(w, "# %s\n", command)
	fmt.Fprintln(w, "# ROLLBACK on A/A (effect 0) is the false-rollback rate, on a regression the detection rate;")
	fmt.Fprintln(w, "# minutes and canary requests are to the correct verdict (median [95% CI], p90 [95% CI]); intervals: Wilson / order statistics.")
	for _, s := range rep.Scenarios {
		fmt.Fprintf(w, "#   %-16s %s; %s; regresses %s (tolerance %g)\n", s.Name, s.Description, s.Traffic, s.Target, s.Tolerance)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPOLICY\tEFFECT\tRUNS\tROLLBACK [95% CI]\tPROMOTE\tNO VERDICT\tMINUTES median [CI]\tp90 [CI]\tCANARY REQS median\tp90")
	for _, c := range rep.Cells {
		eff := "A/A"
		if c.Effect > 0 {
			eff = fmt.Sprintf("%g× (%+.0f%%)", c.Effect, 100*c.Regression)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Scenario, c.Policy, eff, c.Runs,
			rateCI(c.Rollback), pct1(c.Promote.Rate), pct1(c.NoVerdict.Rate),
			quantCI(c.Minutes.N, c.Minutes.Median, c.Minutes.MedianLo, c.Minutes.MedianHi),
			quantCI(c.Minutes.N, c.Minutes.P90, c.Minutes.P90Lo, c.Minutes.P90Hi),
			quant(c.CanaryRequests.N, c.CanaryRequests.Median), quant(c.CanaryRequests.N, c.CanaryRequests.P90))
	}
	return tw.Flush()
}

func pct1(v float64) string { return strconv.FormatFloat(100*v, 'f', 1, 64) + "%" }

func rateCI(r sim.Rate) string {
	return fmt.Sprintf("%s [%s, %s]", pct1(r.Rate), pct1(r.Lower), pct1(r.Upper))
}

func quantCI(n int, v, lo, hi float64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%g [%g, %g]", v, lo, hi)
}

func quant(n int, v float64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
