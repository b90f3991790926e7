package alarm

import (
	"strings"
	"testing"
	"time"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

func TestParseMatcher(t *testing.T) {
	t.Parallel()
	// Cases follow Alertmanager's pkg/labels parse tests (classic parser).
	for _, tc := range []struct {
		in, name, value string
		typ             MatchType
		err             bool
	}{
		{in: `severity="page"`, name: "severity", typ: MatchEqual, value: "page"},
		{in: ` severity = page `, name: "severity", typ: MatchEqual, value: "page"},
		{in: `stage=~"onebox.*"`, name: "stage", typ: MatchRegexp, value: "onebox.*"},
		{in: `team!="x"`, name: "team", typ: MatchNotEqual, value: "x"},
		{in: `env!~"dev|test"`, name: "env", typ: MatchNotRegexp, value: "dev|test"},
		{in: `msg="say \"hi\"\n"`, name: "msg", typ: MatchEqual, value: "say \"hi\"\n"},
		{in: `a="b\c"`, name: "a", typ: MatchEqual, value: `b\c`},
		{in: `a=""`, name: "a", typ: MatchEqual, value: ""},
		{in: `a="b`, err: true},
		{in: `a=b"c`, err: true},
		{in: `a="b"c"`, err: true},
		{in: `1a="b"`, err: true},
		{in: `a=~"("`, err: true},
		{in: `severity`, err: true},
	} {
		m, err := ParseMatcher(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParseMatcher(%q) = %v, want an error", tc.in, m)
			}
			continue
		}
		if err != nil || m.Name != tc.name || m.Type != tc.typ || m.Value != tc.value {
			t.Errorf("ParseMatcher(%q) = %+v, %v; want %s %s %q", tc.in, m, err, tc.name, tc.typ, tc.value)
		}
	}
}

