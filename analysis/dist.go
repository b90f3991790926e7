package analysis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/canaryd/canaryd/analysis/stat"
)

// Resolution of the binned representation of a Dist.
const (
	// ExactCap is the number of observations a Dist keeps verbatim. Up to
	// this size every statistic is computed on the raw values, exactly as
	// R and scipy compute it; beyond it the values are binned.
	ExactCap = 4096

	// subBinBits is the number of mantissa bits kept by a bin index: each
	// power of two is split into 2^subBinBits = 128 bins of equal width,
	// so a bin spans between 1/256 (0.39%) and 1/128 (0.78%) of its value.
	subBinBits = 7

	// MaxBins bounds the dense bin array: 8,192 bins (64 octaves at 128
	// bins each) of 8 bytes, 64 KiB: the fixed grid from BinLow to BinHigh.
	MaxBins = 64 << subBinBits
)

// The fixed range of the bins: 64 octaves from 2⁻²⁴ (6e-8) to 2⁴⁰
// (1.1e12). Positive values below BinLow are counted in an underflow bin,
// values from BinHigh on in an overflow bin, each represented by the most
// extreme value it holds: the bins never depend on a cohort's own range,
// so one absurd value cannot move the others (it was merging the low bins
// relative to each cohort's maximum).
const (
	BinLow  = 0x1p-24
	BinHigh = 0x1p40
)

var (
	binLowIndex  = binIndex(BinLow)
	binHighIndex = binIndex(BinHigh) // first index past the range
)

// Dist accumulates the observations of one distribution metric (latency,
// CPU, memory) for one cohort in bounded memory.
//
// The first ExactCap observations are kept verbatim. After that, values are
// binned log-linearly, as HdrHistogram and DDSketch do: the bin of a positive
// value v is its float64 exponent followed by the top 7 bits of its
// mantissa, so each bin has a relative width of at most 2^-7 (0.78%), and
// the bin is represented by its midpoint (relative error ≤ 0.39%), on a
// fixed grid from BinLow to BinHigh. Zero has a bin of its own, and so have
// values below and above the grid. The state never exceeds MaxBins bins
// (64 KiB) plus ExactCap values (32 KiB, released when binning starts).
//
// Values must be finite and ≥ 0; Add reports other values as an error.
// The zero value is an empty Dist ready to use. A Dist is not safe for
// concurrent use, Bins included (it sorts the exact values in place).
type Dist struct {
	n     uint64
	sum   float64
	min   float64
	max   float64
	exact []float64 // raw values while n ≤ ExactCap; nil once binned
	// sorted is the length of the sorted prefix of exact: Bins sorts only
	// what was added since, and merges.
	sorted int
	// Binned state.
	binned      bool
	zeros       uint64
	under, over uint64   // below BinLow, from BinHigh on
	base        int32    // bin index of counts[0]
	counts      []uint64 // dense counts of bins base .. base+len(counts)-1
}

// ErrBadValue is returned by Dist.Add for a value it cannot hold.
var ErrBadValue = errors.New("value must be finite and >= 0")

// Add records one observation.
func (d *Dist) Add(v float64) error {
	if !(v >= 0) || math.IsInf(v, 1) {
		return ErrBadValue
	}
	if d.n == 0 || v < d.min {
		d.min = v
	}
	if d.n == 0 || v > d.max {
		d.max = v
	}
	d.n++
	d.sum += v
	if !d.binned {
		if len(d.exact) < ExactCap {
			d.exact = append(d.exact, v)
			return nil
		}
		d.toBins()
	}
	d.addBinned(v, 1)
	return nil
}

