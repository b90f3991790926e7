package embedded

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/canaryd/canaryd/server/store"
)

var _ store.Trajectories = (*Store)(nil)

// PutTrajectory replaces the verdict trajectory of a run, running or
// finished; it lives in the run's data bucket, where the retention of raw
// data leaves it (see expireRun) and the sweep of its verdict deletes it.
func (s *Store) PutTrajectory(ctx context.Context, runID string, traj []byte) error {
	err := s.update(ctx, len(traj), func(tx *bolt.Tx) error {
		rb, err := runData(tx, runID)
		if err != nil {
			return reject(err)
		}
		return rb.Put(keyTrajectory, bytes.Clone(traj))
	})
	if err != nil {
		return fmt.Errorf("put trajectory of run %s: %w", runID, err)
	}
	return nil
}

// GetTrajectory returns the verdict trajectory of a run, nil if none was
// put.
func (s *Store) GetTrajectory(_ context.Context, runID string) ([]byte, error) {
	var traj []byte
	err := s.view(func(tx *bolt.Tx) error {
		rb, err := runData(tx, runID)
		if err != nil {
			return err
		}
		traj = bytes.Clone(rb.Get(keyTrajectory))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get trajectory of run %s: %w", runID, err)
	}
	return traj, nil
}
