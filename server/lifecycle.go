package server

import "fmt"

// runState is where a run in memory (a liveRun) is in its life. Every
// change of it goes through liveState.setState, which allows only these
// transitions (the table transitions):
//
//	loading ──▶ live ◀──▶ finishing ──▶ finished
//	   │         │                         │
//	   ▼         ▼                         ▼
//	evicted ◀────┴─────────────────────────┘
//
// In each state:
//   - loading: the first caller that needs the run reads it from the store
//     (Service.use); the others wait for it. Then live for a running run,
//     finished for a finished one, or evicted if the load failed.
//   - live: the run folds the deltas of its log (fold.go) and is judged
//     provisionally (judge.go). Then finishing (CompleteRun, AbortRun), or
//     evicted (idle, or finished through another process).
//   - finishing: a CompleteRun or AbortRun is storing the final verdict: no
//     batch is taken and no provisional verdict is installed. Then
//     finished, or live again if the finish failed.
//   - finished: completed or aborted, with its final verdict and no data.
//     Then evicted (idle, or reloaded).
//   - evicted: out of the registry once its counters are written back;
//     whoever still holds it looks the run up again (Service.use).
type runState uint8

const (
	stateLoading runState = iota
	stateLive
	stateFinishing
	stateFinished
	stateEvicted
)

// transitions lists the states each state may move to.
var transitions = [...][]runState{
	stateLoading:   {stateLive, stateFinished, stateEvicted},
	stateLive:      {stateFinishing, stateEvicted},
	stateFinishing: {stateLive, stateFinished},
	stateFinished:  {stateEvicted},
	stateEvicted:   nil,
}

func (s runState) String() string {
	switch s {
	case stateLoading:
		return "loading"
	case stateLive:
		return "live"
	case stateFinishing:
		return "finishing"
	case stateFinished:
		return "finished"
	case stateEvicted:
		return "evicted"
	}
	return fmt.Sprintf("runState(%d)", s)
}

// canMove reports whether from → to is a transition of the lifecycle.
func canMove(from, to runState) bool {
	if int(from) >= len(transitions) {
		return false
	}
	for _, t := range transitions[from] {
		if t == to {
			return true
		}
	}
	return false
}

// running reports whether a run in this state has data: it is live or
// being finished.
func (s runState) running() bool { return s == stateLive || s == stateFinishing }
