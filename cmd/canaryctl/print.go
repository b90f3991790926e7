package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/canaryd/canaryd/analysis"
)

// printVerdict writes a verdict as a table.
func printVerdict(w io.Writer, v *analysis.Verdict) error {
	fmt.Fprintf(w, "decision: %s   (config %s, %s family-wise confidence)\n", v.Decision, v.Config, pct(v.Confidence))
	fmt.Fprintf(w, "reason:   %s\n\n", v.Reason)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "METRIC\tTYPE\tOUTCOME\tBASELINE\tCANARY\tEFFECT (%s CI)\tP (HOLM)\n", pct(v.Confidence))
	for _, m := range v.Metrics {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Type, strings.ToUpper(string(m.Outcome)),
			summary(m.Type, m.Baseline), summary(m.Type, m.Canary), effect(m.Effect), num(m.AdjustedP))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, m := range v.Metrics {
		fmt.Fprintf(w, "  %s\n", m.Reason)
	}
	return nil
}

func summary(t analysis.MetricType, s analysis.Summary) string {
	switch t {
	case analysis.TypeRate:
		return fmt.Sprintf("%s/%s (%s)", num(s.Count), num(s.Total), pctf(s.Rate))
	case analysis.TypeMean:
		return fmt.Sprintf("n=%s mean=%s sd=%s", num(s.N), num(s.Mean), num(s.SD))
	}
	return fmt.Sprintf("n=%s p50=%s p99=%s", num(s.N), num(s.Median), num(s.P99))
}

func effect(e analysis.Effect) string {
	if math.IsNaN(float64(e.Estimate)) {
		return "-"
	}
	return fmt.Sprintf("%s× [%s, %s]", num(float64(e.Estimate)), num(float64(e.Lower)), num(float64(e.Upper)))
}

func num(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "∞"
	case math.IsNaN(v):
		return "-"
	case v != 0 && (math.Abs(v) < 1e-3 || math.Abs(v) >= 1e7):
		return strconv.FormatFloat(v, 'e', 2, 64)
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func pct(v float64) string { return strconv.FormatFloat(v*100, 'f', -1, 64) + "%" }

func pctf(v float64) string { return strconv.FormatFloat(v*100, 'g', 3, 64) + "%" }
