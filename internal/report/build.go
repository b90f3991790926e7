// Package report builds and renders the report of a canary run: the
// canary.v1 RunReport message (Build, from the server's run, verdict,
// trajectory and data), its compact trajectory (Point, Append, Thin), and
// its HTML form (Render), a self-contained page with hand-drawn SVG
// charts; and the history page of runs and verdicts (RenderHistory).
//
// The daemon serves the HTML of a report and of the history, `canaryctl
// report` renders the RunReport it fetches with the same Render, and
// `-o json` prints the message itself: one source for all three.
package report

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/analysis/stat"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Options are what Build takes beyond the run's state.
type Options struct {
	// Newest is the time of the newest sample, from which the starts of
	// the window tests are computed; zero means the verdict's time (a live
	// run's samples are timed up to the present).
	Newest time.Time
	// Alarms are the alarm events recorded with the run.
	Alarms []*canaryv1.AlarmEvent
	// Overrides are the deploy blockers overridden around the run
	// (RunReport.overrides).
	Overrides []*canaryv1.DeployOverride
	// MaxBins bounds the bins of a distribution's histogram; 0 means
	// DefaultMaxBins.
	MaxBins int
}

// MaxInstancesShown is how many instances per cohort and metric a report
// keeps: those furthest from their cohort.
const MaxInstancesShown = 20

// Build returns the report of a run from what the server holds: the run,
// its latest (or final) verdict v (nil: run.verdict), the trajectory of
// its judgements (see Point and Append), and its accumulated data d (nil
// when the raw data are gone, e.g. expired by the retention: the report
// then has no histograms, no instances and no median intervals). The
// inputs are not modified, but d is read, and analysis.Data is not safe
// for concurrent use: call Build under the run's lock, or on a copy.
//
// The trajectory is thinned (Thin) as of its newest point, and v's point
// is appended when it is newer than the newest point, so that the
// timeline ends with the verdict shown.
func Build(run *canaryv1.Run, v *canaryv1.Verdict, trajectory []*canaryv1.TrajectoryPoint, d *analysis.Data, opts Options) *canaryv1.RunReport {
	if v == nil {
		v = run.GetVerdict()
	}
	rep := &canaryv1.RunReport{}
	if run != nil {
		rep.Run = proto.CloneOf(run)
		rep.Run.Verdict = nil
	}
	if v != nil {
		rep.Verdict = proto.CloneOf(v)
	}
	traj := slices.Clone(trajectory)
	if v != nil {
		vt := v.GetTime().AsTime()
		if i := len(traj) - 1; i < 0 || vt.After(traj[i].GetTime().AsTime()) {
			traj = append(traj, Point(v))
		}
	}
	if len(traj) > 0 {
		slices.SortStableFunc(traj, byTime)
		rep.Trajectory = Thin(traj, traj[len(traj)-1].GetTime().AsTime())
	}
	conf := v.GetConfidence()
	if conf <= 0 || conf >= 1 {
		conf = run.GetConfig().GetConfidence()
	}
	if conf <= 0 || conf >= 1 {
		conf = analysis.DefaultConfidence
	}
	var cfg *analysis.Config
	if d != nil {
		cfg = d.Config()
	}
	for _, m := range v.GetMetrics() {
		mr := &canaryv1.MetricReport{Name: m.GetName()}
		var md *analysis.MetricData
		de := math.NaN()
		if cfg != nil {
			if i := cfg.Metric(m.GetName()); i >= 0 {
				md = d.Metric(i)
				de = cfg.Metrics[i].DetectableEffect
			}
		}
		for _, pm := range run.GetConfig().GetMetrics() {
			if pm.GetName() == m.GetName() && pm.DetectableEffect != nil {
				de = pm.GetDetectableEffect()
			}
		}
		setBands(mr, m, de)
		var bins [2][]stat.Bin
		if md != nil && m.GetType() == canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION {
			bins[0], bins[1] = md.Cohorts[analysis.Baseline].Dist.Bins(), md.Cohorts[analysis.Canary].Dist.Bins()
			mr.Histogram = histogram(bins, opts.MaxBins)
		}
		mr.Baseline = cohortValue(m, m.GetBaseline(), bins[0], conf)
		mr.Canary = cohortValue(m, m.GetCanary(), bins[1], conf)
		if md != nil {
			mr.Instances, mr.InstancesOmitted = instanceEffects(m, md, conf, d.InstanceNames)
		}
		if t, ok := windowStart(m.GetTest()); ok {
			mr.WindowStart = timestamppb.New(t)
		}
		rep.Metrics = append(rep.Metrics, mr)
	}
	rep.Windows = windows(run, v, d, opts.Newest)
	for _, a := range opts.Alarms {
		rep.Alarms = append(rep.Alarms, proto.CloneOf(a))
	}
	slices.SortStableFunc(rep.Alarms, func(a, b *canaryv1.AlarmEvent) int {
		return a.GetStartTime().AsTime().Compare(b.GetStartTime().AsTime())
	})
	for _, o := range opts.Overrides {
		rep.Overrides = append(rep.Overrides, proto.CloneOf(o))
	}
	slices.SortStableFunc(rep.Overrides, func(a, b *canaryv1.DeployOverride) int {
		return a.GetTime().AsTime().Compare(b.GetTime().AsTime())
	})
	return rep
}

