// Package alarm holds what canaryd knows of alarms and deploy blockers
// without any I/O: label matchers in Alertmanager's syntax and the alarm
// rules of configs and deploy policies (templated with a run's service and
// stage), Alertmanager's webhook payload (version 4), deploy windows in a
// time zone, and the YAML forms of a config's `alarms:` block and of a
// deploy policy. The server records and applies alarms; this package
// decides what matches.
package alarm

import (
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"unicode/utf8"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// Bounds of alarm rules.
const (
	MaxRules       = 32
	MaxMatchers    = 32
	MaxMatcherLen  = 1024
	MaxRuleNameLen = 128
)

// MatchType is the operator of a label matcher.
type MatchType string

// The operators of Alertmanager's matchers.
const (
	MatchEqual     MatchType = "="
	MatchNotEqual  MatchType = "!="
	MatchRegexp    MatchType = "=~"
	MatchNotRegexp MatchType = "!~"
)

// Matcher is one label matcher: a label name, an operator and a value. A
// label an alarm does not have matches as the empty string, as in
// Alertmanager.
type Matcher struct {
	Name  string
	Type  MatchType
	Value string
	re    *regexp.Regexp
}

// matcherRE is Alertmanager's (pkg/labels/parse.go): '=~' before '=' so
// that the '~' is not taken for the value.
var matcherRE = regexp.MustCompile(`^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*((?s).*?)\s*$`)

// ParseMatcher parses one matcher as Alertmanager's classic parser does
// (pkg/labels.ParseMatcher): `name op value`, the value optionally in
// double quotes with \" \\ and \n escapes; regular expressions are
// anchored.
func ParseMatcher(s string) (*Matcher, error) {
	ms := matcherRE.FindStringSubmatch(s)
	if ms == nil {
		return nil, fmt.Errorf("bad matcher %q: want name=\"value\" (or !=, =~, !~)", s)
	}
	raw := ms[3]
	if !utf8.ValidString(raw) {
		return nil, fmt.Errorf("matcher %q: value is not valid UTF-8", s)
	}
	quoted := false
	if after, ok := strings.CutPrefix(raw, `"`); ok {
		raw, quoted = after, true
	}
	var v strings.Builder
	escaped := false
	for i, r := range raw {
		if escaped {
			escaped = false
			switch r {
			case 'n':
				v.WriteByte('\n')
			case '"', '\\':
				v.WriteRune(r)
			default: // a spurious escape: the '\' is literal
				v.WriteByte('\\')
				v.WriteRune(r)
			}
			continue
		}
		switch r {
		case '\\':
			if i < len(raw)-1 {
				escaped = true
				continue
			}
			v.WriteByte('\\')
		case '"':
			if !quoted || i < len(raw)-1 {
				return nil, fmt.Errorf("matcher %q: unescaped double quote in the value", s)
			}
			quoted = false
		default:
			v.WriteRune(r)
		}
	}
	if quoted {
		return nil, fmt.Errorf("matcher %q: unterminated quoted value", s)
	}
	m := &Matcher{Name: ms[1], Type: MatchType(ms[2]), Value: v.String()}
	if m.Type == MatchRegexp || m.Type == MatchNotRegexp {
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return nil, fmt.Errorf("matcher %q: bad regular expression: %w", s, err)
		}
		m.re = re
	}
	return m, nil
}

// Matches reports whether the matcher matches a label's value ("" when
// the label is absent).
func (m *Matcher) Matches(v string) bool {
	switch m.Type {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	case MatchRegexp:
		return m.re.MatchString(v)
	case MatchNotRegexp:
		return !m.re.MatchString(v)
	}
	return false
}

// String returns the matcher in Alertmanager's syntax, the value quoted
// with the escapes ParseMatcher reads (\\, \", \n), as Alertmanager's
// openMetricsEscape writes it.
func (m *Matcher) String() string {
	esc := strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	return m.Name + string(m.Type) + `"` + esc.Replace(m.Value) + `"`
}

// Rule is a compiled alarm rule: an alarm matches when every matcher
// matches its labels.
type Rule struct {
	Name     string
	Matchers []*Matcher
}

