package analysis

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/canaryd/canaryd/analysis/stat"
)

// MaxInstances bounds the instances kept apart per metric and cohort.
// Instance names are hashed into this many slots, so more instances (or
// an unlucky collision) merge into one slot: two instances summarized
// together are one larger cluster, which keeps the cluster-robust variance
// valid and only makes it a little more conservative.
const MaxInstances = 256

// InstanceKey returns the slot of an instance name (FNV-1a modulo
// MaxInstances). Records without an instance share the slot of "".
func InstanceKey(name string) uint16 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return uint16(h.Sum32() % MaxInstances)
}

// InstanceStat summarizes the samples of one instance slot: Moments of the
// logarithms of the positive values (distribution metrics, whose tests
// compare multiplicative shifts: the geometric mean, ranks, quantiles),
// of the values (mean metrics), or BernoulliMoments of the events out of
// the exposure (rate metrics).
type InstanceStat struct {
	Key uint16
	stat.Moments
}

// Instances holds one InstanceStat per instance slot of one metric in one
// cohort, sorted by Key. The zero value is empty.
type Instances struct {
	s []InstanceStat
}

// Add merges m into the slot key.
func (in *Instances) Add(key uint16, m stat.Moments) {
	if m.N == 0 {
		return
	}
	i, ok := slices.BinarySearchFunc(in.s, key, func(s InstanceStat, k uint16) int { return int(s.Key) - int(k) })
	if !ok {
		in.s = slices.Insert(in.s, i, InstanceStat{Key: key})
	}
	in.s[i].Merge(m)
}

// Merge adds every slot of o.
func (in *Instances) Merge(o *Instances) {
	for _, s := range o.s {
		in.Add(s.Key, s.Moments)
	}
}

// Len returns the number of instance slots with samples.
func (in *Instances) Len() int { return len(in.s) }

// Stats returns the slots, sorted by Key. The slice must not be modified.
func (in *Instances) Stats() []InstanceStat { return in.s }

// moments returns the Moments of every slot.
func (in *Instances) moments() []stat.Moments {
	out := make([]stat.Moments, len(in.s))
	for i, s := range in.s {
		out[i] = s.Moments
	}
	return out
}

// clusteredContrast returns, for observations grouped by instance (x the
// canary's, y the baseline's, one Moments per instance), the contrast
// d = X̄ − c·Ȳ of the cohort means, its variance s2 under independent
// observations (s_X²/N_X + c² s_Y²/N_Y), the between-instance part of its
// variance under the one-way random-effects model, and the number k of
// instances in all.
//
// With the baseline scaled by c (y' = c·y, so that at the null boundary
// both cohorts have the same structure) and x̄_i = μ + b_i + e_i,
// Var b_i = σ_b², Var e_i = σ_w,cohort²/n_i, the variance of a cohort's mean
// X̄ = Σ n_i x̄_i / N is
//
//	Var X̄ = σ_b² Σ_i (n_i/N)² + σ_w²/N.
//
// σ_w² is each cohort's pooled within-instance variance, and σ_b² the
// method-of-moments (ANOVA) estimate pooled over both cohorts' instances,
//
//	σ̂_b² = Σ_cohorts [SSB − (k − 1) σ̂_w²] / Σ_cohorts (N − Σ_i n_i²/N),   SSB = Σ_i n_i (x̄_i − X̄)²
//
// (Searle, Casella and McCulloch, "Variance Components", 1992, §3.5), which
// assumes the instances of both cohorts are exchangeable: a canary on a
// single instance (a one-box) takes its instance variance from the
// baseline's instances. within is Σ_cohorts σ̂_w²/N and between is
// σ̂_b² Σ_cohorts Σ_i (n_i/N)²; the clustered variance of d is
// within + between (between is not truncated at 0: within + between is
// then the variance the spread of the instance means implies, the
// cluster-level estimate). between is 0 when k ≤ 2: with one instance per
// cohort σ_b cannot be estimated.
func clusteredContrast(x, y []stat.Moments, c float64) (mx, my stat.Moments, s2, within, between float64, k int) {
	for _, m := range x {
		mx.Merge(m)
	}
	for _, m := range y {
		my.Merge(stat.Moments{N: m.N, Mean: c * m.Mean, M2: c * c * m.M2})
	}
	if mx.N < 2 || my.N < 2 {
		return mx, my, 0, 0, 0, 0
	}
	s2 = mx.Variance()/mx.N + my.Variance()/my.N
	var num, den, wsq float64
	for ci, ms := range [2][]stat.Moments{x, y} {
		tot, sc := mx, 1.0
		if ci == 1 {
			tot, sc = my, c
		}
		var ssb, m2, nsq float64
		ki := 0
		for _, m := range ms {
			if !(m.N > 0) {
				continue
			}
			ki++
			dev := sc*m.Mean - tot.Mean
			ssb += m.N * dev * dev
			m2 += sc * sc * m.M2
			nsq += m.N * m.N
		}
		k += ki
		sw2 := 0.0
		if tot.N > float64(ki) {
			sw2 = m2 / (tot.N - float64(ki))
		}
		num += ssb - float64(ki-1)*sw2
		den += tot.N - nsq/tot.N
		within += sw2 / tot.N
		wsq += nsq / (tot.N * tot.N)
	}
	if k > 2 && den > 0 {
		between = num / den * wsq // may be negative: the instances vary less than their samples
	}
	return mx, my, s2, within, between, k
}

