package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// runCommands are the subcommands of `canaryctl run`.
var runCommands = map[string]command{
	"create":   {"start a run: --service S --stage ST --config NAME[@V] | --config-file FILE [--bake 30m]", runCreate},
	"get":      {"show a run with its counters and latest verdict: ID", runGet},
	"list":     {"list runs, newest first: [--service S] [--stage ST] [--state running|completed|aborted]", runList},
	"complete": {"end a run and print its final verdict (exit code = verdict): ID [--reason R]", runComplete},
	"abort":    {"abort a run and print its final verdict (exit code = verdict): ID [--reason R]", runAbort},
}

// labelsFlag collects repeated --*-label k=v flags.
type labelsFlag map[string]string

func (l labelsFlag) String() string { return labels(l) }

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

func runCreate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "run create")
	cf := addClientFlags(e, fs, defaultTimeout)
	service := fs.String("service", "", "service under deployment (required)")
	stage := fs.String("stage", "", "deployment stage, e.g. onebox/us-east-1 (required)")
	cfgRef := fs.String("config", "", "stored config: NAME or NAME@VERSION (latest by default, pinned by the run)")
	cfgFile := fs.String("config-file", "", "inline config (YAML file; - for standard input) instead of --config")
	bake := fs.Duration("bake", 0, "bake time: the judge promotes nothing before it ends")
	share := fs.Float64("canary-share", 0, "canary's expected share of the traffic of both cohorts, in (0, 1) (optional): the sample-ratio check tests it")
	start := fs.String("start", "", "RFC 3339 time the run's data begin, for a run that replays recorded samples (default: now); the warm-up counts from it")
	base, canary := labelsFlag{}, labelsFlag{}
	fs.Var(base, "baseline-label", "label of the baseline cohort, key=value (repeatable)")
	fs.Var(canary, "canary-label", "label of the canary cohort, key=value (repeatable)")
	reqID := fs.String("request-id", "", "idempotency key: a retry with the same key returns the same run (default: random)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *service == "" || *stage == "":
		return usagef("--service and --stage are required")
	case (*cfgRef == "") == (*cfgFile == ""):
		return usagef("give one of --config and --config-file")
	case *bake < 0:
		return usagef("--bake must be >= 0 (got %v)", *bake)
	}
	req := &canaryv1.CreateRunRequest{
		RequestId:      *reqID,
		Service:        *service,
		Stage:          *stage,
		BaselineLabels: base,
		CanaryLabels:   canary,
		BakeTime:       durationpb.New(*bake),
	}
	if req.RequestId == "" {
		req.RequestId = newRequestID()
	}
	if flagSet(fs, "canary-share") {
		req.CanaryTrafficShare = share
	}
	if *start != "" {
		t, err := time.Parse(time.RFC3339Nano, *start)
		if err != nil {
			return usagef("--start must be an RFC 3339 time such as 2026-11-22T10:00:00Z (got %q)", *start)
		}
		req.StartTime = timestamppb.New(t)
	}
	if *cfgRef != "" {
		name, version, err := parseConfigRef(*cfgRef)
		if err != nil {
			return err
		}
		req.Config = &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: name, Version: version}}
	} else {
		in, closeIn, err := openInput(e, *cfgFile)
		if err != nil {
			return err
		}
		src, err := io.ReadAll(in)
		closeIn()
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		req.Config = &canaryv1.CreateRunRequest_InlineYaml{InlineYaml: string(src)}
	}
	ctx, c, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := call(ctx, func(ctx context.Context) (*canaryv1.CreateRunResponse, error) {
		return c.CreateRun(ctx, req)
	})
	if err != nil {
		return err
	}
	if cf.out == "json" {
		return writeJSON(e.stdout, newRunJSON(resp.GetRun()))
	}
	// The id alone, so that RUN=$(canaryctl run create ...) works.
	fmt.Fprintln(e.stdout, resp.GetRun().GetId())
	return nil
}

func runGet(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "run get")
	cf := addClientFlags(e, fs, defaultTimeout)
	pos, err := parseArgs(fs, args, 1, 1, "run id")
	if err != nil {
		return err
	}
	ctx, c, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := call(ctx, func(ctx context.Context) (*canaryv1.GetRunResponse, error) {
		return c.GetRun(ctx, &canaryv1.GetRunRequest{RunId: pos[0]})
	})
	if err != nil {
		return err
	}
	if cf.out == "json" {
		return writeJSON(e.stdout, newRunJSON(resp.GetRun()))
	}
	return printRun(e.stdout, resp.GetRun())
}

func runList(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "run list")
	cf := addClientFlags(e, fs, defaultTimeout)
	service := fs.String("service", "", "only runs of this service")
	stage := fs.String("stage", "", "only runs of this stage")
	stateFlag := fs.String("state", "", "only runs in this state: running, completed or aborted")
	lim := addPageFlags(fs, 50)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := lim.check(); err != nil {
		return err
	}
	state, err := parseState(*stateFlag)
	if err != nil {
		return usagef("--state %w", err)
	}
	ctx, c, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	req := &canaryv1.ListRunsRequest{Service: *service, Stage: *stage, State: state}
	runs, next, err := paginate(ctx, lim, func(ctx context.Context, size int32, token string) ([]*canaryv1.Run, string, error) {
		req.PageSize, req.PageToken = size, token
		resp, err := c.ListRuns(ctx, req)
		return resp.GetRuns(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if cf.out == "json" {
		out := struct {
			Runs          []*runJSON `json:"runs"`
			NextPageToken string     `json:"next_page_token,omitempty"`
		}{Runs: make([]*runJSON, len(runs)), NextPageToken: next}
		for i, r := range runs {
			out.Runs[i] = newRunJSON(r)
		}
		return writeJSON(e.stdout, out)
	}
	if err := printRuns(e.stdout, runs); err != nil {
		return err
	}
	printNextPage(e.stdout, next)
	return nil
}

func runComplete(ctx context.Context, e *env, args []string) error {
	return finishRun(ctx, e, args, "complete", func(ctx context.Context, c *client, id, reason string) (*canaryv1.Run, error) {
		resp, err := c.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: id, Reason: reason})
		return resp.GetRun(), err
	})
}

func runAbort(ctx context.Context, e *env, args []string) error {
	return finishRun(ctx, e, args, "abort", func(ctx context.Context, c *client, id, reason string) (*canaryv1.Run, error) {
		resp, err := c.AbortRun(ctx, &canaryv1.AbortRunRequest{RunId: id, Reason: reason})
		return resp.GetRun(), err
	})
}

// finishRun completes or aborts a run, prints its final verdict and exits
// with the verdict's code.
func finishRun(ctx context.Context, e *env, args []string, verb string, finish func(context.Context, *client, string, string) (*canaryv1.Run, error)) error {
	fs := newFlags(e, "run "+verb)
	cf := addClientFlags(e, fs, defaultTimeout)
	reason := fs.String("reason", "", "why the run ends, for the record")
	pos, err := parseArgs(fs, args, 1, 1, "run id")
	if err != nil {
		return err
	}
	ctx, c, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	run, err := call(ctx, func(ctx context.Context) (*canaryv1.Run, error) {
		return finish(ctx, c, pos[0], *reason)
	})
	if err != nil {
		return err
	}
	v := run.GetVerdict()
	if v == nil {
		return fmt.Errorf("run %s: the service returned no final verdict", run.GetId())
	}
	if err := printServiceVerdict(e.stdout, cf.out, v); err != nil {
		return err
	}
	return exitCodeError{apiconv.DecisionFromProto(v.GetDecision()).ExitCode()}
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}
