package redisstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// runIndexKeys returns the 8 run index keys of a run in a state, in the
// run's shard, and its member.
func (s *Store) runIndexKeys(run *canaryv1.Run, state canaryv1.RunState) ([]string, string) {
	names, mem := indexEntries(run.GetService(), run.GetStage(), int32(state), run.GetCreateTime().AsTime(), run.GetId())
	sh := runShard(run.GetRequestId(), run.GetId())
	ks := make([]string, store.NumMasks)
	for m, n := range names {
		ks[m] = s.k.runIndex(sh, n)
	}
	return ks, mem
}

// requestValue encodes what the request-id table holds for a run: its id,
// create time and the request's fingerprint.
func requestValue(id string, created time.Time, fingerprint []byte) string {
	b := binary.AppendUvarint(nil, uint64(len(id)))
	b = append(b, id...)
	b = store.AppendTime(b, created)
	return string(append(b, fingerprint...))
}

func parseRequestValue(v string) (id string, created time.Time, fingerprint []byte, err error) {
	n, w := binary.Uvarint([]byte(v))
	// n ≤ len − w first: n + TimeLen could wrap around.
	if w <= 0 || n > uint64(len(v)-w) || uint64(len(v)-w)-n < store.TimeLen {
		return "", time.Time{}, nil, errors.New("corrupt request record")
	}
	id = v[w : w+int(n)]
	t := []byte(v[w+int(n) : w+int(n)+store.TimeLen])
	sec := int64(binary.BigEndian.Uint64(t) ^ (1 << 63))
	created = time.Unix(sec, int64(binary.BigEndian.Uint32(t[8:]))).UTC()
	return id, created, []byte(v[w+int(n)+store.TimeLen:]), nil
}

// CreateRun stores a new run, or returns the run an earlier call with the
// same RequestId created (ErrConflict if its fingerprint differs). A run
// with an empty RequestId is not deduplicated. The run's state is stored as
// RUNNING; run.CreateTime orders ListRuns.
//
// It claims the request id and indexes the run (one script on the slot of
// the run's shard), then writes the run (one script on the run's slot). A call that
// finds the request id claimed but the run not written (its first call
// failed in between) writes it, with the id and create time of the claim.
func (s *Store) CreateRun(ctx context.Context, run *canaryv1.Run, fingerprint []byte) (*canaryv1.Run, bool, error) {
	id := run.GetId()
	run, err := store.NewRun(run)
	if err != nil {
		return nil, false, fmt.Errorf("create run %s: %w", id, err)
	}
	out, created, err := s.createRun(ctx, run, fingerprint)
	if errors.Is(err, store.ErrConflict) {
		return out, false, fmt.Errorf("create run %s: %w", id, err) // out: the id of the run the request id names
	}
	if err != nil {
		return nil, false, fmt.Errorf("create run %s: %w", id, err)
	}
	return out, created, nil
}

func (s *Store) createRun(ctx context.Context, run *canaryv1.Run, fingerprint []byte) (*canaryv1.Run, bool, error) {
	rid := run.GetRequestId()
	if rid != "" {
		// A retry of a known request needs no claim: the common case of a
		// retry reads one hash field.
		v, err := s.c.HGet(ctx, s.k.requests(runShard(rid, "")), rid).Result()
		switch {
		case err == nil:
			return s.createClaimed(ctx, run, fingerprint, v)
		case !errors.Is(err, redis.Nil):
			return nil, false, s.fail(ctx, err)
		}
	}
	n, err := s.c.Exists(ctx, s.k.runMeta(run.GetId())).Result()
	if err != nil {
		return nil, false, s.fail(ctx, err)
	}
	if n > 0 {
		return nil, false, errors.New("run id already used by another request")
	}

	idx, mem := s.runIndexKeys(run, run.GetState())
	value := ""
	if rid != "" {
		value = requestValue(run.GetId(), run.GetCreateTime().AsTime(), fingerprint)
	}
	reqs := s.k.requests(runShard(rid, run.GetId()))
	code, rest, err := s.runSlice(ctx, reserveScript, append([]string{reqs}, idx...), rid, value, mem)
	if err != nil {
		return nil, false, err
	}
	if code == 0 { // claimed meanwhile by another call
		v, _ := str(rest[0])
		return s.createClaimed(ctx, run, fingerprint, string(v))
	}
	stored, created, err := s.writeRun(ctx, run)
	if err != nil {
		return nil, false, err
	}
	if !created && rid != "" && stored.GetRequestId() == rid {
		// A retry of this request found the claim first and wrote the run
		// as claimed.
		return stored, false, nil
	}
	if !created {
		// The id belongs to a run that appeared since the check above:
		// release the claim and the index entries that are not that run's.
		s.release(ctx, rid, value, run, stored)
		return nil, false, errors.New("run id already used by another request")
	}
	return stored, true, nil
}

