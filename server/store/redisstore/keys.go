package redisstore

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/canaryd/canaryd/server/store"
)

// Key layout
//
// Every key starts with Options.Prefix (P, "canaryd" by default) and holds
// a hash tag, the part in braces, that decides its Redis Cluster slot:
//
//	one run (slot of {run:<id>}):
//	P:{run:<id>}:m       hash    run    → Run as created (proto)
//	                             state  → RunState number ("1" running)
//	                             upd    → Run{Verdict, Counters} of the last UpdateRun
//	                             fin    → Run{State, FinishTime, FinishReason, Verdict,
//	                                      Counters} written by FinishRun
//	                             folded → deltas folded into snapshots so far
//	                             exp    → Unix ms (Redis clock) when the raw data expire
//	                             ctok   → token of the CreateRun call that wrote it
//	                             traj   → the run's verdict trajectory (PutTrajectory),
//	                                      kept as long as the record
//	P:{run:<id>}:ids     set     batch ids stored (kept across snapshots)
//	P:{run:<id>}:d       stream  deltas in append order, one field "d"
//	P:{run:<id>}:snap    string  snapshot
//
//	runs, in NumShards shards (slot of {r<k>.<j>}, k = shard, see below):
//	P:{r<k>.<j>}:req     hash    request id → uvarint(len(id)) id time fingerprint
//	P:{r<k>.<j>}:ri:<f>  zset    time(create) id, for the runs matching filter f
//
//	verdict history, in NumShards shards (slot of {h<k>.<j>}):
//	P:{h<k>.<j>}:v       hash    run id → final Verdict (proto)
//	P:{h<k>.<j>}:vi:<f>  zset    time(verdict) id, for the verdicts matching filter f
//	P:{h<k>.<j>}:pending hash    run id → Unix ms: a FinishRun whose history and
//	                             run-index writes may not all be done yet
//
//	configs (slot of {cfg:<name>}, and {cfgs}):
//	P:{cfg:<name>}:v     list    ConfigVersion; version k at index k-1
//	P:{cfgs}:names       zset    config names
//	docs (slot of {docs:<kind>}):
//	P:{docs:<kind>}:h    hash    key → value (store.Docs: alarms, deploy policies, overrides)
//	P:schema             string  schema version of the layout
//	P:health             string  written by Healthy (a write probe), expires in a minute
//	P:lease:{<name>}     string  holder of a lease (store.Leaser), expires with it
//
// The sorted sets are lexicographic: every member has score 0 and Redis
// orders members bytewise. time is the 12-byte order-preserving encoding of
// a timestamp (seconds as int64 with the sign bit flipped, then
// nanoseconds, both big-endian), so members sort by (time, id) with full
// nanosecond precision, and newest-first listing is ZRANGE BYLEX REV with
// LIMIT: one O(log N) seek plus one step per entry, at any depth of
// pagination. There is one sorted set per combination of filter values; f
// names it: "all", or the concatenation of whichever of s<len>:<service>,
// t<len>:<stage> and d<decision or state number> the filter sets (lengths
// in decimal bytes, so names are unambiguous). A listing reads exactly the
// set of its filter: 8 kinds of index (2^3 subsets of service, stage,
// decision), each entry written to 8 sets.
//
// # Shards (layout version 2)
//
// The run index and the history are split into NumShards (16) shards, so
// that the writes of created and finished runs spread over the nodes of a
// Redis Cluster instead of landing on one slot. A run's index entries and
// its request id go to shard fnv1a32(request id) mod 16, or of the run id
// when it has no request id (a retry of a request must find its claim
// whatever run id it carries); its verdict and pending mark go to shard
// fnv1a32(run id) mod 16. Shard k's hash tag is "r<k>.<j>" (runs) or
// "h<k>.<j>" (history), with j the smallest number that puts the tag's
// slot in the k-th sixteenth of the 16384 slots: a cluster whose nodes
// own ranges of slots of similar size (what redis-cli --cluster create
// makes) gets the same number of shards on each node, 16/3 ≈ 5 of each
// kind on 3 primaries.
//
// A listing reads its filter's sorted set in every shard (one pipeline,
// split by node) and merges them: each shard's page, newest first, is
// cut at the page's size + 1, and the merge keeps the newest. The page
// token is the last entry returned, as in layout 1, so tokens do not
// depend on the number of shards. Configs are not sharded: a config's
// versions have their own slot, and the name index {cfgs} takes one write
// per new config name.
//
// Layout 1 (one {runs} and one {hist} slot) is migrated at Open: see
// migrate.go.
//
// Ids and names are stored raw. A run id holding "}" still keeps all its
// keys in one slot (the tag ends at the first "}", the same one in each of
// its keys), and keys stay distinct because no suffix holds "}:".
const schemaVersion = "2"

