package store

import (
	"fmt"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// MaxIDLen bounds the names and ids backends use in keys: run ids, request
// ids, services, stages, config names and batch ids (an index key holds a
// service, a stage and a run id).
const MaxIDLen = 1024

// CheckID reports an empty or oversize name or id; what names it in the
// error ("run id").
func CheckID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s is empty", what)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%s is %d bytes, more than %d", what, len(id), MaxIDLen)
	}
	return nil
}

// CheckRun reports a run whose id, request id, service or stage a backend
// cannot key.
func CheckRun(run *canaryv1.Run) error {
	if err := CheckID("run id", run.GetId()); err != nil {
		return err
	}
	switch {
	case len(run.GetRequestId()) > MaxIDLen:
		return fmt.Errorf("request id is %d bytes, more than %d", len(run.GetRequestId()), MaxIDLen)
	case len(run.GetService()) > MaxIDLen:
		return fmt.Errorf("service is %d bytes, more than %d", len(run.GetService()), MaxIDLen)
	case len(run.GetStage()) > MaxIDLen:
		return fmt.Errorf("stage is %d bytes, more than %d", len(run.GetStage()), MaxIDLen)
	}
	return nil
}
