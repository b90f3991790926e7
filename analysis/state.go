package analysis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/canaryd/canaryd/analysis/stat"
)

// Merge adds the samples of o, which must have been made for the same
// config, to d. Merging is how a service folds the delta of each ingested
// batch into a run's state; the result does not depend on the order of the
// merges (up to floating-point rounding of sums). The cohorts' starts are
// d's, or o's where d has none (they are the run's, the same in every
// delta).
func (d *Data) Merge(o *Data) {
	for i := range d.metrics {
		d.metrics[i].merge(&o.metrics[i])
	}
	d.strata.merge(&o.strata)
	d.names.merge(&o.names)
	for c, t := range o.start {
		if d.start[c].IsZero() {
			d.start[c] = t
		}
	}
}

// merge adds the samples of o to m.
func (m *MetricData) merge(o *MetricData) {
	for c := range m.Cohorts {
		dst, src := &m.Cohorts[c], &o.Cohorts[c]
		dst.Dist.Merge(&src.Dist)
		dst.Moments.Merge(src.Moments)
		dst.Count += src.Count
		dst.Total += src.Total
		dst.Records += src.Records
		dst.Warmup += src.Warmup
		dst.Censored += src.Censored
		dst.NonInteger += src.NonInteger
		dst.Instances.Merge(&src.Instances)
		dst.LogInstances.Merge(&src.LogInstances)
	}
}

// Samples returns the number of samples the Data holds: observations of
// distribution and mean metrics, count records of rate metrics, and
// samples dropped in the warm-up.
func (d *Data) Samples() uint64 {
	var n uint64
	for i := range d.metrics {
		for _, c := range d.metrics[i].Cohorts {
			n += c.Samples()
		}
	}
	return n
}

// Samples returns the samples of one cohort of one metric: observations,
// count records and samples dropped in the warm-up.
func (c *CohortData) Samples() uint64 {
	return c.Dist.N() + c.Records + c.Warmup + c.meanN()
}

// meanN returns the observations of a mean metric (Moments of a
// distribution duplicate its Dist).
func (c *CohortData) meanN() uint64 {
	if c.Dist.N() > 0 {
		return 0
	}
	return uint64(c.Moments.N)
}

// dataVersion 3 replaces the epochs of the window tests by time strata
// and adds the whole-run Moments of distributions, the log-value instance
// summaries and the counts of censored and non-integer observations.
// Versions 1 and 2 are still decoded: their whole-run state becomes the
// run's only (untimed) stratum. Version 4 adds the instance names
// (instances.go); Data without names are still encoded as version 3, as
// before names were kept.
const dataVersion = 4

// MarshalBinary encodes the Data compactly, for storage of batch deltas
// and run snapshots. Empty cohorts cost one byte; counts that are whole
// numbers cost a varint.
func (d *Data) MarshalBinary() ([]byte, error) {
	version := byte(dataVersion)
	if len(d.names.s) == 0 {
		version = 3
	}
	b := []byte{version}
	b = binary.AppendUvarint(b, uint64(len(d.metrics)))
	for _, t := range d.start {
		var ns int64
		if !t.IsZero() {
			ns = t.UnixNano()
		}
		b = binary.AppendVarint(b, ns)
	}
	for i := range d.metrics {
		for c := range d.metrics[i].Cohorts {
			var err error
			if b, err = appendCohort(b, &d.metrics[i].Cohorts[c]); err != nil {
				return nil, err
			}
		}
	}
	st := &d.strata
	b = append(b, st.shift)
	b = binary.AppendUvarint(b, uint64(len(st.s)))
	prev := int64(0)
	for j, s := range st.s {
		switch {
		case s.key == untimed:
			b = append(b, 0)
		case j == 0 || st.s[j-1].key == untimed:
			b = append(b, 1)
			b = binary.AppendVarint(b, s.key)
		default:
			b = append(b, 2)
			b = binary.AppendUvarint(b, uint64(s.key-prev))
		}
		prev = s.key
		for i := range d.metrics {
			t := d.cfg.Metrics[i].Type
			for c := range 2 {
				b = appendCell(b, t, &s.cells[2*i+c])
			}
		}
	}
	if version >= 4 {
		b = appendNames(b, &d.names)
	}
	return b, nil
}

