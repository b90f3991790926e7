package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/analysis/sim"
)

// newSimulateCmd returns `canaryctl simulate`, which measures the decision quality of the judging policies on
// simulated canary runs (analysis/sim) and prints it with the command line
// that reproduces it. The figures depend only on the flags other than
// --workers.
func newSimulateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "simulate [flags]",
		Short: "Measure decision quality on simulated runs",
		Long:  simulateLong(),
		Example: `  canaryctl simulate --runs 200 --scenario classic --policy all
  canaryctl simulate --runs 50 --scenario errors,latency --effects 0,2 -o json > sim.json`,
		Args: rangeArgs(0, 0, ""),
	}
	fs := cmd.Flags()
	runs := fs.Int("runs", 200, "simulated runs per scenario and effect")
	seed := fs.Uint64("seed", 1, "random seed")
	scenario := fs.String("scenario", "all", "scenario or group name (classic, messy), comma-separated names, or all")
	policy := fs.String("policy", "all", "policy name, comma-separated names, or all")
	effects := fs.String("effects", "", "regressions as multiples of the target metric's tolerance (0 = A/A); default 0,1,2,4 and each scenario's false-PROMOTE multiple")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "parallel workers (does not change the figures)")
	traffic := fs.Float64("traffic", 1, "multiply every scenario's requests per minute (per cohort, or in all for a scenario with a canary share) by this factor")
	minutes := fs.Int("minutes", 0, "bake length in simulated minutes (0: each scenario's own, 60 for the built-in ones)")
	kconf := fs.Float64("kayenta-confidence", sim.KayentaConfidence, "confidence of the kayenta policy's Mann-Whitney test at each look")
	window := fs.Duration("window", -1, "window of the judged configs' window tests; 0 turns them off (default: each scenario's, 15m for the built-in ones)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runSimulate(cmd.Context(), g, &simulateOpts{
			runs: *runs, seed: *seed, scenario: *scenario, policy: *policy, effects: *effects, workers: *workers,
			traffic: *traffic, minutes: *minutes, kconf: *kconf, window: *window,
		})
	}
	return cmd
}

// simulateOpts are the flags of simulate.
type simulateOpts struct {
	runs                      int
	seed                      uint64
	scenario, policy, effects string
	workers                   int
	traffic                   float64
	minutes                   int
	kconf                     float64
	window                    time.Duration
}

