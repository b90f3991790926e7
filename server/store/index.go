package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Index masks: which filter fields an index of runs or verdicts covers.
// Both backends keep one index per combination (NumMasks of them), so any
// filter of ListRuns or ListVerdicts reads exactly one index.
const (
	MaskService = 1 << iota
	MaskStage
	MaskEnum // decision for verdicts, state for runs
	NumMasks = 8
)

// TimeLen is the length of the AppendTime encoding.
const TimeLen = 12

// AppendTime appends the 12-byte order-preserving encoding of t: the Unix
// seconds as an int64 with its sign bit flipped, then the nanoseconds,
// both big-endian, so that byte order is time order.
func AppendTime(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

// FilterMask returns the index that serves a filter: the one with exactly
// the filter's non-empty fields.
func FilterMask(service, stage string, enum int32) int {
	m := 0
	if service != "" {
		m |= MaskService
	}
	if stage != "" {
		m |= MaskStage
	}
	if enum != 0 {
		m |= MaskEnum
	}
	return m
}

// NewRun validates a run for CreateRun and returns the record to store: a
// copy in state RUNNING.
func NewRun(run *canaryv1.Run) (*canaryv1.Run, error) {
	if err := CheckRun(run); err != nil {
		return nil, err
	}
	switch run.GetState() {
	case canaryv1.RunState_RUN_STATE_UNSPECIFIED, canaryv1.RunState_RUN_STATE_RUNNING:
	default:
		return nil, fmt.Errorf("state %v, want RUNNING", run.GetState())
	}
	run = proto.Clone(run).(*canaryv1.Run)
	run.State = canaryv1.RunState_RUN_STATE_RUNNING
	return run, nil
}
