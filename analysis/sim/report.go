package sim

import (
	"math"
	"slices"

	"github.com/canaryd/canaryd/analysis"
)

// z95 is the normal quantile of the 95% intervals.
const z95 = 1.959963984540054

// Report is the outcome of Run: one Cell per scenario, policy and effect.
type Report struct {
	Seed      uint64         `json:"seed"`
	Runs      int            `json:"runs"`
	Effects   []float64      `json:"effects"`
	Scenarios []ScenarioInfo `json:"scenarios"`
	Policies  []PolicySpec   `json:"policies"`
	Cells     []Cell         `json:"cells"`
	// Summary has one row per scenario and policy, in the order of Cells.
	Summary []Summary `json:"summary"`
}

// ScenarioInfo describes a simulated scenario in the Report.
type ScenarioInfo struct {
	Name        string  `json:"name"`
	Description string  `json:"description"`
	Traffic     string  `json:"traffic"`
	Target      string  `json:"target"`
	Tolerance   float64 `json:"tolerance"`
	Group       string  `json:"group,omitempty"`
	// FalsePromoteEffect is Scenario.FalsePromoteEffect: from this effect
	// multiple on a PROMOTE is false. BoundaryEffect is
	// Scenario.BoundaryEffect: the tolerance boundary (1), 0 when none.
	FalsePromoteEffect float64 `json:"false_promote_effect"`
	BoundaryEffect     float64 `json:"boundary_effect"`
}

// Cell is the outcome of one policy on the runs of one scenario and effect.
type Cell struct {
	Scenario string `json:"scenario"`
	Policy   string `json:"policy"`
	// Effect is the regression as a multiple of the target's tolerance;
	// 0 is A/A. Regression is the canary's relative change (k·tol).
	Effect     float64 `json:"effect"`
	Regression float64 `json:"regression"`
	Runs       int     `json:"runs"`
	// Rollback, Promote and NoVerdict (still HOLD when the bake ended) are
	// the fractions of runs ending so, with Wilson 95% intervals. On A/A,
	// Rollback is the false-rollback rate; on a regression, the detection
	// rate.
	Rollback  Rate `json:"rollback"`
	Promote   Rate `json:"promote"`
	NoVerdict Rate `json:"no_verdict"`
	// FalsePromote is Promote where a PROMOTE is false: on cells whose
	// effect is at least the scenario's FalsePromoteEffect (a canary worse
	// than its tolerance plus its detectable effect); nil elsewhere.
	FalsePromote *Rate `json:"false_promote,omitempty"`
	// Correct is the fraction with the correct verdict: PROMOTE on A/A,
	// ROLLBACK on a regression.
	Correct Rate `json:"correct"`
	// Minutes and CanaryRequests to the correct verdict, over the runs
	// that reached it.
	Minutes        Quantiles `json:"minutes_to_correct"`
	CanaryRequests Quantiles `json:"canary_requests_to_correct"`
}

// Summary is one policy's decision quality on one scenario at a glance:
// the false-rollback rates on A/A and at the tolerance boundary (1×: a
// valid judge rolls back at most 1 − confidence there too), and the
// detection and false-PROMOTE rates at the scenario's FalsePromoteEffect
// (the tolerance plus the detectable effect: a valid gate promotes at most
// 1 − power there). A rate whose effect was not simulated, or does not
// exist (no boundary), is nil.
type Summary struct {
	Scenario              string  `json:"scenario"`
	Policy                string  `json:"policy"`
	FalseRollbackAA       *Rate   `json:"false_rollback_aa,omitempty"`
	FalseRollbackBoundary *Rate   `json:"false_rollback_boundary,omitempty"`
	DetectEffect          float64 `json:"detect_effect"`
	Detection             *Rate   `json:"detection,omitempty"`
	FalsePromote          *Rate   `json:"false_promote,omitempty"`
	// Minutes to the ROLLBACK at DetectEffect, over the runs rolled back.
	Minutes Quantiles `json:"minutes_to_detection"`
}

// Rate is a proportion with its Wilson score 95% interval.
type Rate struct {
	K     int     `json:"k"`
	N     int     `json:"n"`
	Rate  float64 `json:"rate"`
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
}

// Wilson returns k/n with its Wilson score interval at 95%:
//
//	(p̂ + z²/2n ± z·sqrt(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)
//
// (Wilson, "Probable inference, the law of succession, and statistical
// inference", JASA 22, 1927; R's prop.test(k, n, correct = FALSE)). With
// n = 0 the rate is 0 and the interval [0, 1].
func Wilson(k, n int) Rate {
	r := Rate{K: k, N: n, Lower: 0, Upper: 1}
	if n == 0 {
		return r
	}
	nf, p, z2 := float64(n), float64(k)/float64(n), z95*z95
	c := (p + z2/(2*nf)) / (1 + z2/nf)
	h := z95 * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / (1 + z2/nf)
	r.Rate, r.Lower, r.Upper = p, max(0, c-h), min(1, c+h)
	if k == 0 {
		r.Lower = 0
	}
	if k == n {
		r.Upper = 1
	}
	return r
}

