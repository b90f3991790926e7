package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// What the service stores for a run's data, through store.AppendBatch and
// store.Snapshot (the store treats both as opaque bytes): a small header
// followed by analysis.Data.MarshalBinary.
//
//	delta:    0x01 'D' varint(receive time, Unix ns) data
//	snapshot: 0x01 'S' uvarint(batches) uvarint(duplicate batches)
//	          varint(last ingest time, Unix ns; 0 if none) data
//	snapshot of a pulled run: 0x01 'Q', then as 'S' but with
//	          uvarint(n) PullStatus (n bytes of protobuf) before data
//	pull record: 0x01 'P' PullStatus (pull.go)
//	alarm:    0x01 'A' varint(receive time, Unix ns) AlarmEvent (proto)
//	snapshot of a run with alarms: 0x01 'T', then as 'S' but with
//	          uvarint(n) PullStatus (n bytes; n = 0: none), uvarint(alarms),
//	          {uvarint(len) AlarmEvent (proto)}... before data
//
// The headers let a reload restore the run's counters, which the deltas
// alone do not carry once they are folded into a snapshot. An alarm
// recorded with a run (alarms.go) is an entry of its log like a batch's
// delta, so that every process folds the same alarms in the same order.
const blobVersion = 1

// snapshotHeader is what a snapshot records besides the data.
type snapshotHeader struct {
	batches    uint64
	duplicates uint64
	lastIngest time.Time
	pull       *canaryv1.PullStatus   // nil: none ('S')
	alarms     []*canaryv1.AlarmEvent // none: 'S' or 'Q'
}

func encodeDelta(at time.Time, d *analysis.Data) ([]byte, error) {
	data, err := d.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode delta: %w", err)
	}
	b := make([]byte, 0, len(data)+12)
	b = append(b, blobVersion, 'D')
	b = binary.AppendVarint(b, unixNano(at))
	return append(b, data...), nil
}

func decodeDelta(cfg *analysis.Config, b []byte) (time.Time, *analysis.Data, error) {
	r, err := blobBody(b, 'D')
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("decode delta: %w", err)
	}
	at, err := r.time()
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("decode delta: %w", err)
	}
	d, err := analysis.UnmarshalData(cfg, r.b)
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("decode delta: %w", err)
	}
	return at, d, nil
}

// snapshotOf encodes a run's data and alarms with the counters its record
// holds.
func snapshotOf(run *canaryv1.Run, d *analysis.Data, alarms []*canaryv1.AlarmEvent) ([]byte, error) {
	c := run.GetCounters()
	return encodeSnapshot(snapshotHeader{
		batches:    c.GetBatches(),
		duplicates: c.GetDuplicateBatches(),
		lastIngest: c.GetLastIngestTime().AsTime(),
		pull:       run.GetPull(),
		alarms:     alarms,
	}, d)
}

func encodeSnapshot(h snapshotHeader, d *analysis.Data) ([]byte, error) {
	data, err := d.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	var pull []byte
	kind := byte('S')
	if h.pull != nil {
		if pull, err = proto.Marshal(h.pull); err != nil {
			return nil, fmt.Errorf("encode snapshot: %w", err)
		}
		kind = 'Q'
	}
	if len(h.alarms) > 0 {
		kind = 'T'
	}
	b := make([]byte, 0, len(data)+len(pull)+40)
	b = append(b, blobVersion, kind)
	b = binary.AppendUvarint(b, h.batches)
	b = binary.AppendUvarint(b, h.duplicates)
	b = binary.AppendVarint(b, unixNano(h.lastIngest))
	if kind == 'Q' || kind == 'T' {
		b = binary.AppendUvarint(b, uint64(len(pull)))
		b = append(b, pull...)
	}
	if kind == 'T' {
		b = binary.AppendUvarint(b, uint64(len(h.alarms)))
		for _, ev := range h.alarms {
			pb, err := proto.Marshal(ev)
			if err != nil {
				return nil, fmt.Errorf("encode snapshot: %w", err)
			}
			b = binary.AppendUvarint(b, uint64(len(pb)))
			b = append(b, pb...)
		}
	}
	return append(b, data...), nil
}

