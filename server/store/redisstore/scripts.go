package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts that make each write atomic. Every script touches the
// keys of one hash slot only, all passed in KEYS, so that it runs on a
// Redis Cluster as on a single server; the shebang makes Redis (7.0+)
// enforce that in cluster mode and refuse the writing scripts on a replica.
// Results are integer codes, or arrays whose first element is the code:
const (
	codeOK       = 0
	codeDup      = 1 // appendScript: the batch id is known
	codeNotFound = -1
	codeFinished = -2
	codeTooFew   = -3 // snapshotScript: fewer deltas stored than asked to fold
	codeMore     = -5 // finishScript: deltas appended after the given count
)

// appendScript stores a delta once per batch id, if the run is running
// and not closing (see closeScript).
//
// With ARGV[3] = "1" (min_replicas), a duplicate increments the run's
// "dups" counter: a write of this connection, so that the WAIT after it
// covers the first append of the batch, whichever connection made it.
//
//	KEYS: meta, ids, deltas   ARGV: batch id, delta[, "1"]
var appendScript = redis.NewScript(`#!lua
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return -1 end
if st ~= '1' then return -2 end
if redis.call('HEXISTS', KEYS[1], 'closing') == 1 then return -2 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then
  if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[1], 'dups', 1) end
  return 1
end
redis.call('XADD', KEYS[3], '*', 'd', ARGV[2])
return 0
`)

// closeScript marks a running run closing: appendScript refuses its new
// batches from then on, so a replica finishing it can read every delta
// and store the final verdict without another replica's append slipping
// in between. Closing a closing run is a no-op.
//
//	KEYS: meta
var closeScript = redis.NewScript(`#!lua
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return -1 end
if st ~= '1' then return -2 end
redis.call('HSET', KEYS[1], 'closing', '1')
return 0
`)

// reopenScript undoes closeScript: the run takes batches again (its
// finish failed).
//
//	KEYS: meta
var reopenScript = redis.NewScript(`#!lua
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return -1 end
if st ~= '1' then return -2 end
redis.call('HDEL', KEYS[1], 'closing')
return 0
`)

// readScript returns one chunk of a run's data: {1, folded, snapshot or
// nil, more (0/1), present (0/1), id, delta, id, delta, ...}, or {-1} for
// an unknown run. The snapshot is read only when ARGV[4] is "1". present
// says whether the delta of the position read after (ARGV[5], "" for
// none) is still in the stream: one that is neither there nor folded was
// lost (a failover promoted a replica that lacked it).
//
//	KEYS: meta, deltas, snap   ARGV: XRANGE start, count, byte budget, with snapshot, position id
var readScript = redis.NewScript(`#!lua flags=no-writes
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {-1} end
local snap = false
if ARGV[4] == '1' then snap = redis.call('GET', KEYS[3]) end
local present = 1
if ARGV[5] ~= '' and #redis.call('XRANGE', KEYS[2], ARGV[5], ARGV[5]) == 0 then present = 0 end
local count, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
local r = redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', count)
local more = #r == count
local out = {1, redis.call('HGET', KEYS[1], 'folded') or '0', snap, 0, present}
local size = 0
for i, e in ipairs(r) do
  if i > 1 and size >= budget then more = true break end
  local d = e[2][2]
  out[#out + 1] = e[1]
  out[#out + 1] = d
  size = size + #d
end
if more then out[4] = 1 end
return out
`)

// snapshotScript replaces the snapshot and deletes the n oldest deltas.
// A finished run's snapshot expires with its other raw data.
//
//	KEYS: meta, deltas, snap   ARGV: n, snapshot
var snapshotScript = redis.NewScript(`#!lua
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {-1} end
local n = tonumber(ARGV[1])
if n > 0 then
  local len = redis.call('XLEN', KEYS[2])
  if len < n then return {-3, len} end
  redis.call('XTRIM', KEYS[2], 'MAXLEN', '=', len - n)
  redis.call('HINCRBY', KEYS[1], 'folded', n)
end
redis.call('SET', KEYS[3], ARGV[2])
if st ~= '1' then
  local exp = tonumber(redis.call('HGET', KEYS[1], 'exp') or '0')
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if exp > now then
    redis.call('PEXPIRE', KEYS[3], exp - now)
  else
    redis.call('DEL', KEYS[3])
  end
end
return {0}
`)

// snapshotThroughScript replaces the snapshot with one that folds the
// deltas up to position (n, id) and deletes them, unless the snapshot
// already folds n or more deltas: 0 done, 1 nothing to do.
//
//	KEYS: meta, deltas, snap   ARGV: n, id, snapshot
var snapshotThroughScript = redis.NewScript(`#!lua
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return -1 end
local n = tonumber(ARGV[1])
local folded = tonumber(redis.call('HGET', KEYS[1], 'folded') or '0')
if folded >= n then return 1 end
if ARGV[2] == '' or #redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[2]) == 0 then return -3 end
local ms, seq = string.match(ARGV[2], '^(%d+)-(%d+)$')
local removed = redis.call('XTRIM', KEYS[2], 'MINID', '=', ms .. '-' .. string.format('%.0f', tonumber(seq) + 1))
redis.call('HSET', KEYS[1], 'folded', string.format('%.0f', folded + removed))
redis.call('SET', KEYS[3], ARGV[3])
if st ~= '1' then
  local exp = tonumber(redis.call('HGET', KEYS[1], 'exp') or '0')
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if exp > now then
    redis.call('PEXPIRE', KEYS[3], exp - now)
  else
    redis.call('DEL', KEYS[3])
  end
end
return 0
`)