// createClaimed finishes a CreateRun whose request id is claimed, with
// value: it returns the claimed run, writing it first if its first call
// could not.
func (s *Store) createClaimed(ctx context.Context, run *canaryv1.Run, fingerprint []byte, value string) (*canaryv1.Run, bool, error) {
	id, created, fp, err := parseRequestValue(value)
	if err != nil {
		return nil, false, fmt.Errorf("request %q: %w", run.GetRequestId(), err)
	}
	if !bytes.Equal(fp, fingerprint) {
		return &canaryv1.Run{Id: id}, false, store.ErrConflict
	}
	stored, err := s.getRun(ctx, id)
	switch {
	case err == nil:
		return stored, false, nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, false, err
	}
	// The claim is there but not the run: write it as claimed (the same
	// request, so the same service, stage and config).
	run.Id = id
	run.CreateTime = timestamppb.New(created)
	stored, wrote, err := s.writeRun(ctx, run)
	if err != nil || !wrote {
		return stored, wrote, err
	}
	// The claim was made with index entries, unless it was migrated from
	// layout 1 (migrate.go): add them again (idempotent).
	idx, mem := s.runIndexKeys(stored, canaryv1.RunState_RUN_STATE_RUNNING)
	reqs := s.k.requests(runShard(stored.GetRequestId(), id))
	if _, _, err := s.runSlice(ctx, reserveScript, append([]string{reqs}, idx...), "", "", mem); err != nil {
		s.opts.Logger.Warn("index a run created from its claim", "run", id, "err", err)
	}
	return stored, true, nil
}

// writeRun writes a run record unless one exists: it returns the record
// and whether this call wrote it.
func (s *Store) writeRun(ctx context.Context, run *canaryv1.Run) (*canaryv1.Run, bool, error) {
	data, err := proto.Marshal(run)
	if err != nil {
		return nil, false, fmt.Errorf("encode: %w", err)
	}
	code, rest, err := s.runSlice(ctx, createScript, []string{s.k.runMeta(run.GetId())}, data, token())
	if err != nil {
		return nil, false, err
	}
	if code == 1 {
		return run, true, nil
	}
	stored, err := assembleRun(run.GetId(), rest)
	if err != nil {
		return nil, false, err
	}
	return stored, false, nil
}

// release undoes the claim and index entries of run, except the entries
// that other, the run stored under the same id, has too.
func (s *Store) release(ctx context.Context, rid, value string, run, other *canaryv1.Run) {
	mine, mem := s.runIndexKeys(run, run.GetState())
	theirs, theirMem := s.runIndexKeys(other, canaryv1.RunState_RUN_STATE_RUNNING)
	keys := []string{s.k.requests(runShard(rid, run.GetId()))}
	for m := range mine {
		if mem != theirMem || mine[m] != theirs[m] {
			keys = append(keys, mine[m])
		}
	}
	if _, err := s.runCode(ctx, releaseScript, keys, rid, value, mem); err != nil {
		s.opts.Logger.Warn("release the index entries of a run id used twice", "run", run.GetId(), "err", err)
	}
}

// GetRun returns a run.
func (s *Store) GetRun(ctx context.Context, id string) (*canaryv1.Run, error) {
	run, err := s.getRun(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get run %s: %w", id, err)
	}
	return run, nil
}

func (s *Store) getRun(ctx context.Context, id string) (*canaryv1.Run, error) {
	if id == "" {
		return nil, store.ErrNotFound
	}
	if s.closed() {
		return nil, errClosed
	}
	vals, err := s.c.HMGet(ctx, s.k.runMeta(id), "run", "upd", "fin").Result()
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return assembleRun(id, vals)
}