// appendNum encodes a non-negative whole number below 2⁵³ as a varint of
// twice its value, anything else as 1 followed by its 8 bytes.
func appendNum(b []byte, v float64) []byte {
	if v >= 0 && v < 1<<53 && v == math.Trunc(v) {
		return binary.AppendUvarint(b, uint64(v)<<1)
	}
	b = binary.AppendUvarint(b, 1)
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

func (r *reader) num() float64 {
	x := r.uvarint()
	if x&1 == 0 {
		return float64(x >> 1)
	}
	return math.Float64frombits(r.uint64())
}

func appendF64(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

func (r *reader) f64() float64 { return math.Float64frombits(r.uint64()) }

func appendMoments(b []byte, m stat.Moments) []byte {
	b = appendNum(b, m.N)
	if m.N == 0 {
		return b
	}
	return appendF64(appendF64(b, m.Mean), m.M2)
}

func (r *reader) moments() stat.Moments {
	m := stat.Moments{N: r.num()}
	if m.N != 0 {
		m.Mean, m.M2 = r.f64(), r.f64()
	}
	return m
}

// appendCohort encodes the whole-run state of one cohort.
func appendCohort(b []byte, c *CohortData) ([]byte, error) {
	if c.Dist.N() == 0 && c.Moments.N == 0 && c.Records == 0 && c.Warmup == 0 && c.Total == 0 {
		return append(b, 0), nil
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, c.Warmup)
	b = binary.AppendUvarint(b, c.Records)
	b = binary.AppendUvarint(b, c.Censored)
	b = binary.AppendUvarint(b, c.NonInteger)
	b = appendNum(b, c.Count)
	b = appendNum(b, c.Total)
	b = appendMoments(b, c.Moments)
	dist, err := c.Dist.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b = binary.AppendUvarint(b, uint64(len(dist)))
	b = append(b, dist...)
	for _, in := range [2]*Instances{&c.Instances, &c.LogInstances} {
		b = binary.AppendUvarint(b, uint64(in.Len()))
		for _, s := range in.Stats() {
			b = binary.AppendUvarint(b, uint64(s.Key))
			b = appendMoments(b, s.Moments)
		}
	}
	return b, nil
}

// appendCell encodes one stratum cell, with the fields of the metric's
// type only.
func appendCell(b []byte, t MetricType, c *cell) []byte {
	if c.empty() {
		return append(b, 0)
	}
	b = append(b, 1)
	switch t {
	case TypeRate:
		b = appendNum(b, c.count)
		b = appendNum(b, c.total)
		return appendNum(b, c.records)
	case TypeMean:
		return appendMoments(b, c.raw)
	}
	b = appendMoments(b, c.raw)
	b = appendMoments(b, c.log)
	return appendNum(b, c.slack)
}

// UnmarshalData decodes what Data.MarshalBinary encoded, for the config it
// was made with. It checks what it decodes, so that no encoded state, even
// a corrupted one, can make the judge panic.
func UnmarshalData(cfg *Config, b []byte) (*Data, error) {
	d := NewData(cfg)
	r := reader{b: b}
	version := r.byte()
	if version < 1 || version > dataVersion {
		return nil, fmt.Errorf("decode data: unknown version %d", version)
	}
	if n := r.uvarint(); n != uint64(len(cfg.Metrics)) {
		return nil, fmt.Errorf("decode data: %d metrics, config %q has %d", n, cfg.Name, len(cfg.Metrics))
	}
	for c := range d.start {
		if ns := r.varint(); ns != 0 {
			d.start[c] = time.Unix(0, ns).UTC()
		}
	}
	if version < 3 {
		if err := readOld(&r, d, version); err != nil {
			return nil, err
		}
	} else {
		for i := range d.metrics {
			for c := range d.metrics[i].Cohorts {
				if err := readCohort(&r, &d.metrics[i].Cohorts[c]); err != nil {
					return nil, fmt.Errorf("decode data: metric %d: %w", i, err)
				}
			}
		}
		if err := readStrata(&r, d); err != nil {
			return nil, err
		}
	}
	if version >= 4 {
		if err := readNames(&r, &d.names); err != nil {
			return nil, err
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode data: %w", r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("decode data: %d trailing bytes", len(r.b))
	}
	return d, nil
}

var errBadState = errors.New("bad numbers")

// finiteNum reports whether v is a number a sample sum can reach.
func finiteNum(v float64) bool { return v >= 0 && v <= MaxValue*MaxValue }

func validMoments(m stat.Moments, signed bool) bool {
	if m.N == 0 {
		return m.Mean == 0 && m.M2 == 0
	}
	lim := MaxValue
	if !signed && !(m.Mean >= -lim) {
		return false
	}
	// Σ(x − mean)² of N values within [−lim, lim] is at most N·lim²
	// (twice that leaves room for rounding).
	return finiteNum(m.N) && math.Abs(m.Mean) <= lim && m.M2 >= 0 && m.M2 <= 2*m.N*lim*lim
}

func readCohort(r *reader, c *CohortData) error {
	if r.byte() == 0 {
		return r.err
	}
	c.Warmup = r.uvarint()
	c.Records = r.uvarint()
	c.Censored = r.uvarint()
	c.NonInteger = r.uvarint()
	c.Count, c.Total = r.num(), r.num()
	c.Moments = r.moments()
	k := r.uvarint()
	if r.err != nil || k > uint64(len(r.b)) {
		return errShort
	}
	if err := c.Dist.UnmarshalBinary(r.b[:k]); err != nil {
		return err
	}
	r.b = r.b[k:]
	if !finiteNum(c.Count) || !finiteNum(c.Total) || c.Count > c.Total || !validMoments(c.Moments, true) {
		return errBadState
	}
	for _, in := range [2]*Instances{&c.Instances, &c.LogInstances} {
		n := r.uvarint()
		if r.err != nil || n > MaxInstances {
			return fmt.Errorf("%d instances", n)
		}
		for range n {
			key := r.uvarint()
			m := r.moments()
			if r.err != nil || key >= MaxInstances || !(m.N > 0) || !validMoments(m, true) {
				return errors.New("bad instance summary")
			}
			in.Add(uint16(key), m)
		}
	}
	return r.err
}

func readCell(r *reader, t MetricType, c *cell) error {
	if r.byte() == 0 {
		return r.err
	}
	switch t {
	case TypeRate:
		c.count, c.total, c.records = r.num(), r.num(), r.num()
		if !finiteNum(c.count) || !finiteNum(c.total) || c.count > c.total || !finiteNum(c.records) {
			return errBadState
		}
	case TypeMean:
		c.raw = r.moments()
	default:
		c.raw, c.log = r.moments(), r.moments()
		c.slack = r.num()
		if !(c.slack >= 0) || !validMoments(c.log, true) || c.log.N > c.raw.N {
			return errBadState
		}
	}
	if !validMoments(c.raw, true) {
		return errBadState
	}
	return r.err
}

func readStrata(r *reader, d *Data) error {
	st := &d.strata
	st.shift = r.byte()
	n := r.uvarint()
	if r.err != nil || n > MaxStrata+1 || st.shift > 40 {
		return fmt.Errorf("decode data: %d strata", n)
	}
	prev := int64(0)
	for j := range n {
		s := stratum{cells: make([]cell, 2*len(d.metrics))}
		switch r.byte() {
		case 0:
			if j != 0 {
				return errors.New("decode data: untimed stratum out of order")
			}
			s.key = untimed
		case 1:
			s.key = r.varint()
			if j > 0 && st.s[j-1].key != untimed || s.key == untimed {
				return errors.New("decode data: stratum out of order")
			}
		case 2:
			step := r.uvarint()
			if j == 0 || st.s[j-1].key == untimed || step == 0 || step > math.MaxInt64/2 || prev > math.MaxInt64-int64(step) {
				return errors.New("decode data: stratum out of order")
			}
			s.key = prev + int64(step)
		default:
			return errors.New("decode data: bad stratum")
		}
		prev = s.key
		for i := range d.metrics {
			for c := range 2 {
				if err := readCell(r, d.cfg.Metrics[i].Type, &s.cells[2*i+c]); err != nil {
					return fmt.Errorf("decode data: stratum %d metric %d: %w", j, i, err)
				}
			}
		}
		if r.err != nil {
			return fmt.Errorf("decode data: %w", r.err)
		}
		st.s = append(st.s, s)
	}
	if st.timed() > MaxStrata {
		return fmt.Errorf("decode data: %d strata exceed %d", st.timed(), MaxStrata)
	}
	return nil
}

// readOld decodes the state of versions 1 and 2, which had no strata: the
// whole-run state becomes the untimed stratum (the tests then compare the
// cohorts over the whole run, as those versions did).
func readOld(r *reader, d *Data, version byte) error {
	f64 := r.f64
	for i := range d.metrics {
		m := &d.cfg.Metrics[i]
		for c := range d.metrics[i].Cohorts {
			if r.byte() == 0 {
				continue
			}
			cd := &d.metrics[i].Cohorts[c]
			cd.Warmup = r.uvarint()
			cd.Records = r.uvarint()
			cd.Count, cd.Total = f64(), f64()
			cd.Moments = stat.Moments{N: f64(), Mean: f64(), M2: f64()}
			k := r.uvarint()
			if r.err != nil || k > uint64(len(r.b)) {
				return fmt.Errorf("decode data: metric %d: %w", i, errShort)
			}
			if err := cd.Dist.UnmarshalBinary(r.b[:k]); err != nil {
				return fmt.Errorf("decode data: metric %d: %w", i, err)
			}
			r.b = r.b[k:]
			if version >= 2 {
				ni := r.uvarint()
				if r.err != nil || ni > MaxInstances {
					return fmt.Errorf("decode data: metric %d: %d instances", i, ni)
				}
				for range ni {
					key := r.uvarint()
					im := stat.Moments{N: f64(), Mean: f64(), M2: f64()}
					if r.err != nil || key >= MaxInstances || !(im.N > 0) || !validMoments(im, true) {
						return fmt.Errorf("decode data: metric %d: bad instance summary", i)
					}
					if m.Type == TypeDistribution {
						cd.LogInstances.Add(uint16(key), im)
					} else {
						cd.Instances.Add(uint16(key), im)
					}
				}
			}
			if !finiteNum(cd.Count) || !finiteNum(cd.Total) || cd.Count > cd.Total || !validMoments(cd.Moments, true) {
				return fmt.Errorf("decode data: metric %d: %w", i, errBadState)
			}
			// The untimed stratum from the whole-run state.
			st := &d.strata.cells(time.Time{}, i)[c]
			switch m.Type {
			case TypeRate:
				st.count, st.total, st.records = cd.Count, cd.Total, float64(cd.Records)
			case TypeMean:
				st.raw = cd.Moments
			default:
				var raw, lm stat.Moments
				for _, bin := range cd.Dist.Bins() {
					raw.Merge(stat.Moments{N: bin.Count, Mean: bin.Value})
					if bin.Value > 0 {
						lm.Merge(stat.Moments{N: bin.Count, Mean: math.Log(bin.Value)})
					}
				}
				cd.Moments, st.raw, st.log = raw, raw, lm
			}
		}
	}
	if version >= 2 && r.byte() == 1 {
		// Epochs of the window tests: skipped (windows now come from the
		// strata, which these versions did not keep).
		r.varint()
		n := r.uvarint()
		if r.err != nil || n > 4 {
			return fmt.Errorf("decode data: %d epochs", n)
		}
		skip := NewData(d.cfg)
		for range n {
			r.varint()
			for i := range skip.metrics {
				for c := range 2 {
					if r.byte() == 0 {
						continue
					}
					r.uvarint()
					r.uvarint()
					for range 5 {
						r.uint64()
					}
					k := r.uvarint()
					if r.err != nil || k > uint64(len(r.b)) {
						return errShort
					}
					r.b = r.b[k:]
					ni := r.uvarint()
					if r.err != nil || ni > MaxInstances {
						return errShort
					}
					for range ni {
						r.uvarint()
						r.uint64()
						r.uint64()
						r.uint64()
					}
					_ = c
					_ = i
				}
			}
		}
	}
	return nil
}