// Quantiles are the median and 90th percentile of a sample with
// distribution-free 95% order-statistic intervals.
type Quantiles struct {
	N        int     `json:"n"`
	Median   float64 `json:"median"`
	MedianLo float64 `json:"median_lower"`
	MedianHi float64 `json:"median_upper"`
	P90      float64 `json:"p90"`
	P90Lo    float64 `json:"p90_lower"`
	P90Hi    float64 `json:"p90_upper"`
}

// QuantilesOf returns the median and p90 of xs (sorted in place), each the
// order statistic x_(⌈nq⌉), with the interval [x_(l), x_(u)] of ranks
//
//	l = ⌊nq − z·sqrt(nq(1−q))⌋,  u = ⌈nq + z·sqrt(nq(1−q))⌉ + 1
//
// clamped to [1, n]: the normal approximation to the binomial count of
// observations below the quantile (Conover, Practical Nonparametric
// Statistics, 3rd ed., §3.2). Empty xs give zeros (N = 0), so that a
// Report always encodes as JSON.
func QuantilesOf(xs []float64) Quantiles {
	q := Quantiles{N: len(xs)}
	slices.Sort(xs)
	q.Median, q.MedianLo, q.MedianHi = quantileCI(xs, 0.5)
	q.P90, q.P90Lo, q.P90Hi = quantileCI(xs, 0.9)
	return q
}

func quantileCI(xs []float64, p float64) (est, lo, hi float64) {
	n := float64(len(xs))
	if n == 0 {
		return 0, 0, 0
	}
	at := func(rank float64) float64 { return xs[int(min(n, max(1, rank)))-1] }
	h := z95 * math.Sqrt(n*p*(1-p))
	return at(math.Ceil(n * p)), at(math.Floor(n*p - h)), at(math.Ceil(n*p+h) + 1)
}

func summarize(o *Options, outs []outcome) *Report {
	nE, nR, nP := len(o.Effects), o.Runs, len(o.Policies)
	rep := &Report{Seed: o.Seed, Runs: o.Runs, Effects: o.Effects, Policies: o.Policies}
	for s := range o.Scenarios {
		sc := &o.Scenarios[s]
		cfg, _ := sc.Config() // validated by Run
		tol := sc.tolerance(cfg)
		fp, bd := sc.FalsePromoteEffect(cfg), sc.BoundaryEffect(cfg)
		rep.Scenarios = append(rep.Scenarios, ScenarioInfo{Name: sc.Name, Description: sc.Description,
			Traffic: sc.Traffic(), Target: sc.Target, Tolerance: tol, Group: sc.Group,
			FalsePromoteEffect: fp, BoundaryEffect: bd})
		for p := range nP {
			sum := Summary{Scenario: sc.Name, Policy: o.Policies[p].Name, DetectEffect: fp}
			for e, eff := range o.Effects {
				var rb, pr, hd int
				var mins, reqs []float64
				for r := range nR {
					out := outs[((s*nE+e)*nR+r)*nP+p]
					switch out.decision {
					case analysis.Rollback:
						rb++
					case analysis.Promote:
						pr++
					default:
						hd++
					}
					want := analysis.Promote
					if eff > 0 {
						want = analysis.Rollback
					}
					if out.decision == want {
						mins = append(mins, out.minutes)
						reqs = append(reqs, out.canary)
					}
				}
				c := Cell{
					Scenario: sc.Name, Policy: o.Policies[p].Name, Effect: eff, Regression: eff * tol, Runs: nR,
					Rollback: Wilson(rb, nR), Promote: Wilson(pr, nR), NoVerdict: Wilson(hd, nR),
					Correct: Wilson(len(mins), nR), Minutes: QuantilesOf(mins), CanaryRequests: QuantilesOf(reqs),
				}
				if fp > 0 && eff >= fp {
					c.FalsePromote = ptr(c.Promote)
				}
				switch {
				case eff == 0:
					sum.FalseRollbackAA = ptr(c.Rollback)
				case eff == bd:
					sum.FalseRollbackBoundary = ptr(c.Rollback)
				}
				if eff == fp && fp > 0 {
					sum.Detection, sum.FalsePromote, sum.Minutes = ptr(c.Rollback), ptr(c.Promote), c.Minutes
				}
				rep.Cells = append(rep.Cells, c)
			}
			rep.Summary = append(rep.Summary, sum)
		}
	}
	return rep
}

func ptr(r Rate) *Rate { return &r }