func TestRuleMatches(t *testing.T) {
	t.Parallel()
	rules, err := Compile([]*canaryv1.AlarmRule{
		{Matchers: []string{`severity="page"`, `service="{{.Service}}"`}},
		{Name: "onebox", Matchers: []string{`severity=~"page|critical"`, `stage=~"{{.Stage}}.*"`}},
		{Name: "no-team", Matchers: []string{`team=""`}},
	}, Target{Service: `check"out`, Stage: "onebox"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		labels map[string]string
		want   []bool
	}{
		{map[string]string{"severity": "page", "service": `check"out`, "team": "t"}, []bool{true, false, false}},
		{map[string]string{"severity": "page", "service": "other", "team": "t"}, []bool{false, false, false}},
		{map[string]string{"severity": "critical", "stage": "onebox/us-east-1", "team": "t"}, []bool{false, true, false}},
		{map[string]string{"severity": "critical", "stage": "x-onebox"}, []bool{false, false, true}},
	} {
		for i, r := range rules {
			if got := r.Matches(tc.labels); got != tc.want[i] {
				t.Errorf("rule %s on %v = %v, want %v", r, tc.labels, got, tc.want[i])
			}
		}
	}
}

func TestCheckRules(t *testing.T) {
	t.Parallel()
	errs := Check("alarms", []*canaryv1.AlarmRule{
		{Matchers: []string{`severity="page"`, `service="{{.Service}}"`}},
		{},
		{Matchers: []string{`severity="page"`, `service="{{.Team}}"`}},
		{Matchers: []string{`a=~"("`}},
	})
	got := errs.Error()
	for _, want := range []string{"alarms[1].matchers: is required", "alarms[2].matchers[1]: bad template", "alarms[3].matchers[0]: matcher"} {
		if !strings.Contains(got, want) {
			t.Errorf("Check: %s\nmissing %q", got, want)
		}
	}
	if len(errs) != 3 {
		t.Errorf("Check: %d errors, want 3: %v", len(errs), errs)
	}
}

func mustWindows(t *testing.T, tz string, allow []string, deny ...string) *Windows {
	t.Helper()
	w, errs := CompileWindows("deploy_windows", &canaryv1.DeployWindows{TimeZone: tz, Allow: allow, DenyDates: deny})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return w
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestWindowsDST: wall-clock windows across New York's 2026 changes
// (spring forward Sun 2026-03-08 02:00 EST -> 03:00 EDT; fall back Sun
// 2026-11-01 02:00 EDT -> 01:00 EST). Expected values by hand from the
// offsets: EST = UTC-5, EDT = UTC-4.
func TestWindowsDST(t *testing.T) {
	t.Parallel()
	const ny = "America/New_York"
	work := []string{"Mon-Thu 09:00-16:00", "Fri 09:00-12:00"}
	for _, tc := range []struct {
		name  string
		allow []string
		deny  []string
		at    string
		want  bool
		next  string // "" when allowed
	}{
		{"weekday inside (EST)", work, nil, "2026-12-03T14:00:00Z", true, ""}, // Thu 09:00 EST
		{"weekday before open (EST)", work, nil, "2026-12-03T13:59:00Z", false, "2026-12-03T14:00:00Z"},
		{"end is exclusive", work, nil, "2026-12-03T21:00:00Z", false, "2026-12-04T14:00:00Z"}, // Thu 16:00 EST
		{"friday afternoon", work, nil, "2026-12-04T18:00:00Z", false, "2026-12-07T14:00:00Z"},
		// The weekend of the spring-forward change: Monday opens at 09:00
		// EDT, 13:00Z, not 14:00Z.
		{"next window after spring forward", work, nil, "2026-03-06T22:00:00Z", false, "2026-03-09T13:00:00Z"},
		{"summer inside (EDT)", work, nil, "2026-07-01T13:00:00Z", true, ""}, // Wed 09:00 EDT
		{"summer 08:00 EDT", work, nil, "2026-07-01T12:00:00Z", false, "2026-07-01T13:00:00Z"},
		// Sun 01:00-03:00 on the spring-forward day lasts one hour.
		{"spring forward: 01:59 EST", []string{"Sun 01:00-03:00"}, nil, "2026-03-08T06:59:00Z", true, ""},
		{"spring forward: 03:00 EDT is past the end", []string{"Sun 01:00-03:00"}, nil, "2026-03-08T07:00:00Z", false, "2026-03-15T05:00:00Z"},
		// A window inside the skipped hour never opens that day.
		{"spring forward: skipped window", []string{"Sun 02:00-02:30"}, nil, "2026-03-08T06:00:00Z", false, "2026-03-15T06:00:00Z"},
		// Sun 01:00-02:00 on the fall-back day happens twice.
		{"fall back: first 01:30 (EDT)", []string{"Sun 01:00-02:00"}, nil, "2026-11-01T05:30:00Z", true, ""},
		{"fall back: second 01:30 (EST)", []string{"Sun 01:00-02:00"}, nil, "2026-11-01T06:30:00Z", true, ""},
		{"fall back: 02:00 EST", []string{"Sun 01:00-02:00"}, nil, "2026-11-01T07:00:00Z", false, "2026-11-08T06:00:00Z"},
		// Overnight windows run into the next day.
		{"overnight after midnight", []string{"Fri 22:00-02:00"}, nil, "2026-12-05T06:30:00Z", true, ""}, // Sat 01:30 EST
		{"overnight before start", []string{"Fri 22:00-02:00"}, nil, "2026-12-05T02:00:00Z", false, "2026-12-05T03:00:00Z"},
		{"until 24:00", []string{"Mon-Sun 20:00-24:00"}, nil, "2026-12-05T04:59:00Z", true, ""},
		// Deny dates are local dates.
		{"deny date", work, []string{"2026-12-24"}, "2026-12-24T15:00:00Z", false, "2026-12-25T14:00:00Z"},
		{"deny date is local", work, []string{"2026-12-24"}, "2026-12-24T03:00:00Z", false, "2026-12-25T14:00:00Z"}, // Wed 22:00 EST: outside, Thu is denied, Fri (Christmas) opens
		{"no allow: only deny dates", nil, []string{"2026-12-25"}, "2026-12-25T12:00:00Z", false, "2026-12-26T05:00:00Z"},
		{"no allow, other day", nil, []string{"2026-12-25"}, "2026-12-26T12:00:00Z", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := mustWindows(t, ny, tc.allow, tc.deny...)
			at := utc(tc.at)
			ok, reasons := w.Allows(at)
			if ok != tc.want {
				t.Fatalf("Allows(%s) = %v %q, want %v", at.In(w.Location()), ok, reasons, tc.want)
			}
			if ok != (len(reasons) == 0) {
				t.Errorf("Allows(%s) = %v with reasons %q", at, ok, reasons)
			}
			if tc.next == "" {
				return
			}
			next, found := w.Next(at)
			if !found || !next.Equal(utc(tc.next)) {
				t.Errorf("Next(%s) = %s (%v), want %s", at.In(w.Location()), next.In(w.Location()), found, utc(tc.next).In(w.Location()))
			}
		})
	}
}

func TestCompileWindowsErrors(t *testing.T) {
	t.Parallel()
	_, errs := CompileWindows("deploy_windows", &canaryv1.DeployWindows{
		TimeZone:  "Mars/Olympus",
		Allow:     []string{"Mon-Thu 09:00-16:00", "Funday 09:00-10:00", "Mon 9:00-10:00", "Tue 10:00-10:00", "Wed 23:00-24:30"},
		DenyDates: []string{"2026-12-24", "2026-13-01"},
	})
	got := errs.Error()
	for _, want := range []string{"deploy_windows.time_zone", "allow[1]", "allow[2]", "allow[3]", "allow[4]", "deny_dates[1]"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in %s", want, got)
		}
	}
	if len(errs) != 6 {
		t.Errorf("%d errors, want 6: %s", len(errs), got)
	}
}

