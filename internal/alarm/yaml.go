package alarm

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// SplitConfig reads the `alarms:` block of a canary config in YAML and
// returns its rules with the YAML without it, which analysis.ParseConfig
// accepts (the line numbers of its errors are those of the YAML without
// the block). A config without the block gives nil rules and the YAML
// unchanged. Errors are analysis.FieldErrors naming the field
// ("alarms[1].matchers[0]"); the rules are not checked (see Check).
func SplitConfig(src []byte) ([]*canaryv1.AlarmRule, []byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, nil, fmt.Errorf("parse config: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, src, nil // analysis.ParseConfig says what is wrong
	}
	root := doc.Content[0]
	var p yparser
	var rules []*canaryv1.AlarmRule
	found := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "alarms" {
			continue
		}
		if found {
			p.add("alarms", "is given twice (line %d)", root.Content[i].Line)
		}
		found = true
		rules = p.rules("alarms", root.Content[i+1])
		root.Content = append(root.Content[:i], root.Content[i+2:]...)
		i -= 2
	}
	if len(p.errs) > 0 {
		return nil, nil, p.errs
	}
	if !found {
		return nil, src, nil
	}
	rest, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, nil, errors.Join(errors.New("parse config"), err)
	}
	return rules, rest, nil
}

// ParsePolicy parses a deploy policy in YAML (see canaryv1.DeployPolicy);
// unknown fields are errors. It does not check the values (see
// CheckPolicy). Errors are analysis.FieldErrors naming the field.
func ParsePolicy(src []byte) (*canaryv1.DeployPolicy, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("parse deploy policy: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("parse deploy policy: empty document")
	}
	var p yparser
	pol := &canaryv1.DeployPolicy{}
	p.fields(doc.Content[0], "", map[string]func(string, *yaml.Node){
		"service": func(fp string, v *yaml.Node) { pol.Service = p.str(fp, v) },
		"alarms":  func(fp string, v *yaml.Node) { pol.Alarms = p.rules(fp, v) },
		"deploy_windows": func(fp string, v *yaml.Node) {
			dw := &canaryv1.DeployWindows{}
			pol.DeployWindows = dw
			p.fields(v, fp, map[string]func(string, *yaml.Node){
				"time_zone":  func(fp string, v *yaml.Node) { dw.TimeZone = p.str(fp, v) },
				"allow":      func(fp string, v *yaml.Node) { dw.Allow = p.strs(fp, v) },
				"deny_dates": func(fp string, v *yaml.Node) { dw.DenyDates = p.strs(fp, v) },
			})
		},
	})
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return pol, nil
}

// CheckPolicy validates a deploy policy, each problem naming its field.
func CheckPolicy(pol *canaryv1.DeployPolicy) analysis.FieldErrors {
	var errs analysis.FieldErrors
	if pol.GetService() == "" {
		errs = append(errs, &analysis.FieldError{Field: "service", Msg: `is required: the service, or "*" for the default policy`})
	}
	_, werrs := CompileWindows("deploy_windows", pol.GetDeployWindows())
	errs = append(errs, werrs...)
	return append(errs, Check("alarms", pol.GetAlarms())...)
}

// yparser walks a YAML tree, collecting errors that name their path.
type yparser struct{ errs analysis.FieldErrors }

func (p *yparser) add(field, format string, args ...any) {
	p.errs = append(p.errs, &analysis.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func (p *yparser) fields(n *yaml.Node, path string, known map[string]func(string, *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.add(orRoot(path), "must be a mapping (line %d)", n.Line)
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		fp := join(path, k)
		f, ok := known[k]
		switch {
		case !ok:
			p.add(fp, "unknown field (line %d)", n.Content[i].Line)
		case seen[k]:
			p.add(fp, "is given twice (line %d)", n.Content[i].Line)
		default:
			seen[k] = true
			f(fp, v)
		}
	}
}

func orRoot(path string) string {
	if path == "" {
		return "policy"
	}
	return path
}

func (p *yparser) str(path string, n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.add(path, "must be a string (line %d)", n.Line)
		return ""
	}
	return n.Value
}

func (p *yparser) strs(path string, n *yaml.Node) []string {
	if n.Kind != yaml.SequenceNode {
		p.add(path, "must be a list of strings (line %d)", n.Line)
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		out = append(out, p.str(fmt.Sprintf("%s[%d]", path, i), c))
	}
	return out
}

func (p *yparser) rules(path string, n *yaml.Node) []*canaryv1.AlarmRule {
	if n.Kind != yaml.SequenceNode {
		p.add(path, "must be a list of rules, e.g. - matchers: ['severity=\"page\"', 'service=\"{{.Service}}\"'] (line %d)", n.Line)
		return nil
	}
	out := make([]*canaryv1.AlarmRule, 0, len(n.Content))
	for i, c := range n.Content {
		r := &canaryv1.AlarmRule{}
		p.fields(c, fmt.Sprintf("%s[%d]", path, i), map[string]func(string, *yaml.Node){
			"name":     func(fp string, v *yaml.Node) { r.Name = p.str(fp, v) },
			"matchers": func(fp string, v *yaml.Node) { r.Matchers = p.strs(fp, v) },
		})
		out = append(out, r)
	}
	return out
}
