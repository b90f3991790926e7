package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// chartW is the width of every chart's viewBox: at the 11- and 12-unit
// fonts of the style sheet, text stays readable from a phone (about 360
// px for a chart, text at 10-11 px) to a column of a desktop's three.
const chartW = 400

// outcomeStyle returns the class, the marker shape and the word of a
// metric outcome: never colour alone.
func outcomeStyle(o canaryv1.MetricOutcome) (class, shape, word string) {
	switch o {
	case canaryv1.MetricOutcome_METRIC_OUTCOME_PASS:
		return "o-pass", "circle", "pass"
	case canaryv1.MetricOutcome_METRIC_OUTCOME_HOLD:
		return "o-hold", "square", "hold"
	case canaryv1.MetricOutcome_METRIC_OUTCOME_REGRESSION:
		return "o-regression", "triangle", "regression"
	case canaryv1.MetricOutcome_METRIC_OUTCOME_NO_DATA:
		return "o-nodata", "circle", "no data"
	}
	return "o-nodata", "circle", "unknown"
}

// decisionWord returns the word and class of a decision.
func decisionWord(d canaryv1.Decision) (word, class string) {
	switch d {
	case canaryv1.Decision_DECISION_PROMOTE:
		return "PROMOTE", "d-promote"
	case canaryv1.Decision_DECISION_HOLD:
		return "HOLD", "d-hold"
	case canaryv1.Decision_DECISION_ROLLBACK:
		return "ROLLBACK", "d-rollback"
	}
	return "NONE", "d-none"
}

// interval formats "1.28× [1.23, 1.33]".
func effectText(e *canaryv1.Effect) string {
	if e == nil {
		return "not estimated"
	}
	return fmt.Sprintf("%s [%s, %s]", ratioText(e.GetEstimate()), trimG(e.GetLower(), 3), trimG(e.GetUpper(), 3))
}

