package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/internal/apiconv"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// printServiceVerdict writes a verdict from the service as a table: a line
// about the run above the table of `canaryctl analyze`.
func printServiceVerdict(w io.Writer, pv *canaryv1.Verdict) error {
	fmt.Fprintf(w, "run:      %s   (%s, stage %s, %s)\n", pv.GetRunId(), pv.GetService(), pv.GetStage(), verdictStatus(pv))
	v := apiconv.VerdictFromProto(pv)
	v.Config = configRef(pv.GetConfigName(), pv.GetConfigVersion())
	return printVerdict(w, &v)
}

// verdictStatus says whether a verdict is final or provisional, and when
// and in which state of the run it was computed.
func verdictStatus(pv *canaryv1.Verdict) string {
	kind := "provisional"
	if pv.GetFinal() {
		kind = "final"
	}
	s := fmt.Sprintf("%s %s verdict", apiconv.RunStateName(pv.GetRunState()), kind)
	if t := pv.GetTime(); t != nil {
		s += " at " + fmtTime(t.AsTime())
	}
	return s
}

// verdictLine is a verdict in one line, for watch on a pipe:
//
//	2026-11-22T10:30:00Z HOLD seq=3 provisional: not enough data: ...
func verdictLine(pv *canaryv1.Verdict) string {
	kind := "provisional"
	if pv.GetFinal() {
		kind = "final"
	}
	t := "-"
	if pv.GetTime() != nil {
		t = fmtTime(pv.GetTime().AsTime())
	}
	return fmt.Sprintf("%s %s seq=%d %s: %s", t, apiconv.DecisionFromProto(pv.GetDecision()), pv.GetSequence(), kind, oneLine(pv.GetReason()))
}

// printRun writes a run as a list of fields.
func printRun(w io.Writer, r *canaryv1.Run) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	field := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t"+format+"\n", append([]any{k}, args...)...)
	}
	field("id", "%s", r.GetId())
	field("request id", "%s", r.GetRequestId())
	field("service", "%s", r.GetService())
	field("stage", "%s", r.GetStage())
	field("config", "%s", configName(r))
	field("state", "%s", apiconv.RunStateName(r.GetState()))
	field("created", "%s", tsString(r.GetCreateTime()))
	if b := r.GetBakeTime(); b != nil {
		field("bake time", "%s (until %s)", b.AsDuration(), fmtTime(r.GetCreateTime().AsTime().Add(b.AsDuration())))
	}
	if r.GetFinishTime() != nil {
		fin := tsString(r.GetFinishTime())
		if r.GetFinishReason() != "" {
			fin += " (" + r.GetFinishReason() + ")"
		}
		field("finished", "%s", fin)
	}
	field("baseline", "%s", labels(r.GetBaselineLabels()))
	field("canary", "%s", labels(r.GetCanaryLabels()))
	if r.CanaryTrafficShare != nil {
		field("canary share", "%s", pctf(r.GetCanaryTrafficShare()))
	}
	c := r.GetCounters()
	field("samples", "baseline %d, canary %d", c.GetBaselineSamples(), c.GetCanarySamples())
	field("batches", "%d (+%d duplicates), last at %s", c.GetBatches(), c.GetDuplicateBatches(), tsString(c.GetLastIngestTime()))
	if v := r.GetVerdict(); v != nil {
		field("verdict", "%s (%s, seq %d)", apiconv.DecisionFromProto(v.GetDecision()), verdictStatus(v), v.GetSequence())
		field("reason", "%s", oneLine(v.GetReason()))
	} else {
		field("verdict", "none yet")
	}
	return tw.Flush()
}