// DesignEffect returns the factor φ ≥ 1 by which grouping the observations
// into instances inflates the variance of the contrast X̄ − c·Ȳ of two
// cohorts (x the canary's instances, y the baseline's), against the
// variance s2 the tests assume for independent observations:
//
//	φ = max(1, f · (within + between) / s2)
//
// with the terms of clusteredContrast: within + between is the
// cluster-level variance of the contrast, the variance that the spread of
// the instance means implies (Kish's design effect, estimated rather than
// assumed), with d = k − 2 degrees of freedom for k instances in all
// (k_x − 1 + k_y − 1). The contrast standardized by it is Student's t with
// d degrees of freedom rather than normal (the cluster-level t-test;
// Cameron and Miller, "A Practitioner's Guide to Cluster-Robust
// Inference", J. Human Resources 50, 2015, §VI, on few clusters), and
//
//	f = (t_d(1 − alpha) / z(1 − alpha))²
//
// scales the variance so that a test at level alpha that compares the
// standardized contrast with z(1 − alpha) — or with the mixture SPRT's
// higher boundary — rejects no more often than the t-test. With φ = 1 the
// test is the one for independent observations; so a test on the inflated
// variance rejects only when both the independent and the cluster-level
// tests would: it keeps the cluster-level test's level whether or not the
// instances differ, and its power when many instances show that they do
// not.
//
// The whole cluster-level variance is inflated, not only its part beyond
// the within-instance variance: with two instances per cohort the spread
// of their means is often, by chance, smaller than their samples' noise
// alone would make it (P(χ²₂/2 < 0.05) = 5%), while the instances differ
// far more; a correction that then fell back to the independent variance
// rolled back 1.4% of runs at the tolerance boundary where the
// cluster-level t-test rolls back 0.5% (2 + 2 instances of latency
// differing by a log-sd of 0.05, 2,000 observations each, level 0.005).
// The price is power with few instances: with 2 + 2 at alpha = 0.0033,
// f = 20 (the standard error ×4.5); with 9 + 1, f = 1.8; with 20 + 20,
// f = 1.1. The HOLD reasons say that more instances help.
//
// φ is 1 when there are fewer than three instances in all (no instance
// names, or one per cohort: an instance effect cannot be told from a
// regression, and the tolerance must cover it), and when alpha is not in
// (0, 0.5).
func DesignEffect(x, y []stat.Moments, c, alpha float64) float64 {
	_, _, s2, within, between, k := clusteredContrast(x, y, c)
	if k <= 2 || !(s2 > 0) || !(alpha > 0 && alpha < 0.5) || math.IsNaN(within+between) {
		return 1
	}
	return inflate(max(0, within+between)/s2, k-2, alpha)
}

// inflate returns max(1, f·ratio) with DesignEffect's small-sample
// allowance f for d degrees of freedom at level alpha.
func inflate(ratio float64, d int, alpha float64) float64 {
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(d)}.Quantile(1 - alpha)
	z := distuv.UnitNormal.Quantile(1 - alpha)
	phi := max(1, (t/z)*(t/z)) * ratio
	switch {
	case math.IsNaN(phi) || math.IsInf(phi, 1):
		return math.MaxFloat64
	case !(phi > 1):
		return 1
	}
	return phi
}