// Matches reports whether an alarm with these labels matches the rule.
func (r *Rule) Matches(labels map[string]string) bool {
	for _, m := range r.Matchers {
		if !m.Matches(labels[m.Name]) {
			return false
		}
	}
	return true
}

// String names the rule: its name, else its matchers.
func (r *Rule) String() string {
	if r.Name != "" {
		return r.Name
	}
	parts := make([]string, len(r.Matchers))
	for i, m := range r.Matchers {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Target is what a rule's templates may name: {{.Service}}, {{.Stage}}.
type Target struct {
	Service string
	Stage   string
}

// escaped returns t with its values escaped for a matcher value (quotes
// and backslashes) and, for a regular expression, quoted as literal text:
// {{.Service}} always stands for the service's name itself.
func (t Target) escaped(regex bool) Target {
	if regex {
		t = Target{Service: regexp.QuoteMeta(t.Service), Stage: regexp.QuoteMeta(t.Stage)}
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return Target{Service: r.Replace(t.Service), Stage: r.Replace(t.Stage)}
}

// Compile templates and parses rules for a target. The rules were checked
// by Check when they were stored; an error here is one of a stored rule.
func Compile(rules []*canaryv1.AlarmRule, t Target) ([]*Rule, error) {
	out := make([]*Rule, 0, len(rules))
	for i, pr := range rules {
		r := &Rule{Name: pr.GetName()}
		for j, s := range pr.GetMatchers() {
			m, err := compileMatcher(s, t)
			if err != nil {
				return nil, fmt.Errorf("alarms[%d].matchers[%d]: %w", i, j, err)
			}
			r.Matchers = append(r.Matchers, m)
		}
		out = append(out, r)
	}
	return out, nil
}

func compileMatcher(s string, t Target) (*Matcher, error) {
	if strings.Contains(s, "{{") {
		regex := false
		if ms := matcherRE.FindStringSubmatch(s); ms != nil {
			regex = ms[2] == string(MatchRegexp) || ms[2] == string(MatchNotRegexp)
		}
		tmpl, err := template.New("matcher").Option("missingkey=error").Parse(s)
		if err != nil {
			return nil, fmt.Errorf("bad template: %w", err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, t.escaped(regex)); err != nil {
			return nil, fmt.Errorf("bad template (it may use {{.Service}} and {{.Stage}}): %w", err)
		}
		s = b.String()
	}
	return ParseMatcher(s)
}

// Check validates rules as stored in a config or a deploy policy, each
// problem naming its field under path ("alarms[1].matchers[0]").
func Check(path string, rules []*canaryv1.AlarmRule) analysis.FieldErrors {
	var errs analysis.FieldErrors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &analysis.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if len(rules) > MaxRules {
		bad(path, "has %d rules, more than %d", len(rules), MaxRules)
		return errs
	}
	// A probe target with characters that need escaping: templates must
	// still give valid matchers.
	probe := Target{Service: `svc"\x.`, Stage: `stage"\x.`}
	for i, r := range rules {
		rp := fmt.Sprintf("%s[%d]", path, i)
		if len(r.GetName()) > MaxRuleNameLen || !utf8.ValidString(r.GetName()) {
			bad(rp+".name", "must be valid UTF-8 of at most %d bytes", MaxRuleNameLen)
		}
		switch n := len(r.GetMatchers()); {
		case n == 0:
			bad(rp+".matchers", "is required: at least one label matcher, e.g. severity=\"page\"")
		case n > MaxMatchers:
			bad(rp+".matchers", "has %d matchers, more than %d", n, MaxMatchers)
		}
		for j, s := range r.GetMatchers() {
			mp := fmt.Sprintf("%s.matchers[%d]", rp, j)
			if len(s) > MaxMatcherLen {
				bad(mp, "is %d bytes, more than %d", len(s), MaxMatcherLen)
				continue
			}
			if _, err := compileMatcher(s, probe); err != nil {
				bad(mp, "%v", err)
			}
		}
	}
	return errs
}