// printRuns writes runs one a line; wide adds the cohorts' labels, the
// bake time, the end and the batches.
func printRuns(w io.Writer, runs []*canaryv1.Run, wide bool) error {
	if len(runs) == 0 {
		_, err := fmt.Fprintln(w, "no runs found")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	head := "ID\tSERVICE\tSTAGE\tCONFIG\tSTATE\tDECISION\tCREATED\tSAMPLES"
	if wide {
		head += "\tBASELINE\tCANARY\tBAKE\tFINISHED\tBATCHES\tREQUEST ID"
	}
	fmt.Fprintln(tw, head)
	for _, r := range runs {
		dec := "-"
		if v := r.GetVerdict(); v != nil {
			dec = string(apiconv.DecisionFromProto(v.GetDecision()))
		}
		c := r.GetCounters()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d", r.GetId(), r.GetService(), r.GetStage(), configName(r),
			apiconv.RunStateName(r.GetState()), dec, tsString(r.GetCreateTime()), c.GetBaselineSamples()+c.GetCanarySamples())
		if wide {
			bake := "-"
			if b := r.GetBakeTime(); b != nil {
				bake = b.AsDuration().String()
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\t%d\t%s", labels(r.GetBaselineLabels()), labels(r.GetCanaryLabels()), bake,
				tsString(r.GetFinishTime()), c.GetBatches(), r.GetRequestId())
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// printHistory writes final verdicts one a line; wide adds the config,
// the run's state and the whole reason.
func printHistory(w io.Writer, vs []*canaryv1.Verdict, wide bool) error {
	if len(vs) == 0 {
		_, err := fmt.Fprintln(w, "no verdicts found")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "TIME\tSERVICE\tSTAGE\tDECISION\tRUN\tCONFIG\tSTATE\tREASON")
	} else {
		fmt.Fprintln(tw, "TIME\tSERVICE\tSTAGE\tDECISION\tRUN\tREASON")
	}
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t", tsString(v.GetTime()), v.GetService(), v.GetStage(),
			apiconv.DecisionFromProto(v.GetDecision()), v.GetRunId())
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", configRef(v.GetConfigName(), v.GetConfigVersion()),
				apiconv.RunStateName(v.GetRunState()), oneLine(v.GetReason()))
		} else {
			fmt.Fprintf(tw, "%s\n", truncate(oneLine(v.GetReason()), 100))
		}
	}
	return tw.Flush()
}

// printConfig writes a config version: its header and its metrics, with
// every default applied.
func printConfig(w io.Writer, cv *canaryv1.ConfigVersion) error {
	c := cv.GetConfig()
	fmt.Fprintf(w, "config:     %s@%d (stored %s)\n", cv.GetName(), cv.GetVersion(), tsString(cv.GetCreateTime()))
	warm := "none"
	if c.GetWarmup() != nil {
		warm = c.GetWarmup().AsDuration().String()
	}
	window := "none"
	if c.GetWindow() != nil {
		window = c.GetWindow().AsDuration().String()
	}
	fmt.Fprintf(w, "confidence: %s   power: %s   warm-up: %s   window: %s\n\n", pct(c.GetConfidence()), pct(c.GetPower()), warm, window)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tCATEGORY\tTYPE\tBAD DIRECTION\tTOLERANCE\tCRITICAL\tFLOOR\tDETECTABLE")
	for _, m := range c.GetMetrics() {
		floor := "-"
		switch {
		case m.MinSamples != nil:
			floor = fmt.Sprintf("%d samples", m.GetMinSamples())
		case m.MinTotal != nil:
			unit := m.GetExposureUnit()
			if unit == "" {
				unit = "requests"
			}
			floor = num(m.GetMinTotal()) + " " + unit
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%s\t%s\n", m.GetName(), apiconv.CategoryFromProto(m.GetCategory()),
			apiconv.TypeFromProto(m.GetType()), apiconv.DirectionFromProto(m.GetBadDirection()), pct(m.GetTolerance()),
			m.GetCritical(), floor, pct(m.GetDetectableEffect()))
	}
	return tw.Flush()
}

// printConfigs writes config versions one a line; wide adds the
// confidence, the power, the warm-up and the window.
func printConfigs(w io.Writer, cvs []*canaryv1.ConfigVersion, wide bool) error {
	if len(cvs) == 0 {
		_, err := fmt.Fprintln(w, "no configs found")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	head := "NAME\tVERSION\tSTORED\tMETRICS"
	if wide {
		head += "\tCONFIDENCE\tPOWER\tWARM-UP\tWINDOW"
	}
	fmt.Fprintln(tw, head)
	for _, cv := range cvs {
		c := cv.GetConfig()
		names := make([]string, 0, len(c.GetMetrics()))
		for _, m := range c.GetMetrics() {
			names = append(names, m.GetName())
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s", cv.GetName(), cv.GetVersion(), tsString(cv.GetCreateTime()), strings.Join(names, ","))
		if wide {
			warm, window := "-", "-"
			if c.GetWarmup() != nil {
				warm = c.GetWarmup().AsDuration().String()
			}
			if c.GetWindow() != nil {
				window = c.GetWindow().AsDuration().String()
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s", pct(c.GetConfidence()), pct(c.GetPower()), warm, window)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func configName(r *canaryv1.Run) string {
	if r.GetConfigVersion() == 0 {
		return r.GetConfigName() + " (inline)"
	}
	return configRef(r.GetConfigName(), r.GetConfigVersion())
}

func labels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// fmtTime formats a time for tables, in RFC 3339 at the second, in the
// local time zone.
func fmtTime(t time.Time) string { return t.Local().Format(time.RFC3339) }

// tsString formats a timestamp, "-" when absent.
func tsString(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return fmtTime(ts.AsTime())
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