func TestDecodeWebhook(t *testing.T) {
	t.Parallel()
	// A payload as Alertmanager 0.25 posts it (notify/webhook Message).
	const body = `{"receiver":"canaryd","status":"firing","alerts":[
	 {"status":"firing","labels":{"alertname":"HighErrors","severity":"page","service":"checkout"},
	  "annotations":{"summary":"5xx above 5%"},"startsAt":"2026-12-04T10:42:00.123Z","endsAt":"0001-01-01T00:00:00Z",
	  "generatorURL":"http://prom/graph","fingerprint":"c0ffee"},
	 {"status":"resolved","labels":{"alertname":"DiskFull"},"annotations":{"description":"disk"},
	  "startsAt":"2026-12-04T09:00:00Z","endsAt":"2026-12-04T10:00:00Z","fingerprint":"beef"}],
	 "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am","version":"4",
	 "groupKey":"{}:{}","truncatedAlerts":0}`
	now := utc("2026-12-04T10:43:00Z")
	evs, err := DecodeWebhook(strings.NewReader(body), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	f, r := evs[0], evs[1]
	if f.GetName() != "HighErrors" || f.GetSummary() != "5xx above 5%" || f.GetState() != canaryv1.AlarmState_ALARM_STATE_FIRING ||
		f.GetFingerprint() != "c0ffee" || !f.GetStartTime().AsTime().Equal(utc("2026-12-04T10:42:00.123Z")) ||
		f.GetEndTime() != nil || f.GetSource() != SourceAlertmanager || !f.GetReceiveTime().AsTime().Equal(now) {
		t.Errorf("firing: %v", f)
	}
	if r.GetName() != "DiskFull" || r.GetSummary() != "disk" || r.GetState() != canaryv1.AlarmState_ALARM_STATE_RESOLVED ||
		!r.GetEndTime().AsTime().Equal(utc("2026-12-04T10:00:00Z")) {
		t.Errorf("resolved: %v", r)
	}
	for _, bad := range []string{`{"version":"3","alerts":[]}`, `not json`, `{"version":"4","alerts":[{"status":"weird","labels":{"alertname":"x"}}]}`,
		`{"version":"4","alerts":[{"status":"firing","labels":{}}]}`} {
		if _, err := DecodeWebhook(strings.NewReader(bad), now); err == nil {
			t.Errorf("DecodeWebhook(%s): no error", bad)
		}
	}
}

func TestSplitConfigAndPolicy(t *testing.T) {
	t.Parallel()
	rules, rest, err := SplitConfig([]byte("name: x\nalarms:\n  - matchers: ['severity=\"page\"']\n    name: p\nmetrics: []\n"))
	if err != nil || len(rules) != 1 || rules[0].GetName() != "p" || rules[0].GetMatchers()[0] != `severity="page"` {
		t.Fatalf("SplitConfig: %v %v", rules, err)
	}
	if strings.Contains(string(rest), "alarms") || !strings.Contains(string(rest), "name: x") {
		t.Errorf("rest: %s", rest)
	}
	if _, _, err := SplitConfig([]byte("name: x\nalarms:\n  - matcher: ['a=b']\n")); err == nil || !strings.Contains(err.Error(), "alarms[0].matcher: unknown field") {
		t.Errorf("unknown field: %v", err)
	}
	src := []byte("service: checkout\ndeploy_windows:\n  time_zone: America/New_York\n  allow: [\"Mon-Thu 09:00-16:00\"]\n  deny_dates: [\"2026-12-24\"]\nalarms:\n  - matchers: ['team=\"checkout\"']\n")
	pol, err := ParsePolicy(src)
	if err != nil || pol.GetService() != "checkout" || pol.GetDeployWindows().GetTimeZone() != "America/New_York" || len(pol.GetAlarms()) != 1 {
		t.Fatalf("ParsePolicy: %v %v", pol, err)
	}
	if errs := CheckPolicy(pol); len(errs) > 0 {
		t.Errorf("CheckPolicy: %v", errs)
	}
	if _, err := ParsePolicy([]byte("service: x\nwindows: {}\n")); err == nil || !strings.Contains(err.Error(), "windows: unknown field") {
		t.Errorf("unknown policy field: %v", err)
	}
	if errs := CheckPolicy(&canaryv1.DeployPolicy{}); len(errs) != 1 || errs[0].Field != "service" {
		t.Errorf("CheckPolicy(empty): %v", errs)
	}
}

// TestTemplateEscaping: {{.Service}} stands for the name itself, in
// quoted values and in regular expressions.
func TestTemplateEscaping(t *testing.T) {
	t.Parallel()
	svc := `a.b"c\d`
	rules, err := Compile([]*canaryv1.AlarmRule{
		{Matchers: []string{`service="{{.Service}}"`}},
		{Matchers: []string{`service=~"{{.Service}}|other"`}},
		{Matchers: []string{`service={{.Service}}`}},
	}, Target{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rules {
		if !r.Matches(map[string]string{"service": svc}) {
			t.Errorf("rule %d (%s) does not match the service", i, r)
		}
		if r.Matches(map[string]string{"service": `aXb"c\d`}) {
			t.Errorf("rule %d (%s): the service's '.' matched any character", i, r)
		}
	}
}

// FuzzDecodeWebhook: any body is an error or alarm events that pass
// Normalize, never a panic.
func FuzzDecodeWebhook(f *testing.F) {
	f.Add(`{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A","service":"s"},"startsAt":"2026-12-04T10:42:00Z"}]}`)
	f.Add(`{"version":"4","alerts":[{"status":"resolved","labels":{"alertname":"A"},"endsAt":"2026-12-04T10:42:00Z","fingerprint":"x"}]}`)
	f.Add(`{"version":"3"}`)
	now := time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body string) {
		evs, err := DecodeWebhook(strings.NewReader(body), now)
		if err != nil {
			return
		}
		for _, ev := range evs {
			if ev.GetName() == "" || ev.GetFingerprint() == "" || ev.GetStartTime() == nil && ev.GetState() == canaryv1.AlarmState_ALARM_STATE_FIRING {
				t.Fatalf("incomplete event %v", ev)
			}
		}
	})
}

// FuzzParseMatcher: a matcher that parses prints back to one that parses
// to the same matcher.
func FuzzParseMatcher(f *testing.F) {
	for _, s := range []string{`a="b"`, `a=~"b.*"`, `a!="\"x\""`, `a!~x|y`, `a=`, `a="b\nc\\"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMatcher(s)
		if err != nil {
			return
		}
		m2, err := ParseMatcher(m.String())
		if err != nil {
			t.Fatalf("%q parsed to %s, which does not parse: %v", s, m, err)
		}
		if m2.Name != m.Name || m2.Type != m.Type || m2.Value != m.Value {
			t.Fatalf("%q: %s parsed back to %s", s, m, m2)
		}
	})
}
