package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSimulateJSON(t *testing.T) {
	t.Parallel()
	args := []string{"simulate", "--runs", "3", "--seed", "5", "--scenario", "errors-zero", "--policy", "fixed,kayenta", "--effects", "0,4", "--workers", "2", "-o", "json"}
	code, out, errs := runCLI(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, errs)
	}
	var rep struct {
		Command string `json:"command"`
		Seed    uint64 `json:"seed"`
		Cells   []struct {
			Scenario string  `json:"scenario"`
			Policy   string  `json:"policy"`
			Effect   float64 `json:"effect"`
			Runs     int     `json:"runs"`
		} `json:"cells"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	want := "canaryctl simulate --runs 3 --seed 5 --scenario errors-zero --policy fixed,kayenta --effects 0,4"
	if rep.Command != want || rep.Seed != 5 || len(rep.Cells) != 4 || rep.Cells[0].Runs != 3 {
		t.Errorf("command %q seed %d cells %+v", rep.Command, rep.Seed, rep.Cells)
	}
	// The printed command reproduces the figures (without --workers).
	code2, out2, _ := runCLI(t, "", append(strings.Fields(want)[1:], "-o", "json")...)
	if code2 != 0 || out2 != out {
		t.Errorf("the printed command does not reproduce the report (exit %d)", code2)
	}
}

func TestSimulateTable(t *testing.T) {
	t.Parallel()
	code, out, errs := runCLI(t, "", "simulate", "--runs", "2", "--scenario", "errors", "--effects", "0")
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, errs)
	}
	for _, s := range []string{"# canaryctl simulate --runs 2 --seed 1 --scenario errors --policy all --effects 0", "ROLLBACK [95% CI]", "kayenta", "fixed-end", "A/A"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
}

func TestSimulateUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"simulate", "--scenario", "nope"},
		{"simulate", "--policy", "nope"},
		{"simulate", "--runs", "0"},
		{"simulate", "--effects", "x"},
		{"simulate", "-o", "yaml"},
		{"simulate", "extra"},
		{"simulate", "--traffic", "0"},
		{"simulate", "--minutes", "-1"},
		{"simulate", "--kayenta-confidence", "1"},
	} {
		if code, _, _ := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// TestSimulateFlags: the scenario and policy knobs change the runs and
// are part of the command line the table starts with.
func TestSimulateFlags(t *testing.T) {
	t.Parallel()
	code, out, errs := runCLI(t, "", "simulate", "--runs", "2", "--scenario", "errors", "--policy", "kayenta,sequential",
		"--effects", "0", "--traffic", "2", "--minutes", "5", "--window", "0s", "--kayenta-confidence", "0.999")
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, errs)
	}
	for _, s := range []string{
		"--traffic 2 --minutes 5 --window 0s --kayenta-confidence 0.999",
		"2000+2000 req/min", // errors at twice its 1000+1000
		", 5 min;",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
}
