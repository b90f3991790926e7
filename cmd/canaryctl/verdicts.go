package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// watchAttempts bounds the consecutive failed attempts of watch to
// (re)open its stream while the service is unavailable.
const watchAttempts = 10

// clearScreen moves the cursor home and clears a terminal.
const clearScreen = "\x1b[H\x1b[2J"

// newJudgeCmd returns `canaryctl judge`.
func newJudgeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "judge RUN",
		Short: "Print a run's verdict now (exit code = verdict)",
		Long: `Judge a run on the data it has now and print the verdict. The exit code is the verdict's:
0 PROMOTE, 10 HOLD, 20 ROLLBACK.`,
		Example: `  canaryctl judge "$RUN"; echo "exit $?"
  canaryctl judge "$RUN" -o json | jq .decision`,
	}
	runFlag := deprecatedFlag(cmd.Flags(), "run")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		warnDeprecated(g.e, cmd, map[string]string{"run": "give the run id as the first argument"})
		args = withRunFlag(*runFlag, args)
		if err := exactArgs(1, "run id")(cmd, args); err != nil {
			return err
		}
		return runJudge(cmd.Context(), g, args[0])
	}
	return cmd
}

func runJudge(ctx context.Context, g *globals, runID string) error {
	e, cf := g.e, g.cf
	resp, err := unary(ctx, cf, func(ctx context.Context, c *client) (*canaryv1.JudgeResponse, error) {
		return c.Judge(ctx, &canaryv1.JudgeRequest{RunId: runID})
	})
	if err != nil {
		return err
	}
	v := resp.GetVerdict()
	if structured(cf.out) {
		err = printMessage(e.stdout, cf.out, resp)
	} else {
		err = printServiceVerdict(e.stdout, v)
	}
	if err != nil {
		return err
	}
	return exitCodeError{apiconv.DecisionFromProto(v.GetDecision()).ExitCode()}
}

// newWatchCmd returns `canaryctl watch`.
func newWatchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch RUN",
		Short: "Show a run's verdict live until it ends (exit code = final verdict)",
		Long: `Show a run's verdict each time it changes, until the run ends; the exit code is the final
verdict's: 0 PROMOTE, 10 HOLD, 20 ROLLBACK. On a terminal the verdict table is redrawn; otherwise
one line per verdict (one JSON object per line with -o json). It reconnects when canaryd restarts.
No deadline unless --timeout is given.`,
		Example: `  canaryctl watch "$RUN"; echo "exit $?"
  canaryctl watch "$RUN" -o json --timeout 2h > verdicts.jsonl`,
	}
	runFlag := deprecatedFlag(cmd.Flags(), "run")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		warnDeprecated(g.e, cmd, map[string]string{"run": "give the run id as the first argument"})
		args = withRunFlag(*runFlag, args)
		if err := exactArgs(1, "run id")(cmd, args); err != nil {
			return err
		}
		return runWatch(cmd.Context(), g, args[0])
	}
	return cmd
}

// runWatch prints the verdict of a run each time it changes, until the
// run finishes; it exits with the final verdict's code. On a terminal it
// redraws the verdict table; otherwise it writes one line per verdict (one
// JSON object per line with -o json). When the stream breaks because the
// service is unavailable (e.g. it restarts), it reconnects.
func runWatch(ctx context.Context, g *globals, runID string) error {
	e, cf := g.e, g.cf
	ctx, c, done, err := cf.connect(ctx, 0)
	if err != nil {
		return err
	}
	defer done()

	if err := cf.check(); err != nil {
		return err
	}
	term := !structured(cf.out) && isTerminal(e.stdout)
	show := func(v *canaryv1.Verdict) error {
		switch {
		case cf.out == outJSON:
			// JSON Lines: one WatchVerdictResponse a line.
			b, err := messageJSON(&canaryv1.WatchVerdictResponse{Verdict: v}, true)
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(b)
			return err
		case cf.out == outYAML:
			// A stream of YAML documents.
			if _, err := io.WriteString(e.stdout, "---\n"); err != nil {
				return err
			}
			return printMessage(e.stdout, outYAML, &canaryv1.WatchVerdictResponse{Verdict: v})
		case term:
			fmt.Fprint(e.stdout, clearScreen)
			if err := printServiceVerdict(e.stdout, v); err != nil {
				return err
			}
			if !v.GetFinal() {
				fmt.Fprintln(e.stdout, "\nwatching for changes; Ctrl-C to stop")
			}
			return nil
		}
		_, err := fmt.Fprintln(e.stdout, verdictLine(v))
		return err
	}

	last, err := followVerdicts(ctx, e, c, "watch", runID, show)
	if err != nil {
		return err
	}
	return exitCodeError{apiconv.DecisionFromProto(last.GetDecision()).ExitCode()}
}

