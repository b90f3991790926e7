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
//     to the Unix epoch whose width grows with their age: RecentStep
//     (15 s) up to RecentAge (1 h), then 4·RecentStep·2^k for the buckets
//     that ended RecentAge·2^(k−1) ago or more: about 30 points per
//     doubling of the age (a day-long run keeps about 380 points).
//
// When that is more than MaxPoints (runs of about three weeks or more),
// every width is doubled until it is not. The buckets nest (each width is
// a power-of-two multiple of the next finer one, on the same grid, and a
// bucket's level depends on its end only), so a point dropped once is
// never needed again: thinning after each judgement, as the server does
// (Append), keeps what thinning the whole trajectory at once keeps, as
// long as no width was doubled and fewer than MaxChanges decision changes
// age out. Thin is idempotent.
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
		width, index int64 // seconds
	}
	seen := make(map[bucket]bool, 2*MaxPoints)
	for i := len(ps) - 1; i >= 0; i-- {
		w, idx := bucketOf(ps[i].GetTime().AsTime(), now, scale)
		if b := (bucket{w, idx}); !seen[b] {
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

// bucketOf returns the bucket of a point at t as of now (its width and
// index, in seconds on the grid of the Unix epoch), with every width
// multiplied by 2^scale. The level of a bucket is chosen by the age of
// the bucket's end, not by the point's own age, so that all the points of
// a bucket are in it together, and a bucket only ever merges into its
// parent as time goes by: the coarsest width 4·RecentStep·2^k whose
// bucket around t ended more than RecentAge·2^(k−1) ago, else RecentStep.
func bucketOf(t, now time.Time, scale int) (width, index int64) {
	sec := t.Unix()
	age := func(end int64) time.Duration { return now.Sub(time.Unix(end, 0)) }
	width = int64(RecentStep/time.Second) << scale
	band := RecentAge
	for k := 1; k < 40; k++ {
		w := int64(4*RecentStep/time.Second) << k << scale
		if w <= 0 || w > 1<<40 {
			break
		}
		if end := (floorDiv(sec, w) + 1) * w; age(end) <= band {
			break
		}
		width = w
		if band < 1<<60 {
			band *= 2
		}
	}
	return width, floorDiv(sec, width)
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
