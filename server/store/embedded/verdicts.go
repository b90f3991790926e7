package embedded

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// putVerdict adds a final verdict (data is its encoding) to the history and
// to its eight indexes.
func putVerdict(tx *bolt.Tx, runID []byte, v *canaryv1.Verdict, data []byte) error {
	if err := tx.Bucket(bucketVerdicts).Put(runID, data); err != nil {
		return err
	}
	for m := range store.NumMasks {
		if err := tx.Bucket(verdictIndexes[m]).Put(verdictIndexKey(m, v, runID), nil); err != nil {
			return err
		}
	}
	return nil
}

func verdictIndexKey(m int, v *canaryv1.Verdict, runID []byte) []byte {
	k := store.AppendTime(filterPrefix(m, v.GetService(), v.GetStage(), int32(v.GetDecision())), v.GetTime().AsTime())
	return append(k, runID...)
}

// ListVerdicts returns final verdicts newest first (by Verdict.Time, then
// run id descending) matching f.
func (s *Store) ListVerdicts(ctx context.Context, f store.VerdictFilter, page store.Page) ([]*canaryv1.Verdict, string, error) {
	var (
		out  []*canaryv1.Verdict
		next string
	)
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		next, err = scanIndex(tx.Bucket(bucketVerdicts), verdictIndexes[:], kindVerdicts,
			f.Service, f.Stage, int32(f.Decision), f.Since, f.Until, page,
			func(data []byte) error {
				v := new(canaryv1.Verdict)
				if err := proto.Unmarshal(data, v); err != nil {
					return fmt.Errorf("decode verdict: %w", err)
				}
				out = append(out, v)
				return nil
			})
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list verdicts: %w", err)
	}
	return out, next, nil
}