func runSimulate(ctx context.Context, g *globals, o *simulateOpts) error {
	e := g.e
	if err := checkOutput(g.cf.out); err != nil {
		return err
	}
	opts := sim.Options{Runs: o.runs, Seed: o.seed, Workers: o.workers}
	var err error
	if opts.Scenarios, err = pick("scenario", o.scenario, sim.Scenarios(),
		func(s sim.Scenario) string { return s.Name }, func(s sim.Scenario) string { return s.Group }); err != nil {
		return err
	}
	if opts.Policies, err = pick("policy", o.policy, sim.Policies(), func(p sim.PolicySpec) string { return p.Name }, nil); err != nil {
		return err
	}
	if o.effects != "" {
		for _, f := range strings.Split(o.effects, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || !(v >= 0) || math.IsInf(v, 0) {
				return usagef("--effects: %q is not a finite number >= 0", f)
			}
			opts.Effects = append(opts.Effects, v)
		}
	}
	if o.runs < 1 || o.workers < 1 {
		return usagef("--runs and --workers must be >= 1")
	}
	if !(o.traffic > 0) || o.traffic > 1e6 {
		return usagef("--traffic must be in (0, 1e6]")
	}
	if o.minutes < 0 || o.minutes > 100_000 {
		return usagef("--minutes must be in [0, 100000]")
	}
	if !(o.kconf > 0 && o.kconf < 1) {
		return usagef("--kayenta-confidence must be in (0, 1)")
	}
	for i := range opts.Policies {
		if p := &opts.Policies[i]; p.Name == sim.PolicyKayenta && o.kconf != sim.KayentaConfidence {
			conf := o.kconf
			p.New = func(cfg *analysis.Config, _ *sim.Scenario) sim.Policy { return sim.NewKayenta(cfg, conf) }
			p.Description = fmt.Sprintf("Kayenta-style as above, at %g confidence", conf)
		}
	}
	for i := range opts.Scenarios {
		s := &opts.Scenarios[i]
		s.RequestsPerMinute[0] *= o.traffic
		s.RequestsPerMinute[1] *= o.traffic
		s.TotalRequestsPerMinute *= o.traffic
		if o.minutes > 0 {
			s.Minutes = o.minutes
		}
		if o.window >= 0 {
			s.ConfigWindow = o.window
		}
	}
	began := time.Now()
	rep, err := sim.Run(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "simulated %d runs × %d policies in %s with %d workers\n",
		o.runs*len(opts.Scenarios)*len(rep.Effects), len(opts.Policies), time.Since(began).Round(time.Millisecond), o.workers)
	if o.effects == "" {
		es := make([]string, len(rep.Effects))
		for i, v := range rep.Effects {
			es[i] = strconv.FormatFloat(v, 'g', -1, 64)
		}
		o.effects = strings.Join(es, ",")
	}
	command := fmt.Sprintf("canaryctl simulate --runs %d --seed %d --scenario %s --policy %s --effects %s",
		o.runs, o.seed, o.scenario, o.policy, o.effects)
	if o.traffic != 1 {
		command += fmt.Sprintf(" --traffic %g", o.traffic)
	}
	if o.minutes > 0 {
		command += fmt.Sprintf(" --minutes %d", o.minutes)
	}
	if o.window >= 0 {
		command += fmt.Sprintf(" --window %s", o.window)
	}
	if o.kconf != sim.KayentaConfidence {
		command += fmt.Sprintf(" --kayenta-confidence %g", o.kconf)
	}
	if structured(g.cf.out) {
		return printValue(e.stdout, g.cf.out, struct {
			Command string `json:"command"`
			*sim.Report
		}{command, rep})
	}
	return printSimulation(e.stdout, command, rep)
}

