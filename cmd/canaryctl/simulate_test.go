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
		{"simulate", "-o", "xml"},
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

// TestSimulateFalsePromote: the table has a false-PROMOTE column beside
// detection and a summary with the A/A and boundary false rollbacks; by
// default the effects include 2×, the tolerance plus the detectable effect,
// and the printed command names them.
func TestSimulateFalsePromote(t *testing.T) {
	t.Parallel()
	code, out, errs := runCLI(t, "", "simulate", "--runs", "2", "--scenario", "errors-zero", "--policy", "kayenta", "--minutes", "3")
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, errs)
	}
	for _, s := range []string{
		"--effects 0,1,2,4 --minutes 3",
		"FALSE PROMOTE [95% CI]",
		"A/A FALSE ROLLBACK", "1× FALSE ROLLBACK", "DETECT AT",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	// The false-PROMOTE column is "-" below 2× and a rate from 2× on.
	rows := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || f[0] != "errors-zero" || !strings.HasSuffix(f[2], "×") && f[2] != "A/A" {
			continue
		}
		// SCENARIO POLICY EFFECT [(change)] RUNS rate [lo, hi] FALSE-PROMOTE
		col := 7
		if f[2] != "A/A" {
			col = 8
		}
		below := f[2] == "A/A" || f[2] == "1×"
		if got := f[col] == "-"; got != below {
			t.Errorf("effect %s: false PROMOTE column %q in %q", f[2], f[col], line)
		}
		rows++
	}
	if rows != 4 {
		t.Errorf("%d rows of errors-zero, want 4:\n%s", rows, out)
	}
}

// TestSimulateGroups: --scenario takes a group name; --help lists every
// scenario with its group.
func TestSimulateGroups(t *testing.T) {
	t.Parallel()
	code, out, errs := runCLI(t, "", "simulate", "--runs", "1", "--scenario", "messy,share-drop", "--policy", "kayenta", "--effects", "0", "--minutes", "2", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, errs)
	}
	var rep struct {
		Scenarios []struct {
			Name  string `json:"name"`
			Group string `json:"group"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range rep.Scenarios {
		if s.Group != "messy" || seen[s.Name] {
			t.Errorf("scenario %s of group %q (seen before: %v)", s.Name, s.Group, seen[s.Name])
		}
		seen[s.Name] = true
	}
	if len(seen) < 16 || !seen["share-drop"] || !seen["prom-buckets"] {
		t.Errorf("messy selected %v", seen)
	}
	code, help, _ := runCLI(t, "", "simulate", "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, s := range []string{"share-steps-burst", "[messy]", "latency-int-2ms", "prom-buckets-nosum", "[classic]", "false PROMOTE", "-effects"} {
		if !strings.Contains(help, s) {
			t.Errorf("--help lacks %q:\n%s", s, help)
		}
	}
}
