package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	"github.com/canaryd/canaryd/analysis"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
	"github.com/canaryd/canaryd/server/store"
)

// PutConfig stores a new version of a config; see the API. Field
// violations name the request field the config came in ("config" or
// "yaml") followed by the config path, e.g. "config.metrics[1].tolerance"
// or "yaml.metrics[1].tolerance". A config put as YAML keeps the text as
// sent (ConfigVersion.yaml, returned by GetConfig and ListConfigs); a put
// whose config is identical to the latest version's stores nothing, so
// that version keeps the text of the put that created it (none if it was
// put as a message).
func (s *Service) PutConfig(ctx context.Context, req *canaryv1.PutConfigRequest) (*canaryv1.PutConfigResponse, error) {
	cfg, pc, err := putConfigSource(req)
	if err != nil {
		return nil, err
	}
	v, created, err := s.store.PutConfig(ctx, pc, req.GetYaml())
	if err != nil {
		return nil, fmt.Errorf("put config %s: %w", cfg.Name, err)
	}
	if created {
		s.log.Info("config stored", "config", v.GetName(), "version", v.GetVersion())
	}
	return &canaryv1.PutConfigResponse{Config: v, Created: created}, nil
}

// putConfigSource parses and validates the config of a PutConfig request,
// and returns it with its message as stored (defaults applied, source and
// queries kept).
func putConfigSource(req *canaryv1.PutConfigRequest) (*analysis.Config, *canaryv1.CanaryConfig, error) {
	name := req.GetName()
	if name != "" && checkText(name) != "" {
		return nil, nil, badField("name", "%s", checkText(name))
	}
	var (
		cfg   *analysis.Config
		out   *canaryv1.CanaryConfig
		field string
		vs    []*errdetails.BadRequest_FieldViolation
	)
	switch src := req.GetSource().(type) {
	case *canaryv1.PutConfigRequest_Config:
		field = "config"
		pc := src.Config
		if pc.GetName() == "" && name != "" {
			pc = proto.Clone(pc).(*canaryv1.CanaryConfig)
			pc.Name = name
		}
		if cfg, out, vs = protoConfig(field, pc); len(vs) > 0 {
			return nil, nil, invalid(vs...)
		}
	case *canaryv1.PutConfigRequest_Yaml:
		field = "yaml"
		if len(src.Yaml) > maxYAMLLen {
			return nil, nil, badField(field, "is %d bytes, more than %d", len(src.Yaml), maxYAMLLen)
		}
		if cfg, out, vs = parseYAMLConfig(field, withName(src.Yaml, name)); len(vs) > 0 {
			return nil, nil, invalid(vs...)
		}
	default:
		return nil, nil, badField("source", "is required: config or yaml")
	}
	if name != "" && cfg.Name != name {
		return nil, nil, invalid(
			violation("name", "%q differs from the config's own name %q", name, cfg.Name),
			violation(field+".name", "%q differs from the request's name %q", cfg.Name, name))
	}
	return cfg, out, nil
}

// withName returns YAML text with a top-level name: key set to name when
// the text is a single block mapping without one: PutConfigRequest.name
// names a config whose file does not. The key is appended as a last line,
// so line numbers in errors stay those of the text as sent. Other texts are
// returned as they are, for the parser to judge.
func withName(text, name string) []byte {
	b := []byte(text)
	if name == "" || strings.Contains(text, "\n---") || strings.Contains(text, "\n...") {
		return b
	}
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 {
		return b
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode || m.Style&yaml.FlowStyle != 0 {
		return b
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "name" {
			return b
		}
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return append(append(append(b, "name: "...), strconv.Quote(name)...), '\n')
}

// yamlViolations turns a ParseConfig error into violations under field:
// field errors name their path, syntax errors name field itself.
func yamlViolations(field string, err error) []*errdetails.BadRequest_FieldViolation {
	if vs, ok := fieldViolations(field, err); ok {
		return vs
	}
	return []*errdetails.BadRequest_FieldViolation{violation(field, "%v", err)}
}

// GetConfig returns a config version; see the API.
func (s *Service) GetConfig(ctx context.Context, req *canaryv1.GetConfigRequest) (*canaryv1.GetConfigResponse, error) {
	if msg := checkText(req.GetName()); msg != "" {
		return nil, badField("name", "%s", msg)
	}
	v, err := s.store.GetConfig(ctx, req.GetName(), req.GetVersion())
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("config %s not found", configRefName(req.GetName(), req.GetVersion()))
	}
	if err != nil {
		return nil, fmt.Errorf("get config %s: %w", req.GetName(), err)
	}
	return &canaryv1.GetConfigResponse{Config: v}, nil
}

// ListConfigs lists configs; see the API.
func (s *Service) ListConfigs(ctx context.Context, req *canaryv1.ListConfigsRequest) (*canaryv1.ListConfigsResponse, error) {
	vs := checkPage(req.GetPageSize(), req.GetPageToken())
	vs = append(vs, checkFilter("name", req.GetName())...)
	if len(vs) > 0 {
		return nil, invalid(vs...)
	}
	cs, next, err := boundedPage(s.maxListBytes, int(req.GetPageSize()), func(size int) ([]*canaryv1.ConfigVersion, string, error) {
		return s.store.ListConfigs(ctx, req.GetName(), store.Page{Size: size, Token: req.GetPageToken()})
	}, nil)
	if err != nil {
		return nil, err
	}
	return &canaryv1.ListConfigsResponse{Configs: cs, NextPageToken: next}, nil
}