// setBands sets the tolerance band of a metric (the effects that are no
// regression) and its promote band (tolerance plus the detectable effect
// de; the tolerance band when de is unknown), as analysis.thresholds
// draws them: 1 ± tolerance on the bad side(s).
func setBands(mr *canaryv1.MetricReport, m *canaryv1.MetricResult, de float64) {
	tol := m.GetTolerance()
	if math.IsNaN(de) {
		de = 0
	}
	mr.ToleranceLower, mr.ToleranceUpper = 0, math.Inf(1)
	mr.PromoteLower, mr.PromoteUpper = 0, math.Inf(1)
	switch m.GetBadDirection() {
	case canaryv1.BadDirection_BAD_DIRECTION_DECREASE:
		mr.ToleranceLower, mr.PromoteLower = 1-tol, math.Max(0, 1-tol-de)
	case canaryv1.BadDirection_BAD_DIRECTION_BOTH:
		mr.ToleranceLower, mr.PromoteLower = 1-tol, math.Max(0, 1-tol-de)
		mr.ToleranceUpper, mr.PromoteUpper = 1+tol, 1+tol+de
	default:
		mr.ToleranceUpper, mr.PromoteUpper = 1+tol, 1+tol+de
	}
}

// histogram returns both cohorts' distributions on shared bins with
// their quantiles; nil when neither cohort has an observation.
func histogram(bins [2][]stat.Bin, maxBins int) *canaryv1.DistributionHistogram {
	if len(bins[0]) == 0 && len(bins[1]) == 0 {
		return nil
	}
	b := Rebin(bins[0], bins[1], maxBins)
	h := &canaryv1.DistributionHistogram{
		Edges:          b.Edges,
		BaselineCounts: b.Counts[0],
		CanaryCounts:   b.Counts[1],
		BaselineZeros:  b.Zeros[0],
		CanaryZeros:    b.Zeros[1],
	}
	q := func(bs []stat.Bin) *canaryv1.Quantiles {
		if len(bs) == 0 {
			return nil
		}
		return &canaryv1.Quantiles{P50: quantileOf(bs, 0.5), P90: quantileOf(bs, 0.9), P99: quantileOf(bs, 0.99)}
	}
	h.BaselineQuantiles, h.CanaryQuantiles = q(bins[0]), q(bins[1])
	return h
}

// zTwoSided returns the standard normal quantile of a two-sided interval
// at confidence conf.
func zTwoSided(conf float64) float64 {
	return distuv.UnitNormal.Quantile(1 - (1-conf)/2)
}

