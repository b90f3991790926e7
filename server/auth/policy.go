// Package auth authenticates and authorizes the callers of canaryd's API
// and writes the audit log of its changes of state.
//
// A caller is identified by a bearer token (gRPC metadata "authorization:
// Bearer TOKEN") or, with mutual TLS, by its client certificate. The
// tokens file (Policy) grants each identity roles and the services it may
// act on:
//
//	tokens:
//	  - name: checkout-pipeline
//	    sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//	    roles: [ingest, read]
//	    services: ["checkout-*"]
//	  - name: deployer-mtls
//	    names: ["argo-rollouts.argo.svc"]
//	    roles: [read, operate]
//	    services: ["*"]
//
// Guard enforces it as gRPC interceptors: every CanaryService method needs
// one role (see RoleOf) and, when it concerns a run or a service, that the
// service matches one of the caller's globs.
package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Role is a set of permissions. Roles are independent of each other except
// RoleAdmin, which implies every other: a pipeline that ingests and reads
// its verdicts needs [ingest, read].
type Role uint8

// The roles of the tokens file.
const (
	// RoleRead: GetRun, ListRuns, Judge, WatchVerdict, ListVerdicts,
	// GetConfig, ListConfigs.
	RoleRead Role = 1 << iota
	// RoleIngest: CreateRun, Ingest, IngestStream.
	RoleIngest
	// RoleOperate: CompleteRun, AbortRun.
	RoleOperate
	// RoleAdmin: PutConfig, and everything the other roles allow.
	RoleAdmin
)

// roleNames are the roles as the tokens file spells them, in order.
var roleNames = [...]struct {
	r    Role
	name string
}{{RoleIngest, "ingest"}, {RoleRead, "read"}, {RoleOperate, "operate"}, {RoleAdmin, "admin"}}

