package main

import (
	"fmt"
	"strings"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Conversions of flags to canaryv1 values.

// parseDecision parses a --decision flag: PROMOTE, HOLD or ROLLBACK, in
// any case.
func parseDecision(s string) (canaryv1.Decision, error) {
	switch strings.ToUpper(s) {
	case "":
		return canaryv1.Decision_DECISION_UNSPECIFIED, nil
	case "PROMOTE":
		return canaryv1.Decision_DECISION_PROMOTE, nil
	case "HOLD":
		return canaryv1.Decision_DECISION_HOLD, nil
	case "ROLLBACK":
		return canaryv1.Decision_DECISION_ROLLBACK, nil
	}
	return 0, fmt.Errorf("must be PROMOTE, HOLD or ROLLBACK (got %q)", s)
}

// parseState parses a --state flag.
func parseState(s string) (canaryv1.RunState, error) {
	switch strings.ToLower(s) {
	case "":
		return canaryv1.RunState_RUN_STATE_UNSPECIFIED, nil
	case "running":
		return canaryv1.RunState_RUN_STATE_RUNNING, nil
	case "completed":
		return canaryv1.RunState_RUN_STATE_COMPLETED, nil
	case "aborted":
		return canaryv1.RunState_RUN_STATE_ABORTED, nil
	}
	return 0, fmt.Errorf("must be running, completed or aborted (got %q)", s)
}

// configRef returns name@version, or name alone for version 0.
func configRef(name string, version uint32) string {
	if version == 0 {
		return name
	}
	return fmt.Sprintf("%s@%d", name, version)
}
