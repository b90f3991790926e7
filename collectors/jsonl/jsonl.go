// Package jsonl reads samples in the JSON Lines format of `canaryctl
// analyze` and `canaryctl ingest`, one record a line:
//
//	{"metric":"latency_ms","cohort":"canary","value":87.5,"time":"2026-11-22T10:00:05Z"}
//	{"metric":"errors","cohort":"baseline","count":3,"total":1000}
//	{"metric":"latency_ms","cohort":"canary","buckets":[{"le":25,"count":310},{"le":50,"count":402},{"le":"+Inf","count":410}],"sum":12345.6,"instance":"pod-a"}
//
// A record is one observation (value), events out of an exposure (count
// out of total), or a histogram of a distribution metric: buckets with
// cumulative counts, as Prometheus' `le` buckets (count observations are
// <= le; le is a number or a string such as "+Inf" or "0.005"), and
// optionally the sum of the observations. time (RFC 3339) and instance are
// optional.
package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/internal/apiconv"
)

// MaxLine bounds the length of one line.
const MaxLine = 1 << 20

type wire struct {
	Metric   string   `json:"metric"`
	Cohort   string   `json:"cohort"`
	Value    *float64 `json:"value"`
	Count    *float64 `json:"count"`
	Total    *float64 `json:"total"`
	Buckets  []bucket `json:"buckets"`
	Sum      *float64 `json:"sum"`
	Time     string   `json:"time"`
	Instance string   `json:"instance"`
}

// bucket is one bucket of a histogram record: Count observations <= Le.
type bucket struct {
	Le    *le      `json:"le"`
	Count *float64 `json:"count"`
}

// le is a bucket's upper bound: a JSON number, or a string as Prometheus'
// le label spells it ("+Inf", "0.005").
type le float64

func (l *le) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) {
		return fmt.Errorf("le must be a number or a string such as \"+Inf\" (got %s)", b)
	}
	*l = le(v)
	return nil
}

// Parse decodes one line into a record. It checks the record's shape; the
// checks that need the config are analysis.Data.Check's.
func Parse(line []byte) (analysis.Record, error) {
	var w wire
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return analysis.Record{}, err
	}
	if dec.More() {
		return analysis.Record{}, errors.New("more than one JSON value on the line")
	}
	var r analysis.Record
	if w.Metric == "" {
		return r, errors.New("metric: is required")
	}
	c, err := analysis.ParseCohort(w.Cohort)
	if err != nil {
		return r, fmt.Errorf("cohort: %w", err)
	}
	r.Metric, r.Cohort, r.Instance = w.Metric, c, w.Instance
	switch {
	case w.Buckets != nil && (w.Value != nil || w.Count != nil || w.Total != nil):
		return r, errors.New("buckets: a record has either value, count and total, or buckets")
	case w.Sum != nil && w.Buckets == nil:
		return r, errors.New("sum: is the sum of a histogram's observations: it goes with buckets")
	case w.Buckets != nil:
		h, err := histogram(w.Buckets, w.Sum)
		if err != nil {
			return r, err
		}
		r.Histogram = h
	case w.Value != nil && (w.Count != nil || w.Total != nil):
		return r, errors.New("value: a record has either value, or count and total, not both")
	case w.Value != nil:
		r.Value = *w.Value
	case w.Count != nil && w.Total != nil:
		r.IsCount, r.Count, r.Total = true, *w.Count, *w.Total
	case w.Count != nil:
		return r, errors.New("total: is required with count")
	case w.Total != nil:
		return r, errors.New("count: is required with total")
	default:
		return r, errors.New("value: a record needs value, count and total, or buckets")
	}
	if w.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Time)
		if err != nil {
			return r, fmt.Errorf("time: must be RFC 3339 such as 2026-11-22T10:00:05Z (got %q)", w.Time)
		}
		r.Time = t
	}
	return r, nil
}

// histogram converts the cumulative buckets of a record.
func histogram(bs []bucket, sum *float64) (*analysis.Histogram, error) {
	les := make([]float64, len(bs))
	counts := make([]float64, len(bs))
	for k, b := range bs {
		switch {
		case b.Le == nil:
			return nil, fmt.Errorf("buckets[%d].le: is required", k)
		case b.Count == nil:
			return nil, fmt.Errorf("buckets[%d].count: is required", k)
		}
		les[k], counts[k] = float64(*b.Le), *b.Count
	}
	h, err := apiconv.HistogramFromBuckets(les, counts, sum)
	var fes analysis.FieldErrors
	if errors.As(err, &fes) && len(fes) > 0 {
		return nil, fes[0] // the first problem, as for the other fields
	}
	return h, err
}

// Read calls fn with every record of r, in order. Blank lines are skipped.
// A malformed line stops the reading with an error that names the line.
func Read(r io.Reader, fn func(analysis.Record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		rec, err := Parse(line)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		if err := fn(rec); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read samples: %w", err)
	}
	return nil
}
