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
		for c := range d.metrics[i].Cohorts {
			dst, src := &d.metrics[i].Cohorts[c], &o.metrics[i].Cohorts[c]
			dst.Dist.Merge(&src.Dist)
			dst.Moments.Merge(src.Moments)
			dst.Count += src.Count
			dst.Total += src.Total
			dst.Records += src.Records
			dst.Warmup += src.Warmup
		}
	}
	for c, t := range o.start {
		if !t.IsZero() && (d.start[c].IsZero() || t.Before(d.start[c])) {
			d.start[c] = t
		}
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

const dataVersion = 1

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
	f64 := func(v float64) { b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) }
	for i := range d.metrics {
		for _, c := range d.metrics[i].Cohorts {
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
		}
	}
	return b, nil
}

// UnmarshalData decodes what Data.MarshalBinary encoded, for the config it
// was made with.
func UnmarshalData(cfg *Config, b []byte) (*Data, error) {
	d := NewData(cfg)
	r := reader{b: b}
	if v := r.byte(); v != dataVersion {
		return nil, fmt.Errorf("decode data: unknown version %d", v)
	}
	if n := r.uvarint(); n != uint64(len(cfg.Metrics)) {
		return nil, fmt.Errorf("decode data: %d metrics, config %q has %d", n, cfg.Name, len(cfg.Metrics))
	}
	for c := range d.start {
		if ns := r.varint(); ns != 0 {
			d.start[c] = time.Unix(0, ns).UTC()
		}
	}
	f64 := func() float64 { return math.Float64frombits(r.uint64()) }
	for i := range d.metrics {
		for c := range d.metrics[i].Cohorts {
			if r.byte() == 0 {
				continue
			}
			cd := &d.metrics[i].Cohorts[c]
			cd.Warmup = r.uvarint()
			cd.Records = r.uvarint()
			cd.Count, cd.Total = f64(), f64()
			cd.Moments.N, cd.Moments.Mean, cd.Moments.M2 = f64(), f64(), f64()
			k := r.uvarint()
			if r.err != nil || k > uint64(len(r.b)) {
				return nil, fmt.Errorf("decode data: metric %d: %w", i, errShort)
			}
			if err := cd.Dist.UnmarshalBinary(r.b[:k]); err != nil {
				return nil, fmt.Errorf("decode data: metric %d: %w", i, err)
			}
			r.b = r.b[k:]
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
