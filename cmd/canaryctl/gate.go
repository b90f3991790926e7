package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Exit codes of gate: a job's success or failure.
const (
	gatePass = 0
	gateFail = 1
)

// gateOpts are the flags of gate.
type gateOpts struct {
	wait     time.Duration
	onHold   string
	complete bool
	create   *createOpts
}

// newGateCmd returns `canaryctl gate`: a pass/fail answer for a job
// runner that knows only success and failure (an Argo Rollouts `job`
// metric, a CI step), where HOLD must become one of them.
func newGateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gate (RUN | --service S --stage ST --config NAME --request-id ID) [--wait D] [--on-hold fail|pass] [--complete]",
		Short: "Wait for a run's verdict and exit 0 (pass) or 1 (fail), for job runners",
		Long: `Wait for a run's final verdict and answer as a job: exit 0 when it is PROMOTE, 1 when it is
ROLLBACK. HOLD, which a job cannot express, becomes what --on-hold says: fail (the default, fail
closed) or pass. --wait bounds the wait: when it ends before the run does, --complete completes the
run and takes its final verdict; without it the run's current verdict decides (a HOLD then follows
--on-hold). Errors (canaryd unavailable, an unknown run) also exit 1, with the reason on stderr;
bad usage exits 2.

Instead of a RUN, the flags of "run create" with a --request-id create the run, or find the run
created with that id before: a job that is retried, or started again for the same deployment,
gates the same run. No shell is needed, so the image's canaryctl can be a Kubernetes Job's
command as it is (see docs/pipelines.md).`,
		Example: `  canaryctl gate "$RUN" --wait 30m --complete
  canaryctl gate --service checkout --stage prod --config checkout-api --bake 20m \
      --request-id "argo/shop/checkout/7c9f6" --canary-label rollouts-pod-template-hash=7c9f6 \
      --baseline-label rollouts-pod-template-hash=5d4b8 --wait 25m --complete --on-hold fail`,
	}
	o := &gateOpts{create: addCreateFlags(cmd.Flags())}
	fs := cmd.Flags()
	fs.DurationVar(&o.wait, "wait", 0, "wait at most this long for the run to end (0: until it ends)")
	fs.StringVar(&o.onHold, "on-hold", "fail", "what a HOLD answers: fail (exit 1) or pass (exit 0)")
	fs.BoolVar(&o.complete, "complete", false, "when --wait ends before the run, complete the run and take its final verdict")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		o.create.shareSet = cmd.Flags().Changed("canary-share")
		switch {
		case o.onHold != "fail" && o.onHold != "pass":
			return usagef("--on-hold must be fail or pass (got %q)", o.onHold)
		case o.wait < 0:
			return usagef("--wait must be >= 0 (got %v)", o.wait)
		case len(args) > 1:
			return usagef("unexpected arguments: %s", args[1:])
		case len(args) == 1 && o.create.service != "":
			return usagef("give a RUN or the flags of a new run (--service ...), not both")
		case len(args) == 0 && o.create.service == "":
			return usagef("missing run id (or --service, --stage, --config and --request-id to create the run)")
		case len(args) == 0 && o.create.reqID == "":
			return usagef("--request-id is required to create the run: a retried job must find the same run")
		}
		runID := ""
		if len(args) == 1 {
			runID = args[0]
		}
		return runGate(cmd.Context(), g, o, runID)
	}
	return cmd
}

