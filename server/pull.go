package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Pulled runs. A run whose config has a source is read from it by one
// replica at a time (package puller), whose batches take the path of any
// client's (Ingest), with ids derived from the interval, so that an
// interval read twice, by a retry or by two replicas, is counted once.
// The puller also records its progress in the run's log (RecordPull): a
// pull record, folded like the deltas (latest status, each metric's
// "through" the latest of all), kept in snapshots and shown as Run.pull,
// so that every replica judges with it. The judge never promotes on
// missing intervals (pullGate): a metric whose reads fail, or that no
// replica has read for pullStaleAfter, holds with the reason ("no data
// from Prometheus since 10:42:30 UTC: ..."), and the verdict is at best
// HOLD until the puller has caught up.

// encodePull encodes a pull record: 0x01 'P' PullStatus (protobuf).
func encodePull(p *canaryv1.PullStatus) ([]byte, error) {
	b, err := proto.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode pull status: %w", err)
	}
	return append([]byte{blobVersion, 'P'}, b...), nil
}

// isPull reports whether a blob of a run's log is a pull record.
func isPull(b []byte) bool { return len(b) >= 2 && b[0] == blobVersion && b[1] == 'P' }

func decodePull(b []byte) (*canaryv1.PullStatus, error) {
	r, err := blobBody(b, 'P')
	if err != nil {
		return nil, fmt.Errorf("decode pull status: %w", err)
	}
	p := &canaryv1.PullStatus{}
	if err := proto.Unmarshal(r.b, p); err != nil {
		return nil, fmt.Errorf("decode pull status: %w", err)
	}
	return p, nil
}

// mergePull folds a pull record into the status *dst: the record's status
// replaces it, but each metric's through and lost intervals never move
// back (two replicas may record concurrently while one takes over).
func mergePull(dst **canaryv1.PullStatus, p *canaryv1.PullStatus) {
	old := *dst
	p = proto.Clone(p).(*canaryv1.PullStatus)
	if old != nil {
		prev := map[string]*canaryv1.MetricPull{}
		for _, m := range old.GetMetrics() {
			prev[m.GetMetric()] = m
		}
		for _, m := range p.GetMetrics() {
			o := prev[m.GetMetric()]
			if o == nil {
				continue
			}
			if o.GetThrough().AsTime().After(m.GetThrough().AsTime()) {
				m.Through = o.GetThrough()
			}
			m.LostIntervals = max(m.GetLostIntervals(), o.GetLostIntervals())
		}
		if old.GetUpdateTime().AsTime().After(p.GetUpdateTime().AsTime()) {
			p.UpdateTime = old.GetUpdateTime()
		}
	}
	*dst = p
}

// RecordPull appends the pull status of a running run to its log (see
// above) and folds it; the run's record (Run.pull) and its next verdict
// show it. It fails like Ingest: FAILED_PRECONDITION once the run is
// finished, NOT_FOUND for an unknown run, UNAVAILABLE when the store is.
func (s *Service) RecordPull(ctx context.Context, runID string, p *canaryv1.PullStatus) error {
	blob, err := encodePull(p)
	if err != nil {
		return err
	}
	lr, err := s.admitting(ctx, runID)
	if err != nil {
		return err
	}
	b := &batch{lr: lr, runID: runID, at: s.now(), blob: blob, pull: true,
		batchID: fmt.Sprintf("pull-status-%x", sha256.Sum256(blob))}
	s.appendBatch(ctx, b)
	s.settle(b)
	return b.err
}

// pullSlack is how late an interval's read may be, beyond its lag and two
// intervals, before its metric is stale: the time of the queries and of
// the puller's scheduling.
const pullSlack = 10 * time.Second

