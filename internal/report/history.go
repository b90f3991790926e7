package report

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// HistoryQuery holds the filters of the history page, read from its URL
// query by ParseHistoryQuery.
type HistoryQuery struct {
	Service, Stage string
	// Decision filters the verdicts (and the running runs by their latest
	// verdict); UNSPECIFIED: any.
	Decision canaryv1.Decision
	// Since is the filter as typed (kept in the form); SinceTime the time
	// it means (zero: no bound).
	Since     string
	SinceTime time.Time
	// PageToken is the ListVerdicts page shown; empty for the first.
	PageToken string
}

// FieldError is a bad filter of the history page: the query parameter and
// what is wrong with it.
type FieldError struct {
	Field, Msg string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ParseHistoryQuery reads the filters of the history page from its URL
// query: service, stage, decision (promote, hold or rollback, any case),
// since (a duration back from now — 90m, 24h, 7d — an RFC 3339 time or a
// date, 2026-11-22, taken as UTC) and page_token. Empty parameters mean
// no filter. A bad value is a *FieldError naming the parameter.
func ParseHistoryQuery(q url.Values, now time.Time) (HistoryQuery, error) {
	h := HistoryQuery{
		Service:   strings.TrimSpace(q.Get("service")),
		Stage:     strings.TrimSpace(q.Get("stage")),
		Since:     strings.TrimSpace(q.Get("since")),
		PageToken: q.Get("page_token"),
	}
	switch d := strings.ToUpper(strings.TrimSpace(q.Get("decision"))); d {
	case "", "ANY":
	case "PROMOTE", "HOLD", "ROLLBACK":
		h.Decision = canaryv1.Decision(canaryv1.Decision_value["DECISION_"+d])
	default:
		return h, &FieldError{"decision", fmt.Sprintf("must be promote, hold or rollback (got %q)", q.Get("decision"))}
	}
	if h.Since != "" {
		t, err := parseSince(h.Since, now)
		if err != nil {
			return h, &FieldError{"since", err.Error()}
		}
		h.SinceTime = t
	}
	return h, nil
}

// parseSince parses a duration back from now, an RFC 3339 time or a date.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseFloat(d, 64); err == nil && n >= 0 && n < 1e5 {
			return now.Add(-time.Duration(n * 24 * float64(time.Hour))), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("a duration back from now must not be negative")
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("must be a duration back from now (24h, 7d), an RFC 3339 time or a date (2006-01-02), got %q", s)
}

// VerdictsRequest returns the ListVerdicts request of the query.
func (h HistoryQuery) VerdictsRequest(pageSize int32) *canaryv1.ListVerdictsRequest {
	req := &canaryv1.ListVerdictsRequest{Service: h.Service, Stage: h.Stage, Decision: h.Decision, PageSize: pageSize, PageToken: h.PageToken}
	if !h.SinceTime.IsZero() {
		req.Since = timestamppb.New(h.SinceTime)
	}
	return req
}

// RunsRequest returns the ListRuns request of the running runs the page
// shows; filter them further with KeepRun.
func (h HistoryQuery) RunsRequest(pageSize int32) *canaryv1.ListRunsRequest {
	return &canaryv1.ListRunsRequest{Service: h.Service, Stage: h.Stage, State: canaryv1.RunState_RUN_STATE_RUNNING, PageSize: pageSize}
}

// KeepRun reports whether a running run passes the filters ListRuns
// cannot apply: the decision of its latest verdict, and since on its
// creation.
func (h HistoryQuery) KeepRun(r *canaryv1.Run) bool {
	if h.Decision != canaryv1.Decision_DECISION_UNSPECIFIED && r.GetVerdict().GetDecision() != h.Decision {
		return false
	}
	return h.SinceTime.IsZero() || !r.GetCreateTime().AsTime().Before(h.SinceTime)
}

// values returns the URL query of the filters (without the page token).
func (h HistoryQuery) values() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("service", h.Service)
	set("stage", h.Stage)
	if h.Decision != canaryv1.Decision_DECISION_UNSPECIFIED {
		w, _ := decisionWord(h.Decision)
		q.Set("decision", strings.ToLower(w))
	}
	set("since", h.Since)
	return q
}

