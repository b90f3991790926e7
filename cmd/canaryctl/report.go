package main

import (
	"context"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// runReport writes the report of a run, fetched with GetRunReport: a
// self-contained HTML page rendered here by the renderer the daemon uses
// for GET /runs/{id}, or with -o json the RunReport message itself.
func runReport(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "report")
	cf := addClientFlags(e, fs, defaultTimeout)
	// -o is html (the default) or json here.
	o := fs.Lookup("o")
	o.Usage, o.DefValue = "output format: html or json", "html"
	if err := o.Value.Set("html"); err != nil {
		return err
	}
	pos, err := parseArgs(fs, args, 1, 1, "run id")
	if err != nil {
		return err
	}
	format := cf.out
	switch format {
	case "html", "table":
		cf.out = "table"
	case "json":
	default:
		return usagef("-o must be html or json (got %q)", format)
	}
	r, err := report.NewRenderer()
	if err != nil {
		return err
	}
	ctx, c, done, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := call(ctx, func(ctx context.Context) (*canaryv1.GetRunReportResponse, error) {
		return c.GetRunReport(ctx, &canaryv1.GetRunReportRequest{RunId: pos[0]})
	})
	if err != nil {
		return err
	}
	if cf.out == "json" {
		b, err := protojson.MarshalOptions{Multiline: true}.Marshal(resp.GetReport())
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(append(b, '\n'))
		return err
	}
	return r.Report(e.stdout, resp.GetReport(), report.ReportOptions{Generated: time.Now()})
}