// watchOnce opens one WatchVerdict stream and calls fn with each verdict;
// it returns nil when the stream ends normally.
func watchOnce(ctx context.Context, c *client, runID string, fn func(*canaryv1.Verdict) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.WatchVerdict(ctx, &canaryv1.WatchVerdictRequest{RunId: runID})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(resp.GetVerdict()); err != nil {
			return err
		}
	}
}

// newHistoryCmd returns `canaryctl history`.
func newHistoryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history [flags]",
		Short: "List final verdicts, newest first",
		Example: `  canaryctl history --service checkout --since 24h
  canaryctl history --decision ROLLBACK --since 2026-11-01T00:00:00Z -o json`,
		Args: rangeArgs(0, 0, ""),
	}
	fs := cmd.Flags()
	service := fs.String("service", "", "only verdicts of this service")
	stage := fs.String("stage", "", "only verdicts of this stage")
	decision := fs.String("decision", "", "only verdicts with this decision: PROMOTE, HOLD or ROLLBACK")
	since := fs.String("since", "", "only verdicts at or after this time: a duration before now (24h) or RFC 3339")
	until := fs.String("until", "", "only verdicts before this time: a duration before now (1h) or RFC 3339")
	lim := addPageFlags(fs, 50)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runHistory(cmd.Context(), g, &historyOpts{*service, *stage, *decision, *since, *until, lim})
	}
	return cmd
}

// historyOpts are the flags of history.
type historyOpts struct {
	service, stage, decision, since, until string
	lim                                    *pageFlags
}

func runHistory(ctx context.Context, g *globals, o *historyOpts) error {
	e, cf := g.e, g.cf
	lim := o.lim
	if err := lim.check(); err != nil {
		return err
	}
	now := time.Now()
	req := &canaryv1.ListVerdictsRequest{Service: o.service, Stage: o.stage}
	var err error
	if req.Decision, err = parseDecision(o.decision); err != nil {
		return usagef("--decision %w", err)
	}
	if req.Since, err = parseTimeFlag(o.since, now); err != nil {
		return usagef("--since %w", err)
	}
	if req.Until, err = parseTimeFlag(o.until, now); err != nil {
		return usagef("--until %w", err)
	}
	vs, next, err := paged(ctx, cf, lim, func(ctx context.Context, c *client, size int32, token string) ([]*canaryv1.Verdict, string, error) {
		req.PageSize, req.PageToken = size, token
		resp, err := c.ListVerdicts(ctx, req)
		return resp.GetVerdicts(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if structured(cf.out) {
		return printMessage(e.stdout, cf.out, &canaryv1.ListVerdictsResponse{Verdicts: vs, NextPageToken: next})
	}
	if err := printHistory(e.stdout, vs, cf.out == outWide); err != nil {
		return err
	}
	printNextPage(e.stdout, next)
	return nil
}

// parseTimeFlag parses a time bound: empty (none), a duration before now
// ("24h", "90m") or an RFC 3339 time.
func parseTimeFlag(s string, now time.Time) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return nil, fmt.Errorf("must be a duration >= 0 or an RFC 3339 time (got %q)", s)
		}
		return timestamppb.New(now.Add(-d)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, fmt.Errorf("must be a duration such as 24h or an RFC 3339 time such as 2026-11-22T10:00:00Z (got %q)", s)
	}
	return timestamppb.New(t), nil
}