// NumShards is the number of shards of the run index and of the history.
// It is part of the layout: changing it needs a migration.
const NumShards = 16

// numSlots is the number of hash slots of a Redis Cluster.
const numSlots = 16384

// keys names the keys of one store (one prefix).
type keys struct {
	p    string
	runs [NumShards]string // hash tags of the run shards
	hist [NumShards]string // hash tags of the history shards
}

func newKeys(prefix string) keys {
	k := keys{p: prefix}
	for i := range NumShards {
		k.runs[i] = shardTag("r", i)
		k.hist[i] = shardTag("h", i)
	}
	return k
}

// shardTag returns the hash tag of shard i of a kind: kind<i>.<j> with the
// smallest j whose slot is in the i-th of NumShards equal ranges of slots.
func shardTag(kind string, i int) string {
	lo, hi := i*numSlots/NumShards, (i+1)*numSlots/NumShards
	for j := 0; ; j++ {
		tag := kind + strconv.Itoa(i) + "." + strconv.Itoa(j)
		if sl := int(keySlot(tag)); sl >= lo && sl < hi {
			return tag
		}
	}
}

// keySlot is the Redis Cluster slot of a hash tag: CRC16 (XMODEM) mod 16384.
func keySlot(tag string) uint16 {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % numSlots
}

// shardOf returns the shard of a key string: fnv1a32 mod NumShards.
func shardOf(s string) int {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return int(h % NumShards)
}

// runShard is the shard of a run's index entries and request id.
func runShard(requestID, id string) int {
	if requestID != "" {
		return shardOf(requestID)
	}
	return shardOf(id)
}

func (k keys) schema() string                 { return k.p + ":schema" }
func (k keys) migrating() string              { return k.p + ":migrating" }
func (k keys) health() string                 { return k.p + ":health" }
func (k keys) runTag(id string) string        { return k.p + ":{run:" + id + "}" }
func (k keys) runMeta(id string) string       { return k.runTag(id) + ":m" }
func (k keys) runIDs(id string) string        { return k.runTag(id) + ":ids" }
func (k keys) runDeltas(id string) string     { return k.runTag(id) + ":d" }
func (k keys) runSnap(id string) string       { return k.runTag(id) + ":snap" }
func (k keys) configVersions(n string) string { return k.p + ":{cfg:" + n + "}:v" }
func (k keys) docs(kind string) string        { return k.p + ":{docs:" + kind + "}:h" }
func (k keys) lease(name string) string       { return k.p + ":lease:{" + name + "}" }
func (k keys) configNames() string            { return k.p + ":{cfgs}:names" }

func (k keys) requests(sh int) string           { return k.p + ":{" + k.runs[sh] + "}:req" }
func (k keys) runIndex(sh int, f string) string { return k.p + ":{" + k.runs[sh] + "}:ri:" + f }
func (k keys) verdicts(sh int) string           { return k.p + ":{" + k.hist[sh] + "}:v" }
func (k keys) verdictIndex(sh int, f string) string {
	return k.p + ":{" + k.hist[sh] + "}:vi:" + f
}
func (k keys) pending(sh int) string { return k.p + ":{" + k.hist[sh] + "}:pending" }

// runIndexShards returns the run index of filter f in every shard.
func (k keys) runIndexShards(f string) []string {
	out := make([]string, NumShards)
	for i := range out {
		out[i] = k.runIndex(i, f)
	}
	return out
}

// verdictIndexShards returns the verdict index of filter f in every shard.
func (k keys) verdictIndexShards(f string) []string {
	out := make([]string, NumShards)
	for i := range out {
		out[i] = k.verdictIndex(i, f)
	}
	return out
}