// String returns the role's names, comma-separated.
func (r Role) String() string {
	var names []string
	for _, rn := range roleNames {
		if r&rn.r != 0 {
			names = append(names, rn.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// parseRole returns the role named s.
func parseRole(s string) (Role, bool) {
	for _, rn := range roleNames {
		if rn.name == s {
			return rn.r, true
		}
	}
	return 0, false
}

// Grant is one entry of the tokens file: an identity (a token's hash, or
// client certificate names) with its roles and services.
type Grant struct {
	// Name names the entry in logs and errors.
	Name     string
	hash     []byte   // sha256 of the token; nil for an mTLS entry
	names    []string // mTLS identities; nil for a token entry
	roles    Role
	services []string // globs
}

// Has reports whether the grant includes role r (RoleAdmin includes all).
func (g *Grant) Has(r Role) bool { return g.roles&(r|RoleAdmin) != 0 }

// AllowsService reports whether service matches one of the grant's globs.
// "*" matches every service; other patterns follow path.Match, where "*"
// does not match "/".
func (g *Grant) AllowsService(service string) bool {
	for _, p := range g.services {
		if p == "*" {
			return true
		}
		if ok, _ := path.Match(p, service); ok {
			return true
		}
	}
	return false
}

// Policy is a parsed tokens file. It is immutable and safe for concurrent
// use.
type Policy struct {
	grants []*Grant          // in file order
	tokens []*Grant          // the entries with a sha256
	names  map[string]*Grant // by mTLS identity
}

// Grants returns the entries of the file, in order.
func (p *Policy) Grants() []*Grant { return slices.Clone(p.grants) }

// HasNames reports whether some entry grants mTLS identities.
func (p *Policy) HasNames() bool { return len(p.names) > 0 }

// token returns the entry of a bearer token, or nil. It hashes the token
// and compares the hash with every entry's in constant time, so that
// neither the comparison nor the position of the match tells anything.
func (p *Policy) token(tok string) *Grant {
	sum := sha256.Sum256([]byte(tok))
	var found *Grant
	for _, g := range p.tokens {
		if subtle.ConstantTimeCompare(sum[:], g.hash) == 1 && found == nil {
			found = g
		}
	}
	return found
}

// name returns the entry of an mTLS identity, or nil.
func (p *Policy) name(n string) *Grant { return p.names[n] }

// Load reads and parses a tokens file (see Parse).
func Load(file string) (*Policy, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("auth tokens: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("auth tokens %s: %w", file, err)
	}
	return p, nil
}

// entry is one element of "tokens" in the file.
type entry struct {
	Name     string   `yaml:"name"`
	SHA256   string   `yaml:"sha256"`
	Names    []string `yaml:"names"`
	Roles    []string `yaml:"roles"`
	Services []string `yaml:"services"`
}

// entryFields are the keys an entry may have.
var entryFields = []string{"name", "sha256", "names", "roles", "services"}

// Parse parses a tokens file strictly: unknown fields, unknown roles, bad
// globs, a sha256 that is not 64 hex digits, an entry with both or neither
// of sha256 and names, and names or hashes used twice are errors that name
// the entry.
func Parse(data []byte) (*Policy, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	if len(root.Content) == 0 {
		return nil, errors.New("empty file: want a list under tokens")
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping with a tokens list", doc.Line)
	}
	var tokens *yaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if k := doc.Content[i]; k.Value != "tokens" {
			return nil, fmt.Errorf("line %d: unknown field %q (want tokens)", k.Line, k.Value)
		}
		if tokens != nil {
			return nil, fmt.Errorf("line %d: tokens is given twice", doc.Content[i].Line)
		}
		tokens = doc.Content[i+1]
	}
	if tokens != nil && tokens.Kind != yaml.SequenceNode && tokens.Tag != "!!null" {
		return nil, fmt.Errorf("line %d: tokens must be a list", tokens.Line)
	}
	if tokens == nil || len(tokens.Content) == 0 {
		return nil, errors.New("tokens: no entries (without a tokens file the service is open)")
	}
	p := &Policy{names: map[string]*Grant{}}
	entryNames := map[string]bool{}
	for i, n := range tokens.Content {
		g, err := parseEntry(n)
		where := fmt.Sprintf("tokens[%d]", i)
		if g != nil && g.Name != "" {
			where += fmt.Sprintf(" (%s)", g.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if entryNames[g.Name] {
			return nil, fmt.Errorf("%s: name %q is used by an earlier entry", where, g.Name)
		}
		entryNames[g.Name] = true
		if g.hash != nil {
			for _, o := range p.tokens {
				if bytes.Equal(o.hash, g.hash) {
					return nil, fmt.Errorf("%s: sha256 is the same as entry %s's", where, o.Name)
				}
			}
			p.tokens = append(p.tokens, g)
		}
		for _, name := range g.names {
			if o := p.names[name]; o != nil {
				return nil, fmt.Errorf("%s: mTLS name %q is also granted by entry %s", where, name, o.Name)
			}
			p.names[name] = g
		}
		p.grants = append(p.grants, g)
	}
	return p, nil
}

// parseEntry parses and checks one entry. It returns the grant with at
// least its name set when it could read one, even with an error.
func parseEntry(n *yaml.Node) (*Grant, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping with name, sha256 or names, roles, services", n.Line)
	}
	var e entry
	// Read the name first, so that the other errors can name the entry.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			e.Name = n.Content[i+1].Value
		}
	}
	g := &Grant{Name: e.Name}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !slices.Contains(entryFields, k) {
			return g, fmt.Errorf("line %d: unknown field %q (want %s)", n.Content[i].Line, k, strings.Join(entryFields, ", "))
		}
	}
	if err := n.Decode(&e); err != nil {
		return g, err
	}
	switch {
	case e.Name == "":
		return g, errors.New("name is required")
	case e.SHA256 != "" && e.Names != nil:
		return g, errors.New("has both sha256 and names: an entry is a token or mTLS identities, not both")
	case e.SHA256 == "" && e.Names == nil:
		return g, errors.New("needs sha256 (a token's hash) or names (mTLS identities)")
	}
	if e.SHA256 != "" {
		h, err := hex.DecodeString(e.SHA256)
		if err != nil || len(h) != sha256.Size {
			// Not echoed: it might be the token itself, put there by mistake.
			return g, fmt.Errorf("sha256 must be %d hex digits, the SHA-256 of the token (got %d characters)", 2*sha256.Size, len(e.SHA256))
		}
		g.hash = h
	}
	if e.Names != nil {
		if len(e.Names) == 0 {
			return g, errors.New("names is empty")
		}
		for _, name := range e.Names {
			if name == "" {
				return g, errors.New("names: an empty name")
			}
		}
		g.names = e.Names
	}
	if len(e.Roles) == 0 {
		return g, errors.New("roles is required: some of ingest, read, operate, admin")
	}
	for _, s := range e.Roles {
		r, ok := parseRole(s)
		if !ok {
			return g, fmt.Errorf("unknown role %q (want ingest, read, operate or admin)", s)
		}
		g.roles |= r
	}
	if len(e.Services) == 0 {
		return g, errors.New(`services is required: globs of the services it may act on, ["*"] for all`)
	}
	for _, p := range e.Services {
		if p == "" {
			return g, errors.New("services: an empty pattern")
		}
		if _, err := path.Match(p, ""); err != nil {
			return g, fmt.Errorf("services: bad pattern %q: %w", p, err)
		}
	}
	g.services = e.Services
	return g, nil
}