// pullGate holds, in av (a verdict of a running run, or its final verdict,
// judged at now), the metrics whose intervals are missing: those whose
// reads fail (pull records say since when and why) and those no replica
// read for two intervals beyond the source's lag (pullSlack more), so
// that nothing is promoted on data that stopped. A regression stays one
// (the tests are valid on the data read); a verdict that is not ROLLBACK
// becomes HOLD, with the missing metrics' reasons. It reports whether it
// changed av.
func pullGate(av *analysis.Verdict, run *canaryv1.Run, pull *canaryv1.PullStatus, now time.Time) bool {
	reasons := pullReasons(run, pull, now)
	if len(reasons) == 0 {
		return false
	}
	var deciding, texts []string
	for i := range av.Metrics {
		m := &av.Metrics[i]
		r, ok := reasons[m.Name]
		if !ok {
			continue
		}
		if m.Outcome != analysis.OutcomeRegression {
			if m.Outcome == analysis.OutcomePass {
				m.Outcome = analysis.OutcomeHold
			}
			m.Reason = r
		}
		deciding = append(deciding, m.Name)
		texts = append(texts, m.Name+": "+r)
	}
	if av.Decision == analysis.Rollback || len(deciding) == 0 {
		return false
	}
	av.Decision = analysis.Hold
	av.Deciding = deciding
	av.Reason = strings.Join(texts, "; ")
	return true
}

// pullReasons returns, by metric, why the intervals of a pulled run's
// metrics are missing at now; nil when none is (or the run has no source).
func pullReasons(run *canaryv1.Run, pull *canaryv1.PullStatus, now time.Time) map[string]string {
	src := run.GetConfig().GetSource().GetPrometheus()
	if src == nil {
		return nil
	}
	interval, lag := src.GetInterval().AsDuration(), src.GetLag().AsDuration()
	if interval <= 0 {
		return nil
	}
	byName := map[string]*canaryv1.MetricPull{}
	for _, m := range pull.GetMetrics() {
		byName[m.GetMetric()] = m
	}
	// The start of the first interval read: the first grid point at or
	// after the run's start.
	start := run.GetStartTime().AsTime()
	first := start.Truncate(interval)
	if first.Before(start) {
		first = first.Add(interval)
	}
	out := map[string]string{}
	for _, m := range run.GetConfig().GetMetrics() {
		if m.GetQuery() == nil {
			continue
		}
		mp := byName[m.GetName()]
		since := first
		if t := mp.GetThrough(); t != nil && t.AsTime().After(since) {
			since = t.AsTime()
		}
		switch {
		case mp.GetFailingSince() != nil:
			out[m.GetName()] = fmt.Sprintf("no data from Prometheus since %s: %s", timeOfDay(since), mp.GetError())
		case now.Sub(since) > 2*interval+lag+pullSlack:
			out[m.GetName()] = fmt.Sprintf("no data from Prometheus since %s: no interval read for %s (is a canaryd pulling the run?)",
				timeOfDay(since), now.Sub(since).Round(time.Second))
		}
	}
	return out
}

// untilPullStale returns how long until a metric of a pulled run that is
// read now turns stale (pullReasons) if no replica records its progress,
// so that watchers get the HOLD without a new batch; 0 when none will.
func (lr *liveRun) untilPullStale(now time.Time) time.Duration {
	if lr.pulled == nil {
		return 0
	}
	src := lr.pulled.GetConfig().GetSource().GetPrometheus()
	interval, lag := src.GetInterval().AsDuration(), src.GetLag().AsDuration()
	lr.mu.Lock()
	defer lr.mu.Unlock()
	var earliest time.Time
	for _, m := range lr.st.rec.GetPull().GetMetrics() {
		if t := m.GetThrough(); t != nil && (earliest.IsZero() || t.AsTime().Before(earliest)) {
			earliest = t.AsTime()
		}
	}
	if earliest.IsZero() {
		earliest = lr.start
	}
	// One nanosecond past the bound of pullReasons.
	return max(0, earliest.Add(2*interval+lag+pullSlack+time.Nanosecond).Sub(now))
}

// timeOfDay formats a time of day (UTC) for reasons.
func timeOfDay(t time.Time) string {
	return t.UTC().Format("15:04:05 UTC")
}
