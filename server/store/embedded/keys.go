package embedded

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/canaryd/canaryd/server/store"
)

// Key layout
//
// Top-level buckets:
//
//	meta                       "schema" → schemaVersion
//	                           "probe" → zeros, written and deleted by Healthy while writes fail
//	                           "finidx" → 0x01 once runs finished before "finished" existed are in it
//	configs/<name>/            version (uint32 BE) → ConfigVersion
//	runs                       run id → Run
//	requests                   request id → uvarint(len(run id)) run id fingerprint
//	data/<run id>/             "state" → RunState (1 byte)
//	                           "snapshot" → 0x01 state (absent: no snapshot)
//	                           "snapseq" → seq (uint64 BE) of the last delta folded
//	                           "fin" → time (12 bytes) the run finished, by the store's clock
//	                           "expired" → 0x01 once its raw data were deleted (retention)
//	                           "traj" → the run's verdict trajectory (kept until the run is swept)
//	data/<run id>/ids/         batch id → seq (uint64 BE) of its delta
//	data/<run id>/deltas/      seq (uint64 BE, from NextSequence) → delta
//	verdicts                   run id → Verdict (final)
//	finished                   time run-id → empty: finished runs whose raw data are kept (see maintain.go)
//	docs/<kind>/               key → value (store.Docs: alarms, deploy policies, overrides)
//	vidx<m>  (m = 0..7)        filter(m) time run-id → empty
//	ridx<m>  (m = 0..7)        filter(m) time run-id → empty
//
// filter(m) concatenates, for each bit of the mask m that is set, one
// component: bit 0 the service, bit 1 the stage (uvarint length then the
// bytes, so the encodings are prefix-free), bit 2 the decision of a verdict
// or the state of a run (uint32 BE). time is the verdict time (create time
// for runs) as 12 bytes, seconds (int64 with its sign bit flipped, BE) then
// nanoseconds (uint32 BE), so byte order is time order. Listings walk an
// index backwards (newest first; equal times by run id descending), so any
// combination of filters and time bounds is one cursor seek plus one step
// per entry returned.

const schemaVersion = "1"

var (
	bucketMeta      = []byte("meta")
	bucketConfigs   = []byte("configs")
	bucketRuns      = []byte("runs")
	bucketRequests  = []byte("requests")
	bucketData      = []byte("data")
	bucketVerdicts  = []byte("verdicts")
	bucketFinished  = []byte("finished")
	bucketDocs      = []byte("docs")
	keyFinished     = []byte("fin")
	keyExpired      = []byte("expired")
	keyTrajectory   = []byte("traj")
	keyFinIndexed   = []byte("finidx")
	keySchema       = []byte("schema")
	keyState        = []byte("state")
	keySnapshot     = []byte("snapshot")
	keySnapSeq      = []byte("snapseq")
	bucketIDs       = []byte("ids")
	bucketDeltas    = []byte("deltas")
	verdictIndexes  = indexNames("vidx")
	runIndexes      = indexNames("ridx")
	topLevelBuckets = append([][]byte{bucketMeta, bucketConfigs, bucketRuns, bucketRequests, bucketData, bucketVerdicts, bucketFinished, bucketDocs},
		append(verdictIndexes[:], runIndexes[:]...)...)
)

func indexNames(prefix string) (names [store.NumMasks][]byte) {
	for m := range names {
		names[m] = fmt.Appendf(nil, "%s%d", prefix, m)
	}
	return names
}

// appendString appends a prefix-free encoding of s.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func readU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// filterPrefix returns the key prefix of index m for the given filter values.
func filterPrefix(m int, service, stage string, enum int32) []byte {
	var b []byte
	if m&store.MaskService != 0 {
		b = appendString(b, service)
	}
	if m&store.MaskStage != 0 {
		b = appendString(b, stage)
	}
	if m&store.MaskEnum != 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(enum))
	}
	return b
}

// indexKey is the key of one entry of index m.
func indexKey(m int, service, stage string, enum int32, t time.Time, runID string) []byte {
	b := store.AppendTime(filterPrefix(m, service, stage, enum), t)
	return append(b, runID...)
}

// successor returns the smallest key greater than every key with prefix p,
// or nil when there is none (p empty or all 0xff).
func successor(p []byte) []byte {
	s := bytes.Clone(p)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	return nil
}

// Page tokens are base64url (no padding) of: tokenVersion, kind, mask, key,
// where key is the last key returned. They are validated against the
// listing they are used with.
const tokenVersion = 1

// Token kinds.
const (
	kindVerdicts       = 'v'
	kindRuns           = 'r'
	kindConfigs        = 'c'
	kindConfigVersions = 'n'
)

func encodeToken(kind byte, mask int, key []byte) string {
	b := make([]byte, 0, 3+len(key))
	b = append(b, tokenVersion, kind, byte(mask))
	b = append(b, key...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeToken returns the key of a page token of the given kind and mask,
// nil for "", or store.ErrBadPageToken. The key must start with prefix and
// be at least minLen bytes long.
func decodeToken(tok string, kind byte, mask int, prefix []byte, minLen int) ([]byte, error) {
	if tok == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 3 || b[0] != tokenVersion || b[1] != kind || int(b[2]) != mask {
		return nil, store.ErrBadPageToken
	}
	key := b[3:]
	if len(key) < minLen || !bytes.HasPrefix(key, prefix) {
		return nil, store.ErrBadPageToken
	}
	return key, nil
}
