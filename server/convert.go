package server

import (
	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// verdictToProto returns the API form of a verdict of run r: that of
// apiconv.VerdictToProto with the run's id, service, stage and config. The
// caller sets Time, Final, RunState and Sequence.
func verdictToProto(v *analysis.Verdict, r *canaryv1.Run) *canaryv1.Verdict {
	pv := apiconv.VerdictToProto(v)
	pv.RunId, pv.Service, pv.Stage = r.GetId(), r.GetService(), r.GetStage()
	pv.ConfigName, pv.ConfigVersion = r.GetConfigName(), r.GetConfigVersion()
	return pv
}
