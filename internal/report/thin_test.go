package report

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// trajectory returns n points every step from t0 whose decision changes
// at each of the indexes in changes (HOLD first, then ROLLBACK, HOLD...).
func trajectory(n int, step time.Duration, changes ...int) []*canaryv1.TrajectoryPoint {
	ps := make([]*canaryv1.TrajectoryPoint, n)
	d := canaryv1.Decision_DECISION_HOLD
	for i := range ps {
		if slices.Contains(changes, i) {
			if d == canaryv1.Decision_DECISION_HOLD {
				d = canaryv1.Decision_DECISION_ROLLBACK
			} else {
				d = canaryv1.Decision_DECISION_HOLD
			}
		}
		ps[i] = &canaryv1.TrajectoryPoint{Time: timestamppb.New(t0.Add(time.Duration(i) * step)), Decision: d, Sequence: uint64(i + 1)}
	}
	return ps
}

// segments returns the decision timeline of points: each change's time
// and decision.
func segments(ps []*canaryv1.TrajectoryPoint) []string {
	var out []string
	for i, p := range ps {
		if i == 0 || p.GetDecision() != ps[i-1].GetDecision() {
			out = append(out, p.GetTime().AsTime().Format(time.RFC3339)+" "+p.GetDecision().String())
		}
	}
	return out
}

func TestThinBoundsAndKeeps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		n       int
		step    time.Duration
		changes []int
	}{
		{"10 minutes at 1s", 600, time.Second, []int{100, 101, 400}},
		{"1 hour at 5s", 720, 5 * time.Second, []int{7, 500}},
		{"1 day at 10s", 8640, 10 * time.Second, []int{3, 4000, 8000, 8639}},
		{"30 days at 1m", 43200, time.Minute, []int{10, 20000, 43000}},
		{"1 year at 10m", 52560, 10 * time.Minute, []int{5, 26000}},
		{"flapping 1 day at 10s", 8640, 10 * time.Second, flaps(300, 28)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ps := trajectory(tc.n, tc.step, tc.changes...)
			now := ps[len(ps)-1].GetTime().AsTime()
			out := Thin(ps, now)
			if len(out) > MaxPoints {
				t.Fatalf("%d points kept, more than %d", len(out), MaxPoints)
			}
			if out[0] != ps[0] || out[len(out)-1] != ps[len(ps)-1] {
				t.Error("the first and the last point are not both kept")
			}
			if !slices.IsSortedFunc(out, byTime) {
				t.Error("not sorted by time")
			}
			// Every decision change is kept (up to MaxChanges), so the
			// timeline is the one of every judgement.
			want, got := segments(ps), segments(out)
			if len(tc.changes) <= MaxChanges && !slices.Equal(got, want) {
				t.Errorf("timeline %v, want %v", got, want)
			}
			// The last hour keeps a point in every RecentStep it had one.
			if tc.step <= RecentStep {
				buckets := map[int64]bool{}
				for _, p := range out {
					if at := p.GetTime().AsTime(); now.Sub(at) <= RecentAge {
						buckets[at.Unix()/int64(RecentStep/time.Second)] = true
					}
				}
				for _, p := range ps {
					at := p.GetTime().AsTime()
					if now.Sub(at) <= RecentAge && !buckets[at.Unix()/int64(RecentStep/time.Second)] {
						t.Fatalf("no point kept in the 15 s of %v", at)
					}
				}
			}
			// Older points are spread over the run: no gap longer than an
			// eighth of the age of the points around it (a run of a year
			// has its widths doubled: a quarter).
			for i := 1; i < len(out); i++ {
				a, b := out[i-1].GetTime().AsTime(), out[i].GetTime().AsTime()
				if age := now.Sub(b); age > RecentAge && b.Sub(a) > age/4+tc.step {
					t.Errorf("gap of %v between points aged %v", b.Sub(a), age)
					break
				}
			}
			if again := Thin(out, now); !slices.Equal(again, out) {
				t.Errorf("not idempotent: %d points, then %d", len(out), len(again))
			}
		})
	}
}

