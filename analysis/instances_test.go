package analysis

import (
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/canaryd/canaryd/analysis/stat"
)

// directDesignEffect computes DesignEffect's φ from raw values with
// two-pass sums, independently of Moments and clusteredContrast.
func directDesignEffect(x, y [][]float64, c, alpha float64) float64 {
	zcrit := distuv.UnitNormal.Quantile(1 - alpha)
	type cohort struct{ n, mean, ssw, ssb, nsq float64 }
	sum := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s
	}
	stats := func(groups [][]float64, sc float64) (cohort, float64) {
		var co cohort
		var all []float64
		for _, g := range groups {
			for _, v := range g {
				all = append(all, sc*v)
			}
		}
		co.n = float64(len(all))
		co.mean = sum(all) / co.n
		tot := 0.0
		for _, v := range all {
			tot += (v - co.mean) * (v - co.mean)
		}
		for _, g := range groups {
			ni := float64(len(g))
			mi := sc * sum(g) / ni
			for _, v := range g {
				co.ssw += (sc*v - mi) * (sc*v - mi)
			}
			co.ssb += ni * (mi - co.mean) * (mi - co.mean)
			co.nsq += ni * ni
		}
		return co, tot / (co.n - 1) / co.n
	}
	cx, vx := stats(x, 1)
	cy, vy := stats(y, c)
	s2 := vx + vy
	k := float64(len(x) + len(y))
	var num, den, within, wsq float64
	for i, co := range []cohort{cx, cy} {
		ki := float64(len(x))
		if i == 1 {
			ki = float64(len(y))
		}
		sw2 := co.ssw / (co.n - ki)
		num += co.ssb - (ki-1)*sw2
		den += co.n - co.nsq/co.n
		within += sw2 / co.n
		wsq += co.nsq / (co.n * co.n)
	}
	sb2 := num / den
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: k - 2}.Quantile(1 - alpha)
	f := math.Max(1, (t/zcrit)*(t/zcrit))
	return math.Max(1, f*math.Max(0, within+sb2*wsq)/s2)
}

// instanceData draws k groups of n lognormal values whose log-means differ
// by instance effects of standard deviation sigma.
func instanceData(rng *rand.Rand, k, n int, sigma, scale float64) [][]float64 {
	out := make([][]float64, k)
	for i := range out {
		f := scale * math.Exp(sigma*rng.NormFloat64())
		for range n + i*7 { // unequal instance sizes
			out[i] = append(out[i], f*math.Exp(0.5*rng.NormFloat64()))
		}
	}
	return out
}

func groupMoments(groups [][]float64) []stat.Moments {
	out := make([]stat.Moments, len(groups))
	for i, g := range groups {
		for _, v := range g {
			out[i].Add(v)
		}
	}
	return out
}

// TestDesignEffect checks φ against the direct two-pass computation of
// the same formula, and its behaviour: 1 without instances, near 1 for
// independent requests, growing with the sample when instances differ
// persistently (the between-instance variance does not average away).
func TestDesignEffect(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for _, tc := range []struct {
		kx, ky, n int
		sigma, c  float64
	}{
		{1, 9, 200, 0.1, 1.1},
		{4, 4, 100, 0.05, 1},
		{5, 5, 300, 0.2, 0.9},
		{2, 1, 50, 0.3, 1.2},
		{3, 3, 40, 0, 1},
	} {
		x, y := instanceData(rng, tc.kx, tc.n, tc.sigma, 100), instanceData(rng, tc.ky, tc.n, tc.sigma, 100)
		for _, alpha := range []float64{0.0033, 0.2} {
			got := DesignEffect(groupMoments(x), groupMoments(y), tc.c, alpha)
			want := directDesignEffect(x, y, tc.c, alpha)
			if math.Abs(got-want) > 1e-9*want {
				t.Errorf("%+v alpha %v: φ = %.15g, direct %.15g", tc, alpha, got, want)
			}
		}
	}

	// One instance per cohort: an instance effect cannot be estimated.
	x, y := instanceData(rng, 1, 1000, 0.5, 100), instanceData(rng, 1, 1000, 0.5, 100)
	if phi := DesignEffect(groupMoments(x), groupMoments(y), 1, 0.01); phi != 1 {
		t.Errorf("1+1 instances: φ = %v, want 1", phi)
	}
	// Independent requests spread over 5+5 instances: φ stays small.
	x, y = instanceData(rng, 5, 2000, 0, 100), instanceData(rng, 5, 2000, 0, 100)
	if phi := DesignEffect(groupMoments(x), groupMoments(y), 1, 0.01); phi > 2 {
		t.Errorf("independent requests: φ = %v, want near 1", phi)
	}
	// A persistent instance effect: φ grows about linearly with the
	// requests per instance.
	seed := rand.New(rand.NewPCG(9, 9))
	small := DesignEffect(groupMoments(instanceData(seed, 4, 500, 0.1, 100)), groupMoments(instanceData(seed, 4, 500, 0.1, 100)), 1, 0.01)
	seed = rand.New(rand.NewPCG(9, 9))
	large := DesignEffect(groupMoments(instanceData(seed, 4, 5000, 0.1, 100)), groupMoments(instanceData(seed, 4, 5000, 0.1, 100)), 1, 0.01)
	if !(small > 2 && large > 5*small) {
		t.Errorf("persistent instance effect: φ = %v at 500 per instance, %v at 5,000; want > 2 and growing ~10×", small, large)
	}
	// Degenerate arguments never panic.
	for _, a := range []float64{0, 0.5, math.NaN()} {
		if phi := DesignEffect(groupMoments(x), groupMoments(y), 1, a); phi != 1 {
			t.Errorf("alpha %v: φ = %v, want 1", a, phi)
		}
	}
	if phi := DesignEffect(nil, nil, 1, 0.01); phi != 1 {
		t.Errorf("no data: φ = %v", phi)
	}
}

