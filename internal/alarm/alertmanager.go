package alarm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Bounds of an alarm.
const (
	MaxLabels      = 64
	MaxLabelKeyLen = 256
	MaxLabelLen    = 4096
	MaxSummaryLen  = 4096
	MaxNameLen     = 256
	MaxURLLen      = 4096
	// MaxWebhookAlerts bounds the alerts of one webhook delivery
	// (Alertmanager's max_alerts limits them on its side).
	MaxWebhookAlerts = 1000
)

// Sources of alarms.
const (
	SourceAlertmanager = "alertmanager"
	SourceAPI          = "api"
)

// Message is Alertmanager's webhook payload, version 4: the JSON that
// notify/webhook (Message: version, groupKey, truncatedAlerts) posts with
// template.Data (receiver, status, alerts, groupLabels, commonLabels,
// commonAnnotations, externalURL) embedded.
type Message struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   uint64            `json:"truncatedAlerts"`
	Receiver          string            `json:"receiver"`
	Status            string            `json:"status"`
	Alerts            []Alert           `json:"alerts"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
}

// Alert is one alert of a webhook payload (Alertmanager's template.Alert).
// EndsAt of a firing alert is when it will be considered resolved if it is
// not sent again (or zero), not when it ended.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// DecodeWebhook decodes an Alertmanager webhook delivery (version 4) into
// alarm events received at now. Alerts are taken as Alertmanager sends
// them: a summary longer than MaxSummaryLen is cut (a delivery refused
// with 4xx is not retried, and an alert lost); only a payload that is not
// version 4, not JSON, or has an alert with an unknown status or a label
// beyond the bounds is an error.
func DecodeWebhook(r io.Reader, now time.Time) ([]*canaryv1.AlarmEvent, error) {
	var m Message
	dec := json.NewDecoder(r)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode Alertmanager webhook payload: %w", err)
	}
	if m.Version != "4" {
		return nil, fmt.Errorf("Alertmanager webhook payload version %q: want \"4\"", m.Version)
	}
	if len(m.Alerts) > MaxWebhookAlerts {
		return nil, fmt.Errorf("%d alerts in one delivery, more than %d (set max_alerts in the webhook config)", len(m.Alerts), MaxWebhookAlerts)
	}
	out := make([]*canaryv1.AlarmEvent, 0, len(m.Alerts))
	for i, a := range m.Alerts {
		ev := &canaryv1.AlarmEvent{
			Name:        a.Labels["alertname"],
			Summary:     summaryOf(a.Annotations),
			Labels:      a.Labels,
			Fingerprint: a.Fingerprint,
			Source:      SourceAlertmanager,
			Url:         cut(a.GeneratorURL, MaxURLLen),
		}
		switch a.Status {
		case "firing":
			ev.State = canaryv1.AlarmState_ALARM_STATE_FIRING
		case "resolved":
			ev.State = canaryv1.AlarmState_ALARM_STATE_RESOLVED
			if !a.EndsAt.IsZero() {
				ev.EndTime = timestamppb.New(a.EndsAt)
			}
		default:
			return nil, fmt.Errorf("alerts[%d].status %q: want firing or resolved", i, a.Status)
		}
		if !a.StartsAt.IsZero() {
			ev.StartTime = timestamppb.New(a.StartsAt)
		}
		if errs := Normalize("alerts["+fmt.Sprint(i)+"]", ev, now); len(errs) > 0 {
			return nil, errs
		}
		out = append(out, ev)
	}
	return out, nil
}

// summaryOf returns an alert's summary: the annotation summary, else
// description, else message (the names alerting rules use).
func summaryOf(ann map[string]string) string {
	for _, k := range []string{"summary", "description", "message"} {
		if v := ann[k]; v != "" {
			return cut(v, MaxSummaryLen)
		}
	}
	return ""
}

// cut returns s cut to at most n bytes on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Normalize checks an alarm event and completes it: the name defaults to
// the alertname label and is copied to it, the fingerprint defaults to
// Fingerprint of the labels, a missing start time of a firing alarm is
// now, a missing end time of a resolved one is now; the receive time is
// now. Problems name their field under path.
func Normalize(path string, ev *canaryv1.AlarmEvent, now time.Time) analysis.FieldErrors {
	var errs analysis.FieldErrors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &analysis.FieldError{Field: path + "." + field, Msg: fmt.Sprintf(format, args...)})
	}
	if ev.Name == "" {
		ev.Name = ev.Labels["alertname"]
	}
	switch {
	case ev.Name == "":
		bad("name", "is required (or the label alertname)")
	case len(ev.Name) > MaxNameLen || !utf8.ValidString(ev.Name):
		bad("name", "must be valid UTF-8 of at most %d bytes", MaxNameLen)
	}
	if len(ev.Summary) > MaxSummaryLen || !utf8.ValidString(ev.Summary) {
		bad("summary", "must be valid UTF-8 of at most %d bytes", MaxSummaryLen)
	}
	if len(ev.Url) > MaxURLLen {
		bad("url", "is %d bytes, more than %d", len(ev.Url), MaxURLLen)
	}
	if len(ev.Labels) > MaxLabels {
		bad("labels", "has %d labels, more than %d", len(ev.Labels), MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(ev.Labels)) {
		v := ev.Labels[k]
		switch {
		case k == "" || len(k) > MaxLabelKeyLen || !utf8.ValidString(k):
			bad("labels", "label name %q must be valid UTF-8 of 1 to %d bytes", k, MaxLabelKeyLen)
		case len(v) > MaxLabelLen || !utf8.ValidString(v):
			bad(fmt.Sprintf("labels[%q]", k), "must be valid UTF-8 of at most %d bytes", MaxLabelLen)
		}
	}
	switch ev.State {
	case canaryv1.AlarmState_ALARM_STATE_FIRING, canaryv1.AlarmState_ALARM_STATE_RESOLVED:
	default:
		bad("state", "must be ALARM_STATE_FIRING or ALARM_STATE_RESOLVED")
	}
	for _, f := range []struct {
		name string
		ts   *timestamppb.Timestamp
	}{{"start_time", ev.StartTime}, {"end_time", ev.EndTime}} {
		if f.ts != nil && f.ts.CheckValid() != nil {
			bad(f.name, "must be a valid time")
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if ev.Labels == nil {
		ev.Labels = map[string]string{}
	}
	if _, ok := ev.Labels["alertname"]; !ok {
		ev.Labels["alertname"] = ev.Name
	}
	if ev.Fingerprint == "" {
		ev.Fingerprint = Fingerprint(ev.Labels)
	} else if len(ev.Fingerprint) > MaxNameLen || !utf8.ValidString(ev.Fingerprint) {
		return analysis.FieldErrors{{Field: path + ".fingerprint", Msg: fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxNameLen)}}
	}
	if ev.State == canaryv1.AlarmState_ALARM_STATE_FIRING {
		ev.EndTime = nil
		if ev.StartTime == nil {
			ev.StartTime = timestamppb.New(now)
		}
	} else if ev.EndTime == nil {
		ev.EndTime = timestamppb.New(now)
	}
	ev.ReceiveTime = timestamppb.New(now)
	return nil
}

// Fingerprint identifies an alarm by its labels (as Alertmanager's
// fingerprint does): a hash of the sorted label pairs.
func Fingerprint(labels map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