// flaps returns n change indexes every k points.
func flaps(n, k int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (i + 1) * k
	}
	return out
}

func TestThinOfMoreChangesThanKept(t *testing.T) {
	t.Parallel()
	ps := trajectory(8640, 10*time.Second, flaps(300, 28)...)
	out := Thin(ps, ps[len(ps)-1].GetTime().AsTime())
	// The MaxChanges most recent changes are all there.
	want := segments(ps)
	got := segments(out)
	if len(got) < MaxChanges || !slices.Equal(got[len(got)-MaxChanges:], want[len(want)-MaxChanges:]) {
		t.Errorf("the last %d changes are not kept", MaxChanges)
	}
}

// TestAppendMatchesThin: thinning after each judgement, as the server
// does, keeps what thinning the whole trajectory at once keeps.
func TestAppendMatchesThin(t *testing.T) {
	t.Parallel()
	ps := trajectory(2*8640, 10*time.Second, 50, 60, 9000, 17000)
	var inc []*canaryv1.TrajectoryPoint
	for i, p := range ps {
		inc = Append(inc, p)
		if len(inc) > MaxPoints {
			t.Fatalf("after %d appends: %d points", i+1, len(inc))
		}
	}
	all := Thin(ps, ps[len(ps)-1].GetTime().AsTime())
	if !slices.Equal(inc, all) {
		t.Errorf("appending kept %d points, thinning at once %d", len(inc), len(all))
	}
}

func TestThinUnsortedAndNil(t *testing.T) {
	t.Parallel()
	ps := trajectory(2000, 3*time.Second, 10, 1500)
	now := ps[len(ps)-1].GetTime().AsTime()
	want := Thin(ps, now)
	shuffled := slices.Clone(ps)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	shuffled = append(shuffled, nil)
	if got := Thin(shuffled, now); !slices.Equal(got, want) {
		t.Errorf("shuffled input: %d points, want %d", len(got), len(want))
	}
	if got := Thin(nil, now); len(got) != 0 {
		t.Errorf("Thin(nil) = %v", got)
	}
	before := slices.Clone(ps)
	Thin(ps, now)
	if !slices.Equal(ps, before) {
		t.Error("Thin modified its input")
	}
}

func TestBucketOf(t *testing.T) {
	t.Parallel()
	now := t0.Add(37 * time.Second)
	for _, tc := range []struct {
		age   time.Duration
		scale int
		want  time.Duration
	}{
		{0, 0, 15 * time.Second},
		{-time.Minute, 0, 15 * time.Second}, // a point from the future
		{30 * time.Minute, 0, 15 * time.Second},
		{time.Hour + 3*time.Minute, 0, 2 * time.Minute},
		{2 * time.Hour, 0, 2 * time.Minute},
		{3 * time.Hour, 0, 4 * time.Minute},
		{24 * time.Hour, 0, 32 * time.Minute},
		{30 * time.Minute, 2, time.Minute},
		{24 * time.Hour, 1, 64 * time.Minute},
	} {
		w, idx := bucketOf(now.Add(-tc.age), now, tc.scale)
		if got := time.Duration(w) * time.Second; got != tc.want {
			t.Errorf("bucketOf(now-%v, scale %d): width %v, want %v", tc.age, tc.scale, got, tc.want)
		}
		if at := now.Add(-tc.age).Unix(); idx*w > at || at >= (idx+1)*w {
			t.Errorf("bucketOf(now-%v): bucket [%d, %d) does not hold the point", tc.age, idx*w, (idx+1)*w)
		}
	}
	// The points of a bucket share it, whatever their own ages.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		at := now.Add(-time.Duration(rng.Int64N(int64(1000 * time.Hour))))
		w, idx := bucketOf(at, now, 0)
		for _, other := range []int64{idx * w, (idx+1)*w - 1} {
			if w2, idx2 := bucketOf(time.Unix(other, 0), now, 0); w2 != w || idx2 != idx {
				t.Fatalf("%v is in bucket %d×%ds, %d in %d×%ds", at, idx, w, other, idx2, w2)
			}
		}
	}
	if w, _ := bucketOf(time.Time{}, now, 0); w <= 0 {
		t.Errorf("the zero time: width %d", w)
	}
}