// cohortValue returns a cohort's value of a metric with its interval at
// confidence conf, descriptive of the cohort alone:
//
//   - distribution: the median with the distribution-free interval of
//     order statistics, ranks n/2 ∓ z·√n/2 (Conover, "Practical
//     Nonparametric Statistics", 3rd ed., §3.2), from the cohort's bins
//     (no interval without them);
//   - rate: count/total with the exact Poisson interval of the count
//     (Garwood 1936) divided by the exposure;
//   - mean: the mean ± z·sd/√n.
//
// It returns nil when the cohort has no data.
func cohortValue(m *canaryv1.MetricResult, s *canaryv1.CohortSummary, bins []stat.Bin, conf float64) *canaryv1.CohortValue {
	nan := math.NaN()
	z := zTwoSided(conf)
	cv := &canaryv1.CohortValue{Confidence: conf, Lower: nan, Upper: nan}
	switch m.GetType() {
	case canaryv1.MetricType_METRIC_TYPE_RATE:
		cv.Statistic = "rate"
		if m.GetName() == analysis.TrafficName {
			cv.Statistic = "share"
		}
		switch {
		case s.GetTotal() > 0:
			cv.Estimate = s.GetCount() / s.GetTotal()
			cv.Lower, cv.Upper = garwood(s.GetCount(), conf)
			cv.Lower, cv.Upper = cv.Lower/s.GetTotal(), math.Min(cv.Upper/s.GetTotal(), 1)
		case s.Rate != nil: // an expected share, declared rather than measured
			cv.Estimate = s.GetRate()
		default:
			return nil
		}
	case canaryv1.MetricType_METRIC_TYPE_MEAN:
		cv.Statistic = "mean"
		if s.GetN() == 0 {
			return nil
		}
		cv.Estimate = s.GetMean()
		if s.GetN() > 1 && s.Stddev != nil {
			h := z * s.GetStddev() / math.Sqrt(float64(s.GetN()))
			cv.Lower, cv.Upper = cv.Estimate-h, cv.Estimate+h
		}
	default:
		cv.Statistic = "median"
		if s.GetN() == 0 {
			return nil
		}
		cv.Estimate = s.GetMedian()
		if len(bins) > 0 {
			var n float64
			for _, b := range bins {
				n += b.Count
			}
			h := z * math.Sqrt(n) / 2
			cv.Lower = byRank(bins, math.Max(1, math.Floor(n/2-h)))
			cv.Upper = byRank(bins, math.Min(n, math.Ceil(1+n/2+h)))
		}
	}
	return cv
}

// garwood returns the exact two-sided interval at confidence conf of the
// mean of a Poisson count x (Garwood 1936): χ²(α/2; 2x)/2 and
// χ²(1 − α/2; 2x + 2)/2, as R's poisson.test reports it.
func garwood(x, conf float64) (lo, hi float64) {
	a := 1 - conf
	if x > 0 {
		lo = distuv.ChiSquared{K: 2 * x}.Quantile(a/2) / 2
	}
	hi = distuv.ChiSquared{K: 2*x + 2}.Quantile(1-a/2) / 2
	return lo, hi
}

// instanceStat is the summary of one instance slot of one cohort.
type instanceStat struct {
	cohort analysis.Cohort
	key    uint16
	m      stat.Moments
}

