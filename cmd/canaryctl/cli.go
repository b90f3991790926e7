package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Exit codes other than the verdicts' (analysis.Decision.ExitCode).
const (
	exitError = 1
	exitUsage = 2
)

// env is what a command runs with.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// command is one subcommand of canaryctl.
type command struct {
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

// commands lists the subcommands by name.
var commands = map[string]command{
	"analyze":  {"judge a finished data set offline: --config FILE --samples FILE | --prometheus URL --start T --end T --baseline-labels k=v --canary-labels k=v", runAnalyze},
	"config":   {"manage named, versioned configs: put FILE | get NAME[@VERSION] | list [NAME]", group("config", configCommands)},
	"run":      {"manage runs: create | get ID | list | complete ID | abort ID", group("run", runCommands)},
	"ingest":   {"stream samples into a run: --run ID --samples FILE (- for standard input)", runIngest},
	"judge":    {"print a run's verdict now (exit code = verdict): --run ID", runJudge},
	"watch":    {"show a run's verdict live until it ends (exit code = final verdict): --run ID", runWatch},
	"simulate": {"measure decision quality on simulated runs: [--runs N] [--seed S] [--scenario NAME|all] [--policy NAME|all] [--workers W]", runSimulate},
	"history":  {"list final verdicts: [--service S] [--stage ST] [--decision D] [--since 24h|RFC3339]", runHistory},
	"report":   {"write a run's report, one self-contained HTML file (-o json: the RunReport): RUN > report.html", runReport},
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

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "canaryctl: unknown command %q\n", args[0])
		usage(stderr)
		return exitUsage
	}
	err := cmd.run(ctx, e, args[1:])
	var ec exitCodeError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return ec.code
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "canaryctl %s: %v\n", args[0], err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "canaryctl %s: %v\n", args[0], err)
		return exitError
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: canaryctl COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nexit codes: 0 PROMOTE, 10 HOLD, 20 ROLLBACK, 1 error, 2 bad usage or input")
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("canaryctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

// outputFlag registers -o table|json.
func outputFlag(fs *flag.FlagSet) *string {
	return fs.String("o", "table", "output format: table or json")
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return usagef("-o must be table or json (got %q)", o)
	}
	return nil
}
