package sim

import (
	"math"
	"slices"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/analysis/stat"
)

// Policy names of the built-in policies.
const (
	PolicyFixed    = "fixed"
	PolicyFixedEnd = "fixed-end"
	PolicyKayenta  = "kayenta"
	PolicySeq      = "sequential"
	// PolicyKayentaStrict is Kayenta at KayentaStrictConfidence.
	PolicyKayentaStrict = "kayenta-strict"
)

// Policies returns the built-in policies, in report order:
//
//   - fixed: canaryd's judge (analysis.Judge, fixed-sample tests) after
//     every batch, BakeComplete with the last — continuous monitoring of a
//     fixed-sample test, which shows the peeking problem;
//   - fixed-end: the same judge, looking once when the bake ends — the
//     use its level is designed for;
//   - kayenta: Kayenta-style Mann-Whitney on per-minute aggregates;
//   - kayenta-strict: the same at KayentaStrictConfidence, which brings its
//     false-rollback rate down to canaryd's (the comparison "at an equal
//     false-rollback rate");
//   - sequential: canaryd's judge with the anytime-valid tests
//     (Options.Sequential) after every batch, with the canary's share of
//     the traffic the run declares (Scenario.ExpectedShare) as
//     Options.ExpectedShare — what a live run does.
//
// Another judging mode plugs in as one more PolicySpec whose New returns a
// JudgePolicy with its own Options, as sequential does; a policy with state
// of its own implements Policy.
func Policies() []PolicySpec {
	return []PolicySpec{
		{
			Name:        PolicyFixed,
			Description: "canaryd fixed-sample judge after every batch (BakeComplete with the last)",
			New:         func(cfg *analysis.Config, _ *Scenario) Policy { return NewJudgePolicy(cfg, nil) },
		},
		{
			Name:        PolicyFixedEnd,
			Description: "canaryd fixed-sample judge, one look when the bake ends",
			EndOnly:     true,
			New:         func(cfg *analysis.Config, _ *Scenario) Policy { return NewJudgePolicy(cfg, nil) },
		},
		{
			Name:        PolicyKayenta,
			Description: "Kayenta-style: two-sided Mann-Whitney at 98% on per-minute aggregates of each metric, every minute, first failure rolls back, promote at the end",
			New:         func(cfg *analysis.Config, _ *Scenario) Policy { return NewKayenta(cfg, KayentaConfidence) },
		},
		{
			Name:        PolicyKayentaStrict,
			Description: "Kayenta-style at 99.9%: calibrated to a false-rollback rate of about 1% on independent A/A runs",
			New:         func(cfg *analysis.Config, _ *Scenario) Policy { return NewKayenta(cfg, KayentaStrictConfidence) },
		},
		{
			Name:        PolicySeq,
			Description: "canaryd judge with anytime-valid tests (Options.Sequential) after every batch, given the run's declared canary share (Options.ExpectedShare) when the scenario has one",
			New: func(cfg *analysis.Config, sc *Scenario) Policy {
				share := sc.ExpectedShare
				return NewJudgePolicy(cfg, func(b *Batch) analysis.Options {
					return analysis.Options{BakeComplete: b.Last, Sequential: true, ExpectedShare: share}
				})
			},
		},
	}
}

// JudgePolicy feeds every batch into an analysis.Data, as the service does,
// and asks analysis.Judge at each look.
type JudgePolicy struct {
	cfg  *analysis.Config
	data *analysis.Data
	opts func(b *Batch) analysis.Options
	rec  analysis.Record
}

// NewJudgePolicy returns a policy judging with analysis.Judge and the
// Options opts returns at each look; nil opts means
// Options{BakeComplete: b.Last}.
func NewJudgePolicy(cfg *analysis.Config, opts func(b *Batch) analysis.Options) *JudgePolicy {
	if opts == nil {
		opts = func(b *Batch) analysis.Options { return analysis.Options{BakeComplete: b.Last} }
	}
	d := analysis.NewData(cfg)
	d.SetStart(analysis.Baseline, Start)
	d.SetStart(analysis.Canary, Start)
	return &JudgePolicy{cfg: cfg, data: d, opts: opts}
}

// Data returns the data accumulated so far.
func (p *JudgePolicy) Data() *analysis.Data { return p.data }

