package jsonl

import (
	"math"
	"reflect"
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
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v, want %+v", r, want)
	}
	r, err = Parse([]byte(`{"metric":"errors","cohort":"baseline","count":3,"total":1000}`))
	if err != nil || !r.IsCount || r.Count != 3 || r.Total != 1000 || r.Cohort != analysis.Baseline {
		t.Errorf("count record: %+v, %v", r, err)
	}
}

func TestParseHistogram(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		line string
		want analysis.Histogram
	}{
		{`{"metric":"latency_ms","cohort":"canary","buckets":[{"le":25,"count":310},{"le":50,"count":402},{"le":"+Inf","count":410}],"sum":12345.6,"instance":"pod-a","time":"2026-11-22T10:00:30Z"}`,
			analysis.Histogram{Bounds: []float64{25, 50, inf}, Counts: []float64{310, 92, 8}, Sum: 12345.6, HasSum: true}},
		{`{"metric":"latency_ms","cohort":"baseline","buckets":[{"le":"0.005","count":0},{"le":"0.01","count":3},{"le":"Inf","count":3}]}`,
			analysis.Histogram{Bounds: []float64{0.005, 0.01, inf}, Counts: []float64{0, 3, 0}}},
		{`{"metric":"latency_ms","cohort":"baseline","buckets":[{"le":0,"count":2},{"le":1,"count":3}]}`,
			analysis.Histogram{Bounds: []float64{1}, Counts: []float64{3}}},
	} {
		r, err := Parse([]byte(tc.line))
		if err != nil {
			t.Errorf("Parse(%s): %v", tc.line, err)
			continue
		}
		if r.Histogram == nil || !reflect.DeepEqual(*r.Histogram, tc.want) {
			t.Errorf("Parse(%s) histogram = %+v, want %+v", tc.line, r.Histogram, tc.want)
		}
	}
	r, _ := Parse([]byte(`{"metric":"latency_ms","cohort":"canary","buckets":[{"le":1,"count":1}],"instance":"pod-a","time":"2026-11-22T10:00:30Z"}`))
	if r.Metric != "latency_ms" || r.Cohort != analysis.Canary || r.Instance != "pod-a" || r.Time.IsZero() || r.IsCount {
		t.Errorf("histogram record %+v", r)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`{"metric":"a","cohort":"canary"}`, "value: a record needs value, count and total, or buckets"},
		{`{"metric":"a","cohort":"canary","value":1,"buckets":[{"le":1,"count":1}]}`, "buckets: a record has either"},
		{`{"metric":"a","cohort":"canary","count":1,"total":2,"buckets":[{"le":1,"count":1}]}`, "buckets: a record has either"},
		{`{"metric":"a","cohort":"canary","value":1,"sum":3}`, "sum: is the sum of a histogram"},
		{`{"metric":"a","cohort":"canary","buckets":[]}`, "buckets: at least one bucket"},
		{`{"metric":"a","cohort":"canary","buckets":[{"count":1}]}`, "buckets[0].le: is required"},
		{`{"metric":"a","cohort":"canary","buckets":[{"le":1}]}`, "buckets[0].count: is required"},
		{`{"metric":"a","cohort":"canary","buckets":[{"le":1,"count":1,"lt":3}]}`, "unknown field"},
		{`{"metric":"a","cohort":"canary","buckets":[{"le":"fast","count":1}]}`, "le must be a number"},
		{`{"metric":"a","cohort":"canary","buckets":[{"le":"NaN","count":1}]}`, "le must be a number"},
		{`{"metric":"a","cohort":"canary","buckets":[{"le":25,"count":310},{"le":50,"count":300}]}`, "buckets[1].count: 300 is less than"},
		{`{"metric":"a","cohort":"canary","buckets":[{"le":50,"count":1},{"le":25,"count":2}]}`, "buckets[1].le: must be greater than buckets[0].le"},
		{`{"metric":"a","cohort":"canary","buckets":[{"le":"+Inf","count":1},{"le":25,"count":2}]}`, "buckets[0].le: +Inf must be the last"},
		{`{"metric":"a","cohort":"canary","buckets":[{"le":1,"count":1.5}]}`, "buckets[0].count: must be a whole number"},
		{`{"metric":"a","cohort":"canary","buckets":[{"le":1,"count":1}],"sum":-2}`, "sum: must be a finite number >= 0"},
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
	f.Add([]byte(`{"metric":"latency_ms","cohort":"canary","buckets":[{"le":25,"count":310},{"le":50,"count":402},{"le":"+Inf","count":410}],"sum":12345.6,"instance":"pod-a","time":"2026-11-22T10:00:30Z"}`))
	f.Add([]byte(`{"metric":"latency_ms","cohort":"baseline","buckets":[{"le":"0","count":1},{"le":"0.005","count":1},{"le":"Inf","count":3}]}`))
	f.Add([]byte(`{"metric":"latency_ms","cohort":"baseline","buckets":[{"le":-1,"count":0},{"le":1e15,"count":2}],"sum":0}`))
	cfg, err := analysis.ParseConfig([]byte("name: f\nmetrics:\n  - {name: latency_ms, category: performance, type: distribution}\n"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := Parse(line)
		if err != nil {
			return
		}
		if r.Metric == "" || r.Cohort > analysis.Canary {
			t.Fatalf("accepted a record without metric or cohort: %+v", r)
		}
		if r.Histogram != nil {
			// A histogram the parser accepts is one the judge accepts.
			r.Metric = "latency_ms"
			if err := analysis.NewData(cfg).Add(&r); err != nil {
				t.Fatalf("accepted a histogram the judge rejects: %+v: %v", r.Histogram, err)
			}
		}
	})
}
