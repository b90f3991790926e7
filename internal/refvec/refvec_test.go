package refvec

import (
	"encoding/json"
	"math"
	"testing"
)

func TestNum(t *testing.T) {
	var v []Num
	if err := json.Unmarshal([]byte(`[1.5, "Inf", "-Inf", "NaN", -2e-300]`), &v); err != nil {
		t.Fatal(err)
	}
	if v[0] != 1.5 || !math.IsInf(float64(v[1]), 1) || !math.IsInf(float64(v[2]), -1) ||
		!math.IsNaN(float64(v[3])) || v[4] != -2e-300 {
		t.Errorf("got %v", v)
	}
	for _, bad := range []string{`"inf"`, `true`, `{}`} {
		var n Num
		if err := json.Unmarshal([]byte(bad), &n); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
