package report

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

// Renderer writes reports and history pages as self-contained HTML: inline
// CSS, inline SVG charts, no external resource of any kind (the report of
// a run is opened from incident tickets, offline). It is safe for
// concurrent use.
type Renderer struct {
	t *template.Template
}

// NewRenderer parses the page templates.
func NewRenderer() (*Renderer, error) {
	t, err := template.New("pages").Funcs(template.FuncMap{
		"pct":          pctText,
		"outcomeBadge": outcomeBadge,
	}).ParseFS(templateFS, "templates/*.tmpl")
	if err != nil {
		return nil, fmt.Errorf("parse report templates: %w", err)
	}
	return &Renderer{t: t}, nil
}

// ReportOptions are the circumstances of a rendered report.
type ReportOptions struct {
	// Generated is when the page was rendered, shown in its footer; zero
	// leaves it out.
	Generated time.Time
	// Refresh, when positive, makes the page reload itself this often:
	// for the daemon's page of a running run (never for a file).
	Refresh time.Duration
	// HistoryURL, when set, links the page to the history page.
	HistoryURL string
}

// Report writes the HTML report of a run.
func (r *Renderer) Report(w io.Writer, rep *canaryv1.RunReport, opts ReportOptions) error {
	v := newReportView(rep, opts)
	if err := r.t.ExecuteTemplate(w, "report", v); err != nil {
		return fmt.Errorf("render report of run %s: %w", rep.GetRun().GetId(), err)
	}
	return nil
}

// kv is a labelled value of the page's header.
type kv struct{ K, V string }

// reportView is what the report template shows, computed from a
// RunReport.
type reportView struct {
	Title         string
	RunID         string
	Decision      string
	DecisionClass string
	Status        string // "final verdict" or "provisional verdict"
	Reason        string
	Meta          []kv
	BakeText      string
	BakePercent   float64 // 0..100; negative: no bake
	Forest        *chart
	Summary       []summaryRow
	Timeline      *chart
	Changes       []change
	Metrics       []metricView
	Windows       *windowsView
	Alarms        []alarmView
	Overrides     []overrideView
	Generated     string
	Refresh       int
	HistoryURL    string
	NoVerdict     bool
}

// summaryRow is one metric's line of the overview table.
type summaryRow struct {
	ID, Name, Outcome, OutcomeClass, Effect, Tolerance, P, PromoteP string
}

// change is one decision change of the timeline.
type change struct{ Time, Decision, Class string }

// metricView is one metric's section.
type metricView struct {
	ID, Name, Outcome, OutcomeClass, Kind, Reason, Test, Window string
	Critical                                                    bool
	Main, Effect, Evidence, Gate, Instances                     *chart
	EvidenceNote, GateText, InstancesNote, Note                 string
	StandOut                                                    []string
	Evidence1                                                   string // the p-values in words
	Table                                                       table
}

// table is a small HTML table.
type table struct {
	Head []string
	Rows [][]string
}

type windowsView struct {
	Length string
	Starts []string
	Used   []string // "latency_ms: window since 10:15"
}

type alarmView struct {
	Name, State, StateClass, Summary, Start, End, Labels string
}

// overrideView is a deploy blocker overridden around the run.
type overrideView struct {
	Time, Who, Reason, Overrode string
}

