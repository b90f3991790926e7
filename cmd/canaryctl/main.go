// Command canaryctl is canaryd's command-line client, and judges data sets
// offline with `canaryctl analyze`.
//
// Exit codes, so that a pipeline can branch on the verdict:
//
//	0   PROMOTE
//	10  HOLD
//	20  ROLLBACK
//	1   error (service unavailable, internal)
//	2   bad usage or bad input
//	30  canaryctl blockers: the deployment may not start
//
// canaryctl gate answers as a job: 0 pass, 1 fail. Use the built binary:
// `go run` reports every non-zero exit status as 1. The commands are
// built with cobra (cli.go); docs/pipelines.md has the pipeline recipes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