func decodeSnapshot(cfg *analysis.Config, b []byte) (snapshotHeader, *analysis.Data, error) {
	h, r, err := decodeSnapshotHeader(b)
	if err != nil {
		return h, nil, fmt.Errorf("decode snapshot: %w", err)
	}
	d, err := analysis.UnmarshalData(cfg, r.b)
	if err != nil {
		return h, nil, fmt.Errorf("decode snapshot: %w", err)
	}
	return h, d, nil
}

// decodeSnapshotHeader decodes what a snapshot holds besides its data,
// and returns the reader at the data.
func decodeSnapshotHeader(b []byte) (snapshotHeader, *blobReader, error) {
	var h snapshotHeader
	kind := byte('S')
	if len(b) >= 2 && (b[1] == 'Q' || b[1] == 'T') {
		kind = b[1]
	}
	r, err := blobBody(b, kind)
	if err == nil {
		h.batches, err = r.uvarint()
	}
	if err == nil {
		h.duplicates, err = r.uvarint()
	}
	if err == nil {
		h.lastIngest, err = r.time()
	}
	if err == nil && (kind == 'Q' || kind == 'T') {
		var n uint64
		if n, err = r.uvarint(); err == nil && n > uint64(len(r.b)) {
			err = errBlob
		}
		if err == nil && (n > 0 || kind == 'Q') {
			h.pull = &canaryv1.PullStatus{}
			err = proto.Unmarshal(r.b[:n], h.pull)
		}
		if err == nil {
			r.b = r.b[n:]
		}
	}
	if err == nil && kind == 'T' {
		h.alarms, err = r.alarms()
	}
	return h, r, err
}

// isAlarm reports whether an entry of a run's log is an alarm.
func isAlarm(b []byte) bool { return len(b) >= 2 && b[0] == blobVersion && b[1] == 'A' }

func encodeAlarm(at time.Time, ev *canaryv1.AlarmEvent) ([]byte, error) {
	pb, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode alarm: %w", err)
	}
	b := make([]byte, 0, len(pb)+12)
	b = append(b, blobVersion, 'A')
	b = binary.AppendVarint(b, unixNano(at))
	return append(b, pb...), nil
}

func decodeAlarm(b []byte) (*canaryv1.AlarmEvent, error) {
	r, err := blobBody(b, 'A')
	if err == nil {
		_, err = r.time()
	}
	if err != nil {
		return nil, fmt.Errorf("decode alarm: %w", err)
	}
	ev := new(canaryv1.AlarmEvent)
	if err := proto.Unmarshal(r.b, ev); err != nil {
		return nil, fmt.Errorf("decode alarm: %w", err)
	}
	return ev, nil
}

var errBlob = errors.New("truncated or corrupt")

type blobReader struct{ b []byte }

func blobBody(b []byte, kind byte) (*blobReader, error) {
	switch {
	case len(b) < 2:
		return nil, errBlob
	case b[0] != blobVersion:
		return nil, fmt.Errorf("unknown version %d", b[0])
	case b[1] != kind:
		return nil, fmt.Errorf("kind %q, want %q", b[1], kind)
	}
	return &blobReader{b: b[2:]}, nil
}

func (r *blobReader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		return 0, errBlob
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *blobReader) alarms() ([]*canaryv1.AlarmEvent, error) {
	n, err := r.uvarint()
	if err != nil || n > uint64(len(r.b)) {
		return nil, errBlob
	}
	out := make([]*canaryv1.AlarmEvent, 0, n)
	for range n {
		l, err := r.uvarint()
		if err != nil || l > uint64(len(r.b)) {
			return nil, errBlob
		}
		ev := new(canaryv1.AlarmEvent)
		if err := proto.Unmarshal(r.b[:l], ev); err != nil {
			return nil, fmt.Errorf("alarm: %w", err)
		}
		r.b = r.b[l:]
		out = append(out, ev)
	}
	return out, nil
}

func (r *blobReader) time() (time.Time, error) {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		return time.Time{}, errBlob
	}
	r.b = r.b[n:]
	if v == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, v).UTC(), nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