// newReportView computes the page of a report.
func newReportView(rep *canaryv1.RunReport, opts ReportOptions) *reportView {
	run, v := rep.GetRun(), rep.GetVerdict()
	view := &reportView{RunID: run.GetId(), HistoryURL: opts.HistoryURL, BakePercent: -1}
	if opts.Refresh > 0 {
		view.Refresh = int(math.Ceil(opts.Refresh.Seconds()))
	}
	if !opts.Generated.IsZero() {
		view.Generated = opts.Generated.UTC().Format(time.RFC3339)
	}
	view.Decision, view.DecisionClass = decisionWord(v.GetDecision())
	view.NoVerdict = v == nil
	view.Status = "provisional verdict"
	if v.GetFinal() {
		view.Status = "final verdict"
	}
	if v == nil {
		view.Decision, view.Status = "NO VERDICT", "not judged yet"
	}
	view.Reason = v.GetReason()
	view.Title = fmt.Sprintf("%s %s/%s — canary report", view.Decision, run.GetService(), run.GetStage())
	cfgName := run.GetConfigName()
	if cfgName == "" {
		cfgName = v.GetConfigName()
	}
	cfg := cfgName
	if run.GetConfigVersion() > 0 {
		cfg += "@" + strconv.Itoa(int(run.GetConfigVersion()))
	} else if cfg != "" {
		cfg += " (inline)"
	}
	add := func(k, val string) {
		if val != "" {
			view.Meta = append(view.Meta, kv{k, val})
		}
	}
	add("service", run.GetService())
	add("stage", run.GetStage())
	add("run", run.GetId())
	add("state", strings.ToLower(strings.TrimPrefix(run.GetState().String(), "RUN_STATE_")))
	add("config", cfg)
	add("baseline labels", labelText(run.GetBaselineLabels()))
	add("canary labels", labelText(run.GetCanaryLabels()))
	if s := run.CanaryTrafficShare; s != nil {
		add("canary share", pctText(*s))
	}
	add("created", tsText(run.GetCreateTime()))
	if st := run.GetStartTime(); st != nil && !st.AsTime().Equal(run.GetCreateTime().AsTime()) {
		add("data from", tsText(st))
	}
	add("finished", tsText(run.GetFinishTime()))
	add("finish reason", run.GetFinishReason())
	if v != nil {
		add("judged", fmt.Sprintf("%s (judgement %d, %s confidence)", tsText(v.GetTime()), v.GetSequence(), pctText(v.GetConfidence())))
	}
	if c := run.GetCounters(); c != nil {
		add("samples", fmt.Sprintf("%s baseline, %s canary in %s batches", num(float64(c.GetBaselineSamples())), num(float64(c.GetCanarySamples())), num(float64(c.GetBatches()))))
	}
	view.BakeText, view.BakePercent = bake(run, v)

	view.Forest = forestChart(rep)
	view.Timeline = timelineChart(rep)
	view.Changes = changes(rep.GetTrajectory())
	alpha := 1 - v.GetConfidence()
	power := run.GetConfig().GetPower()
	var winStarts []time.Time
	for _, s := range rep.GetWindows().GetStarts() {
		winStarts = append(winStarts, s.AsTime())
	}
	for i, m := range v.GetMetrics() {
		mr := metricReport(rep, i)
		if mr == nil {
			mr = &canaryv1.MetricReport{Name: m.GetName()}
		}
		id := fmt.Sprintf("m%d", i)
		class, _, word := outcomeStyle(m.GetOutcome())
		mv := metricView{
			ID: id, Name: m.GetName(), Outcome: strings.ToUpper(word), OutcomeClass: class,
			Critical: m.GetCritical(), Reason: m.GetReason(), Test: m.GetTest(),
			Kind: fmt.Sprintf("%s %s metric, bad direction %s", enumWord(m.GetCategory().String(), "METRIC_CATEGORY_"),
				enumWord(m.GetType().String(), "METRIC_TYPE_"), enumWord(m.GetBadDirection().String(), "BAD_DIRECTION_")),
		}
		if ws := mr.GetWindowStart(); ws != nil {
			mv.Window = "The rollback p-value came from the window since " + tsText(ws) + " (its effect is shown)."
		}
		if h := mr.GetHistogram(); m.GetType() == canaryv1.MetricType_METRIC_TYPE_DISTRIBUTION && h != nil {
			mv.Main = distChart(id+"-dist", m, h, valueUnit(run, m.GetName()))
		} else {
			mv.Main = valuesChart(id+"-values", m, mr)
		}
		mv.Effect = effectChart(id+"-effect", m, mr)
		pa := 1 - power
		if m.GetName() == analysis.TrafficName || power == 0 {
			pa = 0
		}
		mv.Evidence1 = fmt.Sprintf("Rollback test p = %s, Holm-adjusted %s (rolls back at ≤ %s)", pText(m.GetPValue()), pText(m.GetAdjustedPValue()), pText(alpha))
		if pa > 0 {
			mv.Evidence1 += fmt.Sprintf("; promote test p = %s (can pass at ≤ %s)", pText(m.GetPromotePValue()), pText(pa))
		}
		mv.Evidence1 += "."
		mv.Note = mv.Main.Note
		if traj := rep.GetTrajectory(); len(traj) > 0 {
			mv.Evidence = evidenceChart(id+"-evidence", i, m.GetName(), traj, alpha, pa, winStarts)
			if m.GetName() != analysis.TrafficName {
				mv.Gate = gateChart(id+"-gate", i, m.GetName(), m.GetGate().GetUnit(), traj)
			}
		} else {
			mv.EvidenceNote = "No judgement recorded yet: no evidence over time."
		}
		if m.GetName() != analysis.TrafficName {
			mv.GateText = gateText(m, rep.GetTrajectory(), i)
		}
		if len(mr.GetInstances()) > 0 {
			mv.Instances = instancesChart(id+"-instances", m, mr)
			for _, e := range mr.GetInstances() {
				if e.GetStandsOut() {
					mv.StandOut = append(mv.StandOut, fmt.Sprintf("%s (%s, %s the baseline)", e.GetInstance(),
						enumWord(e.GetCohort().String(), "COHORT_"), ratioText(e.GetRatio())))
				}
			}
			if n := mr.GetInstancesOmitted(); n > 0 {
				mv.InstancesNote = fmt.Sprintf("%d more instances, closer to their cohort, are not shown.", n)
			}
		} else if m.GetName() != analysis.TrafficName {
			mv.InstancesNote = "The samples name at most one instance per cohort (or the raw data are gone): no per-instance effects."
		}
		mv.Table = cohortTable(m, mr)
		view.Metrics = append(view.Metrics, mv)
		tol := bandText(mr.GetToleranceLower(), mr.GetToleranceUpper())
		view.Summary = append(view.Summary, summaryRow{
			ID: id, Name: m.GetName(), Outcome: strings.ToUpper(word), OutcomeClass: class,
			Effect: effectText(m.GetEffect()), Tolerance: tol,
			P: pText(m.GetAdjustedPValue()), PromoteP: pText(m.GetPromotePValue()),
		})
		if pa == 0 {
			view.Summary[len(view.Summary)-1].PromoteP = "–"
		}
	}
	if w := rep.GetWindows(); w != nil {
		wv := &windowsView{Length: durText(w.GetLength().AsDuration())}
		for _, s := range w.GetStarts() {
			wv.Starts = append(wv.Starts, tsText(s))
		}
		for _, mr := range rep.GetMetrics() {
			if ws := mr.GetWindowStart(); ws != nil {
				wv.Used = append(wv.Used, mr.GetName()+": the window since "+tsText(ws))
			}
		}
		view.Windows = wv
	}
	for _, a := range rep.GetAlarms() {
		av := alarmView{Name: a.GetName(), Summary: a.GetSummary(), Start: tsText(a.GetStartTime()), End: tsText(a.GetEndTime()), Labels: labelText(a.GetLabels())}
		switch a.GetState() {
		case canaryv1.AlarmState_ALARM_STATE_FIRING:
			av.State, av.StateClass = "FIRING", "d-rollback"
		case canaryv1.AlarmState_ALARM_STATE_RESOLVED:
			av.State, av.StateClass = "RESOLVED", "d-none"
		default:
			av.State, av.StateClass = "UNKNOWN", "d-none"
		}
		view.Alarms = append(view.Alarms, av)
	}
	for _, o := range rep.GetOverrides() {
		view.Overrides = append(view.Overrides, overrideView{Time: tsText(o.GetTime()), Who: o.GetWho(), Reason: o.GetReason(),
			Overrode: strings.Join(o.GetBlockedReasons(), "; ")})
	}
	return view
}

