package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// newRunCmd returns `canaryctl run`.
func newRunCmd(g *globals) *cobra.Command {
	return newGroupCmd("run", "Manage runs: create, get, list, complete, abort",
		newRunCreateCmd(g), newRunGetCmd(g), newRunListCmd(g),
		newFinishCmd(g, "complete", "End a run and print its final verdict (exit code = verdict)", runComplete),
		newFinishCmd(g, "abort", "Abort a run and print its final verdict (exit code = verdict)", runAbort))
}

// labelsFlag collects repeated --*-label k=v flags.
type labelsFlag map[string]string

func (l labelsFlag) String() string {
	if len(l) == 0 {
		return ""
	}
	return labels(l)
}

// Type names the flag's values in the help.
func (l labelsFlag) Type() string { return "key=value" }

func (l labelsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value (got %q)", s)
	}
	if _, dup := l[k]; dup {
		return fmt.Errorf("label %q given twice", k)
	}
	l[k] = v
	return nil
}

// newRequestID returns a random id in the form of a UUID (version 4), the
// default idempotency key of run create.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// newRunCreateCmd returns `canaryctl run create`.
func newRunCreateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create --service S --stage ST (--config NAME[@V] | --config-file FILE) [flags]",
		Short: "Start a run and print its id",
		Long: `Start a run: the canary and baseline cohorts of one deployment of a service to a stage, judged
with a stored config (pinned at its version) or an inline one. Prints the run id alone, so that
RUN=$(canaryctl run create ...) works; -o json or yaml prints the Run.`,
		Example: `  RUN=$(canaryctl run create --service checkout --stage prod/us-east-1 --config checkout-api --bake 30m \
      --baseline-label version=v1 --canary-label version=v2)
  canaryctl run create --service checkout --stage onebox --config-file canary.yaml --request-id deploy-42
  # a run that ends by itself: at once on a critical ROLLBACK, after the bake on ROLLBACK or PROMOTE,
  # and after 1h as a ROLLBACK if it still holds; canaryctl watch RUN exits with the final verdict's code
  canaryctl run create --service checkout --stage prod --config checkout-api --bake 30m \
      --finish-on-decision --max-duration 1h --fail-closed --request-id deploy-42/prod`,
		Args: rangeArgs(0, 0, ""),
	}
	o := addCreateFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o.shareSet = cmd.Flags().Changed("canary-share")
		return runCreate(cmd.Context(), g, o)
	}
	return cmd
}

// addCreateFlags registers the flags of a new run (run create, gate) on
// fs.
func addCreateFlags(fs *pflag.FlagSet) *createOpts {
	o := &createOpts{base: labelsFlag{}, canary: labelsFlag{}}
	fs.StringVar(&o.service, "service", "", "service under deployment (required)")
	fs.StringVar(&o.stage, "stage", "", "deployment stage, e.g. onebox/us-east-1 (required)")
	fs.StringVar(&o.cfgRef, "config", "", "stored config: NAME or NAME@VERSION (latest by default, pinned by the run)")
	fs.StringVar(&o.cfgFile, "config-file", "", "inline config (YAML file; - for standard input) instead of --config")
	fs.DurationVar(&o.bake, "bake", 0, "bake time: the judge promotes nothing before it ends")
	fs.Float64Var(&o.share, "canary-share", 0, "canary's expected share of the traffic of both cohorts, in (0, 1) (optional): the sample-ratio check tests it")
	fs.StringVar(&o.start, "start", "", "RFC 3339 time the run's data begin, for a run that replays recorded samples (default: now); the warm-up counts from it")
	fs.Var(o.base, "baseline-label", "label of the baseline cohort, key=value (repeatable)")
	fs.Var(o.canary, "canary-label", "label of the canary cohort, key=value (repeatable)")
	fs.StringVar(&o.reqID, "request-id", "", "idempotency key: a retry with the same key returns the same run, e.g. the deployer's own id of the deployment (default: random)")
	fs.BoolVar(&o.onDecision, "finish-on-decision", false, "the run finishes by itself on a critical ROLLBACK, and after the bake on any ROLLBACK or PROMOTE")
	fs.DurationVar(&o.maxDuration, "max-duration", 0, "the run finishes by itself this long after its creation, even on a HOLD (0: never)")
	fs.BoolVar(&o.failClosed, "fail-closed", false, "a HOLD at --max-duration becomes a ROLLBACK")
	return o
}

