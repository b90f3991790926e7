// Package jsonl reads samples in the JSON Lines format of `canaryctl
// analyze` and `canaryctl ingest`, one record a line:
//
//	{"metric":"latency_ms","cohort":"canary","value":87.5,"time":"2026-11-22T10:00:05Z"}
//	{"metric":"errors","cohort":"baseline","count":3,"total":1000}
//
// A record is one observation (value) or events out of an exposure (count
// out of total). time (RFC 3339) and instance are optional.
package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/canaryd/canaryd/analysis"
)

// MaxLine bounds the length of one line.
const MaxLine = 1 << 20

type wire struct {
	Metric   string   `json:"metric"`
	Cohort   string   `json:"cohort"`
	Value    *float64 `json:"value"`
	Count    *float64 `json:"count"`
	Total    *float64 `json:"total"`
	Time     string   `json:"time"`
	Instance string   `json:"instance"`
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
		return r, errors.New("value: a record needs value, or count and total")
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