// assembleRun builds a run from its record fields run, upd and fin:
// store.ErrNotFound if run is nil.
func assembleRun(id string, vals []any) (*canaryv1.Run, error) {
	if len(vals) != 3 {
		return nil, fmt.Errorf("run %s: %d record fields, want 3", id, len(vals))
	}
	data, ok := str(vals[0])
	if !ok {
		return nil, store.ErrNotFound
	}
	run := new(canaryv1.Run)
	if err := proto.Unmarshal(data, run); err != nil {
		return nil, fmt.Errorf("decode run %s: %w", id, err)
	}
	if upd, ok := str(vals[1]); ok {
		u := new(canaryv1.Run)
		if err := proto.Unmarshal(upd, u); err != nil {
			return nil, fmt.Errorf("decode update of run %s: %w", id, err)
		}
		run.Verdict, run.Counters = u.GetVerdict(), u.GetCounters()
	}
	if fin, ok := str(vals[2]); ok {
		f := new(canaryv1.Run)
		if err := proto.Unmarshal(fin, f); err != nil {
			return nil, fmt.Errorf("decode final state of run %s: %w", id, err)
		}
		applyFinal(run, f)
	}
	return run, nil
}

// applyFinal sets on run what FinishRun stored in f.
func applyFinal(run, f *canaryv1.Run) {
	run.State = f.GetState()
	run.FinishTime = f.GetFinishTime()
	run.FinishReason = f.GetFinishReason()
	run.Verdict = f.GetVerdict()
	run.Counters = f.GetCounters()
}

// ListRuns lists runs newest first (by create time, then id descending).
func (s *Store) ListRuns(ctx context.Context, f store.RunFilter, page store.Page) ([]*canaryv1.Run, string, error) {
	runs, next, err := s.listRuns(ctx, f, page)
	if err != nil {
		return nil, "", fmt.Errorf("list runs: %w", err)
	}
	return runs, next, nil
}

func (s *Store) listRuns(ctx context.Context, f store.RunFilter, page store.Page) ([]*canaryv1.Run, string, error) {
	fn := filterName(store.FilterMask(f.Service, f.Stage, int32(f.State)), f.Service, f.Stage, int32(f.State))
	members, next, err := s.indexPage(ctx, kindRuns, s.k.runIndexShards(fn), fn, time.Time{}, time.Time{}, page)
	if err != nil {
		return nil, "", err
	}
	pipe := s.c.Pipeline()
	cmds := make([]*redis.SliceCmd, len(members))
	for i, mem := range members {
		cmds[i] = pipe.HMGet(ctx, s.k.runMeta(mem[store.TimeLen:]), "run", "upd", "fin")
	}
	if len(members) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", s.fail(ctx, err)
		}
	}
	runs := make([]*canaryv1.Run, 0, len(members))
	for i, cmd := range cmds {
		run, err := assembleRun(members[i][store.TimeLen:], cmd.Val())
		if errors.Is(err, store.ErrNotFound) {
			continue // claimed and indexed, not written (yet)
		}
		if err != nil {
			return nil, "", err
		}
		if f.State != 0 && run.GetState() != f.State {
			continue // finished, its index entries not moved yet
		}
		runs = append(runs, run)
	}
	return runs, next, nil
}

// indexPage reads one page of an index, newest first: of each of its
// shards' sorted sets (keys), the members between the time bounds (zero:
// unbounded) and after the page token issued for filter fn, at most the
// page's size + 1 (ZRANGE BYLEX REV LIMIT, one pipeline); merged, the
// newest of them make the page. It returns the page and the token of the
// next page ("" at the end). Runs and verdicts are listed through it.
func (s *Store) indexPage(ctx context.Context, kind byte, keys []string, fn string, since, until time.Time, page store.Page) ([]string, string, error) {
	after, err := decodeToken(page.Token, kind, fn, store.TimeLen+1)
	if err != nil {
		return nil, "", err
	}
	if s.closed() {
		return nil, "", errClosed
	}
	maxB, minB := lexRange(since, until, after)
	limit := page.Limit()
	pipe := s.c.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(keys))
	for i, key := range keys {
		cmds[i] = pipe.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: key, Start: maxB, Stop: minB, ByLex: true, Rev: true, Count: int64(limit + 1),
		})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, "", s.fail(ctx, err)
	}
	members := mergeDesc(cmds, limit+1)
	next := ""
	if len(members) > limit {
		members = members[:limit]
		next = encodeToken(kind, fn, []byte(members[limit-1]))
	}
	return members, next, nil
}

