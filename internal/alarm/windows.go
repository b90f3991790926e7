package alarm

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zones without the system's zoneinfo (the static image)

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Bounds of deploy windows.
const (
	MaxWindows   = 64
	MaxDenyDates = 1024
	// searchDays bounds the search for the next window: a year of deny
	// dates and a week.
	searchDays = 372
)

// Windows are compiled deploy windows: when deployments may start, in
// wall-clock time of one location. Wall-clock times make them correct
// across daylight-saving changes: "09:00-16:00" is 09:00 to 16:00 local
// time on a day of 23 or 25 hours too, a local time skipped by a
// spring-forward change never occurs, and one repeated by a fall-back
// change is inside a window both times.
type Windows struct {
	loc   *time.Location
	allow []window
	specs []string
	deny  map[string]bool // YYYY-MM-DD
}

// window is one allowed range: on days (a weekday bit set), from start to
// end minutes after local midnight; end <= start runs past midnight into
// the next day.
type window struct {
	days       uint8
	start, end int
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// CompileWindows checks and compiles deploy windows; nil when dw is nil.
// Problems name their field under path ("deploy_windows.allow[1]").
func CompileWindows(path string, dw *canaryv1.DeployWindows) (*Windows, analysis.FieldErrors) {
	if dw == nil {
		return nil, nil
	}
	var errs analysis.FieldErrors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &analysis.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	w := &Windows{loc: time.UTC, deny: map[string]bool{}}
	if tz := dw.GetTimeZone(); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil || tz == "Local" {
			bad(path+".time_zone", "unknown time zone %q: want an IANA name such as America/New_York", tz)
		} else {
			w.loc = loc
		}
	}
	if len(dw.GetAllow()) > MaxWindows {
		bad(path+".allow", "has %d windows, more than %d", len(dw.GetAllow()), MaxWindows)
	} else {
		for i, s := range dw.GetAllow() {
			win, err := parseWindow(s)
			if err != nil {
				bad(fmt.Sprintf("%s.allow[%d]", path, i), "%v", err)
				continue
			}
			w.allow = append(w.allow, win)
			w.specs = append(w.specs, strings.Join(strings.Fields(s), " "))
		}
	}
	if len(dw.GetDenyDates()) > MaxDenyDates {
		bad(path+".deny_dates", "has %d dates, more than %d", len(dw.GetDenyDates()), MaxDenyDates)
	} else {
		for i, s := range dw.GetDenyDates() {
			d, err := time.Parse(time.DateOnly, s)
			if err != nil {
				bad(fmt.Sprintf("%s.deny_dates[%d]", path, i), "%q is not a date YYYY-MM-DD", s)
				continue
			}
			w.deny[d.Format(time.DateOnly)] = true
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return w, nil
}

// parseWindow parses "Mon-Thu 09:00-16:00", "Sat,Sun 10:00-11:00",
// "Mon-Fri 22:00-02:00".
func parseWindow(s string) (window, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return window{}, fmt.Errorf("%q: want days and times, e.g. \"Mon-Thu 09:00-16:00\"", s)
	}
	var w window
	for part := range strings.SplitSeq(f[0], ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, ok1 := weekdays[strings.ToLower(from)]
		b, ok2 := a, true
		if isRange {
			b, ok2 = weekdays[strings.ToLower(to)]
		}
		if !ok1 || !ok2 {
			return window{}, fmt.Errorf("%q: days must be Mon, Tue, Wed, Thu, Fri, Sat or Sun, lists (Sat,Sun) or ranges (Mon-Thu)", s)
		}
		for d := a; ; d = (d + 1) % 7 {
			w.days |= 1 << d
			if d == b {
				break
			}
		}
	}
	from, to, ok := strings.Cut(f[1], "-")
	var err1, err2 error
	if ok {
		w.start, err1 = clock(from, false)
		w.end, err2 = clock(to, true)
	}
	if !ok || err1 != nil || err2 != nil {
		return window{}, fmt.Errorf("%q: times must be HH:MM-HH:MM (24-hour; 24:00 ends the day)", s)
	}
	if w.start == w.end {
		return window{}, fmt.Errorf("%q: the window is empty (it starts where it ends)", s)
	}
	if w.end == 24*60 {
		w.end = 0 // until midnight: runs "past" midnight by nothing
	}
	return w, nil
}

// clock parses HH:MM into minutes after midnight; 24:00 only as an end.
func clock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	switch {
	case !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || mm < 0 || mm > 59 || hh < 0:
		return 0, fmt.Errorf("bad time %q", s)
	case hh == 24 && mm == 0 && end:
		return 24 * 60, nil
	case hh > 23:
		return 0, fmt.Errorf("bad time %q", s)
	}
	return hh*60 + mm, nil
}

// contains reports whether local wall-clock time t is within w.
func (w window) contains(t time.Time) bool {
	mins := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	on := func(d time.Weekday) bool { return w.days&(1<<d) != 0 }
	if w.start < w.end {
		return on(day) && mins >= w.start && mins < w.end
	}
	return (on(day) && mins >= w.start) || (on((day+6)%7) && mins < w.end)
}

// Location returns the windows' time zone.
func (w *Windows) Location() *time.Location { return w.loc }

// Allows reports whether a deployment may start at t, and if not, why
// (one reason per blocker: a deny date, outside the windows).
func (w *Windows) Allows(t time.Time) (bool, []string) {
	lt := t.In(w.loc)
	var reasons []string
	if date := lt.Format(time.DateOnly); w.deny[date] {
		reasons = append(reasons, fmt.Sprintf("%s is a deny date (%s)", date, w.loc))
	}
	if !w.inWindow(lt) {
		reasons = append(reasons, fmt.Sprintf("outside the deploy windows %s (%s; it is %s)",
			strings.Join(w.specs, ", "), w.loc, lt.Format("Mon 2006-01-02 15:04 MST")))
	}
	return len(reasons) == 0, reasons
}

func (w *Windows) inWindow(lt time.Time) bool {
	if len(w.allow) == 0 {
		return true
	}
	for _, win := range w.allow {
		if win.contains(lt) {
			return true
		}
	}
	return false
}

// Next returns the first time after t when a deployment may start, and
// false when there is none within a year.
func (w *Windows) Next(t time.Time) (time.Time, bool) {
	lt := t.In(w.loc)
	y, m, d := lt.Date()
	var best time.Time
	for off := 0; off < searchDays && best.IsZero(); off++ {
		// Candidates: the day's local midnight (a deny date ending inside
		// an overnight window) and the starts of its windows. time.Date
		// moves a time that a spring-forward change skips past the gap.
		cands := []time.Time{time.Date(y, m, d+off, 0, 0, 0, 0, w.loc)}
		for _, win := range w.allow {
			cands = append(cands, time.Date(y, m, d+off, win.start/60, win.start%60, 0, 0, w.loc))
		}
		for _, c := range cands {
			if !c.After(t) || (!best.IsZero() && !c.Before(best)) {
				continue
			}
			if ok, _ := w.Allows(c); ok {
				best = c
			}
		}
	}
	return best, !best.IsZero()
}