// AddN records c observations of the value v (c copies), as a histogram
// bucket does: while the Dist is exact and they fit, verbatim; otherwise
// binned.
func (d *Dist) AddN(v float64, c uint64) error {
	if c == 0 {
		return nil
	}
	if !(v >= 0) || math.IsInf(v, 1) {
		return ErrBadValue
	}
	if !d.binned && uint64(len(d.exact))+c <= ExactCap {
		for range c {
			d.Add(v)
		}
		return nil
	}
	if d.n == 0 || v < d.min {
		d.min = v
	}
	if d.n == 0 || v > d.max {
		d.max = v
	}
	d.n += c
	d.sum += v * float64(c)
	if !d.binned {
		d.toBins()
	}
	d.addBinned(v, c)
	return nil
}

// Zeros returns the number of observations equal to 0.
func (d *Dist) Zeros() uint64 {
	if d.binned {
		return d.zeros
	}
	var n uint64
	for _, v := range d.exact {
		if v == 0 {
			n++
		}
	}
	return n
}

// N returns the number of observations.
func (d *Dist) N() uint64 { return d.n }

// Mean returns the arithmetic mean of the observations (0 when empty).
func (d *Dist) Mean() float64 {
	if d.n == 0 {
		return 0
	}
	return d.sum / float64(d.n)
}

// Min and Max return the extreme observations (0 when empty).
func (d *Dist) Min() float64 { return d.min }

// Max returns the largest observation (0 when empty).
func (d *Dist) Max() float64 { return d.max }

// Exact reports whether the Dist still holds every observation verbatim.
func (d *Dist) Exact() bool { return !d.binned }

// binIndex returns the bin of a positive finite value: its biased exponent
// and the top subBinBits bits of its mantissa.
func binIndex(v float64) int32 {
	return int32(math.Float64bits(v) >> (52 - subBinBits))
}

// binValue returns the midpoint of bin i.
func binValue(i int32) float64 {
	lo := math.Float64frombits(uint64(i) << (52 - subBinBits))
	hi := math.Float64frombits(uint64(i+1) << (52 - subBinBits))
	return lo + (hi-lo)/2
}

func (d *Dist) toBins() {
	d.binned = true
	for _, v := range d.exact {
		d.addBinned(v, 1)
	}
	d.exact, d.sorted = nil, 0
}

func (d *Dist) addBinned(v float64, c uint64) {
	switch {
	case v == 0:
		d.zeros += c
		return
	case v < BinLow:
		d.under += c
		return
	case v >= BinHigh:
		d.over += c
		return
	}
	i := binIndex(v)
	if len(d.counts) == 0 {
		d.base = i
		d.counts = make([]uint64, 1, 64)
	}
	if j := i - d.base; j < 0 || int(j) >= len(d.counts) {
		d.grow(i)
	}
	d.counts[i-d.base] += c
}

// grow extends the dense range to include bin i, which is on the fixed
// grid, so the range never exceeds MaxBins. The array is reallocated only
// when the range outgrows its capacity, to at most twice the range, so
// growth costs amortized O(1) per bin.
func (d *Dist) grow(i int32) {
	lo, hi := min(d.base, i), max(d.base+int32(len(d.counts))-1, i)
	n, old := int(hi-lo+1), len(d.counts)
	if n > cap(d.counts) {
		next := make([]uint64, n, min(2*n, MaxBins))
		copy(next[d.base-lo:], d.counts)
		d.base, d.counts = lo, next
		return
	}
	shift := int(d.base - lo) // > 0 only when extending downwards
	d.counts = d.counts[:n]
	if shift > 0 {
		copy(d.counts[shift:], d.counts[:old])
		clear(d.counts[:shift])
	}
	d.base = lo
}