// outcomeBadge returns the badge class of an outcome class: the colour of
// the decision the outcome leads to.
func outcomeBadge(class string) string {
	switch class {
	case "o-pass":
		return "d-promote"
	case "o-hold":
		return "d-hold"
	case "o-regression":
		return "d-rollback"
	}
	return "d-none"
}

// valueUnit returns the unit of a metric's values from the run's config.
func valueUnit(run *canaryv1.Run, name string) string {
	for _, m := range run.GetConfig().GetMetrics() {
		if m.GetName() == name {
			return m.GetUnit()
		}
	}
	return ""
}

// enumWord turns an enum value name into a lowercase word.
func enumWord(s, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, prefix)), "_", " ")
}

// labelText formats labels as k=v, sorted.
func labelText(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ", ")
}

// tsText formats a timestamp in UTC; "" for none.
func tsText(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format("2006-01-02 15:04:05 UTC")
}

// bake returns the bake progress of a run at its verdict (or its end).
func bake(run *canaryv1.Run, v *canaryv1.Verdict) (string, float64) {
	b := run.GetBakeTime().AsDuration()
	if b <= 0 {
		return "no bake time", -1
	}
	at := v.GetTime()
	if run.GetFinishTime() != nil {
		at = run.GetFinishTime()
	}
	if at == nil || run.GetCreateTime() == nil {
		return "bake time " + durText(b), 0
	}
	el := at.AsTime().Sub(run.GetCreateTime().AsTime())
	frac := math.Max(0, math.Min(1, el.Seconds()/b.Seconds()))
	if el >= b {
		return fmt.Sprintf("bake time %s: complete", durText(b)), 100
	}
	return fmt.Sprintf("bake time %s: %s elapsed (%s), %s to go", durText(b), durText(el), pctText(frac), durText(b-el)), frac * 100
}