// instanceEffects returns each instance's value of a metric relative to
// the whole baseline's, with an interval from the instance's own spread
// (the baseline's value taken as known) at confidence conf, Bonferroni
// over the instances of both cohorts:
//
//   - distribution: the geometric mean, ratio exp(m̄ᵢ − m̄_B) of the mean
//     logarithms, interval exp(± z·sᵢ/√nᵢ); from the raw values' means
//     when the metric came as histograms (no logarithms kept);
//   - mean: the mean, ratio x̄ᵢ/x̄_B, interval ± z·sᵢ/(√nᵢ·x̄_B);
//   - rate: the rate, its Garwood interval over the baseline's rate.
//
// An instance stands out when its cohort has three instances or more, its
// interval excludes the median of its cohort's instances' ratios, and it
// is off that median by more than the metric's tolerance. Nothing is
// returned when neither cohort has two instances or more. At most
// MaxInstancesShown instances per cohort are kept, those furthest from
// their cohort's median; the number left out is returned.
func instanceEffects(m *canaryv1.MetricResult, md *analysis.MetricData, conf float64, names slotNamer) ([]*canaryv1.InstanceEffect, uint32) {
	geometric := false
	pick := func(c analysis.Cohort) *analysis.Instances { return &md.Cohorts[c].Instances }
	if m.GetType() == canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION &&
		md.Cohorts[0].LogInstances.Len() > 0 && md.Cohorts[1].LogInstances.Len() > 0 {
		geometric = true
		pick = func(c analysis.Cohort) *analysis.Instances { return &md.Cohorts[c].LogInstances }
	}
	b, c := pick(analysis.Baseline), pick(analysis.Canary)
	if b.Len() < 2 && c.Len() < 2 {
		return nil, 0
	}
	var pooled [2]stat.Moments
	var all []instanceStat
	for ci, in := range []*analysis.Instances{b, c} {
		for _, s := range in.Stats() {
			pooled[ci].Merge(s.Moments)
			all = append(all, instanceStat{cohort: analysis.Cohort(ci), key: s.Key, m: s.Moments})
		}
	}
	ref := pooled[0].Mean
	isRate := m.GetType() == canaryv1.MetricType_METRIC_TYPE_RATE
	ratio := func(mean float64) float64 {
		if geometric {
			return math.Exp(mean - ref)
		}
		if ref <= 0 && !isRate || ref == 0 {
			return math.NaN()
		}
		return mean / ref
	}
	// Each cohort's typical instance: the median of its instances' ratios,
	// which one odd instance does not move.
	var typical [2]float64
	for ci := range typical {
		var rs []float64
		for _, s := range all {
			if int(s.cohort) == ci {
				rs = append(rs, ratio(s.m.Mean))
			}
		}
		typical[ci] = median(rs)
	}
	z := zTwoSided(1 - (1-conf)/float64(len(all)))
	tol := m.GetTolerance()
	effects := make([]*canaryv1.InstanceEffect, 0, len(all))
	dist := make(map[*canaryv1.InstanceEffect]float64, len(all))
	for _, s := range all {
		e := &canaryv1.InstanceEffect{
			Cohort:   canaryv1.Cohort(s.cohort + 1),
			Instance: instanceName(s.key, names),
			Slot:     uint32(s.key),
			N:        s.m.N,
			Value:    s.m.Mean,
			Ratio:    ratio(s.m.Mean),
			Lower:    math.NaN(),
			Upper:    math.NaN(),
		}
		switch {
		case geometric:
			e.Value = math.Exp(s.m.Mean)
			if s.m.N > 1 {
				h := z * math.Sqrt(s.m.M2/(s.m.N-1)/s.m.N)
				e.Lower, e.Upper = math.Exp(s.m.Mean-h-ref), math.Exp(s.m.Mean+h-ref)
			}
		case isRate:
			if ref > 0 {
				lo, hi := garwood(math.Round(s.m.Mean*s.m.N), 1-(1-conf)/float64(len(all)))
				e.Lower, e.Upper = lo/s.m.N/ref, hi/s.m.N/ref
			}
		case s.m.N > 1 && ref > 0:
			h := z * math.Sqrt(s.m.M2/(s.m.N-1)/s.m.N) / ref
			e.Lower, e.Upper = e.Ratio-h, e.Ratio+h
		}
		own := typical[s.cohort]
		peers := b.Len()
		if s.cohort == analysis.Canary {
			peers = c.Len()
		}
		off := math.Abs(math.Log(e.Ratio / own))
		dist[e] = off
		e.StandsOut = peers >= 3 && (e.Lower > own || e.Upper < own) && off > math.Log1p(tol)
		effects = append(effects, e)
	}
	// Keep the MaxInstancesShown furthest from their cohort, per cohort.
	var kept []*canaryv1.InstanceEffect
	var omitted uint32
	for _, coh := range []canaryv1.Cohort{canaryv1.Cohort_COHORT_BASELINE, canaryv1.Cohort_COHORT_CANARY} {
		var es []*canaryv1.InstanceEffect
		for _, e := range effects {
			if e.Cohort == coh {
				es = append(es, e)
			}
		}
		if len(es) > MaxInstancesShown {
			slices.SortStableFunc(es, func(x, y *canaryv1.InstanceEffect) int { return cmpNaNLast(dist[y], dist[x]) })
			omitted += uint32(len(es) - MaxInstancesShown)
			es = es[:MaxInstancesShown]
		}
		slices.SortStableFunc(es, func(x, y *canaryv1.InstanceEffect) int { return cmpNaNLast(y.Ratio, x.Ratio) })
		kept = append(kept, es...)
	}
	return kept, omitted
}