// mergeDesc merges the replies of cmds, each sorted in descending byte
// order, into at most n members in descending order.
func mergeDesc(cmds []*redis.StringSliceCmd, n int) []string {
	lists := make([][]string, 0, len(cmds))
	total := 0
	for _, c := range cmds {
		if v := c.Val(); len(v) > 0 {
			lists = append(lists, v)
			total += len(v)
		}
	}
	if len(lists) == 1 {
		return lists[0][:min(n, len(lists[0]))]
	}
	out := make([]string, 0, min(n, total))
	for len(out) < n {
		best := -1
		for i, l := range lists {
			if len(l) > 0 && (best < 0 || l[0] > lists[best][0]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		out = append(out, lists[best][0])
		lists[best] = lists[best][1:]
	}
	return out
}

// UpdateRun replaces the latest verdict and the counters of a running run;
// its other fields are kept as stored.
func (s *Store) UpdateRun(ctx context.Context, run *canaryv1.Run) error {
	id := run.GetId()
	if err := s.updateRun(ctx, run); err != nil {
		return fmt.Errorf("update run %s: %w", id, err)
	}
	return nil
}

func (s *Store) updateRun(ctx context.Context, run *canaryv1.Run) error {
	if run.GetId() == "" {
		return store.ErrNotFound
	}
	upd, err := proto.Marshal(&canaryv1.Run{Verdict: run.GetVerdict(), Counters: run.GetCounters()})
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	code, err := s.runAckedCode(ctx, updateScript, []string{s.k.runMeta(run.GetId())}, upd)
	if err != nil {
		return err
	}
	return codeErr(code)
}

// FinishRun marks a running run finished and adds its verdict to the
// history. From run it takes State (COMPLETED or ABORTED), FinishTime,
// FinishReason, Verdict and Counters; the verdict's RunId, Service and
// Stage are filled in from the run when empty.
//
// The run's state flips in one script on its slot; that is the commit.
// Its index entries and history entry are written after it; if that fails
// (Redis became unreachable in between), FinishRun still returns nil,
// since the run is finished and its verdict durable, and Maintain adds
// the verdict to the history later.
func (s *Store) FinishRun(ctx context.Context, run *canaryv1.Run) error {
	id := run.GetId()
	if err := s.finishRun(ctx, run, -1); err != nil {
		return fmt.Errorf("finish run %s: %w", id, err)
	}
	return nil
}

// FinishRunThrough is FinishRun for a verdict that folds the run's deltas
// up to the position through: it finishes the run only if no delta was
// appended after it, and otherwise returns store.ErrMoreBatches, storing
// nothing.
func (s *Store) FinishRunThrough(ctx context.Context, run *canaryv1.Run, through store.Cursor) error {
	id := run.GetId()
	if err := s.finishRun(ctx, run, through.N); err != nil {
		return fmt.Errorf("finish run %s: %w", id, err)
	}
	return nil
}

// finishRun finishes a run; with deltas >= 0, only if exactly that many
// deltas were appended to it.
func (s *Store) finishRun(ctx context.Context, run *canaryv1.Run, deltas int64) error {
	id := run.GetId()
	state := run.GetState()
	if state != canaryv1.RunState_RUN_STATE_COMPLETED && state != canaryv1.RunState_RUN_STATE_ABORTED {
		return fmt.Errorf("state %v, want COMPLETED or ABORTED", state)
	}
	if run.GetVerdict() == nil {
		return errors.New("no verdict")
	}
	if id == "" {
		return store.ErrNotFound
	}
	if s.closed() {
		return errClosed
	}
	vals, err := s.c.HMGet(ctx, s.k.runMeta(id), "run", "state").Result()
	if err != nil {
		return s.fail(ctx, err)
	}
	data, ok := str(vals[0])
	if !ok {
		return store.ErrNotFound
	}
	if st, _ := str(vals[1]); string(st) != runningState {
		return store.ErrFinished
	}
	base := new(canaryv1.Run)
	if err := proto.Unmarshal(data, base); err != nil {
		return fmt.Errorf("decode run: %w", err)
	}
	verdict := proto.Clone(run.GetVerdict()).(*canaryv1.Verdict)
	if verdict.RunId == "" {
		verdict.RunId = id
	}
	if verdict.Service == "" {
		verdict.Service = base.GetService()
	}
	if verdict.Stage == "" {
		verdict.Stage = base.GetStage()
	}
	if len(verdict.GetService()) > store.MaxIDLen || len(verdict.GetStage()) > store.MaxIDLen {
		return errors.New("verdict service or stage too long")
	}
	fin := &canaryv1.Run{
		State:        state,
		FinishTime:   run.GetFinishTime(),
		FinishReason: run.GetFinishReason(),
		Verdict:      verdict,
		Counters:     run.GetCounters(),
	}
	finData, err := proto.Marshal(fin)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	h, err := historyOf(base, fin)
	if err != nil {
		return err
	}

	mark := strconv.FormatInt(s.opts.Now().UnixMilli(), 10)
	pending := s.k.pending(shardOf(id))
	if _, err := s.runAckedCode(ctx, pendScript, []string{pending}, id, mark); err != nil {
		return err
	}
	code, err := s.runAckedCode(ctx, finishScript, s.k.runKeys(id), int(state), finData, s.opts.Retention.Milliseconds(), deltas)
	if err != nil {
		return err
	}
	err = codeErr(code)
	if code == codeMore {
		err = store.ErrMoreBatches
	}
	if err != nil {
		// Finished by another call, which indexes it: drop this call's mark.
		_, _ = s.runCode(ctx, unpendScript, []string{pending}, id, mark)
		return err
	}
	// Committed. A failure from here on leaves the pending mark for
	// Maintain.
	if err := s.index(ctx, h); err != nil {
		s.opts.Logger.Warn("finished run not indexed yet; maintenance will index it", "run", id, "err", err)
	}
	return nil
}

const runningState = "1" // strconv.Itoa(int(canaryv1.RunState_RUN_STATE_RUNNING))

// history is what a finished run adds to the indexes: computed from the
// stored run alone, so that FinishRun and Maintain write the same.
type history struct {
	run     *canaryv1.Run // as created
	state   canaryv1.RunState
	verdict *canaryv1.Verdict
	data    []byte // verdict, encoded
}

func historyOf(base, fin *canaryv1.Run) (history, error) {
	data, err := proto.Marshal(fin.GetVerdict())
	if err != nil {
		return history{}, fmt.Errorf("encode verdict: %w", err)
	}
	return history{run: base, state: fin.GetState(), verdict: fin.GetVerdict(), data: data}, nil
}

// index moves a finished run's index entries to its final state and adds
// its verdict to the history, clearing its pending mark. Idempotent.
func (s *Store) index(ctx context.Context, h history) error {
	id := h.run.GetId()
	from, mem := s.runIndexKeys(h.run, canaryv1.RunState_RUN_STATE_RUNNING)
	to, _ := s.runIndexKeys(h.run, h.state)
	var move []string
	for m := range store.NumMasks {
		if m&store.MaskEnum != 0 {
			move = append(move, from[m])
		}
	}
	leave := len(move)
	for m := range store.NumMasks {
		if m&store.MaskEnum != 0 {
			move = append(move, to[m])
		}
	}
	if _, err := s.runAckedCode(ctx, moveScript, move, mem, leave); err != nil {
		return err
	}
	v := h.verdict
	names, vmem := indexEntries(v.GetService(), v.GetStage(), int32(v.GetDecision()), v.GetTime().AsTime(), id)
	sh := shardOf(id)
	hk := make([]string, 0, store.NumMasks+2)
	hk = append(hk, s.k.verdicts(sh))
	for _, n := range names {
		hk = append(hk, s.k.verdictIndex(sh, n))
	}
	hk = append(hk, s.k.pending(sh))
	_, err := s.runAckedCode(ctx, historyScript, hk, id, h.data, vmem)
	return err
}