// durText formats a duration roughly: "12 min", "2.5 h", "40 s".
func durText(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%s min", trimG(d.Minutes(), 3))
	case d < 72*time.Hour:
		return fmt.Sprintf("%s h", trimG(d.Hours(), 3))
	}
	return fmt.Sprintf("%s days", trimG(d.Hours()/24, 3))
}

// changes lists the decision changes of a trajectory, the first point
// included.
func changes(traj []*canaryv1.TrajectoryPoint) []change {
	var out []change
	for i, p := range traj {
		if i > 0 && p.GetDecision() == traj[i-1].GetDecision() {
			continue
		}
		w, c := decisionWord(p.GetDecision())
		out = append(out, change{Time: tsText(p.GetTime()), Decision: w, Class: c})
	}
	return out
}

// paceWindow is how far back the pace of the gate is measured.
const paceWindow = 10 * time.Minute

// gateText says what a metric's gate still needs and, at the pace of the
// last paceWindow of the trajectory, when it may be met.
func gateText(m *canaryv1.MetricResult, traj []*canaryv1.TrajectoryPoint, k int) string {
	g := m.GetGate()
	unit := unitOr(g.GetUnit())
	switch {
	case g == nil:
		return ""
	case g.GetReady():
		return "Gate met: both cohorts reached the floor and the promote test passed."
	case math.IsInf(g.GetNeedBaseline(), 1) || math.IsInf(g.GetNeedCanary(), 1):
		return "Gate not met, and more data at the current estimate would not meet it: the estimate lies beyond the promote bound, or there are no events yet."
	}
	nb, nc := g.GetNeedBaseline(), g.GetNeedCanary()
	var needs []string
	if nb > 0 {
		needs = append(needs, num(nb)+" more baseline")
	}
	if nc > 0 {
		needs = append(needs, num(nc)+" more canary")
	}
	if len(needs) == 0 {
		return "Gate not met yet: both cohorts have the sample it needs; the next judgements decide."
	}
	text := fmt.Sprintf("Gate not met: needs about %s %s (if the estimate stays where it is).", strings.Join(needs, " and "), unit)
	eta, pace, ok := gateETA(traj, k, nb, nc)
	switch {
	case !ok:
		text += " The pace is not known yet (one judgement, or no new data lately)."
	case math.IsInf(eta.Seconds(), 1) || eta < 0:
		text += " No new data lately: no estimate of when."
	default:
		text += fmt.Sprintf(" At the pace of the last %s (%s canary %s a minute), in about %s.", durText(pace.span), num(pace.canary*60), unit, durText(eta))
	}
	return text
}

// gatePace is how fast each cohort gathered what its gate counts.
type gatePace struct {
	baseline, canary float64 // per second
	span             time.Duration
}