// median returns the median of vs (NaN ignored; NaN when none is left).
func median(vs []float64) float64 {
	vs = slices.DeleteFunc(slices.Clone(vs), math.IsNaN)
	if len(vs) == 0 {
		return math.NaN()
	}
	slices.Sort(vs)
	if n := len(vs); n%2 == 0 {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
	return vs[len(vs)/2]
}

// cmpNaNLast compares a and b with NaN after every number (for sorting
// by decreasing value with cmpNaNLast(y, x), NaN before: both are fine as
// long as the order is total).
func cmpNaNLast(a, b float64) int {
	switch an, bn := math.IsNaN(a), math.IsNaN(b); {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// slotNamer returns the instance names of a slot and whether more names
// hashed to it (analysis.Data.InstanceNames).
type slotNamer func(key uint16) (names []string, more bool)

// instanceName names an instance slot by the names seen in it: the judge
// keeps instances by slot (analysis.InstanceKey, a hash of the name), so
// a slot is the "+"-joined names of the instances that share it, "…" for
// more than the data keep; "slot N" when it has no names (samples
// without an instance, data stored before names were kept).
func instanceName(key uint16, names slotNamer) string {
	ns, more := names(key)
	if len(ns) == 0 {
		return "slot " + strconv.Itoa(int(key))
	}
	name := strings.Join(ns, "+")
	if more {
		name += "+…"
	}
	return name
}

// windowRe matches what analysis.Judge adds to MetricResult.test when the
// smallest p-value came from a window.
var windowRe = regexp.MustCompile(`smallest p on the window since (\S+) \(`)

// windowStart returns the start of the window whose test gave a metric's
// p-value, read from its test description.
func windowStart(test string) (time.Time, bool) {
	m := windowRe.FindStringSubmatch(test)
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, m[1])
	return t, err == nil
}

// windows returns the window tests of a run: the config's window length
// and the starts of the windows tested at the verdict, as analysis.Judge
// computes them (the last analysis.MaxWindows epochs of the window length
// after the run's start, up to the newest sample's minute); nil when the
// config has no window.
func windows(run *canaryv1.Run, v *canaryv1.Verdict, d *analysis.Data, newest time.Time) *canaryv1.ReportWindows {
	w := run.GetConfig().GetWindow().AsDuration()
	if d != nil && d.Config().Window > 0 {
		w = d.Config().Window
	}
	if w <= 0 {
		return nil
	}
	out := &canaryv1.ReportWindows{Length: durationpb.New(w)}
	var start time.Time
	if d != nil {
		for _, c := range []analysis.Cohort{analysis.Baseline, analysis.Canary} {
			if s := d.Start(c); !s.IsZero() && (start.IsZero() || s.Before(start)) {
				start = s
			}
		}
	}
	if start.IsZero() && run.GetStartTime() != nil {
		start = run.GetStartTime().AsTime()
	}
	if newest.IsZero() && v.GetTime() != nil {
		newest = v.GetTime().AsTime()
	}
	newest = newest.Truncate(time.Minute)
	if start.IsZero() || !newest.After(start) {
		return out
	}
	last := int64(newest.Sub(start) / w)
	for j := last; j >= 1 && j > last-analysis.MaxWindows; j-- {
		out.Starts = append(out.Starts, timestamppb.New(start.Add(time.Duration(j)*w)))
	}
	return out
}
