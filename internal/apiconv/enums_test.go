package apiconv

import (
	"strings"
	"testing"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// checkEnum checks one enum against every value the proto declares
// (names): UNSPECIFIED and "" map to each other, every other declared
// value has a name that maps back to it, and an undeclared value maps to
// a name with its number, which maps to UNSPECIFIED.
func checkEnum[P ~int32, A ~string](t *testing.T, names map[int32]string, from func(P) A, to func(A) P) {
	t.Helper()
	for n, name := range names {
		p := P(n)
		a := from(p)
		if n == 0 {
			if a != "" {
				t.Errorf("%s: got %q, want \"\"", name, a)
			}
			if got := to(""); got != 0 {
				t.Errorf(`"": got %v, want %s`, got, name)
			}
			continue
		}
		if a == "" || strings.Contains(string(a), " ") {
			t.Errorf("%s: got %q, want a name", name, a)
		}
		if got := to(a); got != p {
			t.Errorf("%s → %q → %v", name, a, got)
		}
	}
	const unknown = 99
	if _, ok := names[unknown]; ok {
		t.Fatalf("%d is declared; pick another undeclared value", unknown)
	}
	a := from(P(unknown))
	if !strings.HasSuffix(string(a), " 99") {
		t.Errorf("undeclared value: got %q, want a name ending in its number", a)
	}
	if got := to(a); got != 0 {
		t.Errorf("%q: got %v, want UNSPECIFIED", a, got)
	}
}

func TestEnums(t *testing.T) {
	t.Parallel()
	t.Run("category", func(t *testing.T) {
		checkEnum(t, canaryv1.MetricCategory_name, CategoryFromProto, CategoryToProto)
	})
	t.Run("type", func(t *testing.T) {
		checkEnum(t, canaryv1.MetricType_name, TypeFromProto, TypeToProto)
	})
	t.Run("direction", func(t *testing.T) {
		checkEnum(t, canaryv1.BadDirection_name, DirectionFromProto, DirectionToProto)
	})
	t.Run("decision", func(t *testing.T) {
		checkEnum(t, canaryv1.Decision_name, DecisionFromProto, DecisionToProto)
	})
	t.Run("outcome", func(t *testing.T) {
		checkEnum(t, canaryv1.MetricOutcome_name, OutcomeFromProto, OutcomeToProto)
	})
}

func TestCohortFromProto(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     canaryv1.Cohort
		want   analysis.Cohort
		wantOK bool
	}{
		{canaryv1.Cohort_COHORT_BASELINE, analysis.Baseline, true},
		{canaryv1.Cohort_COHORT_CANARY, analysis.Canary, true},
		{canaryv1.Cohort_COHORT_UNSPECIFIED, 0, false},
		{99, 0, false},
	}
	for _, tt := range tests {
		if got, ok := CohortFromProto(tt.in); got != tt.want || ok != tt.wantOK {
			t.Errorf("%v: got %v, %t; want %v, %t", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRunStateName(t *testing.T) {
	t.Parallel()
	for st, want := range map[canaryv1.RunState]string{
		canaryv1.RunState_RUN_STATE_UNSPECIFIED: "",
		canaryv1.RunState_RUN_STATE_RUNNING:     "running",
		canaryv1.RunState_RUN_STATE_COMPLETED:   "completed",
		canaryv1.RunState_RUN_STATE_ABORTED:     "aborted",
		canaryv1.RunState(7):                    "state(7)",
	} {
		if got := RunStateName(st); got != want {
			t.Errorf("RunStateName(%v) = %q, want %q", st, got, want)
		}
	}
}
