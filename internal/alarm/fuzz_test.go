package alarm

import (
	"strings"
	"testing"
	"time"

	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// FuzzDecodeWebhook: any body is an error or alarm events that Normalize
// completed, never a panic.
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
			if ev.GetName() == "" || ev.GetFingerprint() == "" ||
				(ev.GetState() == canaryv1.AlarmState_ALARM_STATE_FIRING && ev.GetStartTime() == nil) {
				t.Fatalf("incomplete event %v", ev)
			}
		}
	})
}

// FuzzParseMatcher: a matcher that parses prints back to one that parses
// to the same matcher.
func FuzzParseMatcher(f *testing.F) {
	for _, s := range []string{`a="b"`, `a=~"b.*"`, `a!="\"x\""`, `a!~x|y`, `a=`, "a=\"b\\nc\\\\\""} {
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