// The keys of layout 1, read by the migration only.
func (k keys) v1Requests() string             { return k.p + ":{runs}:req" }
func (k keys) v1RunIndex(f string) string     { return k.p + ":{runs}:ri:" + f }
func (k keys) v1Verdicts() string             { return k.p + ":{hist}:v" }
func (k keys) v1VerdictIndex(f string) string { return k.p + ":{hist}:vi:" + f }
func (k keys) v1Pending() string              { return k.p + ":{hist}:pending" }

// runKeys are the keys of one run, in the order the scripts take them.
func (k keys) runKeys(id string) []string {
	return []string{k.runMeta(id), k.runIDs(id), k.runDeltas(id), k.runSnap(id)}
}

// filterName returns f, the name of the index of mask m for these values.
func filterName(m int, service, stage string, enum int32) string {
	if m == 0 {
		return "all"
	}
	var b []byte
	if m&store.MaskService != 0 {
		b = append(b, 's')
		b = strconv.AppendInt(b, int64(len(service)), 10)
		b = append(b, ':')
		b = append(b, service...)
	}
	if m&store.MaskStage != 0 {
		b = append(b, 't')
		b = strconv.AppendInt(b, int64(len(stage)), 10)
		b = append(b, ':')
		b = append(b, stage...)
	}
	if m&store.MaskEnum != 0 {
		b = append(b, 'd')
		b = strconv.AppendInt(b, int64(enum), 10)
	}
	return string(b)
}

// member is an index entry: time then id.
func member(t time.Time, id string) string {
	return string(append(store.AppendTime(make([]byte, 0, store.TimeLen+len(id)), t), id...))
}

// indexEntries returns, for each of the 8 masks, the index name and member
// of one entry.
func indexEntries(service, stage string, enum int32, t time.Time, id string) (names [store.NumMasks]string, mem string) {
	for m := range store.NumMasks {
		names[m] = filterName(m, service, stage, enum)
	}
	return names, member(t, id)
}

// lexRange returns the ZRANGE BYLEX REV bounds of a listing: entries at or
// after since, before until and before the entry after (the last one of the
// previous page), each bound ignored when zero.
func lexRange(since, until time.Time, after []byte) (maxBound, minBound string) {
	maxBound, minBound = "+", "-"
	var upper []byte
	if !until.IsZero() {
		upper = store.AppendTime(nil, until)
	}
	if after != nil && (upper == nil || bytes.Compare(after, upper) < 0) {
		upper = after
	}
	if upper != nil {
		maxBound = "(" + string(upper)
	}
	if !since.IsZero() {
		minBound = "[" + string(store.AppendTime(nil, since))
	}
	return maxBound, minBound
}

// Page tokens are base64url (no padding) of: tokenVersion, kind,
// uvarint(len(f)) f, key, where f names the listing (its filter) and key is
// the last entry returned. They are validated against the listing they
// are used with.
const tokenVersion = 1

// Token kinds.
const (
	kindVerdicts       = 'v'
	kindRuns           = 'r'
	kindConfigs        = 'c'
	kindConfigVersions = 'n'
)

func encodeToken(kind byte, f string, key []byte) string {
	b := make([]byte, 0, 4+len(f)+len(key))
	b = append(b, tokenVersion, kind)
	b = binary.AppendUvarint(b, uint64(len(f)))
	b = append(b, f...)
	b = append(b, key...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeToken returns the key of a page token of the given kind and
// listing f, nil for "", or store.ErrBadPageToken. The key must be at least
// minLen bytes long.
func decodeToken(tok string, kind byte, f string, minLen int) ([]byte, error) {
	if tok == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 3 || b[0] != tokenVersion || b[1] != kind {
		return nil, store.ErrBadPageToken
	}
	n, w := binary.Uvarint(b[2:])
	if w <= 0 || n > uint64(len(b)-2-w) {
		return nil, store.ErrBadPageToken
	}
	rest := b[2+w:]
	if string(rest[:n]) != f {
		return nil, store.ErrBadPageToken
	}
	key := rest[n:]
	if len(key) < minLen {
		return nil, store.ErrBadPageToken
	}
	return key, nil
}
