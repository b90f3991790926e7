package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// GetRunReport returns the report of a run; see the API. A running run is
// judged as by Judge and reported with its data; a finished run with its
// final verdict and its data as the store still keeps them (until the
// retention of raw data expires them). Both with their verdict trajectory
// (trajectory.go): the stored one and the points not stored yet.
func (s *Service) GetRunReport(ctx context.Context, req *canaryv1.GetRunReportRequest) (*canaryv1.GetRunReportResponse, error) {
	if msg := checkID(req.GetRunId()); msg != "" {
		return nil, badField("run_id", "%s", msg)
	}
	for attempt := 0; ; attempt++ {
		lr, err := s.fresh(ctx, req.GetRunId())
		if err != nil {
			return nil, err
		}
		v, final, err := s.verdict(ctx, lr)
		var d *analysis.Data
		var run *canaryv1.Run
		var pending []*canaryv1.TrajectoryPoint
		var alarms []*canaryv1.AlarmEvent
		live := false
		if err == nil {
			d, _, _, _ = lr.copyData()
			run = lr.record()
			pending = lr.pendingPoints()
			alarms, live = lr.alarmsIfLive()
		}
		s.release(lr)
		if err == nil && !live {
			alarms, err = s.readAlarms(ctx, req.GetRunId())
		}
		if errors.Is(err, errStale) && attempt < 2 {
			continue // dropped meanwhile: report the reloaded run
		}
		if err != nil {
			return nil, err
		}
		stored, err := s.loadTrajectory(ctx, lr.id)
		if err != nil {
			return nil, err
		}
		if d == nil && final {
			if d, err = s.finishedData(ctx, lr, run); err != nil {
				return nil, err
			}
		}
		overrides, err := s.runOverrides(ctx, run)
		if err != nil {
			return nil, err
		}
		opts := report.Options{Alarms: alarms, Overrides: overrides}
		return &canaryv1.GetRunReportResponse{Report: report.Build(run, v, mergePoints(stored, pending), d, opts)}, nil
	}
}

// finishedData returns the data of a finished run as its log in the store
// holds them, nil once the retention has expired them (the log is empty
// while the run's counters count batches).
func (s *Service) finishedData(ctx context.Context, lr *liveRun, run *canaryv1.Run) (*analysis.Data, error) {
	ls, err := readLog(ctx, s.store, lr.id, lr.cfg, run)
	if err != nil {
		return nil, fmt.Errorf("read data of finished run %s: %w", lr.id, err)
	}
	if ls.counters.GetBatches() == 0 && run.GetCounters().GetBatches() > 0 {
		return nil, nil // expired
	}
	return ls.data, nil
}