func TestPoint(t *testing.T) {
	t.Parallel()
	at := timestamppb.New(t0)
	v := &canaryv1.Verdict{
		Time: at, Decision: canaryv1.Decision_DECISION_HOLD, Sequence: 7,
		Metrics: []*canaryv1.MetricResult{
			{
				Name: "latency_ms", Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION, Outcome: canaryv1.MetricOutcome_METRIC_OUTCOME_HOLD,
				PValue: 0.3, AdjustedPValue: 0.6, PromotePValue: 0.4,
				Baseline: &canaryv1.CohortSummary{N: 500}, Canary: &canaryv1.CohortSummary{N: 50},
				Effect: &canaryv1.Effect{Estimate: 1.05, Lower: 0.9, Upper: 1.2},
				Gate:   &canaryv1.Gate{NeedBaseline: 0, NeedCanary: 150},
			},
			{
				Name: "errors", Type: canaryv1.MetricType_METRIC_TYPE_RATE, Outcome: canaryv1.MetricOutcome_METRIC_OUTCOME_NO_DATA,
				Baseline: &canaryv1.CohortSummary{Count: 3, Total: 1000}, Canary: &canaryv1.CohortSummary{},
				Gate: &canaryv1.Gate{NeedBaseline: math.Inf(1), NeedCanary: math.Inf(1)},
			},
		},
	}
	p := Point(v)
	want := &canaryv1.TrajectoryPoint{Time: at, Decision: canaryv1.Decision_DECISION_HOLD, Sequence: 7, Metrics: []*canaryv1.TrajectoryMetric{
		{Outcome: canaryv1.MetricOutcome_METRIC_OUTCOME_HOLD, PValue: 0.3, AdjustedPValue: 0.6, PromotePValue: 0.4,
			EffectEstimate: 1.05, EffectLower: 0.9, EffectUpper: 1.2, HaveBaseline: 500, HaveCanary: 50, NeedBaseline: 0, NeedCanary: 150},
		{Outcome: canaryv1.MetricOutcome_METRIC_OUTCOME_NO_DATA, HaveBaseline: 1000, HaveCanary: 0,
			EffectEstimate: float32(math.NaN()), EffectLower: float32(math.NaN()), EffectUpper: float32(math.NaN()),
			NeedBaseline: float32(math.Inf(1)), NeedCanary: float32(math.Inf(1))},
	}}
	// NaN != NaN: compare the NaNs apart.
	for _, m := range p.Metrics[1:] {
		if !math.IsNaN(float64(m.EffectEstimate)) {
			t.Errorf("an effect not estimated is %v, want NaN", m.EffectEstimate)
		}
		m.EffectEstimate, m.EffectLower, m.EffectUpper = 0, 0, 0
	}
	want.Metrics[1].EffectEstimate, want.Metrics[1].EffectLower, want.Metrics[1].EffectUpper = 0, 0, 0
	if !proto.Equal(p, want) {
		t.Errorf("Point = %v\nwant %v", p, want)
	}
	if b, err := proto.Marshal(p); err != nil || len(b) > 120 {
		t.Errorf("a point of 2 metrics encodes in %d bytes (%v), want compact", len(b), err)
	}
}

func TestAppendCoord(t *testing.T) {
	t.Parallel()
	for v, want := range map[float64]string{
		0: "0", 12.34: "12.3", 12.35: "12.4", -4: "-4", -0.04: "0", -0.06: "-0.1", 399.96: "400", 1e20: "0", math.NaN(): "0", math.Inf(-1): "0",
	} {
		if got := f(v); got != want {
			t.Errorf("f(%v) = %q, want %q", v, got, want)
		}
	}
}