// Bins returns the observations as bins sorted by value: the distinct raw
// values with their multiplicities while the Dist is exact, the non-empty
// bins at their midpoints after. The result is a fresh slice.
func (d *Dist) Bins() []stat.Bin {
	if !d.binned {
		d.sortExact()
		out := make([]stat.Bin, 0, len(d.exact))
		for _, v := range d.exact {
			if k := len(out) - 1; k >= 0 && out[k].Value == v {
				out[k].Count++
				continue
			}
			out = append(out, stat.Bin{Value: v, Count: 1})
		}
		return out
	}
	out := make([]stat.Bin, 0, 64)
	if d.zeros > 0 {
		out = append(out, stat.Bin{Value: 0, Count: float64(d.zeros)})
	}
	if d.under > 0 {
		out = append(out, stat.Bin{Value: d.min, Count: float64(d.under)})
	}
	for j, c := range d.counts {
		if c > 0 {
			out = append(out, stat.Bin{Value: binValue(d.base + int32(j)), Count: float64(c)})
		}
	}
	if d.over > 0 {
		out = append(out, stat.Bin{Value: d.max, Count: float64(d.over)})
	}
	return out
}

// rebin returns sorted bins with every value replaced by the midpoint of
// its Dist bin and equal midpoints merged: the binned view of an exact
// sample, at the resolution of a binned Dist. Bins of a binned Dist are
// returned unchanged in value.
func rebin(bins []stat.Bin) []stat.Bin {
	out := make([]stat.Bin, 0, len(bins))
	for _, b := range bins {
		v := b.Value
		if v >= BinLow && v < BinHigh {
			v = binValue(binIndex(v))
		}
		if k := len(out) - 1; k >= 0 && out[k].Value == v {
			out[k].Count += b.Count
			continue
		}
		out = append(out, stat.Bin{Value: v, Count: b.Count})
	}
	return out
}

// sortExact sorts the exact values: the values added since the last call
// are sorted and merged into the sorted prefix, in O(k log k + n).
func (d *Dist) sortExact() {
	if d.sorted == len(d.exact) {
		return
	}
	tail := d.exact[d.sorted:]
	slices.Sort(tail)
	if d.sorted > 0 && tail[0] < d.exact[d.sorted-1] {
		head := slices.Clone(d.exact[:d.sorted])
		i, j, k := 0, 0, 0
		for i < len(head) && j < len(tail) {
			if tail[j] < head[i] {
				d.exact[k] = tail[j]
				j++
			} else {
				d.exact[k] = head[i]
				i++
			}
			k++
		}
		// What remains of tail is already in place; copy what remains of head.
		copy(d.exact[k:], head[i:])
	}
	d.sorted = len(d.exact)
}

// Merge adds the observations of o to d.
func (d *Dist) Merge(o *Dist) {
	if o.n == 0 {
		return
	}
	if d.n == 0 || o.min < d.min {
		d.min = o.min
	}
	if d.n == 0 || o.max > d.max {
		d.max = o.max
	}
	d.n += o.n
	d.sum += o.sum
	if !d.binned && !o.binned && len(d.exact)+len(o.exact) <= ExactCap {
		d.exact = append(d.exact, o.exact...)
		return
	}
	if !d.binned {
		d.toBins()
	}
	if !o.binned {
		for _, v := range o.exact {
			d.addBinned(v, 1)
		}
		return
	}
	d.zeros += o.zeros
	d.under += o.under
	d.over += o.over
	for j, c := range o.counts {
		if c > 0 {
			d.addBinned(binValue(o.base+int32(j)), c)
		}
	}
}

// Quantile returns the p-quantile (0 ≤ p ≤ 1) of the observations by the
// inverse of the empirical CDF (R's quantile type 1): the smallest value x
// with F(x) ≥ p. It returns 0 for an empty Dist.
func (d *Dist) Quantile(p float64) float64 {
	return quantile(d.Bins(), p)
}

// quantile is Quantile over sorted bins.
func quantile(bins []stat.Bin, p float64) float64 {
	var n float64
	for _, b := range bins {
		n += b.Count
	}
	if n == 0 {
		return 0
	}
	target := math.Max(1, math.Ceil(p*n))
	var cum float64
	for _, b := range bins {
		cum += b.Count
		if cum >= target {
			return b.Value
		}
	}
	return bins[len(bins)-1].Value
}

