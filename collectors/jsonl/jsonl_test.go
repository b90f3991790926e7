package jsonl

import (
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

func TestParse(t *testing.T) {
	r, err := Parse([]byte(`{"metric":"latency_ms","cohort":"canary","value":87.5,"time":"2026-11-22T10:00:05Z","instance":"i-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := analysis.Record{Metric: "latency_ms", Cohort: analysis.Canary, Value: 87.5,
		Time: time.Date(2026, 11, 22, 10, 0, 5, 0, time.UTC), Instance: "i-1"}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	r, err = Parse([]byte(`{"metric":"errors","cohort":"baseline","count":3,"total":1000}`))
	if err != nil || !r.IsCount || r.Count != 3 || r.Total != 1000 || r.Cohort != analysis.Baseline {
		t.Errorf("count record: %+v, %v", r, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`{"metric":"a","cohort":"canary"}`, "value: a record needs value"},
		{`{"metric":"a","cohort":"canary","value":1,"count":1,"total":2}`, "not both"},
		{`{"metric":"a","cohort":"canary","count":1}`, "total: is required"},
		{`{"metric":"a","cohort":"canary","total":1}`, "count: is required"},
		{`{"metric":"a","cohort":"canry","value":1}`, "cohort: cohort must be baseline or canary"},
		{`{"cohort":"canary","value":1}`, "metric: is required"},
		{`{"metric":"a","cohort":"canary","value":1,"time":"yesterday"}`, "time: must be RFC 3339"},
		{`{"metric":"a","cohort":"canary","value":1,"colour":"red"}`, "unknown field"},
		{`{"metric":"a","cohort":"canary","value":"fast"}`, "cannot unmarshal"},
		{`{"metric":"a","cohort":"canary","value":1} {}`, "more than one JSON value"},
	} {
		if _, err := Parse([]byte(tc.line)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) error = %v, want %q", tc.line, err, tc.want)
		}
	}
}

func TestReadNamesTheLine(t *testing.T) {
	in := "{\"metric\":\"a\",\"cohort\":\"canary\",\"value\":1}\n\n{\"metric\":\"a\"}\n"
	n := 0
	err := Read(strings.NewReader(in), func(analysis.Record) error { n++; return nil })
	if err == nil || !strings.HasPrefix(err.Error(), "line 3:") || n != 1 {
		t.Errorf("err = %v after %d records, want a line 3 error after 1", err, n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"metric":"latency_ms","cohort":"canary","value":87.5,"time":"2026-11-22T10:00:05Z"}`))
	f.Add([]byte(`{"metric":"errors","cohort":"baseline","count":3,"total":1000}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := Parse(line)
		if err != nil {
			return
		}
		if r.Metric == "" || r.Cohort > analysis.Canary {
			t.Fatalf("accepted a record without metric or cohort: %+v", r)
		}
	})
}
