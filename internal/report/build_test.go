package report

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/analysis/stat"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// TestGarwood compares with R: poisson.test(x, conf.level = c)$conf.int
// (R 4.2.2, options(digits = 10)).
func TestGarwood(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		x, conf, lo, hi float64
	}{
		{0, 0.95, 0, 3.688879454},
		{5, 0.95, 1.62348639, 11.66833208},
		{100, 0.99, 76.12049584, 128.76058012},
	} {
		lo, hi := garwood(tc.x, tc.conf)
		if math.Abs(lo-tc.lo) > 1e-8*math.Max(1, tc.lo) || math.Abs(hi-tc.hi) > 1e-8*tc.hi {
			t.Errorf("garwood(%v, %v) = [%v, %v], want [%v, %v]", tc.x, tc.conf, lo, hi, tc.lo, tc.hi)
		}
	}
}

// TestMedianInterval: the order statistics of ranks n/2 ∓ z·√n/2
// (Conover §3.2): for 1..100 at 95%, z·√n/2 = 9.8, ranks 40 and 61.
func TestMedianInterval(t *testing.T) {
	t.Parallel()
	bins := make([]stat.Bin, 100)
	for i := range bins {
		bins[i] = stat.Bin{Value: float64(i + 1), Count: 1}
	}
	m := &canaryv1.MetricResult{Type: canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION}
	med := 50.0
	cv := cohortValue(m, &canaryv1.CohortSummary{N: 100, Median: &med}, bins, 0.95)
	if cv.GetStatistic() != "median" || cv.GetEstimate() != 50 || cv.GetLower() != 40 || cv.GetUpper() != 61 {
		t.Errorf("median interval %+v, want 50 [40, 61]", cv)
	}
	// Without the bins (the raw data are gone): the estimate alone.
	cv = cohortValue(m, &canaryv1.CohortSummary{N: 100, Median: &med}, nil, 0.95)
	if cv.GetEstimate() != 50 || !math.IsNaN(cv.GetLower()) {
		t.Errorf("without bins: %+v", cv)
	}
	if cohortValue(m, &canaryv1.CohortSummary{}, nil, 0.95) != nil {
		t.Error("a cohort without data has a value")
	}
}

func TestCohortValueRateAndMean(t *testing.T) {
	t.Parallel()
	rate := &canaryv1.MetricResult{Type: canaryv1.MetricType_METRIC_TYPE_RATE, Name: "errors"}
	cv := cohortValue(rate, &canaryv1.CohortSummary{Count: 5, Total: 1000}, nil, 0.95)
	if cv.GetEstimate() != 0.005 || math.Abs(cv.GetLower()-0.00162348639) > 1e-10 || math.Abs(cv.GetUpper()-0.01166833208) > 1e-10 {
		t.Errorf("rate %+v, want 0.005 [0.00162348639, 0.01166833208] (R: poisson.test(5, 1000))", cv)
	}
	share := 0.1
	traffic := &canaryv1.MetricResult{Type: canaryv1.MetricType_METRIC_TYPE_RATE, Name: analysis.TrafficName}
	if cv := cohortValue(traffic, &canaryv1.CohortSummary{Rate: &share}, nil, 0.99); cv.GetStatistic() != "share" || cv.GetEstimate() != 0.1 || !math.IsNaN(cv.GetLower()) {
		t.Errorf("declared share %+v", cv)
	}
	mean, sd := 50.0, 20.0
	mm := &canaryv1.MetricResult{Type: canaryv1.MetricType_METRIC_TYPE_MEAN}
	cv = cohortValue(mm, &canaryv1.CohortSummary{N: 400, Mean: &mean, Stddev: &sd}, nil, 0.95)
	if h := 1.959964 * 20 / 20; math.Abs(cv.GetLower()-(50-h)) > 1e-5 || math.Abs(cv.GetUpper()-(50+h)) > 1e-5 {
		t.Errorf("mean %+v, want 50 ± %v", cv, h)
	}
}

func TestWindowStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		test string
		want string
	}{
		{"stratified contrasts; smallest p on the window since 2026-11-22T10:45:00Z (effect of that window)", "2026-11-22T10:45:00Z"},
		{"stratified contrasts", ""},
		{"smallest p on the window since yesterday (effect of that window)", ""},
	} {
		got, ok := windowStart(tc.test)
		if (tc.want == "") == ok || ok && got.Format(time.RFC3339) != tc.want {
			t.Errorf("windowStart(%q) = %v, %v; want %q", tc.test, got, ok, tc.want)
		}
	}
}

