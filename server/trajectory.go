package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// The verdict trajectory. Every verdict a run gets (each new sequence,
// judge.go setVerdict, and the final one, runs.go) adds a compact point
// (report.Point) to the run's trajectory, which its report draws: the
// verdict timeline, the evidence and the gate over time. The trajectory is
// stored with the run's record (store.Trajectories) and coarsened with age
// (report.Thin: at most report.MaxPoints points whatever the run's length),
// so a run in memory holds only the points not stored yet
// (trajectoryProgress.pending), and a writer (writeTrajectory, one per run
// at a time, holding a lease) stores them:
//   - at once when a point changes the decision, so that the timeline
//     other replicas and a restarted process read has every change;
//   - otherwise once trajectoryEvery has passed since the last write: at
//     the next verdict, or the janitor's next round (every half of it),
//     whichever comes first;
//   - at the finish (the final verdict's point, before the finish
//     returns), and when the run leaves memory or the service closes
//     (flushTrajectory).
//
// A write merges the points with the stored trajectory (mergePoints), so
// that replicas judging the same run each add theirs, and thins the
// union; two replicas writing at the same instant may lose each other's
// latest points (last writer wins), never the stored ones both read. A
// report merges the stored trajectory with the points still pending.

// trajectoryEvery is how long points without a decision change may wait
// in memory before they are stored.
const trajectoryEvery = 30 * time.Second

// trajectoryProgress is the part of a run's trajectory that is not stored
// yet, and its writer.
type trajectoryProgress struct {
	pending   []*canaryv1.TrajectoryPoint // oldest first, thinned; immutable points
	last      canaryv1.Decision           // decision of the newest point added
	changed   bool                        // a pending point changes the decision
	force     bool                        // store the pending points now (flushTrajectory met the writer)
	writing   bool                        // a writer runs (and holds a lease on the run)
	lastWrite time.Time
}

// addPoint adds the point of a new verdict to the run's pending
// trajectory.
func (st *liveState) addPoint(p *canaryv1.TrajectoryPoint) {
	tp := &st.traj
	if p.GetDecision() != tp.last { // the first point is a change too
		tp.changed = true
	}
	tp.last = p.GetDecision()
	tp.pending = report.Append(tp.pending, p)
}

// trajectoryDue claims the run's trajectory writer when pending points
// should be stored now (see the comment above), taking a lease on the
// run: the caller starts writeTrajectory.
func (st *liveState) trajectoryDue(now time.Time) bool {
	tp := &st.traj
	if tp.writing || len(tp.pending) == 0 || !(tp.changed || tp.force || now.Sub(tp.lastWrite) >= trajectoryEvery) {
		return false
	}
	tp.writing = true
	st.users++
	return true
}

// writeDueTrajectories starts the trajectory writer of every run in
// memory whose pending points are due.
func (s *Service) writeDueTrajectories() {
	now := s.now()
	for _, lr := range s.registered() {
		select {
		case <-lr.loaded:
		default:
			continue // being loaded
		}
		if lr.err == nil && lr.trajectoryDue(now) {
			s.bg.Go(func() { s.writeTrajectory(lr) })
		}
	}
}

// trajectoryDue is liveState.trajectoryDue under the run's lock, for a
// run that is not evicted.
func (lr *liveRun) trajectoryDue(now time.Time) bool {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.st.state != stateEvicted && lr.st.trajectoryDue(now)
}

// pendingPoints returns the points of the run's trajectory not stored yet.
func (lr *liveRun) pendingPoints() []*canaryv1.TrajectoryPoint {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return slices.Clone(lr.st.traj.pending)
}

// writeTrajectory is the run's trajectory writer: it stores the pending
// points until none is due, then returns its lease.
func (s *Service) writeTrajectory(lr *liveRun) {
	for {
		pts := lr.pendingPoints()
		err := s.storeTrajectory(lr.id, pts)
		if err != nil {
			s.log.Warn("store run trajectory failed; retried with the next points", "run", lr.id, "err", err)
		}
		if !lr.trajectoryWritten(pts, err, s.now()) {
			return
		}
	}
}

// trajectoryWritten records the outcome of a write of pts and reports
// whether the writer writes again (more points became due meanwhile);
// otherwise it ends and returns its lease.
func (lr *liveRun) trajectoryWritten(pts []*canaryv1.TrajectoryPoint, err error, now time.Time) bool {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	st := &lr.st
	tp := &st.traj
	tp.lastWrite = now
	if err == nil {
		tp.pending = unwritten(tp.pending, pts)
		tp.changed = false
		if len(tp.pending) == 0 {
			tp.force = false
		}
		for _, p := range tp.pending { // points added while writing
			if len(pts) == 0 || p.GetDecision() != pts[len(pts)-1].GetDecision() {
				tp.changed = true
			}
		}
		if len(tp.pending) > 0 && (tp.changed || tp.force) {
			return true
		}
	}
	tp.writing = false
	st.users--
	st.lastUsed = now
	return false
}