// Observe adds a batch's samples as records (observations of distribution
// and mean metrics after the warm-up go through Data.AddValues, the fast
// path of the columnar ingest; a histogram is one record with
// Record.Histogram). Simulated samples are valid, so errors cannot occur;
// one would be a bug of the simulator and panics.
func (p *JudgePolicy) Observe(b *Batch) {
	warm := b.Time.Before(Start.Add(p.cfg.Warmup))
	for i := range b.Samples {
		s := &b.Samples[i]
		m := &p.cfg.Metrics[s.Metric]
		p.rec = analysis.Record{Metric: m.Name, Cohort: s.Cohort, Time: b.Time, Instance: s.Instance}
		var err error
		switch {
		case s.Histogram != nil:
			p.rec.Histogram = s.Histogram
			err = p.data.Add(&p.rec)
		case m.Type == analysis.TypeRate:
			p.rec.IsCount, p.rec.Count, p.rec.Total = true, s.Count, s.Total
			err = p.data.Add(&p.rec)
		case warm:
			for _, v := range s.Values {
				p.rec.Value = v
				if err = p.data.Add(&p.rec); err != nil {
					break
				}
			}
		default:
			err = p.data.AddValues(s.Metric, s.Cohort, s.Instance, b.Time, s.Values)
		}
		if err != nil {
			panic("sim: JudgePolicy: " + err.Error())
		}
	}
}

// Decide returns analysis.Judge's decision.
func (p *JudgePolicy) Decide(b *Batch) analysis.Decision {
	return analysis.Judge(p.data, p.opts(b)).Decision
}

// KayentaConfidence is the confidence of Kayenta's Mann-Whitney classifier
// in its default configuration.
const KayentaConfidence = 0.98

// KayentaStrictConfidence is the per-look confidence at which the
// Kayenta-style policy, judged every minute for 60 minutes, rolls back
// about 1% of independent A/A runs, canaryd's level in the simulator: 1.0%
// [0.4%, 2.5%] latency, 0.5% errors, 0.8% conversions over 400 runs each
// (canaryctl simulate --runs 400 --seed 1 --scenario
// latency,errors,conversions --policy kayenta --effects 0
// --kayenta-confidence 0.999).
const KayentaStrictConfidence = 0.999

// Kayenta is a simplified Kayenta canary judge (Netflix/Google Kayenta's
// NetflixACAJudge with the Mann-Whitney classifier): each metric is reduced
// to one value per cohort and minute — the error or conversion rate of the
// minute, the median latency (p50) of the minute, the mean of a mean
// metric — and at every look the two series of per-minute values are
// compared with a two-sided Mann-Whitney U test at the given confidence,
// without multiplicity correction and without a minimum sample. Any metric
// that differs rolls back at once; a run that never fails is promoted when
// the bake ends. Minutes in the config's warm-up are skipped (Kayenta's
// beginCanaryAnalysisAfterMins). The p-value is the normal approximation
// with continuity correction and tie correction (R's wilcox.test with
// exact = FALSE), which is what large-sample implementations use and keeps
// a look cheap.
//
// A distribution metric known only through histograms (Sample.Histogram)
// has as its minute's p50 the median of the cohort's histograms of the
// minute, summed over its instances, estimated as Prometheus'
// histogram_quantile(0.5, …) estimates it from the same buckets: by linear
// interpolation within the bucket holding the median (histogramQuantile),
// which is what a Kayenta reading p50 from Prometheus gets. The histograms'
// Sum is not used (Kayenta compares the p50).
type Kayenta struct {
	cfg    *analysis.Config
	alpha  float64
	series [][2][]stat.Bin // per metric and cohort, per-minute values
	// scratch per metric and cohort within a minute
	count, total [][2]float64
	values       [][2][]float64
	bounds       [][]float64    // per metric: the bounds of its histograms
	buckets      [][2][]float64 // per metric and cohort: summed bucket counts
}

// NewKayenta returns the Kayenta-style policy at the given confidence.
func NewKayenta(cfg *analysis.Config, confidence float64) *Kayenta {
	n := len(cfg.Metrics)
	return &Kayenta{cfg: cfg, alpha: 1 - confidence, series: make([][2][]stat.Bin, n),
		count: make([][2]float64, n), total: make([][2]float64, n), values: make([][2][]float64, n),
		bounds: make([][]float64, n), buckets: make([][2][]float64, n)}
}