// instancesConfig is one latency metric for the instance tests.
const instancesConfig = `
name: inst
confidence: 0.99
metrics:
  - {name: latency, category: performance, type: distribution, tolerance: 0.1, critical: true, min_samples: 200}
  - {name: errors, category: stability, type: rate, tolerance: 0.2, critical: true, min_total: 2000}
`

// TestDataInstances checks that Add and AddValues keep one summary per
// instance, that Merge and the binary encoding keep them, and that data
// encoded before instances were kept (version 1) still decode.
func TestDataInstances(t *testing.T) {
	cfg := testConfig(t, instancesConfig)
	d := NewData(cfg)
	for i, inst := range []string{"pod-a", "pod-b", "pod-a", ""} {
		if err := d.Add(&Record{Metric: "latency", Cohort: Canary, Value: float64(10 + i), Instance: inst}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.AddValues(0, Canary, "pod-c", time.Time{}, []float64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := d.Add(&Record{Metric: "errors", Cohort: Baseline, IsCount: true, Count: 3, Total: 100, Instance: "pod-z"}); err != nil {
		t.Fatal(err)
	}
	in := &d.Metric(0).Cohorts[Canary].LogInstances
	if raw := &d.Metric(0).Cohorts[Canary].Instances; raw.Len() != 4 {
		t.Fatalf("%d canary instances of raw values, want 4", raw.Len())
	}
	for _, s := range d.Metric(0).Cohorts[Canary].Instances.Stats() {
		if s.Key == InstanceKey("pod-c") && (s.N != 3 || s.Mean != 2 || s.M2 != 2) {
			t.Errorf("pod-c raw values: %+v, want N 3 mean 2 M2 2", s.Moments)
		}
	}
	if in.Len() != 4 {
		t.Fatalf("%d canary instances, want 4", in.Len())
	}
	for _, s := range in.Stats() {
		switch s.Key {
		case InstanceKey("pod-a"):
			// log 10 and log 12
			if want := (math.Log(10) + math.Log(12)) / 2; s.N != 2 || math.Abs(s.Mean-want) > 1e-15 {
				t.Errorf("pod-a: %+v, want N 2, mean %v", s.Moments, want)
			}
		case InstanceKey("pod-c"):
			if want := stat.LogMomentsOf([]float64{1, 2, 3}); s.Moments != want {
				t.Errorf("pod-c: %+v, want %+v", s.Moments, want)
			}
		}
	}
	if s := d.Metric(1).Cohorts[Baseline].Instances.Stats(); len(s) != 1 || s[0].N != 100 || s[0].Mean != 0.03 {
		t.Errorf("errors instances %+v, want 3 of 100", s)
	}

	// Merge and round trip.
	m := NewData(cfg)
	m.Merge(d)
	m.Merge(d)
	if s := m.Metric(0).Cohorts[Canary].LogInstances.Stats(); len(s) != 4 || s[0].N != 2*in.Stats()[0].N {
		t.Errorf("merged instances %+v", s)
	}
	back := roundTrip(t, cfg, m)
	for i := range 2 {
		for c := range 2 {
			a, b := m.Metric(i).Cohorts[c].Instances.Stats(), back.Metric(i).Cohorts[c].Instances.Stats()
			a = append(a, m.Metric(i).Cohorts[c].LogInstances.Stats()...)
			b = append(b, back.Metric(i).Cohorts[c].LogInstances.Stats()...)
			if len(a) != len(b) {
				t.Fatalf("metric %d cohort %d: %d instances decoded, want %d", i, c, len(b), len(a))
			}
			for j := range a {
				if a[j] != b[j] {
					t.Errorf("metric %d cohort %d: instance %+v decoded as %+v", i, c, a[j], b[j])
				}
			}
		}
	}

	// Version 1, written before instances were kept (canaryd 17da323):
	// 20 latency values 1..20 in the canary, 5 errors of 1,000 requests in
	// the baseline.
	v1, _ := hex.DecodeString(strings.Join(strings.Fields(testdataV1), ""))
	old, err := UnmarshalData(cfg, v1)
	if err != nil {
		t.Fatalf("decode version 1: %v", err)
	}
	lat, errs := old.Metric(0).Cohorts[Canary], old.Metric(1).Cohorts[Baseline]
	if lat.Dist.N() != 20 || lat.Dist.Mean() != 10.5 || errs.Count != 5 || errs.Total != 1000 || lat.Instances.Len() != 0 {
		t.Errorf("version 1 decoded as n %d mean %v, errors %v/%v, %d instances", lat.Dist.N(), lat.Dist.Mean(), errs.Count, errs.Total, lat.Instances.Len())
	}
	if _, err := UnmarshalData(cfg, append([]byte{9}, v1[1:]...)); err == nil {
		t.Error("unknown version decoded")
	}
}

// TestJudgeInstancesContinuousAA judges A/A runs of 4+4 instances whose
// latencies differ persistently by instance (log-sd 0.2 against a 10%
// tolerance), after every batch, with the sequential judge. With the
// instances named, the design effect keeps the rate of ever rolling back
// within α = 1%: more than 5 of 100 has probability < 0.1% if it holds.
// The same requests without instance names look independent, and the judge
// rolls back the runs whose hosts happen to differ by more than the
// tolerance — the failure the instance names prevent.
func TestJudgeInstancesContinuousAA(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, instancesConfig)
	const runs, looks, perLook = 100, 20, 150
	rolled := [2]int{}
	for run := range runs {
		rng := rand.New(rand.NewPCG(uint64(run), 2026))
		var factor [2][4]float64
		for c := range factor {
			for i := range factor[c] {
				factor[c][i] = math.Exp(0.2 * rng.NormFloat64())
			}
		}
		data := [2]*Data{NewData(cfg), NewData(cfg)}
		done := [2]bool{}
		vals := make([]float64, perLook)
		for range looks {
			for c := range 2 {
				for i := range 4 {
					for j := range vals {
						vals[j] = 80 * factor[c][i] * math.Exp(0.4*rng.NormFloat64())
					}
					errs := float64(rng.IntN(12))
					for named, d := range data {
						inst := ""
						if named == 1 {
							inst = string(rune('a' + i))
						}
						if err := d.AddValues(0, Cohort(c), inst, time.Time{}, vals); err != nil {
							t.Fatal(err)
						}
						if err := d.Add(&Record{Metric: "errors", Cohort: Cohort(c), IsCount: true, Count: errs, Total: 1000, Instance: inst}); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			for named, d := range data {
				if !done[named] && Judge(d, Options{Sequential: true}).Decision == Rollback {
					done[named] = true
					rolled[named]++
				}
			}
		}
	}
	t.Logf("A/A rollbacks over %d runs: %d without instance names, %d with", runs, rolled[0], rolled[1])
	if rolled[1] > 5 {
		t.Errorf("named instances: %d of %d A/A runs rolled back, above the bound 5 for α = 1%%", rolled[1], runs)
	}
	if rolled[0] < 15 {
		t.Errorf("unnamed instances: %d of %d A/A runs rolled back; the scenario no longer shows the instance effect", rolled[0], runs)
	}
}

// testdataV1 is a Data encoded by the version-1 format (see TestDataInstances).
const testdataV1 = `
010200000001000000000000000000000000000000000000000000000000000000000000000000000000000000000000
bc0101140000000000406a40000000000000f03f00000000000034400014000000000000f03f00000000000000400000
0000000008400000000000001040000000000000144000000000000018400000000000001c4000000000000020400000
0000000022400000000000002440000000000000264000000000000028400000000000002a400000000000002c400000
000000002e40000000000000304000000000000031400000000000003240000000000000334000000000000034400100
0100000000000014400000000000408f400000000000000000000000000000000000000000000000001c010000000000
0000000000000000000000000000000000000000000000
`

// TestClusterP checks the design-effect correction of a fixed-sample
// p-value through its normal score.
func roundTrip(t *testing.T, cfg *Config, d *Data) *Data {
	t.Helper()
	buf, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalData(cfg, buf)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// TestJudgeInstancesReason: a metric whose instances differ says so, in
// the test's name and in the gate's reason.
func TestJudgeInstancesReason(t *testing.T) {
	cfg := testConfig(t, instancesConfig)
	d := NewData(cfg)
	rng := rand.New(rand.NewPCG(3, 3))
	vals := make([]float64, 2000)
	for c := range 2 {
		for i := range 4 {
			f := 1 + 0.2*float64(i)
			for j := range vals {
				vals[j] = 80 * f * math.Exp(0.4*rng.NormFloat64())
			}
			if err := d.AddValues(0, Cohort(c), string(rune('a'+i)), time.Time{}, vals); err != nil {
				t.Fatal(err)
			}
		}
	}
	v := Judge(d, Options{Sequential: true})
	r := v.Metrics[0]
	if r.Baseline.Instances != 4 || r.Canary.Instances != 4 {
		t.Errorf("instances %d+%d, want 4+4", r.Baseline.Instances, r.Canary.Instances)
	}
	if !strings.Contains(r.Test, "for 4+4 instances (cluster-robust") {
		t.Errorf("test %q does not name the instances", r.Test)
	}
	if r.Outcome != OutcomeHold || !strings.Contains(r.Reason, "instances differ") {
		t.Errorf("outcome %s, reason %q; want HOLD naming the instances", r.Outcome, r.Reason)
	}
}

// allNames returns every slot's names of d, as "name" or "name+" when the
// slot had more.
func allNames(d *Data) []string {
	var out []string
	for k := range MaxInstances {
		ns, more := d.InstanceNames(uint16(k))
		for i, n := range ns {
			if more && i == len(ns)-1 {
				n += "+"
			}
			out = append(out, n)
		}
	}
	return out
}

// TestInstanceNames: the names a Data keeps for reports are a function of
// the set of names added, bounded per slot, whatever the order of adds
// and merges, and survive the binary encoding.
func TestInstanceNames(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, instancesConfig)
	// 2,000 names: every slot more than MaxNamesPerSlot.
	var names []string
	for i := range 2000 {
		names = append(names, "pod-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+strconv.Itoa(i))
	}
	whole := NewData(cfg)
	for _, n := range names {
		if err := whole.Add(&Record{Metric: "errors", Cohort: Canary, IsCount: true, Count: 1, Total: 10, Instance: n}); err != nil {
			t.Fatal(err)
		}
	}
	want := allNames(whole)
	// Each slot keeps its smallest names, and says it had more.
	bySlot := map[uint16][]string{}
	for _, n := range names {
		bySlot[InstanceKey(n)] = append(bySlot[InstanceKey(n)], n)
	}
	for k, ns := range bySlot {
		slices.Sort(ns)
		got, more := whole.InstanceNames(k)
		if !slices.Equal(got, ns[:min(len(ns), MaxNamesPerSlot)]) || more != (len(ns) > MaxNamesPerSlot) {
			t.Fatalf("slot %d: %v (more %v), want the smallest of %v", k, got, more, ns)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 20 {
		// Deltas of random sizes (some by AddValues), merged in random order
		// through the encoding.
		order := slices.Clone(names)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var deltas []*Data
		for len(order) > 0 {
			n := min(len(order), 1+rng.IntN(300))
			d := NewData(cfg)
			for _, name := range order[:n] {
				var err error
				if rng.IntN(2) == 0 {
					err = d.AddValues(0, Baseline, name, time.Time{}, []float64{1})
				} else {
					err = d.Add(&Record{Metric: "errors", Cohort: Canary, IsCount: true, Count: 1, Total: 10, Instance: name})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			deltas = append(deltas, roundTrip(t, cfg, d))
			order = order[n:]
		}
		rng.Shuffle(len(deltas), func(i, j int) { deltas[i], deltas[j] = deltas[j], deltas[i] })
		got := NewData(cfg)
		for _, d := range deltas {
			got.Merge(d)
			if rng.IntN(3) == 0 {
				got = roundTrip(t, cfg, got)
			}
		}
		if g := allNames(got); !slices.Equal(g, want) {
			t.Fatalf("trial %d: %d names %v…, want %d %v…", trial, len(g), g[:5], len(want), want[:5])
		}
	}
	// The bound: at most MaxNamesPerSlot names per slot, 256 bytes each.
	if n := len(want); n > MaxInstances*MaxNamesPerSlot {
		t.Errorf("%d names kept", n)
	}
}

// TestInstanceNamesEncoding: data without names encode as before names
// were kept (version 3), and decoding refuses names that add could not
// have made.
func TestInstanceNamesEncoding(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, instancesConfig)
	d := NewData(cfg)
	if err := d.Add(&Record{Metric: "errors", Cohort: Canary, IsCount: true, Count: 1, Total: 10}); err != nil {
		t.Fatal(err)
	}
	b, err := d.MarshalBinary()
	if err != nil || b[0] != 3 {
		t.Fatalf("data without names encode as version %d (%v), want 3", b[0], err)
	}
	if err := d.Add(&Record{Metric: "errors", Cohort: Canary, IsCount: true, Count: 1, Total: 10, Instance: "pod-a"}); err != nil {
		t.Fatal(err)
	}
	b, err = d.MarshalBinary()
	if err != nil || b[0] != 4 {
		t.Fatalf("data with names encode as version %d (%v), want 4", b[0], err)
	}
	// The encoding ends with the names: 1 slot, not more, 1 name of 5 bytes.
	if tail := string(b[len(b)-9:]); tail != "\x01\x00\x01\x05pod-a" {
		t.Fatalf("encoding ends with %q", tail)
	}
	head := b[:len(b)-9]
	// Two names of one slot, for the order checks.
	var a1, a2 string
	byKey := map[uint16]string{}
	for i := 0; a1 == ""; i++ {
		n := "h" + strconv.Itoa(i)
		if o, ok := byKey[InstanceKey(n)]; ok {
			a1, a2 = min(o, n), max(o, n)
		}
		byKey[InstanceKey(n)] = n
	}
	name := func(s string) string { return string(rune(len(s))) + s }
	for _, tc := range []struct{ name, names string }{
		{"empty name", "\x01\x00\x01\x00"},
		{"name too long", "\x01\x00\x01\x81\x02" + strings.Repeat("a", 257)},
		{"not UTF-8", "\x01\x00\x01\x02\xff\xfe"},
		{"truncated", "\x01\x00\x01\x05pod"},
		{"no names in a slot", "\x01\x00\x00"},
		{"more with room left", "\x01\x01\x01\x05pod-a"},
		{"names out of order", "\x01\x00\x02" + name(a2) + name(a1)},
		{"a name twice", "\x01\x00\x02" + name(a1) + name(a1)},
		{"names of two slots in one", "\x01\x00\x02" + name("pod-a") + name("pod-b")},
		{"slots out of order", "\x02\x00\x01" + name("pod-a") + "\x00\x01" + name("pod-a")},
		{"trailing bytes", "\x01\x00\x01\x05pod-a\x00"},
	} {
		if _, err := UnmarshalData(cfg, append(slices.Clip(head), tc.names...)); err == nil {
			t.Errorf("%s: decoded", tc.name)
		}
	}
	if _, err := UnmarshalData(cfg, append(slices.Clip(head), "\x01\x00\x02"+name(a1)+name(a2)...)); err != nil {
		t.Errorf("two names of one slot: %v", err)
	}
}

// TestCheckInstance: an instance name is UTF-8 of at most MaxInstanceName
// bytes; Check names the field.
func TestCheckInstance(t *testing.T) {
	t.Parallel()
	d := NewData(testConfig(t, instancesConfig))
	for _, tc := range []struct {
		instance string
		ok       bool
	}{
		{"", true},
		{"pod-a", true},
		{strings.Repeat("é", MaxInstanceName/2), true},
		{strings.Repeat("a", MaxInstanceName+1), false},
		{"pod-\xff", false},
	} {
		err := d.Check(&Record{Metric: "latency", Cohort: Canary, Value: 1, Instance: tc.instance})
		var fe *FieldError
		if tc.ok != (err == nil) || err != nil && (!errors.As(err, &fe) || fe.Field != "instance") {
			t.Errorf("Check(instance %.20q…, %d bytes) = %v, want ok %v", tc.instance, len(tc.instance), err, tc.ok)
		}
	}
}
