package server

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
	"github.com/canaryd/canaryd/internal/report"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// FuzzReport builds and renders the report of runs made of arbitrary
// accepted batches (as FuzzJudge makes them), judged sequentially at a
// few times with their trajectory: Build and Render must not panic, the
// page must parse as HTML with one section per metric, and the report
// must encode as the JSON the API serves.
func FuzzReport(f *testing.F) {
	f.Add([]byte{0, 0, 1, 10, 0, 0, 50, 0, 0, 1, 2, 10, 1, 0, 60})
	f.Add([]byte{2, 2, 1, 255, 2, 9, 9, 0, 1, 1, 2, 0, 1, 3, 2, 2, 2, 255, 3, 9, 9, 0, 2, 0, 3, 0, 4})
	f.Add([]byte{5, 0, 2, 30, 1, 1, 0, 2, 6, 0, 10, 0, 3, 0, 5, 0, 1, 5, 0, 1, 30, 9, 1, 2, 3, 0, 4, 0, 2, 7})
	fz := newFuzzRuns(f)
	r, err := report.NewRenderer()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		run, _, d := fz.fold(t, data)
		at := runStart(run).Add(time.Hour)
		opts := analysis.Options{BakeComplete: true, Sequential: true, ExpectedShare: fuzzShare(data)}
		var traj []*canaryv1.TrajectoryPoint
		var pv *canaryv1.Verdict
		for i := range 3 {
			v := judgeBounded(t, d, opts)
			pv = apiconv.VerdictToProto(&v)
			pv.Sequence, pv.Time = uint64(i+1), timestamppb.New(at.Add(time.Duration(i)*time.Minute))
			traj = report.Append(traj, report.Point(pv))
		}
		rep := report.Build(run, pv, traj, d, report.Options{Newest: at})
		if _, err := protojson.Marshal(rep); err != nil {
			t.Fatalf("the report does not encode as JSON: %v", err)
		}
		var buf bytes.Buffer
		if err := r.Report(&buf, rep, report.ReportOptions{HistoryURL: "/"}); err != nil {
			t.Fatalf("render: %v", err)
		}
		doc, err := html.Parse(&buf)
		if err != nil {
			t.Fatalf("the page does not parse: %v", err)
		}
		sections := 0
		for n := range doc.Descendants() {
			if n.Type == html.ElementNode && n.Data == "section" {
				for _, a := range n.Attr {
					if a.Key == "class" && strings.Contains(a.Val, "metric") {
						sections++
					}
				}
			}
		}
		if sections != len(pv.GetMetrics()) {
			t.Fatalf("%d metric sections for %d metrics", sections, len(pv.GetMetrics()))
		}
	})
}