// HistoryPage is what the history page shows: the running runs (from
// ListRuns with RunsRequest, filtered by KeepRun) and one page of final
// verdicts (from ListVerdicts with VerdictsRequest).
type HistoryPage struct {
	Query HistoryQuery
	// Running are the running runs, each with its latest verdict.
	Running []*canaryv1.Run
	// Verdicts are the final verdicts of this page, newest first, and
	// NextPageToken the token of the next page (empty: the last page).
	Verdicts      []*canaryv1.Verdict
	NextPageToken string
	// Refresh, when positive, makes the page poll its own URL this often
	// and replace its running runs (and, on the first page, its verdicts)
	// with the new ones: a few lines of inline script with fetch.
	Refresh time.Duration
	// Generated is when the page was rendered; zero leaves it out.
	Generated time.Time
	// Error is a problem to show above the lists, e.g. a bad filter.
	Error string
	// BasePath prefixes the page's links: a run's report is at
	// BasePath/runs/{id}, the history at BasePath/.
	BasePath string
}

type historyView struct {
	Q                 HistoryQuery
	DecisionValue     string
	Decisions         []string
	Running           []runRow
	Verdicts          []verdictRow
	NextURL, FirstURL string
	HistoryURL        string
	RefreshMillis     int
	RefreshSeconds    int
	FirstPage         bool
	Generated, Error  string
}

type runRow struct {
	URL, ID, Service, Stage, Created, Bake, Decision, DecisionClass, Judged, Reason string
}

type verdictRow struct {
	URL, RunID, Time, Service, Stage, Decision, DecisionClass, State, Reason, Full string
}

// History writes the history page.
func (r *Renderer) History(w io.Writer, p *HistoryPage) error {
	v := &historyView{
		Q:          p.Query,
		Decisions:  []string{"promote", "hold", "rollback"},
		FirstPage:  p.Query.PageToken == "",
		Error:      p.Error,
		HistoryURL: p.BasePath + "/",
	}
	if p.Query.Decision != canaryv1.Decision_DECISION_UNSPECIFIED {
		w, _ := decisionWord(p.Query.Decision)
		v.DecisionValue = strings.ToLower(w)
	}
	if p.Refresh > 0 {
		v.RefreshMillis = int(math.Max(1000, float64(p.Refresh.Milliseconds())))
		v.RefreshSeconds = v.RefreshMillis / 1000
	}
	if !p.Generated.IsZero() {
		v.Generated = p.Generated.UTC().Format(time.RFC3339)
	}
	runURL := func(id string) string { return p.BasePath + "/runs/" + url.PathEscape(id) }
	for _, run := range p.Running {
		d, cls := decisionWord(run.GetVerdict().GetDecision())
		if run.GetVerdict() == nil {
			d, cls = "NOT JUDGED", "d-none"
		}
		bakeText := "no bake time"
		if _, pct := bake(run, run.GetVerdict()); pct >= 0 {
			bakeText = fmt.Sprintf("%s of %s", pctText(pct/100), durText(run.GetBakeTime().AsDuration()))
		}
		v.Running = append(v.Running, runRow{
			URL: runURL(run.GetId()), ID: run.GetId(), Service: run.GetService(), Stage: run.GetStage(),
			Created: tsText(run.GetCreateTime()), Bake: bakeText, Decision: d, DecisionClass: cls,
			Judged: tsText(run.GetVerdict().GetTime()), Reason: shorten(run.GetVerdict().GetReason(), 160),
		})
	}
	for _, vd := range p.Verdicts {
		d, cls := decisionWord(vd.GetDecision())
		v.Verdicts = append(v.Verdicts, verdictRow{
			URL: runURL(vd.GetRunId()), RunID: vd.GetRunId(), Time: tsText(vd.GetTime()), Service: vd.GetService(), Stage: vd.GetStage(),
			Decision: d, DecisionClass: cls, State: enumWord(vd.GetRunState().String(), "RUN_STATE_"),
			Reason: shorten(vd.GetReason(), 200), Full: vd.GetReason(),
		})
	}
	q := p.Query.values()
	if p.NextPageToken != "" {
		nq := p.Query.values()
		nq.Set("page_token", p.NextPageToken)
		v.NextURL = "?" + nq.Encode()
	}
	if !v.FirstPage {
		v.FirstURL = "?" + q.Encode()
	}
	if err := r.t.ExecuteTemplate(w, "history", v); err != nil {
		return fmt.Errorf("render history page: %w", err)
	}
	return nil
}