func TestInstanceName(t *testing.T) {
	t.Parallel()
	cfg, err := analysis.ParseConfig([]byte("name: n\nmetrics:\n  - {name: errors, category: stability, type: rate}\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Names that share a slot: six, more than the data keep per slot.
	byKey := map[uint16][]string{}
	var shared []string
	for i := 0; shared == nil; i++ {
		n := "host-" + strconv.Itoa(i)
		k := analysis.InstanceKey(n)
		byKey[k] = append(byKey[k], n)
		if len(byKey[k]) == analysis.MaxNamesPerSlot+2 {
			shared = byKey[k]
		}
	}
	d := analysis.NewData(cfg)
	add := func(name string) {
		t.Helper()
		if err := d.Add(&analysis.Record{Metric: "errors", Cohort: analysis.Canary, IsCount: true, Count: 1, Total: 10, Instance: name}); err != nil {
			t.Fatal(err)
		}
	}
	k := analysis.InstanceKey(shared[0])
	add(shared[1])
	add(shared[0])
	add(shared[1])
	if got, want := instanceName(k, d.InstanceNames), min(shared[0], shared[1])+"+"+max(shared[0], shared[1]); got != want {
		t.Errorf("slot %d: %q, want %q", k, got, want)
	}
	for _, n := range shared {
		add(n)
	}
	kept := slices.Sorted(slices.Values(shared))[:analysis.MaxNamesPerSlot]
	if got, want := instanceName(k, d.InstanceNames), strings.Join(kept, "+")+"+…"; got != want {
		t.Errorf("slot %d: %q, want %q", k, got, want)
	}
	add("")
	if k0 := analysis.InstanceKey(""); len(byKey[k0]) == 0 {
		if got, want := instanceName(k0, d.InstanceNames), "slot "+strconv.Itoa(int(k0)); got != want {
			t.Errorf("the samples without an instance are named %q, want %q", got, want)
		}
	}
}

// oddHostData returns the data of a run with one distribution metric:
// five baseline hosts, web-3 1.6 times slower than the others, and two
// canary hosts like the healthy baseline hosts.
func oddHostData(t *testing.T) (*analysis.Data, []string) {
	t.Helper()
	cfg, err := analysis.ParseConfig([]byte("name: odd\nmetrics:\n  - {name: latency_ms, category: performance, type: distribution, min_samples: 50}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := analysis.NewData(cfg)
	rng := rand.New(rand.NewPCG(7, 8))
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	hosts := []string{"web-1", "web-2", "web-3", "web-4", "web-5", "canary-a", "canary-b"}
	for m := range 30 {
		for _, h := range hosts {
			c, scale := analysis.Baseline, 1.0
			if strings.HasPrefix(h, "canary") {
				c = analysis.Canary
			}
			if h == "web-3" {
				scale = 1.6
			}
			for range 40 {
				v := scale * math.Exp(4+0.3*rng.NormFloat64())
				if err := d.Add(&analysis.Record{Metric: "latency_ms", Cohort: c, Value: v, Instance: h, Time: start.Add(time.Duration(m) * time.Minute)}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return d, hosts
}

func TestInstanceEffectsOddHost(t *testing.T) {
	t.Parallel()
	d, _ := oddHostData(t)
	v := analysis.Judge(d, analysis.Options{BakeComplete: true})
	pv := apiconv.VerdictToProto(&v)
	rep := Build(&canaryv1.Run{Id: "r"}, pv, nil, d, Options{})
	mr := rep.GetMetrics()[0]
	if len(mr.GetInstances()) != 7 || mr.GetInstancesOmitted() != 0 {
		t.Fatalf("%d instances (%d omitted), want 7", len(mr.GetInstances()), mr.GetInstancesOmitted())
	}
	var odd []string
	for i, e := range mr.GetInstances() {
		if e.GetStandsOut() {
			odd = append(odd, e.GetInstance())
		}
		// Baseline first, each cohort by decreasing ratio.
		if i > 0 {
			p := mr.GetInstances()[i-1]
			if p.GetCohort() > e.GetCohort() || p.GetCohort() == e.GetCohort() && p.GetRatio() < e.GetRatio() {
				t.Errorf("instance %d (%s) out of order", i, e.GetInstance())
			}
		}
		if e.GetN() != 1200 || !(e.GetLower() < e.GetRatio() && e.GetRatio() < e.GetUpper()) {
			t.Errorf("%s: n=%v, ratio %v [%v, %v]", e.GetInstance(), e.GetN(), e.GetRatio(), e.GetLower(), e.GetUpper())
		}
	}
	if len(odd) != 1 || odd[0] != "web-3" {
		t.Errorf("instances standing out: %v, want [web-3]", odd)
	}
	// web-3's geometric mean is 1.6× the others', so 1.6/(4 + 1.6)·5 ≈
	// 1.43× the whole baseline's, whose geometric mean is that of all its
	// hosts: 1.6^(1/5) ≈ 1.099× the healthy hosts'.
	web3 := mr.GetInstances()[0]
	if want := 1.6 / math.Pow(1.6, 0.2); web3.GetInstance() != "web-3" || math.Abs(web3.GetRatio()/want-1) > 0.03 {
		t.Errorf("first instance %s at %v×, want web-3 at about %.3f×", web3.GetInstance(), web3.GetRatio(), want)
	}
	if !(web3.GetValue() > 80 && web3.GetValue() < 95) { // 1.6·e⁴ = 87.4
		t.Errorf("web-3's geometric mean %v, want about 87", web3.GetValue())
	}
}

func TestInstanceEffectsCapped(t *testing.T) {
	t.Parallel()
	cfg, err := analysis.ParseConfig([]byte("name: many\nmetrics:\n  - {name: errors, category: stability, type: rate}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := analysis.NewData(cfg)
	for i := range 60 {
		c := analysis.Baseline
		if i%2 == 1 {
			c = analysis.Canary
		}
		if err := d.Add(&analysis.Record{Metric: "errors", Cohort: c, IsCount: true, Count: float64(i), Total: 1000, Instance: "h" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	v := analysis.Judge(d, analysis.Options{BakeComplete: true})
	rep := Build(nil, apiconv.VerdictToProto(&v), nil, d, Options{})
	mr := rep.GetMetrics()[0]
	if len(mr.GetInstances()) != 2*MaxInstancesShown || mr.GetInstancesOmitted() != 60-2*MaxInstancesShown {
		t.Errorf("%d instances shown, %d omitted; want %d and %d", len(mr.GetInstances()), mr.GetInstancesOmitted(), 2*MaxInstancesShown, 60-2*MaxInstancesShown)
	}
	// The extremes of each cohort are kept: the baseline's h0 (no errors).
	found := false
	for _, e := range mr.GetInstances() {
		found = found || e.GetCohort() == canaryv1.Cohort_COHORT_BASELINE && e.GetRatio() == 0
		if n := e.GetInstance(); !strings.HasPrefix(n, "h") || analysis.InstanceKey(n) != uint16(e.GetSlot()) {
			t.Errorf("instance named %q in slot %d", n, e.GetSlot())
		}
	}
	if !found {
		t.Error("the baseline instance without errors, the most extreme, is not kept")
	}
}

func TestSetBands(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	for _, tc := range []struct {
		dir                canaryv1.BadDirection
		tol, de            float64
		tlo, thi, plo, phi float64
	}{
		{canaryv1.BadDirection_BAD_DIRECTION_INCREASE, 0.1, 0.1, 0, 1.1, 0, 1.2},
		{canaryv1.BadDirection_BAD_DIRECTION_UNSPECIFIED, 0.2, 0.2, 0, 1.2, 0, 1.4},
		{canaryv1.BadDirection_BAD_DIRECTION_DECREASE, 0.1, 0.1, 0.9, inf, 0.8, inf},
		{canaryv1.BadDirection_BAD_DIRECTION_DECREASE, 0.5, 0.7, 0.5, inf, 0, inf},
		{canaryv1.BadDirection_BAD_DIRECTION_BOTH, 0.1, 0.05, 0.9, 1.1, 0.85, 1.15},
		{canaryv1.BadDirection_BAD_DIRECTION_DECREASE, 0.5, math.NaN(), 0.5, inf, 0.5, inf}, // traffic_share: no promote test
	} {
		mr := &canaryv1.MetricReport{}
		setBands(mr, &canaryv1.MetricResult{BadDirection: tc.dir, Tolerance: tc.tol}, tc.de)
		got := []float64{mr.ToleranceLower, mr.ToleranceUpper, mr.PromoteLower, mr.PromoteUpper}
		want := []float64{tc.tlo, tc.thi, tc.plo, tc.phi}
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-12 && got[i] != want[i] {
				t.Errorf("%v tol %v de %v: bands %v, want %v", tc.dir, tc.tol, tc.de, got, want)
				break
			}
		}
	}
}

func TestInstanceLabels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		names, want []string
		prefix      string
	}{
		{[]string{"checkout-api-7d9f8c6b5-x2k4p", "checkout-api-7d9f8c6b5-q8zzt", "checkout-api-5c4d9-abcde"},
			[]string{"7d9f8c…x2k4p", "7d9f8c…q8zzt", "5c4d9-abcde"}, "checkout-api-"},
		{[]string{"web-1", "web-2", "web-10"}, []string{"1", "2", "10"}, "web-"},
		{[]string{"web-1", "web-1x"}, []string{"1", "1x"}, "web-"},
		{[]string{"a-", "a-b"}, []string{"a-", "a-b"}, ""}, // "a-" would lose every character
		{[]string{"slot 3", "slot 12"}, []string{"slot 3", "slot 12"}, ""},
		{[]string{"ip-10-0-0-1.ec2.internal:9090"}, []string{"ip-10-…:9090"}, ""},
		{[]string{"hôte-é1", "hôte-é2"}, []string{"é1", "é2"}, "hôte-"},
	} {
		got, prefix := instanceLabels(tc.names, 12)
		if !slices.Equal(got, tc.want) || prefix != tc.prefix {
			t.Errorf("instanceLabels(%q) = %q, %q; want %q, %q", tc.names, got, prefix, tc.want, tc.prefix)
		}
	}
}
