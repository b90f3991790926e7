package prometheus

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/canaryd/canaryd/analysis"
	"github.com/canaryd/canaryd/collectors/prometheus/promconfig"
)

// Config is the Prometheus part of a canary config: its source and the
// metrics that have a query.
type Config struct {
	Source *promconfig.Prometheus
	// Metrics are the metrics with a query, in the config's order (their
	// Type as the YAML spells it: analysis.ParseConfig validates it).
	Metrics []Metric
}

// ParseConfig reads the `source:` block and the metrics' `query:` blocks
// of a canary config in YAML, and returns them with the YAML without them,
// which analysis.ParseConfig accepts (until analysis.Config holds them:
// the line numbers of its errors are those of the YAML without them).
// Its errors are analysis.FieldErrors naming the field
// ("source.prometheus.url", "metrics[1].query.count"). A config without
// either gives a nil Config and the YAML unchanged. Whether a config that
// has queries needs a source is the caller's to say (the service's
// promconfig.CheckSource; `canaryctl analyze --prometheus URL` gives one).
func ParseConfig(src []byte) (*Config, []byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, nil, fmt.Errorf("parse config: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, src, nil // analysis.ParseConfig says what is wrong
	}
	var errs analysis.FieldErrors
	report := func(field, format string, args ...any) {
		errs = append(errs, &analysis.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	root := doc.Content[0]
	var source *promconfig.Source
	var metrics []*yaml.Node
	changed := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch k, v := root.Content[i].Value, root.Content[i+1]; k {
		case "source":
			source = promconfig.ParseSource("source", v, report)
			root.Content = append(root.Content[:i], root.Content[i+2:]...)
			i -= 2
			changed = true
		case "metrics":
			if v.Kind == yaml.SequenceNode {
				metrics = v.Content
			}
		}
	}
	cfg := &Config{}
	for i, m := range metrics {
		if m.Kind != yaml.MappingNode {
			continue
		}
		var name, typ string
		for j := 0; j+1 < len(m.Content); j += 2 {
			switch m.Content[j].Value {
			case "name":
				name = m.Content[j+1].Value
			case "type":
				typ = m.Content[j+1].Value
			}
		}
		for j := 0; j+1 < len(m.Content); j += 2 {
			if m.Content[j].Value != "query" {
				continue
			}
			path := fmt.Sprintf("metrics[%d].query", i)
			q := promconfig.ParseQuery(path, m.Content[j+1], report)
			if q != nil {
				q.Check(path, typ, report)
				cfg.Metrics = append(cfg.Metrics, Metric{Name: name, Type: analysis.MetricType(typ), Query: *q})
			}
			m.Content = append(m.Content[:j], m.Content[j+2:]...)
			j -= 2
			changed = true
		}
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	if !changed {
		return nil, src, nil
	}
	if source != nil {
		cfg.Source = source.Prometheus
	}
	rest, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, nil, errors.Join(errors.New("parse config"), err)
	}
	return cfg, rest, nil
}
