package server

import (
	"context"
	"errors"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// GetRunReport returns the report of a run; see the API. A running run is
// judged as by Judge and reported with its data; a finished run with its
// final verdict, and with its data while they are in memory.
func (s *Service) GetRunReport(ctx context.Context, req *canaryv1.GetRunReportRequest) (*canaryv1.GetRunReportResponse, error) {
	if msg := checkID(req.GetRunId()); msg != "" {
		return nil, badField("run_id", "%s", msg)
	}
	for attempt := 0; ; attempt++ {
		lr, err := s.fresh(ctx, req.GetRunId())
		if err != nil {
			return nil, err
		}
		v, _, err := s.verdict(ctx, lr)
		var d *analysis.Data
		var run *canaryv1.Run
		if err == nil {
			d, _, _, _ = lr.copyData()
			run = lr.record()
		}
		s.release(lr)
		if errors.Is(err, errStale) && attempt < 2 {
			continue // dropped meanwhile: report the reloaded run
		}
		if err != nil {
			return nil, err
		}
		return &canaryv1.GetRunReportResponse{Report: report.Build(run, v, nil, d, report.Options{})}, nil
	}
}