func runGate(ctx context.Context, g *globals, o *gateOpts, runID string) error {
	e, cf := g.e, g.cf
	if err := cf.check(); err != nil {
		return err
	}
	ctx, c, done, err := cf.connect(ctx, 0)
	if err != nil {
		return err
	}
	defer done()
	if runID == "" {
		resp, err := createRun(ctx, e, c, o.create)
		if err != nil {
			return gateError(e, err)
		}
		runID = resp.GetRun().GetId()
		fmt.Fprintf(e.stderr, "canaryctl gate: run %s\n", runID)
	}

	show := func(v *canaryv1.Verdict) error {
		if structured(cf.out) {
			return printWatched(e.stdout, cf.out, v)
		}
		_, err := fmt.Fprintln(e.stdout, verdictLine(v))
		return err
	}
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if o.wait > 0 {
		wctx, cancel = context.WithTimeout(ctx, o.wait)
	}
	last, err := followVerdicts(wctx, e, c, "gate", runID, show)
	// The wait ended: the watch's own deadline (gRPC may report it a
	// moment before wctx says so), not the command's.
	var se *statusError
	waited := err != nil && o.wait > 0 && ctx.Err() == nil &&
		(wctx.Err() != nil || errors.As(err, &se) && se.code == codes.DeadlineExceeded)
	cancel()
	switch {
	case waited && o.complete:
		resp, err := call(ctx, func(ctx context.Context) (*canaryv1.CompleteRunResponse, error) {
			return c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: runID, Reason: fmt.Sprintf("canaryctl gate: waited %v", o.wait)})
		})
		if err != nil {
			return gateError(e, err)
		}
		last = resp.GetRun().GetVerdict()
		fmt.Fprintf(e.stderr, "canaryctl gate: waited %v; completed the run\n", o.wait)
		if err := show(last); err != nil {
			return err
		}
	case waited:
		resp, err := call(ctx, func(ctx context.Context) (*canaryv1.JudgeResponse, error) {
			return c.Judge(ctx, &canaryv1.JudgeRequest{RunId: runID})
		})
		if err != nil {
			return gateError(e, err)
		}
		last = resp.GetVerdict()
		fmt.Fprintf(e.stderr, "canaryctl gate: waited %v; the run goes on, its current verdict decides\n", o.wait)
	case err != nil:
		return gateError(e, err)
	}
	d := apiconv.DecisionFromProto(last.GetDecision())
	pass := d == analysis.Promote || (d == analysis.Hold && o.onHold == "pass")
	answer, code := "fail", gateFail
	if pass {
		answer, code = "pass", gatePass
	}
	fmt.Fprintf(e.stderr, "canaryctl gate: %s → %s (exit %d)\n", d, answer, code)
	if code != 0 {
		return exitCodeError{code}
	}
	return nil
}

// gateError reports err and fails the gate with exit 1, whatever the
// error: a job runner knows only success and failure.
func gateError(e *env, err error) error {
	fmt.Fprintf(e.stderr, "canaryctl gate: %v\n", err)
	fmt.Fprintf(e.stderr, "canaryctl gate: error → fail (exit %d)\n", gateFail)
	return exitCodeError{gateFail}
}

// printWatched writes a verdict as watch -o json|yaml does: one
// WatchVerdictResponse a line in JSON, a YAML document each.
func printWatched(w io.Writer, format string, v *canaryv1.Verdict) error {
	if format == outJSON {
		b, err := messageJSON(&canaryv1.WatchVerdictResponse{Verdict: v}, true)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	if _, err := io.WriteString(w, "---\n"); err != nil {
		return err
	}
	return printMessage(w, outYAML, &canaryv1.WatchVerdictResponse{Verdict: v})
}

// followVerdicts calls show with each new verdict of a run until its
// final verdict, which it returns; it reconnects while the service is
// unavailable, saying so on stderr for the command cmd. After a
// reconnection the service sends the current verdict again: it is skipped
// if it is the one already shown. On an error it returns the latest
// verdict shown (nil if none) with the error.
func followVerdicts(ctx context.Context, e *env, c *client, cmd, runID string, show func(*canaryv1.Verdict) error) (*canaryv1.Verdict, error) {
	var last *canaryv1.Verdict
	for failures := 0; ; {
		err := watchOnce(ctx, c, runID, func(v *canaryv1.Verdict) error {
			failures = 0
			if last != nil && !v.GetFinal() && v.GetSequence() == last.GetSequence() && v.GetDecision() == last.GetDecision() {
				return nil
			}
			last = v
			return show(v)
		})
		if err == nil {
			if last == nil || !last.GetFinal() {
				return last, errors.New("the service ended the watch without a final verdict")
			}
			return last, nil
		}
		if !retryable(err) || failures+1 >= watchAttempts || ctx.Err() != nil {
			return last, rpcError(err)
		}
		fmt.Fprintf(e.stderr, "canaryctl %s: %v; reconnecting\n", cmd, rpcError(err))
		if err := sleep(ctx, backoff(failures)); err != nil {
			return last, rpcError(err)
		}
		failures++
	}
}
