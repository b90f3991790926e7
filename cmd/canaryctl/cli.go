package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
)

// Exit codes other than the verdicts' (analysis.Decision.ExitCode).
const (
	exitError = 1
	exitUsage = 2
)

// exitCodesHelp documents the exit codes in the root command's help.
const exitCodesHelp = `Exit codes (of the built binary: "go run" turns every non-zero code into 1):
  0   PROMOTE (and success of the commands without a verdict)
  10  HOLD
  20  ROLLBACK
  1   error: canaryd unavailable, internal error, deadline exceeded
  2   bad usage or bad input (also INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION)
  30  blockers: the deployment is blocked`

// env is what a command runs with.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// usageError marks an error as the caller's (exit code 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitCodeError carries a verdict's exit code out of a command that
// succeeded.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// globals are what every command shares: its environment and the global
// flags, parsed wherever they stand on the command line.
type globals struct {
	e  *env
	cf *clientFlags
}

// run executes canaryctl with args and returns its exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := newRootCmd(e)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	var ec exitCodeError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return ec.code
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", cmd.CommandPath(), err, cmd.CommandPath())
		return exitUsage
	default:
		fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
		var se *statusError
		if errors.As(err, &se) && se.code == codes.Unavailable {
			addr := root.PersistentFlags().Lookup("addr").Value.String()
			fmt.Fprintf(stderr, "  (is canaryd running at %s? set --addr or CANARY_ADDR)\n", addr)
		}
		return exitError
	}
}

// newRootCmd builds the command tree of canaryctl.
func newRootCmd(e *env) *cobra.Command {
	g := &globals{e: e}
	root := &cobra.Command{
		Use:   "canaryctl",
		Short: "canaryd's command-line client",
		Long: `canaryctl talks to canaryd (configs, runs, verdicts, reports) and judges data sets offline.

Global flags (--addr, --token, --timeout, --tls*, -o) go before or after the subcommand, and
default to the environment: CANARY_ADDR, CANARY_TOKEN, CANARY_TLS, CANARY_TLS_CA,
CANARY_TLS_CERT, CANARY_TLS_KEY.

` + exitCodesHelp,
		Example: `  export CANARY_ADDR=canaryd.example:7070 CANARY_TOKEN=...
  RUN=$(canaryctl run create --service checkout --stage prod --config checkout-api --bake 30m)
  canaryctl ingest "$RUN" samples.jsonl
  canaryctl watch "$RUN"; echo "exit $?"   # 0 PROMOTE, 10 HOLD, 20 ROLLBACK
  canaryctl --addr localhost:7070 run list -o wide`,
		Args: subcommandArgs,
		RunE: missingSubcommand,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			g.cf.timeoutSet = cmd.Flags().Changed("timeout")
		},
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	g.cf = addClientFlags(e, root.PersistentFlags())

	root.AddGroup(&cobra.Group{ID: "service", Title: "Commands that talk to canaryd:"},
		&cobra.Group{ID: "offline", Title: "Offline commands:"})
	for _, c := range []*cobra.Command{
		newConfigCmd(g), newRunCmd(g), newIngestCmd(g), newJudgeCmd(g), newWatchCmd(g),
		newGateCmd(g), newHistoryCmd(g), newReportCmd(g), newAlarmCmd(g), newBlockersCmd(g), newPolicyCmd(g),
		newBenchCmd(g),
	} {
		c.GroupID = "service"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newAnalyzeCmd(g), newSimulateCmd(g), newVersionCmd(g)} {
		c.GroupID = "offline"
		root.AddCommand(c)
	}
	root.SetHelpCommandGroupID("offline")
	root.SetCompletionCommandGroupID("offline")
	// The completion command is built here rather than when executing,
	// so that an unknown shell is a usage error like an unknown command.
	root.InitDefaultCompletionCmd()
	if c, _, err := root.Find([]string{"completion"}); err == nil && c != root {
		c.Args, c.RunE, c.SuggestionsMinimumDistance = subcommandArgs, missingSubcommand, 2
		c.Example = `  source <(canaryctl completion bash)
  canaryctl completion zsh > "${fpath[1]}/_canaryctl"
  canaryctl completion fish > ~/.config/fish/completions/canaryctl.fish`
	}
	return root
}

// newGroupCmd returns a command made of subcommands, such as `canaryctl
// config put|get|list`.
func newGroupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  subcommandArgs,
		RunE:  missingSubcommand,
		// Suggest subcommands within two edits ("lst": list).
		SuggestionsMinimumDistance: 2,
	}
	c.AddCommand(subs...)
	return c
}

// subcommandArgs rejects an unknown subcommand of a group, suggesting the
// nearest ones.
func subcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

// missingSubcommand is the run function of a group called alone: its help
// on stderr, and exit 2.
func missingSubcommand(cmd *cobra.Command, _ []string) error {
	cmd.SetOut(cmd.ErrOrStderr())
	if err := cmd.Help(); err != nil {
		return err
	}
	return usagef("missing subcommand")
}

// exactArgs wants n positional arguments, named by what for the error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return rangeArgs(n, n, what)
}

// rangeArgs wants between lo and hi positional arguments.
func rangeArgs(lo, hi int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) < lo:
			return usagef("missing %s", what)
		case len(args) > hi:
			return usagef("unexpected arguments: %s", strings.Join(args[hi:], " "))
		}
		return nil
	}
}

// withRunFlag puts the run id of the deprecated --run flag first among
// the positional arguments.
func withRunFlag(flagRun string, args []string) []string {
	if flagRun == "" {
		return args
	}
	return append([]string{flagRun}, args...)
}

// deprecatedFlag registers a hidden string flag kept for the command
// lines written before the flag's value became a positional argument.
// warnDeprecated says so on stderr when it is used. (pflag's own
// MarkDeprecated would print its warning on cobra's standard output.)
func deprecatedFlag(fs *pflag.FlagSet, name string) *string {
	s := fs.String(name, "", "deprecated")
	_ = fs.MarkHidden(name)
	return s
}

// warnDeprecated tells on stderr which deprecated flags of cmd were given
// and what to write instead.
func warnDeprecated(e *env, cmd *cobra.Command, instead map[string]string) {
	for name, use := range instead {
		if cmd.Flags().Changed(name) {
			fmt.Fprintf(e.stderr, "%s: --%s is deprecated: %s\n", cmd.CommandPath(), name, use)
		}
	}
}
