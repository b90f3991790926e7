package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// newReportCmd returns `canaryctl report`.
func newReportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "report RUN",
		Short: "Write a run's report: one self-contained HTML file (-o json: the RunReport)",
		Long: `Write the report of a run as one self-contained HTML page, the one canaryd serves at
/runs/{id}; -o html is the default (as is -o table), -o json prints the RunReport message.`,
		Example: `  canaryctl report "$RUN" > report.html
  canaryctl report "$RUN" -o json`,
		Args: exactArgs(1, "run id"),
		RunE: func(cmd *cobra.Command, pos []string) error {
			return runReport(cmd.Context(), g, pos[0])
		},
	}
}

// runReport writes the report of a run, fetched with GetRunReport: a
// self-contained HTML page rendered here by the renderer the daemon uses
// for GET /runs/{id}, or with -o json or yaml the RunReport message itself (the JSON the
// daemon serves for the report).
func runReport(ctx context.Context, g *globals, runID string) error {
	e, cf := g.e, g.cf
	pos := []string{runID}
	format := cf.out
	switch format {
	case "html", outTable:
		cf.out = outTable
	case outJSON, outYAML:
	default:
		return usagef("-o must be html (or table), json or yaml (got %q)", format)
	}
	r, err := report.NewRenderer()
	if err != nil {
		return err
	}
	resp, err := unary(ctx, cf, func(ctx context.Context, c *client) (*canaryv1.GetRunReportResponse, error) {
		return c.GetRunReport(ctx, &canaryv1.GetRunReportRequest{RunId: pos[0]})
	})
	if err != nil {
		return err
	}
	if structured(cf.out) {
		return printMessage(e.stdout, cf.out, resp.GetReport())
	}
	return r.Report(e.stdout, resp.GetReport(), report.ReportOptions{Generated: time.Now()})
}
