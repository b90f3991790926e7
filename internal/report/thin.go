package report

import (
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// The schedule on which Thin coarsens a trajectory.
const (
	// MaxPoints bounds the points of a thinned trajectory, whatever the
	// length of the run.
	MaxPoints = 500
	// RecentAge is the age up to which points are kept at RecentStep.
	RecentAge = time.Hour
	// RecentStep is the resolution of the last RecentAge: one point per
	// RecentStep (the latest of it), at most 241 points.
	RecentStep = 15 * time.Second
	// MaxChanges is how many of the most recent decision changes are kept
	// whatever their age, so that the verdict timeline is exact.
	MaxChanges = 100
)

// Thin coarsens a trajectory (oldest first) as of now and returns the
// points it keeps, oldest first; it never modifies points. It keeps
//
//   - the first and the last point;
//   - every point whose decision differs from the point before it (the
//     MaxChanges most recent such changes), so that the verdict timeline
//     drawn from the kept points is the one of every judgement;
//   - of the others, the latest point of each time bucket, buckets fixed
//     to the Unix epoch whose width grows with the age of their points:
//     RecentStep (15 s) up to RecentAge (1 h), then 4·RecentStep·2^k for
//     the ages in (RecentAge·2^(k−1), RecentAge·2^k]: about 30 points per
//     doubling of the age (a day-long run keeps about 380 points).
//
// When that is more than MaxPoints (runs of about three weeks or more),
// every width is doubled until it is not. The widths nest (each is a power-of-two multiple of the next finer
// one, on the same grid), so a point dropped once is never needed again:
// thinning after each judgement, as the server does (Append), keeps what
// thinning the whole trajectory at once would keep, as long as fewer than
// MaxChanges decision changes age out. Thin is idempotent.
func Thin(points []*canaryv1.TrajectoryPoint, now time.Time) []*canaryv1.TrajectoryPoint {
	ps := make([]*canaryv1.TrajectoryPoint, 0, len(points))
	for _, p := range points {
		if p != nil {
			ps = append(ps, p)
		}
	}
	slices.SortStableFunc(ps, byTime)
	if len(ps) <= 2 {
		return ps
	}
	for scale := 0; ; scale++ {
		if out := thin(ps, now, scale); len(out) <= MaxPoints || scale >= 64 {
			if len(out) > MaxPoints { // unreachable with sane times; a hard bound anyway
				out = append(out[:1], out[len(out)-MaxPoints+1:]...)
			}
			return out
		}
	}
}

// thin applies the schedule of Thin with every width multiplied by
// 2^scale to points sorted by time.
func thin(ps []*canaryv1.TrajectoryPoint, now time.Time, scale int) []*canaryv1.TrajectoryPoint {
	keep := make([]bool, len(ps))
	keep[0], keep[len(ps)-1] = true, true
	changes := 0
	for i := len(ps) - 1; i > 0 && changes < MaxChanges; i-- {
		if ps[i].GetDecision() != ps[i-1].GetDecision() {
			keep[i] = true
			changes++
		}
	}
	// The latest point of each bucket: walking from the newest, the first
	// point met in a bucket is its latest.
	type bucket struct {
		width time.Duration
		index int64
	}
	seen := make(map[bucket]bool, 2*MaxPoints)
	for i := len(ps) - 1; i >= 0; i-- {
		t := ps[i].GetTime().AsTime()
		w := bucketWidth(now.Sub(t), scale)
		b := bucket{w, floorDiv(t.Unix(), int64(w/time.Second))}
		if !seen[b] {
			seen[b] = true
			keep[i] = true
		}
	}
	out := make([]*canaryv1.TrajectoryPoint, 0, min(len(ps), MaxPoints))
	for i, p := range ps {
		if keep[i] {
			out = append(out, p)
		}
	}
	return out
}

// bucketWidth returns the width of the buckets of points of the given age
// (see Thin), times 2^scale, saturating far below the int64 limit.
func bucketWidth(age time.Duration, scale int) time.Duration {
	w := RecentStep
	if age > RecentAge {
		w *= 4
		for a := RecentAge; a < age && w < 1<<58; a *= 2 {
			w *= 2
		}
	}
	for ; scale > 0 && w < 1<<58; scale-- {
		w *= 2
	}
	return w
}

// floorDiv is a / b rounded toward −∞ (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// Append adds the point of a new judgement to a trajectory and thins it as
// of the point's time: what the server stores with a run after each
// judgement.
func Append(points []*canaryv1.TrajectoryPoint, p *canaryv1.TrajectoryPoint) []*canaryv1.TrajectoryPoint {
	return Thin(append(slices.Clip(points), p), p.GetTime().AsTime())
}

// Point returns the trajectory point of a verdict: its time, decision and
// sequence, and per metric the p-values, the effect, and the gate (what
// each cohort has and needs).
func Point(v *canaryv1.Verdict) *canaryv1.TrajectoryPoint {
	p := &canaryv1.TrajectoryPoint{
		Time:     v.GetTime(),
		Decision: v.GetDecision(),
		Sequence: v.GetSequence(),
		Metrics:  make([]*canaryv1.TrajectoryMetric, len(v.GetMetrics())),
	}
	nan32 := float32(math.NaN()) // an effect not estimated
	if p.Time == nil {
		p.Time = timestamppb.New(time.Time{})
	}
	for i, m := range v.GetMetrics() {
		tm := &canaryv1.TrajectoryMetric{
			Outcome:        m.GetOutcome(),
			PValue:         float32(m.GetPValue()),
			AdjustedPValue: float32(m.GetAdjustedPValue()),
			PromotePValue:  float32(m.GetPromotePValue()),
			EffectEstimate: nan32,
			EffectLower:    nan32,
			EffectUpper:    nan32,
			HaveBaseline:   float32(have(m.GetType(), m.GetBaseline())),
			HaveCanary:     float32(have(m.GetType(), m.GetCanary())),
			NeedBaseline:   float32(m.GetGate().GetNeedBaseline()),
			NeedCanary:     float32(m.GetGate().GetNeedCanary()),
		}
		if e := m.GetEffect(); e != nil {
			tm.EffectEstimate, tm.EffectLower, tm.EffectUpper = float32(e.GetEstimate()), float32(e.GetLower()), float32(e.GetUpper())
		}
		p.Metrics[i] = tm
	}
	return p
}

// have returns what the gate of a metric counts in a cohort: its exposure
// (rate metrics) or its observations.
func have(t canaryv1.MetricType, s *canaryv1.CohortSummary) float64 {
	if t == canaryv1.MetricType_METRIC_TYPE_RATE {
		return s.GetTotal()
	}
	return float64(s.GetN())
}

// byTime orders points by time.
func byTime(a, b *canaryv1.TrajectoryPoint) int {
	return a.GetTime().AsTime().Compare(b.GetTime().AsTime())
}