// createOpts are the flags of run create.
type createOpts struct {
	service, stage, cfgRef, cfgFile string
	bake                            time.Duration
	share                           float64
	shareSet                        bool
	start                           string
	base, canary                    labelsFlag
	reqID                           string
	onDecision, failClosed          bool
	maxDuration                     time.Duration
}

func runCreate(ctx context.Context, g *globals, o *createOpts) error {
	e, cf := g.e, g.cf
	if err := cf.check(); err != nil {
		return err
	}
	ctx, c, done, err := cf.connect(ctx, defaultTimeout)
	if err != nil {
		return err
	}
	defer done()
	resp, err := createRun(ctx, e, c, o)
	if err != nil {
		return err
	}
	if structured(cf.out) {
		return printMessage(e.stdout, cf.out, resp)
	}
	// The id alone, so that RUN=$(canaryctl run create ...) works.
	fmt.Fprintln(e.stdout, resp.GetRun().GetId())
	return nil
}

// createRun validates the flags of a new run and creates it, or finds the
// run created before with the same request id.
func createRun(ctx context.Context, e *env, c *client, o *createOpts) (*canaryv1.CreateRunResponse, error) {
	switch {
	case o.service == "" || o.stage == "":
		return nil, usagef("--service and --stage are required")
	case (o.cfgRef == "") == (o.cfgFile == ""):
		return nil, usagef("give one of --config and --config-file")
	case o.bake < 0:
		return nil, usagef("--bake must be >= 0 (got %v)", o.bake)
	case o.maxDuration < 0:
		return nil, usagef("--max-duration must be >= 0 (got %v)", o.maxDuration)
	case o.failClosed && o.maxDuration == 0:
		return nil, usagef("--fail-closed needs --max-duration")
	}
	req := &canaryv1.CreateRunRequest{
		RequestId:      o.reqID,
		Service:        o.service,
		Stage:          o.stage,
		BaselineLabels: o.base,
		CanaryLabels:   o.canary,
		BakeTime:       durationpb.New(o.bake),
	}
	if req.RequestId == "" {
		req.RequestId = newRequestID()
	}
	if o.shareSet {
		req.CanaryTrafficShare = &o.share
	}
	if o.onDecision || o.maxDuration > 0 {
		req.AutoFinish = &canaryv1.AutoFinish{OnDecision: o.onDecision}
		if o.maxDuration > 0 {
			req.AutoFinish.MaxDuration = durationpb.New(o.maxDuration)
		}
		if o.failClosed {
			req.AutoFinish.TimeoutDecision = canaryv1.Decision_DECISION_ROLLBACK
		}
	}
	if o.start != "" {
		t, err := time.Parse(time.RFC3339Nano, o.start)
		if err != nil {
			return nil, usagef("--start must be an RFC 3339 time such as 2026-11-22T10:00:00Z (got %q)", o.start)
		}
		req.StartTime = timestamppb.New(t)
	}
	if o.cfgRef != "" {
		name, version, err := parseConfigRef(o.cfgRef)
		if err != nil {
			return nil, err
		}
		req.Config = &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: name, Version: version}}
	} else {
		in, closeIn, err := openInput(e, o.cfgFile)
		if err != nil {
			return nil, err
		}
		src, err := io.ReadAll(in)
		closeIn()
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		req.Config = &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: string(src)}
	}
	return call(ctx, func(ctx context.Context) (*canaryv1.CreateRunResponse, error) {
		return c.CreateRun(ctx, req)
	})
}

// newRunGetCmd returns `canaryctl run get`.
func newRunGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get RUN",
		Short: "Show a run with its counters and latest verdict",
		Example: `  canaryctl run get "$RUN"
  canaryctl run get "$RUN" -o yaml`,
		Args: exactArgs(1, "run id"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			return runGet(cmd.Context(), g, pos)
		},
	}
}