// Observe reduces the batch to one value per metric and cohort.
func (k *Kayenta) Observe(b *Batch) {
	if b.Time.Before(Start.Add(k.cfg.Warmup)) {
		return
	}
	for i := range k.count {
		k.count[i], k.total[i] = [2]float64{}, [2]float64{}
		k.values[i][0], k.values[i][1] = k.values[i][0][:0], k.values[i][1][:0]
		k.buckets[i][0], k.buckets[i][1] = k.buckets[i][0][:0], k.buckets[i][1][:0]
	}
	for i := range b.Samples {
		s := &b.Samples[i]
		k.count[s.Metric][s.Cohort] += s.Count
		k.total[s.Metric][s.Cohort] += s.Total
		k.values[s.Metric][s.Cohort] = append(k.values[s.Metric][s.Cohort], s.Values...)
		if h := s.Histogram; h != nil {
			k.bounds[s.Metric] = h.Bounds
			bs := &k.buckets[s.Metric][s.Cohort]
			if len(*bs) == 0 {
				*bs = slices.Grow(*bs, len(h.Counts))[:len(h.Counts)]
				clear(*bs)
			}
			for j, n := range h.Counts {
				(*bs)[j] += n
			}
		}
	}
	for i, m := range k.cfg.Metrics {
		for c := range 2 {
			var v float64
			switch {
			case m.Type == analysis.TypeRate:
				if k.total[i][c] == 0 {
					continue
				}
				v = k.count[i][c] / k.total[i][c]
			case m.Type == analysis.TypeMean:
				vs := k.values[i][c]
				if len(vs) == 0 {
					continue
				}
				for _, x := range vs {
					v += x
				}
				v /= float64(len(vs))
			case len(k.buckets[i][c]) > 0:
				v = histogramQuantile(0.5, k.bounds[i], k.buckets[i][c])
				if math.IsNaN(v) {
					continue
				}
			default:
				vs := k.values[i][c]
				if len(vs) == 0 {
					continue
				}
				v = median(vs)
			}
			k.series[i][c] = insertBin(k.series[i][c], v)
		}
	}
}

// Decide rolls back when any metric's per-minute values differ at the
// policy's level, promotes at the end of the bake, and holds otherwise.
func (k *Kayenta) Decide(b *Batch) analysis.Decision {
	for i := range k.series {
		x, y := k.series[i][analysis.Canary], k.series[i][analysis.Baseline]
		if len(x) == 0 || len(y) == 0 {
			continue
		}
		if stat.MannWhitney(x, y, stat.MWUOptions{Method: stat.MWUAsymptotic}).P < k.alpha {
			return analysis.Rollback
		}
	}
	if b.Last {
		return analysis.Promote
	}
	return analysis.Hold
}

// histogramQuantile estimates the q-quantile of the observations counted
// in buckets with upper bounds bounds (the last may be +Inf) and counts
// per bucket (not cumulative), as Prometheus' histogram_quantile does
// (promql/quantile.go, bucketQuantile): with the cumulative counts C_i and
// N = C_last, the rank r = q·N falls in the first bucket b with C_b >= r,
// and
//
//	quantile = lower_b + (upper_b − lower_b)·(r − C_(b−1))/(C_b − C_(b−1))
//
// — the observations spread uniformly within the bucket — with lower_0 = 0
// (values are >= 0; a first bound <= 0 is returned as is). When b is the
// +Inf bucket, the largest finite bound is returned. No observations: NaN.
func histogramQuantile(q float64, bounds, counts []float64) float64 {
	var n float64
	for _, c := range counts {
		n += c
	}
	if n == 0 || len(bounds) == 0 {
		return math.NaN()
	}
	rank, cum, b := q*n, 0.0, 0
	for ; b < len(counts)-1; b++ {
		if cum+counts[b] >= rank {
			break
		}
		cum += counts[b]
	}
	if math.IsInf(bounds[b], 1) {
		if b == 0 {
			return math.NaN()
		}
		return bounds[b-1]
	}
	lower := 0.0
	switch {
	case b > 0:
		lower = bounds[b-1]
	case bounds[0] <= 0:
		return bounds[0]
	}
	return lower + (bounds[b]-lower)*(rank-cum)/counts[b]
}

// median returns the median of vs (R's median: the mean of the two middle
// values when n is even), reordering vs; quickselect, O(n) expected.
func median(vs []float64) float64 {
	n := len(vs)
	hi := selectKth(vs, n/2)
	if n%2 == 1 {
		return hi
	}
	// The lower middle is the largest value left of position n/2.
	return (slices.Max(vs[:n/2]) + hi) / 2
}

// selectKth reorders vs so that vs[k] is the value of rank k (0-based),
// with no larger value before it and no smaller after it, and returns it.
func selectKth(vs []float64, k int) float64 {
	lo, hi := 0, len(vs)-1
	for lo < hi {
		// Median-of-three pivot, Hoare partition.
		mid := lo + (hi-lo)/2
		a, b, c := vs[lo], vs[mid], vs[hi]
		pivot := max(min(a, b), min(max(a, b), c))
		i, j := lo, hi
		for i <= j {
			for vs[i] < pivot {
				i++
			}
			for vs[j] > pivot {
				j--
			}
			if i <= j {
				vs[i], vs[j] = vs[j], vs[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return vs[k]
		}
	}
	return vs[k]
}

// insertBin adds one observation to bins sorted by distinct value.
func insertBin(bins []stat.Bin, v float64) []stat.Bin {
	i, found := slices.BinarySearchFunc(bins, v, func(b stat.Bin, v float64) int {
		switch {
		case b.Value < v:
			return -1
		case b.Value > v:
			return 1
		}
		return 0
	})
	if found {
		bins[i].Count++
		return bins
	}
	return slices.Insert(bins, i, stat.Bin{Value: v, Count: 1})
}
