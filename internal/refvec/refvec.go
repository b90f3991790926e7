// Package refvec reads the reference vectors the statistics tests compare
// with: JSON files written by the generator scripts under testdata/gen
// (from R and scipy), where non-finite numbers are strings.
package refvec

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"
)

// Num is a float64 in a reference file, where the non-finite values are
// written as the strings "Inf", "-Inf" and "NaN".
type Num float64

// UnmarshalJSON reads a JSON number or one of the strings "Inf", "-Inf" and
// "NaN".
func (f *Num) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		switch s {
		case "Inf":
			*f = Num(math.Inf(1))
		case "-Inf":
			*f = Num(math.Inf(-1))
		case "NaN":
			*f = Num(math.NaN())
		default:
			return fmt.Errorf("refvec: bad number %q", s)
		}
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("refvec: %w", err)
	}
	*f = Num(v)
	return nil
}

// Load decodes the JSON file at path into v, failing t when it cannot.
func Load(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