// unwritten returns the points of pending that are not in written (by
// pointer: points are immutable, and a write stores the points it took).
func unwritten(pending, written []*canaryv1.TrajectoryPoint) []*canaryv1.TrajectoryPoint {
	done := make(map[*canaryv1.TrajectoryPoint]bool, len(written))
	for _, p := range written {
		done[p] = true
	}
	return slices.DeleteFunc(slices.Clone(pending), func(p *canaryv1.TrajectoryPoint) bool { return done[p] })
}

// storeTrajectory merges pts into the stored trajectory of a run.
func (s *Service) storeTrajectory(id string, pts []*canaryv1.TrajectoryPoint) error {
	if len(pts) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
	defer cancel()
	stored, err := s.loadTrajectory(ctx, id)
	if err != nil {
		return err
	}
	b, err := encodeTrajectory(mergePoints(stored, pts))
	if err != nil {
		return err
	}
	if err := s.store.PutTrajectory(ctx, id, b); err != nil {
		return fmt.Errorf("store trajectory of run %s: %w", id, err)
	}
	return nil
}

// flushTrajectory stores the pending points of a run, unless its writer
// runs: then the writer stores them after the points it is writing.
func (s *Service) flushTrajectory(lr *liveRun) error {
	lr.mu.Lock()
	if lr.st.traj.writing {
		lr.st.traj.force = true
		lr.mu.Unlock()
		return nil
	}
	if len(lr.st.traj.pending) == 0 {
		lr.mu.Unlock()
		return nil
	}
	pts := slices.Clone(lr.st.traj.pending)
	lr.mu.Unlock()
	err := s.storeTrajectory(lr.id, pts)
	if errors.Is(err, store.ErrNotFound) {
		return nil // swept meanwhile
	}
	if err != nil {
		return err
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.st.traj.pending = unwritten(lr.st.traj.pending, pts)
	return nil
}

// loadTrajectory returns the stored trajectory of a run, oldest first.
func (s *Service) loadTrajectory(ctx context.Context, id string) ([]*canaryv1.TrajectoryPoint, error) {
	b, err := s.store.GetTrajectory(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("load trajectory of run %s: %w", id, err)
	}
	pts, err := decodeTrajectory(b)
	if err != nil {
		return nil, fmt.Errorf("load trajectory of run %s: %w", id, err)
	}
	return pts, nil
}

// mergePoints returns the union of two trajectories (a point in both, by
// time, sequence and decision, once), thinned as of its newest point.
func mergePoints(a, b []*canaryv1.TrajectoryPoint) []*canaryv1.TrajectoryPoint {
	type key struct {
		t   int64
		seq uint64
		d   canaryv1.Decision
	}
	seen := make(map[key]bool, len(a)+len(b))
	var all []*canaryv1.TrajectoryPoint
	for _, p := range slices.Concat(a, b) {
		if p == nil {
			continue
		}
		k := key{p.GetTime().AsTime().UnixNano(), p.GetSequence(), p.GetDecision()}
		if seen[k] {
			continue
		}
		seen[k] = true
		all = append(all, p)
	}
	if len(all) == 0 {
		return nil
	}
	slices.SortStableFunc(all, func(x, y *canaryv1.TrajectoryPoint) int {
		return x.GetTime().AsTime().Compare(y.GetTime().AsTime())
	})
	return report.Thin(all, all[len(all)-1].GetTime().AsTime())
}

// What the service stores as a run's trajectory (store.PutTrajectory, opaque
// bytes to the store), in the style of the blobs of blob.go:
//
//	trajectory: 0x01 'T' (uvarint(length) TrajectoryPoint)*
//
// oldest point first.

func encodeTrajectory(pts []*canaryv1.TrajectoryPoint) ([]byte, error) {
	sizes := make([]int, len(pts))
	total := 2
	for i, p := range pts {
		sizes[i] = proto.Size(p)
		total += binary.MaxVarintLen64 + sizes[i]
	}
	b := make([]byte, 2, total)
	b[0], b[1] = blobVersion, 'T'
	opts := proto.MarshalOptions{UseCachedSize: true} // sizes just computed
	for i, p := range pts {
		b = binary.AppendUvarint(b, uint64(sizes[i]))
		var err error
		if b, err = opts.MarshalAppend(b, p); err != nil {
			return nil, fmt.Errorf("encode trajectory: %w", err)
		}
	}
	return b, nil
}

func decodeTrajectory(b []byte) ([]*canaryv1.TrajectoryPoint, error) {
	if len(b) == 0 {
		return nil, nil // none stored yet
	}
	r, err := blobBody(b, 'T')
	if err != nil {
		return nil, fmt.Errorf("decode trajectory: %w", err)
	}
	var pts []*canaryv1.TrajectoryPoint
	for len(r.b) > 0 {
		n, err := r.uvarint()
		if err != nil || n > uint64(len(r.b)) {
			return nil, fmt.Errorf("decode trajectory: point %d: %w", len(pts), errBlob)
		}
		p := new(canaryv1.TrajectoryPoint)
		if err := proto.Unmarshal(r.b[:n], p); err != nil {
			return nil, fmt.Errorf("decode trajectory: point %d: %w", len(pts), err)
		}
		r.b = r.b[n:]
		pts = append(pts, p)
	}
	return pts, nil
}