// ratioRange returns a log-scale range covering the finite, positive
// values given and 1, padded, within [1/8, 8].
func ratioRange(vs ...float64) (lo, hi float64) {
	lo, hi = 1, 1
	for _, v := range vs {
		if v > 0 && !math.IsInf(v, 0) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	lo, hi = math.Max(lo/1.04, 0.125), math.Min(hi*1.04, 8)
	return lo, hi
}

// band draws the accepted region [lo, hi] of a ratio axis between y0 and
// y1, clipped to the scale.
func (c *chart) band(s scale, lo, hi, y0, y1 float64, class, tip string) {
	x0, x1 := s.at(math.Max(lo, s.lo)), s.at(math.Min(hi, s.hi))
	if lo > s.hi || hi < s.lo || x1 <= x0 {
		return
	}
	c.rect(x0, y0, x1-x0, y1-y0, class, tip)
}

// interval draws an interval [lo, hi] at height y with arrows where it
// leaves the scale, and the estimate's marker.
func (c *chart) interval(s scale, est, lo, hi, y float64, class, shape, tip string) {
	if !math.IsNaN(lo) && !math.IsNaN(hi) {
		x0, x1 := s.at(lo), s.at(hi)
		c.line(x0, y, x1, y, class+" ci")
		if lo < s.lo {
			c.path("M"+f(x0)+" "+f(y)+"l6 -4v8z", class+" arrow", "")
		}
		if hi > s.hi {
			c.path("M"+f(x1)+" "+f(y)+"l-6 -4v8z", class+" arrow", "")
		}
	}
	if !math.IsNaN(est) {
		c.marker(shape, s.at(est), y, 4.5, class+" mark", tip)
	}
}

// ratioAxis draws the ticks and labels of a ratio axis at height y.
func (c *chart) ratioAxis(s scale, y float64) {
	c.line(s.p0, y, s.p1, y, "axis")
	for _, t := range ratioTicks(s) {
		x := s.at(t)
		c.line(x, y, x, y+4, "axis")
		c.text(x, y+16, "middle", "tick", ratioText(t))
	}
}

// ratioTicks returns the ticks of a ratio axis: round ratios within its
// range, 1 always among them, at least 34 units apart (a label's width).
func ratioTicks(s scale) []float64 {
	var out []float64
	last := math.Inf(-1)
	for _, v := range []float64{0.125, 0.25, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5, 2, 3, 4, 6, 8} {
		if !s.in(v) {
			continue
		}
		x := s.at(v)
		if x-last < 34 {
			if v != 1 {
				continue
			}
			if len(out) > 0 { // 1 wins over its neighbour
				out = out[:len(out)-1]
			}
		}
		out, last = append(out, v), x
	}
	return out
}

// forestChart draws the overview: every metric's effect with its interval
// against its tolerance band (shaded) and promote bound (dashed), the
// marker's shape and the row's text telling the outcome.
func forestChart(rep *canaryv1.RunReport) *chart {
	ms := rep.GetVerdict().GetMetrics()
	const rowH, top = 40.0, 8.0
	c := &chart{ID: "forest", Kind: "forest", Class: "forest", W: chartW, H: top + rowH*float64(len(ms)) + 30}
	c.Title = "Effect of the canary on every metric"
	var vs []float64
	for i, m := range ms {
		e := m.GetEffect()
		vs = append(vs, e.GetEstimate(), e.GetLower(), e.GetUpper())
		if mr := metricReport(rep, i); mr != nil {
			vs = append(vs, mr.GetToleranceLower(), mr.GetToleranceUpper(), mr.GetPromoteLower(), mr.GetPromoteUpper())
		}
	}
	lo, hi := ratioRange(vs...)
	s := newScale(lo, hi, 12, chartW-12, true)
	axisY := top + rowH*float64(len(ms)) + 4
	x1 := s.at(1)
	var desc []string
	for i, m := range ms {
		y0 := top + rowH*float64(i)
		y := y0 + 27
		class, shape, word := outcomeStyle(m.GetOutcome())
		if mr := metricReport(rep, i); mr != nil {
			c.band(s, mr.GetToleranceLower(), mr.GetToleranceUpper(), y-6, y+6, "band", "within tolerance: "+bandText(mr.GetToleranceLower(), mr.GetToleranceUpper()))
			for _, b := range []float64{mr.GetPromoteLower(), mr.GetPromoteUpper()} {
				if b > 0 && !math.IsInf(b, 0) && s.in(b) && !sameBound(b, mr) {
					c.line(s.at(b), y-8, s.at(b), y+8, "promote-bound")
				}
			}
		}
		name := m.GetName()
		if m.GetCritical() {
			name += " (critical)"
		}
		c.text(12, y0+13, "start", "label", name)
		c.text(chartW-12, y0+13, "end", "tick label "+class, word+" · "+effectText(m.GetEffect()))
		e := m.GetEffect()
		if e == nil {
			c.text(x1+6, y+4, "start", "note", "no effect estimated")
		} else {
			c.interval(s, e.GetEstimate(), e.GetLower(), e.GetUpper(), y, class, shape, m.GetName()+": "+word+", "+effectText(e))
		}
		desc = append(desc, fmt.Sprintf("%s %s, %s", m.GetName(), word, effectText(e)))
	}
	c.Els = append([]el{{K: "line", X1: f(x1), Y1: f(top), X2: f(x1), Y2: f(axisY), Class: "one"}}, c.Els...)
	c.ratioAxis(s, axisY)
	c.Desc = "Canary relative to baseline, with the interval of the deciding test; the shaded band is the tolerance, the dashed ticks the promote bound. " + strings.Join(desc, "; ") + "."
	return c
}

// sameBound reports whether a promote bound b coincides with a tolerance
// bound (a check without a promote test).
func sameBound(b float64, mr *canaryv1.MetricReport) bool {
	return b == mr.GetToleranceLower() || b == mr.GetToleranceUpper()
}

// bandText formats a band of ratios.
func bandText(lo, hi float64) string {
	switch {
	case lo <= 0 && math.IsInf(hi, 1):
		return "any"
	case lo <= 0:
		return "up to " + ratioText(hi)
	case math.IsInf(hi, 1):
		return "from " + ratioText(lo)
	}
	return ratioText(lo) + " to " + ratioText(hi)
}

// metricReport returns the MetricReport of metric i of the verdict.
func metricReport(rep *canaryv1.RunReport, i int) *canaryv1.MetricReport {
	name := rep.GetVerdict().GetMetrics()[i].GetName()
	if mrs := rep.GetMetrics(); i < len(mrs) && mrs[i].GetName() == name {
		return mrs[i]
	}
	for _, mr := range rep.GetMetrics() {
		if mr.GetName() == name {
			return mr
		}
	}
	return nil
}

// distChart draws both cohorts' distributions of a distribution metric on
// a log scale: the baseline's histogram filled, the canary's as a dashed
// line, each share of its cohort, with the p50, p90 and p99 of each marked.
func distChart(id string, m *canaryv1.MetricResult, h *canaryv1.DistributionHistogram, valueUnit string) *chart {
	c := &chart{ID: id, Kind: "distribution", Class: "main", W: chartW, H: 236}
	unit := ""
	c.Title = m.GetName() + ": distribution of baseline and canary"
	edges := h.GetEdges()
	if len(edges) < 2 {
		c.text(chartW/2, 120, "middle", "note", "no positive values to plot")
		c.Desc = "No positive values to plot."
		return c
	}
	const x0, x1, qTop, pTop, pBot = 58.0, chartW - 10, 30.0, 64.0, 196.0
	sx := newScale(edges[0], edges[len(edges)-1], x0, x1, true)
	counts := [2][]float64{h.GetBaselineCounts(), h.GetCanaryCounts()}
	zeros := [2]float64{h.GetBaselineZeros(), h.GetCanaryZeros()}
	var total [2]float64
	ymax := 0.0
	for k := range counts {
		total[k] = zeros[k]
		for _, n := range counts[k] {
			total[k] += n
		}
	}
	for k := range counts {
		for _, n := range counts[k] {
			if total[k] > 0 {
				ymax = math.Max(ymax, n/total[k])
			}
		}
	}
	if ymax == 0 {
		ymax = 1
	}
	sy := newScale(0, ymax*1.08, pBot, pTop, false)
	for _, t := range sy.ticks(3) {
		y := sy.at(t)
		c.line(x0, y, x1, y, "grid")
		c.text(x0-4, y+4, "end", "tick", pctText(t))
	}
	for k, class := range []string{"base-area", "can-line"} {
		if total[k] == 0 || len(counts[k]) != len(edges)-1 {
			continue
		}
		var p pathBuilder
		p.to(sx.at(edges[0]), pBot)
		for i, n := range counts[k] {
			y := sy.at(n / total[k])
			p.to(sx.at(edges[i]), y)
			p.to(sx.at(edges[i+1]), y)
		}
		p.to(sx.at(edges[len(edges)-1]), pBot)
		if k == 0 {
			p.close()
		}
		c.path(p.String(), class, "")
	}
	c.line(x0, pBot, x1, pBot, "axis")
	for _, t := range sx.ticks(5) {
		x := sx.at(t)
		c.line(x, pBot, x, pBot+4, "axis")
		c.text(x, pBot+16, "middle", "tick", num(t))
	}
	axisTitle := m.GetName() + " (log scale)"
	if valueUnit != "" {
		unit = " " + valueUnit
		axisTitle = m.GetName() + " (" + valueUnit + ", log scale)"
	}
	c.text(x1, pBot+32, "end", "axis-title", axisTitle)
	c.text(x0, pBot+32, "start", "axis-title", "share of observations")
	// Quantiles: a row of ticks per cohort above the plot, and lines
	// through it.
	qs := []*canaryv1.Quantiles{h.GetBaselineQuantiles(), h.GetCanaryQuantiles()}
	var desc []string
	for k, q := range qs {
		if q == nil {
			continue
		}
		cls, who := "base-q", "baseline"
		if k == 1 {
			cls, who = "can-q", "canary"
		}
		y := qTop + 16*float64(k)
		c.text(x0-6, y+4, "end", "tick", who)
		last := math.Inf(-1)
		for _, qq := range []struct {
			name string
			v    float64
		}{{"p50", q.GetP50()}, {"p90", q.GetP90()}, {"p99", q.GetP99()}} {
			if !(qq.v > 0) {
				continue
			}
			x := sx.at(qq.v)
			c.line(x, y-5, x, pBot, cls)
			c.marker("diamond", x, y, 3, cls+" qmark", fmt.Sprintf("%s %s: %s%s", who, qq.name, num(qq.v), unit))
			if x-last >= 30 {
				if x > x1-24 {
					c.text(x-5, y+4, "end", "qlabel", qq.name)
				} else {
					c.text(x+5, y+4, "start", "qlabel", qq.name)
				}
				last = x
			}
		}
		desc = append(desc, fmt.Sprintf("%s p50 %s, p90 %s, p99 %s%s", who, num(q.GetP50()), num(q.GetP90()), num(q.GetP99()), unit))
	}
	// Legend.
	c.rect(x0, 6, 14, 9, "base-area", "")
	c.text(x0+18, 14, "start", "legend", "baseline (filled)")
	c.line(x0+120, 10, x0+138, 10, "can-line")
	c.text(x0+142, 14, "start", "legend", "canary (dashed)")
	c.Desc = fmt.Sprintf("Histograms of %s on a log scale, as shares of each cohort. %s.", m.GetName(), strings.Join(desc, "; "))
	if zeros[0]+zeros[1] > 0 {
		c.Note = fmt.Sprintf("Zeros, not on the log scale: %s baseline, %s canary.", num(zeros[0]), num(zeros[1]))
		c.Desc += " " + c.Note
	}
	return c
}

// valuesChart draws each cohort's value of a rate or mean metric with its
// interval.
func valuesChart(id string, m *canaryv1.MetricResult, mr *canaryv1.MetricReport) *chart {
	c := &chart{ID: id, Kind: "values", Class: "main", W: chartW, H: 120}
	cvs := []*canaryv1.CohortValue{mr.GetBaseline(), mr.GetCanary()}
	stat := "value"
	for _, cv := range cvs {
		if cv != nil {
			stat = cv.GetStatistic()
		}
	}
	c.Title = fmt.Sprintf("%s: %s of baseline and canary", m.GetName(), stat)
	isRate := m.GetType() == canaryv1.MetricType_METRIC_TYPE_RATE
	format := func(v float64) string {
		if isRate {
			return pctText(v)
		}
		return num(v)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, cv := range cvs {
		for _, v := range []float64{cv.GetEstimate(), cv.GetLower(), cv.GetUpper()} {
			if cv != nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		c.text(chartW/2, 60, "middle", "note", "no data")
		c.Desc = "No data."
		return c
	}
	pad := (hi - lo) * 0.15
	if pad == 0 {
		pad = math.Max(math.Abs(hi)*0.1, 1e-9)
	}
	lo, hi = lo-pad, hi+pad
	if isRate || lo >= -pad && lo < 0 && mr.GetBaseline().GetEstimate() >= 0 {
		lo = math.Max(lo, 0)
	}
	s := newScale(lo, hi, 16, chartW-16, false)
	names := []string{"baseline", "canary"}
	if m.GetName() == analysis.TrafficName {
		names[0] = "expected"
	}
	var desc []string
	for k, cv := range cvs {
		y := 40 + 34*float64(k)
		cls, shape := "base", "circle"
		if k == 1 {
			cls, shape = "can", "square"
		}
		if cv == nil {
			c.text(16, y-8, "start", "label", names[k]+": no data")
			continue
		}
		txt := names[k] + " " + format(cv.GetEstimate())
		if !math.IsNaN(cv.GetLower()) {
			txt += fmt.Sprintf(" [%s, %s]", format(cv.GetLower()), format(cv.GetUpper()))
		}
		c.text(16, y-9, "start", "label", txt)
		c.interval(s, cv.GetEstimate(), cv.GetLower(), cv.GetUpper(), y, cls, shape, txt)
		desc = append(desc, txt)
	}
	c.line(16, 96, chartW-16, 96, "axis")
	for _, t := range s.ticks(5) {
		x := s.at(t)
		c.line(x, 96, x, 100, "axis")
		c.text(x, 112, "middle", "tick", format(t))
	}
	conf := mr.GetBaseline().GetConfidence()
	if conf == 0 {
		conf = mr.GetCanary().GetConfidence()
	}
	c.Desc = fmt.Sprintf("%s of each cohort with its %s interval: %s.", stat, pctText(conf), strings.Join(desc, "; "))
	return c
}

// effectChart draws every effect a metric's tests estimate (the deciding
// one marked) against its tolerance band and promote bound.
func effectChart(id string, m *canaryv1.MetricResult, mr *canaryv1.MetricReport) *chart {
	effects := m.GetEffects()
	if len(effects) == 0 && m.GetEffect() != nil {
		effects = []*canaryv1.Effect{m.GetEffect()}
	}
	const top, rowH = 34.0, 46.0
	rows := max(1, len(effects))
	c := &chart{ID: id, Kind: "effect", Class: "effect", W: chartW, H: top + rowH*float64(rows) + 28}
	c.Title = m.GetName() + ": effect against the tolerance"
	vs := []float64{mr.GetToleranceLower(), mr.GetToleranceUpper(), mr.GetPromoteLower(), mr.GetPromoteUpper()}
	for _, e := range effects {
		vs = append(vs, e.GetEstimate(), e.GetLower(), e.GetUpper())
	}
	lo, hi := ratioRange(vs...)
	s := newScale(lo, hi, 12, chartW-12, true)
	bottom := top + rowH*float64(rows)
	c.band(s, mr.GetToleranceLower(), mr.GetToleranceUpper(), top-4, bottom, "band", "within tolerance: "+bandText(mr.GetToleranceLower(), mr.GetToleranceUpper()))
	c.line(s.at(1), top-4, s.at(1), bottom, "one")
	labelY := 12.0
	for _, b := range []struct {
		v     float64
		cls   string
		label string
	}{
		{mr.GetToleranceLower(), "tol-bound", "tolerance"}, {mr.GetToleranceUpper(), "tol-bound", "tolerance"},
		{mr.GetPromoteLower(), "promote-bound", "promote bound"}, {mr.GetPromoteUpper(), "promote-bound", "promote bound"},
	} {
		if !(b.v > 0) || math.IsInf(b.v, 0) || !s.in(b.v) || b.cls == "promote-bound" && sameBound(b.v, mr) {
			continue
		}
		x := s.at(b.v)
		c.line(x, top-8, x, bottom, b.cls)
		anchor := "middle"
		if x > chartW-60 {
			anchor = "end"
		} else if x < 60 {
			anchor = "start"
		}
		c.text(x, labelY, anchor, "tick", b.label+" "+ratioText(b.v))
		labelY += 12
		if labelY > 24 {
			labelY = 12
		}
	}
	class, shape, word := outcomeStyle(m.GetOutcome())
	var desc []string
	if len(effects) == 0 {
		c.text(chartW/2, top+20, "middle", "note", "no effect estimated")
	}
	for i, e := range effects {
		y0 := top + rowH*float64(i)
		decides := len(effects) == 1 || sameEffect(e, m.GetEffect())
		label := e.GetKind()
		if label == "" {
			label = "effect"
		}
		cls, shp := "other", "circle"
		if decides {
			cls, shp = class, shape
			label += " — decides"
		}
		tipLabel := label
		if decides {
			tipLabel += " (" + word + ")"
		}
		c.text(12, y0+12, "start", "label", label)
		c.text(chartW-12, y0+26, "end", "tick label", effectText(e))
		c.interval(s, e.GetEstimate(), e.GetLower(), e.GetUpper(), y0+36, cls, shp, tipLabel+": "+effectText(e))
		desc = append(desc, label+" "+effectText(e))
	}
	c.ratioAxis(s, bottom+2)
	c.Desc = fmt.Sprintf("Canary relative to baseline with %s intervals; the shaded band is the tolerance (%s), the promote bound %s. %s.",
		pctText(m.GetEffect().GetConfidence()), bandText(mr.GetToleranceLower(), mr.GetToleranceUpper()),
		bandText(mr.GetPromoteLower(), mr.GetPromoteUpper()), strings.Join(desc, "; "))
	return c
}

// sameEffect reports whether two effects are the same estimate.
func sameEffect(a, b *canaryv1.Effect) bool {
	return a.GetKind() == b.GetKind() && a.GetEstimate() == b.GetEstimate() && a.GetLower() == b.GetLower()
}

// timeScale returns a scale over the times of a trajectory (Unix
// seconds), widened to a minute when they coincide.
func timeScale(ts []time.Time, p0, p1 float64) scale {
	lo, hi := ts[0], ts[len(ts)-1]
	a, b := float64(lo.UnixMilli())/1e3, float64(hi.UnixMilli())/1e3
	if b-a < 60 {
		a, b = a-30+(b-a)/2, b+30-(b-a)/2
	}
	return newScale(a, b, p0, p1, false)
}

// timeAxis draws time ticks (UTC) at height y.
func (c *chart) timeAxis(s scale, y float64) {
	c.line(s.p0, y, s.p1, y, "axis")
	span := time.Duration((s.hi - s.lo) * 1e9)
	steps := []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}
	step := steps[len(steps)-1]
	for _, st := range steps {
		if span/st <= 5 {
			step = st
			break
		}
	}
	layout := "15:04"
	switch {
	case step < time.Minute:
		layout = "15:04:05"
	case span > 24*time.Hour:
		layout = "Jan 2 15:04"
	}
	first := time.Unix(int64(math.Ceil(s.lo)), 0).UTC().Truncate(step)
	for t := first; !t.After(time.Unix(int64(s.hi), 0)); t = t.Add(step) {
		v := float64(t.Unix())
		if v < s.lo {
			continue
		}
		x := s.at(v)
		c.line(x, y, x, y+4, "axis")
		anchor := "middle" // the labels at the ends stay inside the chart
		switch {
		case x > s.p1-18:
			anchor = "end"
		case x < s.p0+18 && s.p0 < 30:
			anchor = "start"
		}
		c.text(x, y+16, anchor, "tick", t.UTC().Format(layout))
	}
	c.text(s.p1, y+30, "end", "axis-title", "time (UTC)")
}

// seconds returns a time as Unix seconds.
func seconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1e3 }

// trajectoryTimes returns the times of the points.
func trajectoryTimes(traj []*canaryv1.TrajectoryPoint) []time.Time {
	ts := make([]time.Time, len(traj))
	for i, p := range traj {
		ts[i] = p.GetTime().AsTime()
	}
	return ts
}

// evidenceChart draws a metric's evidence over the run: the Holm-adjusted
// rollback p-value against its threshold 1 − confidence, and the promote
// p-value against 1 − power, on a log scale (a metric rolls back when its
// line falls below the first, passes when it falls below the second).
func evidenceChart(id string, k int, name string, traj []*canaryv1.TrajectoryPoint, alpha, promoteAlpha float64, windows []time.Time) *chart {
	c := &chart{ID: id, Kind: "evidence", Class: "evidence", W: chartW, H: 240}
	c.Title = name + ": evidence over time"
	const x0, x1, top, bot = 48.0, chartW - 10, 40.0, 190.0
	pmin := 1e-4
	for _, p := range traj {
		if k < len(p.GetMetrics()) {
			tm := p.GetMetrics()[k]
			for _, v := range []float32{tm.GetAdjustedPValue(), tm.GetPromotePValue()} {
				if v > 0 {
					pmin = math.Min(pmin, float64(v)/2)
				}
			}
		}
	}
	pmin = math.Max(math.Min(pmin, alpha/10), 1e-12)
	sy := newScale(pmin, 1, bot, top, true)
	sx := timeScale(trajectoryTimes(traj), x0, x1)
	for e := 0.0; e >= math.Log10(pmin)-1e-9; e-- {
		if int(-e)%int(math.Max(1, math.Ceil(-math.Log10(pmin)/5))) != 0 {
			continue
		}
		v := math.Pow(10, e)
		y := sy.at(v)
		c.line(x0, y, x1, y, "grid")
		label := pText(v)
		if e <= -4 {
			label = "1e" + strconv.Itoa(int(e))
		}
		c.text(x0-4, y+4, "end", "tick", label)
	}
	for _, w := range windows {
		if x := seconds(w); sx.in(x) {
			c.line(sx.at(x), top, sx.at(x), bot, "win")
		}
	}
	series := []struct {
		get   func(*canaryv1.TrajectoryMetric) float32
		class string
		tip   string
		th    float64
		label string
	}{
		{(*canaryv1.TrajectoryMetric).GetAdjustedPValue, "s-rollback", "rollback p (Holm)", alpha, "rolls back at p ≤ " + pText(alpha)},
		{(*canaryv1.TrajectoryMetric).GetPromotePValue, "s-promote", "promote p", promoteAlpha, "can pass at p ≤ " + pText(promoteAlpha)},
	}
	var desc []string
	for si, se := range series {
		if se.th <= 0 {
			continue
		}
		ty := sy.at(se.th)
		c.line(x0, ty, x1, ty, "t-"+se.class[2:])
		c.text(x1-2, ty-4, "end", "tlabel", se.label)
		var p pathBuilder
		var last float64 = math.NaN()
		var lastT time.Time
		for _, pt := range traj {
			if k >= len(pt.GetMetrics()) {
				p.gap()
				continue
			}
			v := float64(se.get(pt.GetMetrics()[k]))
			if math.IsNaN(v) {
				p.gap()
				continue
			}
			p.to(sx.at(seconds(pt.GetTime().AsTime())), sy.at(math.Max(v, pmin)))
			last, lastT = v, pt.GetTime().AsTime()
		}
		c.path(p.String(), se.class, "")
		if !math.IsNaN(last) {
			shape := "circle"
			if si == 1 {
				shape = "square"
			}
			c.marker(shape, sx.at(seconds(lastT)), sy.at(math.Max(last, pmin)), 3.5, se.class+" mark", se.tip+" now: "+pText(last))
			desc = append(desc, fmt.Sprintf("%s now %s (%s)", se.tip, pText(last), se.label))
		}
	}
	// Legend.
	c.line(x0, 10, x0+18, 10, "s-rollback")
	c.text(x0+22, 14, "start", "legend", "rollback p (Holm-adjusted)")
	if promoteAlpha > 0 {
		c.line(x0+180, 10, x0+198, 10, "s-promote")
		c.text(x0+202, 14, "start", "legend", "promote p")
	}
	c.text(x0, 28, "start", "note", fmt.Sprintf("%d judgements shown; lower is stronger evidence", len(traj)))
	c.timeAxis(sx, bot)
	c.Desc = "p-values over time on a log scale. " + strings.Join(desc, "; ") + "."
	return c
}

// progress returns the share of its gate's requirement a cohort has met:
// have / (have + need); NaN when the need is unknown.
func progress(have, need float32) float64 {
	switch {
	case math.IsInf(float64(need), 1) || math.IsNaN(float64(need)):
		return math.NaN()
	case need <= 0:
		return 1
	case have+need <= 0:
		return 0
	}
	return float64(have) / float64(have+need)
}

// gateChart draws each cohort's progress toward the sample its metric's
// gate needs, over the run; nil when the need is unknown now (a metric
// that regressed, or has no events: the gate text says so).
func gateChart(id string, k int, name, unit string, traj []*canaryv1.TrajectoryPoint) *chart {
	last := traj[len(traj)-1].GetMetrics()
	if k >= len(last) || math.IsNaN(progress(last[k].GetHaveBaseline(), last[k].GetNeedBaseline())) &&
		math.IsNaN(progress(last[k].GetHaveCanary(), last[k].GetNeedCanary())) {
		return nil
	}
	c := &chart{ID: id, Kind: "gate", Class: "gate", W: chartW, H: 180}
	c.Title = name + ": progress toward the sample the gate needs"
	const x0, x1, top, bot = 48.0, chartW - 10, 28.0, 132.0
	sx := timeScale(trajectoryTimes(traj), x0, x1)
	sy := newScale(0, 1, bot, top, false)
	for _, t := range []float64{0, 0.5, 1} {
		c.line(x0, sy.at(t), x1, sy.at(t), "grid")
		c.text(x0-4, sy.at(t)+4, "end", "tick", pctText(t))
	}
	var desc []string
	for ci, cls := range []string{"base-line", "can-line"} {
		var p pathBuilder
		last := math.NaN()
		for _, pt := range traj {
			if k >= len(pt.GetMetrics()) {
				p.gap()
				continue
			}
			tm := pt.GetMetrics()[k]
			have, need := tm.GetHaveBaseline(), tm.GetNeedBaseline()
			if ci == 1 {
				have, need = tm.GetHaveCanary(), tm.GetNeedCanary()
			}
			v := progress(have, need)
			if math.IsNaN(v) {
				p.gap()
				last = v
				continue
			}
			p.to(sx.at(seconds(pt.GetTime().AsTime())), sy.at(v))
			last = v
		}
		c.path(p.String(), cls, "")
		who := "baseline"
		if ci == 1 {
			who = "canary"
		}
		if math.IsNaN(last) {
			desc = append(desc, who+" now: unknown")
		} else {
			desc = append(desc, who+" now "+pctText(last))
		}
	}
	c.line(x0, 10, x0+18, 10, "base-line")
	c.text(x0+22, 14, "start", "legend", "baseline")
	c.line(x0+100, 10, x0+118, 10, "can-line")
	c.text(x0+122, 14, "start", "legend", "canary (dashed)")
	c.timeAxis(sx, bot)
	c.Desc = fmt.Sprintf("Share of the %s each cohort needs (what it has over what it has plus what it still needs, as estimated at each judgement): %s.", unitOr(unit), strings.Join(desc, "; "))
	return c
}

func unitOr(u string) string {
	if u == "" {
		return "observations"
	}
	return u
}

// instancesChart draws each instance's value relative to the whole
// baseline's, with its interval; the instances that stand out from their
// cohort are drawn as diamonds and named in bold.
func instancesChart(id string, m *canaryv1.MetricResult, mr *canaryv1.MetricReport) *chart {
	ins := mr.GetInstances()
	const top, rowH, lx = 30.0, 20.0, 138.0
	c := &chart{ID: id, Kind: "instances", Class: "instances", W: chartW, H: top + rowH*float64(len(ins)) + 30}
	c.Title = m.GetName() + ": instances against the baseline"
	vs := []float64{mr.GetToleranceLower(), mr.GetToleranceUpper()}
	for _, e := range ins {
		vs = append(vs, e.GetRatio(), e.GetLower(), e.GetUpper())
	}
	lo, hi := ratioRange(vs...)
	s := newScale(lo, hi, lx, chartW-46, true)
	bottom := top + rowH*float64(len(ins))
	c.band(s, mr.GetToleranceLower(), mr.GetToleranceUpper(), top-6, bottom, "band", "within tolerance")
	c.line(s.at(1), top-6, s.at(1), bottom, "one")
	// The reference lines' labels lean away from each other.
	baseAnchor, canAnchor, bdx, cdx := "middle", "middle", 0.0, 0.0
	if r := m.GetEffect().GetEstimate(); r > 0 && s.in(r) {
		if math.Abs(s.at(r)-s.at(1)) < 90 {
			baseAnchor, canAnchor, bdx, cdx = "end", "start", -3, 3
			if r < 1 {
				baseAnchor, canAnchor, bdx, cdx = "start", "end", 3, -3
			}
		}
		c.line(s.at(r), top-6, s.at(r), bottom, "can-ref")
		c.text(s.at(r)+cdx, top-10, canAnchor, "tick", "canary "+ratioText(r))
	}
	c.text(s.at(1)+bdx, top-10, baseAnchor, "tick", "baseline")
	var out []string
	names := make([]string, len(ins))
	for i, e := range ins {
		names[i] = e.GetInstance()
	}
	labels, prefix := instanceLabels(names, 12)
	for i, e := range ins {
		y := top + rowH*float64(i) + rowH/2
		cls, shape, who := "base", "circle", "B"
		if e.GetCohort() == canaryv1.Cohort_COHORT_CANARY {
			cls, shape, who = "can", "square", "C"
		}
		label := fmt.Sprintf("%s %s n=%s", who, labels[i], num(e.GetN()))
		lcls := "ilabel"
		if e.GetStandsOut() {
			shape, lcls = "diamond", "ilabel odd"
			label = "◆ " + label
			out = append(out, e.GetInstance())
		}
		c.text(4, y+4, "start", lcls, label)
		tip := fmt.Sprintf("%s (%s): %s× the baseline, n=%s", e.GetInstance(), strings.ToLower(strings.TrimPrefix(e.GetCohort().String(), "COHORT_")), trimG(e.GetRatio(), 3), num(e.GetN()))
		c.interval(s, e.GetRatio(), e.GetLower(), e.GetUpper(), y, cls, shape, tip)
		c.text(chartW-4, y+4, "end", "tick", ratioText(e.GetRatio()))
	}
	c.ratioAxis(s, bottom+2)
	c.Desc = fmt.Sprintf("Each instance's value relative to the whole baseline's, B baseline, C canary, with intervals from its own spread. %d instances", len(ins))
	if len(out) > 0 {
		c.Desc += "; standing out from their cohort: " + strings.Join(out, ", ")
	}
	c.Desc += "."
	if prefix != "" {
		c.Desc += fmt.Sprintf(" Names are shown without their common prefix %q.", prefix)
	}
	return c
}

// instanceLabels returns labels of at most n characters for instance
// names: without the prefix they all share (up to a separator, so
// "checkout-api-7d9f8-x2k4p" and "checkout-api-7d9f8-q8zzt" become "x2k4p"
// and "q8zzt"), then cut in the middle, where generated names differ
// least: a pod's name ends in its own suffix. It returns the prefix
// dropped too.
func instanceLabels(names []string, n int) (labels []string, prefix string) {
	if len(names) > 1 {
		prefix = names[0]
		for _, s := range names[1:] {
			k := 0
			for k < len(prefix) && k < len(s) && prefix[k] == s[k] {
				k++
			}
			prefix = prefix[:k]
		}
		// Back to just after a separator, leaving every name a character.
		short := len(names[0])
		for _, s := range names {
			short = min(short, len(s))
		}
		k := len(prefix)
		if k >= short {
			k = short - 1
		}
		for k > 0 && !strings.ContainsRune("-._:/", rune(prefix[k-1])) {
			k--
		}
		prefix = prefix[:max(k, 0)]
	}
	labels = make([]string, len(names))
	for i, s := range names {
		labels[i] = shortenMiddle(strings.TrimPrefix(s, prefix), n)
	}
	return labels, prefix
}

// shortenMiddle cuts s to n characters with an ellipsis in the middle.
func shortenMiddle(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	tail := (n - 1) / 2
	return string(r[:n-1-tail]) + "…" + string(r[len(r)-tail:])
}

// shorten cuts a label to n characters with an ellipsis.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// timelineChart draws the decision of every judgement over the run (the
// thinned trajectory keeps every change), and below it each metric's
// outcome.
func timelineChart(rep *canaryv1.RunReport) *chart {
	traj := rep.GetTrajectory()
	ms := rep.GetVerdict().GetMetrics()
	const lx, decH, rowH, top = 116.0, 24.0, 15.0, 8.0
	h := top + decH + 6 + rowH*float64(len(ms)) + 40
	c := &chart{ID: "timeline", Kind: "timeline", Class: "timeline", W: chartW, H: h}
	c.Title = "Verdict timeline"
	if len(traj) == 0 {
		c.text(chartW/2, h/2, "middle", "note", "no judgement recorded")
		c.Desc = "No judgement recorded."
		return c
	}
	sx := timeScale(trajectoryTimes(traj), lx, chartW-8)
	end := func(i int) float64 {
		if i+1 < len(traj) {
			return sx.at(seconds(traj[i+1].GetTime().AsTime()))
		}
		return sx.at(seconds(traj[i].GetTime().AsTime())) + 3
	}
	// segments calls fn for each run of equal keys.
	segments := func(key func(*canaryv1.TrajectoryPoint) (int32, bool), fn func(from, to int, k int32)) {
		from := -1
		var cur int32
		for i, p := range traj {
			k, ok := key(p)
			if from >= 0 && (!ok || k != cur) {
				fn(from, i-1, cur)
				from = -1
			}
			if ok && from < 0 {
				from, cur = i, k
			}
		}
		if from >= 0 {
			fn(from, len(traj)-1, cur)
		}
	}
	c.text(lx-6, top+decH/2+4, "end", "label", "decision")
	var desc []string
	segments(func(p *canaryv1.TrajectoryPoint) (int32, bool) { return int32(p.GetDecision()), true }, func(a, b int, k int32) {
		word, cls := decisionWord(canaryv1.Decision(k))
		x0 := sx.at(seconds(traj[a].GetTime().AsTime()))
		x1 := math.Min(end(b), chartW-8)
		tip := fmt.Sprintf("%s from %s", word, traj[a].GetTime().AsTime().UTC().Format("15:04:05"))
		c.rect(x0, top, math.Max(x1-x0, 2), decH, "seg "+cls, tip)
		if x1-x0 > float64(len(word))*7.5+6 {
			c.text((x0+x1)/2, top+decH/2+4, "middle", "seglabel", word)
		}
		desc = append(desc, tip)
	})
	for i, m := range ms {
		y := top + decH + 6 + rowH*float64(i)
		c.text(lx-6, y+rowH/2+3, "end", "mlabel", shorten(m.GetName(), 16))
		segments(func(p *canaryv1.TrajectoryPoint) (int32, bool) {
			if i >= len(p.GetMetrics()) {
				return 0, false
			}
			return int32(p.GetMetrics()[i].GetOutcome()), true
		}, func(a, b int, k int32) {
			cls, _, word := outcomeStyle(canaryv1.MetricOutcome(k))
			x0 := sx.at(seconds(traj[a].GetTime().AsTime()))
			x1 := math.Min(end(b), chartW-8)
			c.rect(x0, y+1, math.Max(x1-x0, 2), rowH-3, "oseg "+cls, fmt.Sprintf("%s: %s from %s", m.GetName(), word, traj[a].GetTime().AsTime().UTC().Format("15:04:05")))
		})
	}
	c.timeAxis(sx, top+decH+6+rowH*float64(len(ms))+2)
	c.Desc = "Decision of every judgement over the run: " + strings.Join(desc, "; ") + ". Below, each metric's outcome (pass, hold, regression hatched, no data grey)."
	return c
}