// Size returns the approximate number of bytes the Dist's state occupies.
func (d *Dist) Size() int {
	return 64 + 8*cap(d.exact) + 8*cap(d.counts)
}

// distVersion 2 adds the underflow and overflow counts; version 1 is still
// decoded (its bins are re-binned on the fixed grid).
const distVersion = 2

// MarshalBinary encodes the Dist compactly (varint counts, exact values as
// raw float64 bits) for storage.
func (d *Dist) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+8*len(d.exact)+2*len(d.counts))
	b = append(b, distVersion)
	b = binary.AppendUvarint(b, d.n)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(d.sum))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(d.min))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(d.max))
	if !d.binned {
		b = append(b, 0)
		b = binary.AppendUvarint(b, uint64(len(d.exact)))
		for _, v := range d.exact {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
		return b, nil
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, d.zeros)
	b = binary.AppendUvarint(b, d.under)
	b = binary.AppendUvarint(b, d.over)
	b = binary.AppendVarint(b, int64(d.base))
	b = binary.AppendUvarint(b, uint64(len(d.counts)))
	for _, c := range d.counts {
		b = binary.AppendUvarint(b, c)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded.
func (d *Dist) UnmarshalBinary(b []byte) error {
	r := reader{b: b}
	version := r.byte()
	if version != 1 && version != distVersion {
		return fmt.Errorf("decode dist: unknown version %d", version)
	}
	var out Dist
	out.n = r.uvarint()
	out.sum = math.Float64frombits(r.uint64())
	out.min = math.Float64frombits(r.uint64())
	out.max = math.Float64frombits(r.uint64())
	switch r.byte() {
	case 0:
		k := r.uvarint()
		if k > ExactCap {
			return fmt.Errorf("decode dist: %d exact values exceed %d", k, ExactCap)
		}
		out.exact = make([]float64, 0, k)
		for i := uint64(0); i < k && r.err == nil; i++ {
			v := math.Float64frombits(r.uint64())
			if !(v >= 0) || math.IsInf(v, 1) {
				return errors.New("decode dist: bad value")
			}
			out.exact = append(out.exact, v)
		}
		if r.err == nil && k != out.n {
			return fmt.Errorf("decode dist: %d values, header says %d", k, out.n)
		}
	case 1:
		out.binned = true
		out.zeros = r.uvarint()
		if version >= 2 {
			out.under, out.over = r.uvarint(), r.uvarint()
		}
		base := int32(r.varint())
		k := r.uvarint()
		if k > MaxBins {
			return fmt.Errorf("decode dist: %d bins exceed %d", k, MaxBins)
		}
		if r.err == nil && k > 0 && version >= 2 && (base < binLowIndex || int64(base)+int64(k) > int64(binHighIndex)) {
			return fmt.Errorf("decode dist: bins %d..%d outside the grid", base, int64(base)+int64(k)-1)
		}
		var total uint64
		for i := range k {
			c := r.uvarint()
			if c == 0 || r.err != nil {
				continue
			}
			total += c
			if version < 2 {
				out.addBinned(binValue(base+int32(i)), c)
				continue
			}
			if len(out.counts) == 0 {
				out.base, out.counts = base, make([]uint64, k)
			}
			out.counts[i] = c
		}
		if r.err == nil && total+out.zeros+out.under+out.over != out.n {
			return fmt.Errorf("decode dist: bins hold %d observations, header says %d", total+out.zeros+out.under+out.over, out.n)
		}
	default:
		return errors.New("decode dist: bad mode")
	}
	if r.err != nil {
		return fmt.Errorf("decode dist: %w", r.err)
	}
	*d = out
	return nil
}

// reader decodes the little binary formats of this package.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated input")

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.err = errShort
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uint64() uint64 {
	if len(r.b) < 8 {
		r.err = errShort
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) varint() int64 {
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[k:]
	return v
}