// updateScript replaces the verdict and counters of a running run.
//
//	KEYS: meta   ARGV: Run{Verdict, Counters}
var updateScript = redis.NewScript(`#!lua
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return -1 end
if st ~= '1' then return -2 end
redis.call('HSET', KEYS[1], 'upd', ARGV[1])
return 0
`)

// createScript writes a new run record: {1} when this call (token) wrote
// it, {0, run, upd, fin} when another one did.
//
//	KEYS: meta   ARGV: Run, token
var createScript = redis.NewScript(`#!lua
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'ctok') == ARGV[2] then return {1} end
  local r = redis.call('HMGET', KEYS[1], 'run', 'upd', 'fin')
  return {0, r[1], r[2], r[3]}
end
redis.call('HSET', KEYS[1], 'run', ARGV[1], 'state', '1', 'folded', '0', 'ctok', ARGV[2])
return {1}
`)

// reserveScript claims a request id for a run (unless ARGV[1] is "") and
// adds the run to its indexes: {1} when claimed, {0, value} when the
// request id was claimed before (nothing written then).
//
//	KEYS: requests, 8 run indexes   ARGV: request id, value, member
var reserveScript = redis.NewScript(`#!lua
if ARGV[1] ~= '' then
  local v = redis.call('HGET', KEYS[1], ARGV[1])
  if v then return {0, v} end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
for i = 2, #KEYS do redis.call('ZADD', KEYS[i], 0, ARGV[3]) end
return {1}
`)

// releaseScript undoes reserveScript: it deletes the request id if it
// still holds value (unless ARGV[1] is "") and removes member from the
// indexes given.
//
//	KEYS: requests, run indexes   ARGV: request id, value, member
var releaseScript = redis.NewScript(`#!lua
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[3]) end
return 0
`)

// finishScript marks a running run finished and starts the expiry of its
// raw data. The final state replaces the last update. With a delta count
// (ARGV[4] >= 0) it does so only if exactly that many deltas were
// appended (folded ones included), and returns -5 otherwise.
//
//	KEYS: meta, ids, deltas, snap   ARGV: state, fin, retention in ms[, delta count]
var finishScript = redis.NewScript(`#!lua
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return -1 end
if st ~= '1' then return -2 end
local want = tonumber(ARGV[4] or '-1')
if want >= 0 then
  local total = tonumber(redis.call('HGET', KEYS[1], 'folded') or '0') + redis.call('XLEN', KEYS[3])
  if total ~= want then return -5 end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ret = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'fin', ARGV[2], 'exp', string.format('%.0f', now + ret))
redis.call('HDEL', KEYS[1], 'upd')
for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ret) end
return 0
`)

// moveScript removes member from the first ARGV[2] keys and adds it to the
// others: a run's index entries moving from one state to another.
//
//	KEYS: indexes to leave, indexes to join   ARGV: member, number of indexes to leave
var moveScript = redis.NewScript(`#!lua
local n = tonumber(ARGV[2])
for i = 1, #KEYS do
  if i <= n then
    redis.call('ZREM', KEYS[i], ARGV[1])
  else
    redis.call('ZADD', KEYS[i], 0, ARGV[1])
  end
end
return 0
`)

// historyScript adds a final verdict to the history and its 8 indexes and
// clears the run's pending mark.
//
//	KEYS: verdicts, 8 verdict indexes, pending   ARGV: run id, verdict, member
var historyScript = redis.NewScript(`#!lua
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 2, #KEYS - 1 do redis.call('ZADD', KEYS[i], 0, ARGV[3]) end
redis.call('HDEL', KEYS[#KEYS], ARGV[1])
return 0
`)

// pendScript sets a pending mark (a script, so that min_replicas waits
// for it like for every other write).
//
//	KEYS: pending   ARGV: run id, value
var pendScript = redis.NewScript(`#!lua
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 0
`)

// unpendScript clears a pending mark if it still has the value read.
//
//	KEYS: pending   ARGV: run id, value
var unpendScript = redis.NewScript(`#!lua
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
`)

// forgetScript removes a verdict from the history: from the filtered
// indexes, then the record, then the "all" index that the sweeper walks,
// so that an interrupted sweep is found again.
//
//	KEYS: verdicts, "all" index, 7 filtered indexes   ARGV: run id, member
var forgetScript = redis.NewScript(`#!lua
for i = 3, #KEYS do redis.call('ZREM', KEYS[i], ARGV[2]) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 0
`)

// putConfigScript appends a config version if the list still has the
// length the caller read: 1 appended, 0 changed meanwhile.
//
//	KEYS: versions   ARGV: expected length, ConfigVersion
var putConfigScript = redis.NewScript(`#!lua
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
return 1
`)