// RateDesignEffect is DesignEffect for a rate metric, on the scale of its
// test, the logarithm of the rate ratio: instance effects on error rates
// are multiplicative (a host fails 30% more often than another), hence
// skewed on the scale of the rates and nearly normal on that of their
// logarithms. x and y hold one BernoulliMoments per instance of the canary
// and the baseline (N the exposure, Mean the event rate). With count_i
// events out of N_i for instance i of a cohort,
//
//	z_i = log((count_i + ½)/N_i),   v_i = 1/(count_i + ½),
//
// the between-instance variance τ² of the log rates is the
// DerSimonian–Laird estimate pooled over both cohorts, each cohort's
// instances around their own weighted mean (weights w_i = 1/v_i), not
// truncated at 0 (see DesignEffect),
//
//	τ̂² = (Σ_cohorts Q − Σ_cohorts (k − 1)) / Σ_cohorts (Σw − Σw²/Σw),   Q = Σ w_i (z_i − z̄)²
//
// (DerSimonian and Laird, "Meta-analysis in clinical trials", Controlled
// Clinical Trials 7, 1986). The variance of the log rate ratio is then
// within + between, with within = 1/E_C + 1/E_B (Poisson, E the events of
// a cohort) and between = τ̂² Σ_cohorts Σ_i (N_i/N)², and
//
//	φ = max(1, f · (within + between) / within),   f = (t_{k−2}(1 − alpha) / z(1 − alpha))²,
//
// with DesignEffect's small-sample allowance f for the k − 2 degrees of
// freedom of τ̂². φ is 1 with fewer than three instances in all, or without
// events in a cohort.
func RateDesignEffect(x, y []stat.Moments, alpha float64) float64 {
	if !(alpha > 0 && alpha < 0.5) {
		return 1
	}
	var within, between, q, cw float64
	k, df := 0, 0
	for _, ms := range [2][]stat.Moments{x, y} {
		var events, exposure, sw, swz, sw2 float64
		n := 0
		for _, m := range ms {
			if m.N > 0 {
				events += m.Mean * m.N
				exposure += m.N
				n++
			}
		}
		if events == 0 || n == 0 {
			return 1
		}
		within += 1 / events
		k += n
		df += n - 1
		zs := make([]float64, 0, n)
		ws := make([]float64, 0, n)
		for _, m := range ms {
			if !(m.N > 0) {
				continue
			}
			c := m.Mean * m.N
			z, w := math.Log((c+0.5)/m.N), c+0.5
			zs, ws = append(zs, z), append(ws, w)
			sw += w
			swz += w * z
			sw2 += w * w
			between += (m.N / exposure) * (m.N / exposure)
		}
		mean := swz / sw
		for j, z := range zs {
			q += ws[j] * (z - mean) * (z - mean)
		}
		cw += sw - sw2/sw
	}
	if k <= 2 || !(cw > 0) || !(within > 0) {
		return 1
	}
	between *= (q - float64(df)) / cw
	return inflate(max(0, within+between)/within, k-2, alpha)
}

// MaxInstanceName bounds the bytes of an instance name (Record.Instance),
// as it bounds a label value: host names are at most 253 bytes, Kubernetes
// pod names too.
const MaxInstanceName = 256

// MaxNamesPerSlot bounds the instance names a Data keeps per slot, for
// reports: the judge needs only the slots, a reader the names of the odd
// host. A run's names thus cost at most MaxInstances × MaxNamesPerSlot ×
// MaxInstanceName bytes (256 KiB), a run on a few hundred hosts a few KiB.
const MaxNamesPerSlot = 4

// slotNames are the instance names seen in one slot: the MaxNamesPerSlot
// smallest in byte order, sorted, and whether there were more.
type slotNames struct {
	key   uint16
	names []string
	more  bool
}

// instanceNames holds the names of the instances of a run's samples,
// sorted by slot. Keeping the smallest names of each slot makes it a
// function of the set of names added, whatever the order of adds and
// merges: the smallest names of a union are among the smallest of each
// part, and a union has more than MaxNamesPerSlot names exactly when a
// part had more or the parts' names together do.
type instanceNames struct {
	s []slotNames
}