func runGet(ctx context.Context, g *globals, pos []string) error {
	e, cf := g.e, g.cf
	resp, err := unary(ctx, cf, func(ctx context.Context, c *client) (*canaryv1.GetRunResponse, error) {
		return c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: pos[0]})
	})
	if err != nil {
		return err
	}
	if structured(cf.out) {
		return printMessage(e.stdout, cf.out, resp)
	}
	return printRun(e.stdout, resp.GetRun())
}

// newRunListCmd returns `canaryctl run list`.
func newRunListCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List runs, newest first",
		Example: `  canaryctl run list --service checkout --state running
  canaryctl run list --limit 200 -o json`,
		Args: rangeArgs(0, 0, ""),
	}
	fs := cmd.Flags()
	service := fs.String("service", "", "only runs of this service")
	stage := fs.String("stage", "", "only runs of this stage")
	stateFlag := fs.String("state", "", "only runs in this state: running, completed or aborted")
	lim := addPageFlags(fs, 50)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runList(cmd.Context(), g, *service, *stage, *stateFlag, lim)
	}
	return cmd
}

func runList(ctx context.Context, g *globals, service, stage, stateFlag string, lim *pageFlags) error {
	e, cf := g.e, g.cf
	if err := lim.check(); err != nil {
		return err
	}
	state, err := parseState(stateFlag)
	if err != nil {
		return usagef("--state %w", err)
	}
	req := &canaryv1.ListRunsRequest{Service: service, Stage: stage, State: state}
	runs, next, err := paged(ctx, cf, lim, func(ctx context.Context, c *client, size int32, token string) ([]*canaryv1.Run, string, error) {
		req.PageSize, req.PageToken = size, token
		resp, err := c.ListRuns(ctx, req)
		return resp.GetRuns(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if structured(cf.out) {
		return printMessage(e.stdout, cf.out, &canaryv1.ListRunsResponse{Runs: runs, NextPageToken: next})
	}
	if err := printRuns(e.stdout, runs, cf.out == outWide); err != nil {
		return err
	}
	printNextPage(e.stdout, next)
	return nil
}

func runComplete(ctx context.Context, g *globals, id, reason string) error {
	return finishRun(ctx, g, id, reason, func(ctx context.Context, c *client, id, reason string) (runMessage, error) {
		return c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id, Reason: reason})
	})
}

func runAbort(ctx context.Context, g *globals, id, reason string) error {
	return finishRun(ctx, g, id, reason, func(ctx context.Context, c *client, id, reason string) (runMessage, error) {
		return c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: id, Reason: reason})
	})
}

// runMessage is a response that carries a run: CompleteRunResponse,
// AbortRunResponse.
type runMessage interface {
	proto.Message
	GetRun() *canaryv1.Run
}

// newFinishCmd returns `canaryctl run complete` or `canaryctl run abort`.
func newFinishCmd(g *globals, verb, short string, finish func(context.Context, *globals, string, string) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:     verb + " RUN [--reason R]",
		Short:   short,
		Example: fmt.Sprintf(`  canaryctl run %s "$RUN" --reason "deploy finished"; echo "exit $?"   # 0 PROMOTE, 10 HOLD, 20 ROLLBACK`, verb),
		Args:    exactArgs(1, "run id"),
	}
	reason := cmd.Flags().String("reason", "", "why the run ends, for the record")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		return finish(cmd.Context(), g, pos[0], *reason)
	}
	return cmd
}

// finishRun completes or aborts a run, prints its final verdict and exits
// with the verdict's code.
func finishRun(ctx context.Context, g *globals, id, reason string, finish func(context.Context, *client, string, string) (runMessage, error)) error {
	e, cf := g.e, g.cf
	pos := []string{id}
	resp, err := unary(ctx, cf, func(ctx context.Context, c *client) (runMessage, error) {
		return finish(ctx, c, pos[0], reason)
	})
	if err != nil {
		return err
	}
	run := resp.GetRun()
	v := run.GetVerdict()
	if v == nil {
		return fmt.Errorf("run %s: the service returned no final verdict", run.GetId())
	}
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