// pick selects items by comma-separated names or group names (when group
// is not nil), in the order given, each once; or all of them.
func pick[T any](flag, names string, all []T, name, group func(T) string) ([]T, error) {
	if names == "all" {
		return all, nil
	}
	var out []T
	picked := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, it := range all {
			if name(it) == n || group != nil && group(it) == n {
				if !picked[name(it)] {
					out, picked[name(it)] = append(out, it), true
				}
				found = true
			}
		}
		if !found {
			var known []string
			for _, it := range all {
				known = append(known, name(it))
			}
			if group != nil {
				for _, it := range all {
					if g := group(it); g != "" && !slices.Contains(known, g) {
						known = append(known, g)
					}
				}
			}
			return nil, usagef("--%s: unknown %q (known: %s, all)", flag, n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// simulateLong returns the help of canaryctl simulate: what it measures,
// the built-in scenarios by group and the policies.
func simulateLong() string {
	var w strings.Builder
	fmt.Fprint(&w, `Streams seeded simulated canary runs, one batch per simulated minute, through judging policies and
reports per scenario, policy and effect (a regression of the scenario's target as a multiple k of its
tolerance; 0 is A/A) how often the canary is rolled back (on A/A and at 1×, the tolerance boundary: false
rollbacks; beyond: detection), promoted (at tolerance + detectable effect, 2× by default, and beyond: false
PROMOTE) or left on HOLD, and how soon. A summary table follows: A/A and 1× false rollback, detection and
false PROMOTE at tolerance + detectable effect.

scenarios (--scenario NAME,... or a group name, or all):
`)
	for _, s := range sim.Scenarios() {
		fmt.Fprintf(&w, "  %-22s [%s] %s; regresses %s\n", s.Name, s.Group, s.Description, s.Target)
	}
	fmt.Fprintf(&w, "  (target %s: the regression is the canary's share of the traffic itself, multiplied by max(0, 1 − %g·k) from the\n   scenario's drop minute on: k = 1 halves it, the sample-ratio check's tolerance; k = %g leaves a fifth, and a\n   PROMOTE from there on is false)\n", sim.TargetTraffic, sim.ShareDropUnit, sim.ShareDropFalsePromote)
	fmt.Fprintln(&w, "\npolicies (--policy NAME,... or all):")
	for _, p := range sim.Policies() {
		fmt.Fprintf(&w, "  %-22s %s\n", p.Name, p.Description)
	}
	return strings.TrimRight(w.String(), "\n")
}

// printSimulation writes the report as two tables: one row per scenario,
// policy and effect, then the summary, one row per scenario and policy.
func printSimulation(w io.Writer, command string, rep *sim.Report) error {
	fmt.Fprintf(w, "# %s\n", command)
	fmt.Fprintln(w, "# ROLLBACK on A/A (effect 0) and at 1× (the tolerance boundary) is a false rollback, beyond it the detection rate;")
	fmt.Fprintln(w, "# FALSE PROMOTE is PROMOTE at and beyond tolerance + detectable effect (2× by default; any drop for target traffic);")
	fmt.Fprintln(w, "# minutes and canary requests are to the correct verdict (median [95% CI], p90 [95% CI]); intervals: Wilson / order statistics.")
	width := 0
	for _, s := range rep.Scenarios {
		width = max(width, len(s.Name))
	}
	for _, s := range rep.Scenarios {
		fmt.Fprintf(w, "#   %-*s %s; %s; regresses %s (tolerance %g)\n", width, s.Name, s.Description, s.Traffic, s.Target, s.Tolerance)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPOLICY\tEFFECT\tRUNS\tROLLBACK [95% CI]\tFALSE PROMOTE [95% CI]\tPROMOTE\tNO VERDICT\tMINUTES median [CI]\tp90 [CI]\tCANARY REQS median\tp90")
	for _, c := range rep.Cells {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Scenario, c.Policy, effectLabel(c.Effect, c.Regression), c.Runs,
			rateCI(c.Rollback), optRateCI(c.FalsePromote), pct1(c.Promote.Rate), pct1(c.NoVerdict.Rate),
			quantCI(c.Minutes.N, c.Minutes.Median, c.Minutes.MedianLo, c.Minutes.MedianHi),
			quantCI(c.Minutes.N, c.Minutes.P90, c.Minutes.P90Lo, c.Minutes.P90Hi),
			quant(c.CanaryRequests.N, c.CanaryRequests.Median), quant(c.CanaryRequests.N, c.CanaryRequests.P90))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "# Summary: false rollback on A/A and at the tolerance boundary (1×; - when not simulated or no boundary);")
	fmt.Fprintln(w, "# detection (ROLLBACK), false PROMOTE and minutes to detection at tolerance + detectable effect (DETECT AT).")
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPOLICY\tA/A FALSE ROLLBACK\t1× FALSE ROLLBACK\tDETECT AT\tDETECTION\tFALSE PROMOTE\tMINUTES median [CI]")
	for _, r := range rep.Summary {
		at := "-"
		if r.DetectEffect > 0 {
			at = fmt.Sprintf("%g×", r.DetectEffect)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.Policy,
			optRateCI(r.FalseRollbackAA), optRateCI(r.FalseRollbackBoundary), at, optRateCI(r.Detection), optRateCI(r.FalsePromote),
			quantCI(r.Minutes.N, r.Minutes.Median, r.Minutes.MedianLo, r.Minutes.MedianHi))
	}
	return tw.Flush()
}

// effectLabel names an effect: A/A, or its multiple and relative change.
func effectLabel(effect, regression float64) string {
	if effect == 0 {
		return "A/A"
	}
	return fmt.Sprintf("%g× (%+.0f%%)", effect, 100*regression)
}

func optRateCI(r *sim.Rate) string {
	if r == nil {
		return "-"
	}
	return rateCI(*r)
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