// gateETA estimates when a metric's gate is met: the longer of the times
// each cohort needs for what it lacks (nb, nc) at its pace over the last
// paceWindow of the trajectory. ok is false when the pace is unknown.
func gateETA(traj []*canaryv1.TrajectoryPoint, k int, nb, nc float64) (time.Duration, gatePace, bool) {
	if len(traj) < 2 {
		return 0, gatePace{}, false
	}
	last := traj[len(traj)-1]
	lt := last.GetTime().AsTime()
	i := slices.IndexFunc(traj, func(p *canaryv1.TrajectoryPoint) bool { return !p.GetTime().AsTime().Before(lt.Add(-paceWindow)) })
	if i < 0 || i >= len(traj)-1 {
		i = len(traj) - 2
	}
	ref := traj[i]
	span := lt.Sub(ref.GetTime().AsTime())
	if span <= 0 || k >= len(last.GetMetrics()) || k >= len(ref.GetMetrics()) {
		return 0, gatePace{}, false
	}
	a, b := ref.GetMetrics()[k], last.GetMetrics()[k]
	p := gatePace{
		baseline: float64(b.GetHaveBaseline()-a.GetHaveBaseline()) / span.Seconds(),
		canary:   float64(b.GetHaveCanary()-a.GetHaveCanary()) / span.Seconds(),
		span:     span,
	}
	eta := 0.0
	for _, c := range []struct{ need, pace float64 }{{nb, p.baseline}, {nc, p.canary}} {
		switch {
		case c.need <= 0:
		case c.pace <= 0:
			return time.Duration(math.MaxInt64), p, true
		default:
			eta = math.Max(eta, c.need/c.pace)
		}
	}
	if eta > float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64), p, true
	}
	return time.Duration(eta * float64(time.Second)), p, true
}

// baselineName names the baseline's row of a metric: for the traffic
// check, the expected share.
func baselineName(metric string) string {
	if metric == analysis.TrafficName {
		return "expected"
	}
	return "baseline"
}

// cohortTable returns the table of both cohorts' summaries of a metric.
func cohortTable(m *canaryv1.MetricResult, mr *canaryv1.MetricReport) table {
	var t table
	ci := func(cv *canaryv1.CohortValue, f func(float64) string) string {
		if cv == nil {
			return "–"
		}
		s := f(cv.GetEstimate())
		if !math.IsNaN(cv.GetLower()) {
			s += fmt.Sprintf(" [%s, %s]", f(cv.GetLower()), f(cv.GetUpper()))
		}
		return s
	}
	opt := func(v *float64, f func(float64) string) string {
		if v == nil {
			return "–"
		}
		return f(*v)
	}
	cohorts := []struct {
		name string
		s    *canaryv1.CohortSummary
		cv   *canaryv1.CohortValue
		q    *canaryv1.Quantiles
	}{
		{baselineName(m.GetName()), m.GetBaseline(), mr.GetBaseline(), mr.GetHistogram().GetBaselineQuantiles()},
		{"canary", m.GetCanary(), mr.GetCanary(), mr.GetHistogram().GetCanaryQuantiles()},
	}
	switch m.GetType() {
	case canaryv1.MetricType_METRIC_TYPE_RATE:
		t.Head = []string{"cohort", "events", "exposure", "rate [interval]", "instances", "warm-up excluded"}
		for _, c := range cohorts {
			t.Rows = append(t.Rows, []string{c.name, num(c.s.GetCount()), num(c.s.GetTotal()), ci(c.cv, pctText),
				strconv.Itoa(int(c.s.GetInstances())), num(float64(c.s.GetWarmupExcluded()))})
		}
	case canaryv1.MetricType_METRIC_TYPE_MEAN:
		t.Head = []string{"cohort", "n", "mean [interval]", "sd", "instances", "warm-up excluded"}
		for _, c := range cohorts {
			t.Rows = append(t.Rows, []string{c.name, num(float64(c.s.GetN())), ci(c.cv, num), opt(c.s.Stddev, num),
				strconv.Itoa(int(c.s.GetInstances())), num(float64(c.s.GetWarmupExcluded()))})
		}
	default:
		t.Head = []string{"cohort", "n", "median [interval]", "p90", "p99", "mean", "non-zero", "instances", "warm-up excluded"}
		for _, c := range cohorts {
			p90 := "–"
			if c.q != nil {
				p90 = num(c.q.GetP90())
			}
			t.Rows = append(t.Rows, []string{c.name, num(float64(c.s.GetN())), ci(c.cv, num), p90, opt(c.s.P99, num), opt(c.s.Mean, num),
				opt(c.s.NonZero, pctText), strconv.Itoa(int(c.s.GetInstances())), num(float64(c.s.GetWarmupExcluded()))})
		}
	}
	return t
}
