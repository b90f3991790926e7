package analysis

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Merge adds the samples of o, which must have been made for the same
// config, to d. Merging is how a service folds the delta of each ingested
// batch into a run's state; the result does not depend on the order of the
// merges (up to floating-point rounding of sums).
func (d *Data) Merge(o *Data) {
	for i := range d.metrics {
		d.metrics[i].merge(&o.metrics[i])
	}
	if o.hasEpoch {
		d.noteEpoch(o.firstEpoch) // may be older than every epoch o kept
	}
	for _, e := range o.epochs {
		if dst := d.epoch(e.index); dst != nil {
			for i := range dst {
				dst[i].merge(&e.metrics[i])
			}
		}
	}
	for c, t := range o.start {
		if !t.IsZero() && (d.start[c].IsZero() || t.Before(d.start[c])) {
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
		dst.Instances.Merge(&src.Instances)
	}
}

// Samples returns the number of samples the Data holds: observations of
// distribution and mean metrics, count records of rate metrics, and
// samples dropped in the warm-up.
func (d *Data) Samples() uint64 {
	var n uint64
	for i := range d.metrics {
		for _, c := range d.metrics[i].Cohorts {
			n += c.Dist.N() + uint64(c.Moments.N) + c.Records + c.Warmup
		}
	}
	return n
}

// dataVersion 2 adds the per-instance summaries and the epochs of the
// window tests; version 1 (without them) is still decoded.
const dataVersion = 2

// MarshalBinary encodes the Data compactly, for storage of batch deltas
// and run snapshots. Empty cohorts cost one byte.
func (d *Data) MarshalBinary() ([]byte, error) {
	b := []byte{dataVersion}
	b = binary.AppendUvarint(b, uint64(len(d.metrics)))
	for _, t := range d.start {
		var ns int64
		if !t.IsZero() {
			ns = t.UnixNano()
		}
		b = binary.AppendVarint(b, ns)
	}
	b, err := appendMetrics(b, d.metrics)
	if err != nil {
		return nil, err
	}
	if !d.hasEpoch {
		return append(b, 0), nil
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, d.firstEpoch)
	b = binary.AppendUvarint(b, uint64(len(d.epochs)))
	for _, e := range d.epochs {
		b = binary.AppendVarint(b, e.index)
		if b, err = appendMetrics(b, e.metrics); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// appendMetrics encodes the state of every metric.
func appendMetrics(b []byte, metrics []MetricData) ([]byte, error) {
	f64 := func(v float64) { b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) }
	for i := range metrics {
		for _, c := range metrics[i].Cohorts {
			if c.Dist.N() == 0 && c.Moments.N == 0 && c.Records == 0 && c.Warmup == 0 {
				b = append(b, 0)
				continue
			}
			b = append(b, 1)
			b = binary.AppendUvarint(b, c.Warmup)
			b = binary.AppendUvarint(b, c.Records)
			f64(c.Count)
			f64(c.Total)
			f64(c.Moments.N)
			f64(c.Moments.Mean)
			f64(c.Moments.M2)
			dist, err := c.Dist.MarshalBinary()
			if err != nil {
				return nil, err
			}
			b = binary.AppendUvarint(b, uint64(len(dist)))
			b = append(b, dist...)
			b = binary.AppendUvarint(b, uint64(c.Instances.Len()))
			for _, s := range c.Instances.Stats() {
				b = binary.AppendUvarint(b, uint64(s.Key))
				f64(s.N)
				f64(s.Mean)
				f64(s.M2)
			}
		}
	}
	return b, nil
}

// UnmarshalData decodes what Data.MarshalBinary encoded, for the config it
// was made with.
func UnmarshalData(cfg *Config, b []byte) (*Data, error) {
	d := NewData(cfg)
	r := reader{b: b}
	version := r.byte()
	if version != 1 && version != dataVersion {
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
	if err := readMetrics(&r, d.metrics, version); err != nil {
		return nil, err
	}
	if version >= 2 && r.byte() == 1 {
		d.firstEpoch, d.hasEpoch = r.varint(), true
		n := r.uvarint()
		if r.err != nil || n > MaxEpochs {
			return nil, fmt.Errorf("decode data: %d epochs", n)
		}
		for k := range n {
			idx := r.varint()
			if r.err != nil || idx < d.firstEpoch || (k > 0 && idx <= d.epochs[k-1].index) {
				return nil, fmt.Errorf("decode data: epoch %d out of order", idx)
			}
			e := epoch{index: idx, metrics: make([]MetricData, len(cfg.Metrics))}
			if err := readMetrics(&r, e.metrics, version); err != nil {
				return nil, fmt.Errorf("epoch %d: %w", idx, err)
			}
			d.epochs = append(d.epochs, e)
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

// readMetrics decodes what appendMetrics encoded.
func readMetrics(r *reader, metrics []MetricData, version byte) error {
	f64 := func() float64 { return math.Float64frombits(r.uint64()) }
	for i := range metrics {
		for c := range metrics[i].Cohorts {
			if r.byte() == 0 {
				continue
			}
			cd := &metrics[i].Cohorts[c]
			cd.Warmup = r.uvarint()
			cd.Records = r.uvarint()
			cd.Count, cd.Total = f64(), f64()
			cd.Moments.N, cd.Moments.Mean, cd.Moments.M2 = f64(), f64(), f64()
			k := r.uvarint()
			if r.err != nil || k > uint64(len(r.b)) {
				return fmt.Errorf("decode data: metric %d: %w", i, errShort)
			}
			if err := cd.Dist.UnmarshalBinary(r.b[:k]); err != nil {
				return fmt.Errorf("decode data: metric %d: %w", i, err)
			}
			r.b = r.b[k:]
			if version < 2 {
				continue
			}
			ni := r.uvarint()
			if r.err != nil || ni > MaxInstances {
				return fmt.Errorf("decode data: metric %d: %d instances", i, ni)
			}
			for range ni {
				key := r.uvarint()
				m := Moments{N: f64(), Mean: f64(), M2: f64()}
				if r.err != nil || key >= MaxInstances || !(m.N > 0) {
					return fmt.Errorf("decode data: metric %d: bad instance summary", i)
				}
				cd.Instances.Add(uint16(key), m)
			}
		}
	}
	return nil
}