// add records a name; "" (no instance) is not a name. A name kept is
// copied: it may share the memory of a whole request.
func (in *instanceNames) add(key uint16, name string) { in.insert(key, name, true) }

// insert records a name, copying it if clone.
func (in *instanceNames) insert(key uint16, name string, clone bool) {
	if name == "" {
		return
	}
	i, ok := slices.BinarySearchFunc(in.s, key, func(s slotNames, k uint16) int { return int(s.key) - int(k) })
	if !ok {
		in.s = slices.Insert(in.s, i, slotNames{key: key})
	}
	sn := &in.s[i]
	j, found := slices.BinarySearch(sn.names, name)
	switch {
	case found:
	case j == MaxNamesPerSlot: // larger than every name kept
		sn.more = true
	default:
		if clone {
			name = strings.Clone(name)
		}
		sn.names = slices.Insert(sn.names, j, name)
		if len(sn.names) > MaxNamesPerSlot {
			sn.names = sn.names[:MaxNamesPerSlot]
			sn.more = true
		}
	}
}

// merge adds the names of o (immutable strings, shared).
func (in *instanceNames) merge(o *instanceNames) {
	for _, sn := range o.s {
		for _, n := range sn.names {
			in.insert(sn.key, n, false)
		}
		if sn.more {
			i, _ := slices.BinarySearchFunc(in.s, sn.key, func(s slotNames, k uint16) int { return int(s.key) - int(k) })
			in.s[i].more = true
		}
	}
}

// InstanceNames returns the names of the instances seen in slot key
// (InstanceKey), sorted, up to MaxNamesPerSlot, and whether more names
// hashed to it. Samples without an instance name none. The slice must not
// be modified.
func (d *Data) InstanceNames(key uint16) (names []string, more bool) {
	i, ok := slices.BinarySearchFunc(d.names.s, key, func(s slotNames, k uint16) int { return int(s.key) - int(k) })
	if !ok {
		return nil, false
	}
	return d.names.s[i].names, d.names.s[i].more
}

// appendNames encodes the names: the number of slots, then per slot a
// byte (1 when there were more names), the number of names and each as a
// length and its bytes. The slot is each name's InstanceKey.
func appendNames(b []byte, in *instanceNames) []byte {
	b = binary.AppendUvarint(b, uint64(len(in.s)))
	for _, sn := range in.s {
		var more byte
		if sn.more {
			more = 1
		}
		b = append(b, more)
		b = binary.AppendUvarint(b, uint64(len(sn.names)))
		for _, n := range sn.names {
			b = binary.AppendUvarint(b, uint64(len(n)))
			b = append(b, n...)
		}
	}
	return b
}

// readNames decodes what appendNames encoded, checking that it is what
// add could have made: valid names of their slot, sorted, slots in order.
func readNames(r *reader, in *instanceNames) error {
	n := r.uvarint()
	if r.err != nil || n > MaxInstances {
		return fmt.Errorf("decode data: %d instance slots", n)
	}
	for j := range n {
		more := r.byte()
		k := r.uvarint()
		if r.err != nil || more > 1 || k == 0 || k > MaxNamesPerSlot || more == 1 && k != MaxNamesPerSlot {
			return fmt.Errorf("decode data: instance slot %d: bad names", j)
		}
		sn := slotNames{more: more == 1}
		for i := range k {
			l := r.uvarint()
			if r.err != nil || l == 0 || l > MaxInstanceName || l > uint64(len(r.b)) {
				return fmt.Errorf("decode data: instance slot %d: bad name", j)
			}
			name := string(r.b[:l])
			r.b = r.b[l:]
			key := InstanceKey(name)
			switch {
			case !utf8.ValidString(name):
				return fmt.Errorf("decode data: instance slot %d: name is not UTF-8", j)
			case i == 0 && j > 0 && key <= in.s[j-1].key, i > 0 && (key != sn.key || name <= sn.names[i-1]):
				return fmt.Errorf("decode data: instance slot %d: names out of order", j)
			}
			sn.key = key
			sn.names = append(sn.names, name)
		}
		in.s = append(in.s, sn)
	}
	return nil
}
