package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/canaryd/canaryd/server/store"
)

var _ store.Trajectories = (*Store)(nil)

// putTrajectoryScript replaces the trajectory of a run that exists.
//
//	KEYS: meta   ARGV: trajectory
var putTrajectoryScript = redis.NewScript(`#!lua
if not redis.call('HGET', KEYS[1], 'state') then return -1 end
redis.call('HSET', KEYS[1], 'traj', ARGV[1])
return 0
`)

// PutTrajectory replaces the verdict trajectory of a run, running or
// finished: a field of its record (the meta hash, which the retention of
// raw data leaves and the sweep of its verdict deletes), so that every
// replica reads the one stored last.
func (s *Store) PutTrajectory(ctx context.Context, runID string, traj []byte) error {
	if err := s.putTrajectory(ctx, runID, traj); err != nil {
		return fmt.Errorf("put trajectory of run %s: %w", runID, err)
	}
	return nil
}

func (s *Store) putTrajectory(ctx context.Context, runID string, traj []byte) error {
	if runID == "" {
		return store.ErrNotFound
	}
	code, err := s.runAckedCode(ctx, putTrajectoryScript, []string{s.k.runMeta(runID)}, traj)
	if err != nil {
		return err
	}
	return codeErr(code)
}

// GetTrajectory returns the verdict trajectory of a run, nil if none was
// put.
func (s *Store) GetTrajectory(ctx context.Context, runID string) ([]byte, error) {
	traj, err := s.getTrajectory(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("get trajectory of run %s: %w", runID, err)
	}
	return traj, nil
}

func (s *Store) getTrajectory(ctx context.Context, runID string) ([]byte, error) {
	if runID == "" {
		return nil, store.ErrNotFound
	}
	if s.closed() {
		return nil, errClosed
	}
	vals, err := s.c.HMGet(ctx, s.k.runMeta(runID), "state", "traj").Result()
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	if _, ok := str(vals[0]); !ok {
		return nil, store.ErrNotFound
	}
	traj, _ := str(vals[1])
	return traj, nil
}
