package auth

import (
	"context"
	"crypto/x509"
	"slices"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Via says how a caller was identified.
type Via string

// The ways a caller is identified.
const (
	ViaToken       Via = "token"       // a bearer token of the tokens file
	ViaCertificate Via = "certificate" // a verified client certificate (mTLS)
	ViaNone        Via = "anonymous"   // nothing: the service is open
)

// Caller is the identity of a call and what it may do.
type Caller struct {
	// Name is the token entry's name, the client certificate's name (see
	// CertName), or "anonymous".
	Name string
	// Via says how the caller was identified.
	Via Via
	// grant is what the caller may do; nil means everything (an open
	// service, or mTLS without a tokens file).
	grant *Grant
}

// anonymous is the caller of an open service.
func anonymous() *Caller { return &Caller{Name: "anonymous", Via: ViaNone} }

// Has reports whether the caller has role r.
func (c *Caller) Has(r Role) bool { return c.grant == nil || c.grant.Has(r) }

// AllowsService reports whether the caller may act on service.
func (c *Caller) AllowsService(service string) bool {
	return c.grant == nil || c.grant.AllowsService(service)
}

// AllServices reports whether the caller may act on every service.
func (c *Caller) AllServices() bool {
	return c.grant == nil || slices.Contains(c.grant.services, "*")
}

// OnlyService returns the one service the caller may act on, when its
// scope is a single pattern without glob characters.
func (c *Caller) OnlyService() (string, bool) {
	if c.grant == nil || len(c.grant.services) != 1 {
		return "", false
	}
	p := c.grant.services[0]
	if strings.ContainsAny(p, `*?[\`) {
		return "", false
	}
	return p, true
}

// describe names the caller in errors: "token checkout-pipeline",
// "client certificate argo-rollouts.argo.svc".
func (c *Caller) describe() string {
	switch c.Via {
	case ViaToken:
		return "token " + c.Name
	case ViaCertificate:
		return "client certificate " + c.Name
	}
	return c.Name
}

// callerKey is the context key of the Caller.
type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller Guard identified, or nil outside a guarded
// call (then nothing restricts it).
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// CertName returns the name of a client certificate: its subject's common
// name, else its first DNS SAN, else its first URI SAN; "" if it has none.
func CertName(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	}
	return ""
}

// peerCertName returns the name of the verified client certificate of the
// call's connection, if it has one.
func peerCertName(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	name := CertName(ti.State.VerifiedChains[0][0])
	return name, name != ""
}

// String names the caller as errors do: "token checkout-pipeline".
func (c *Caller) String() string { return c.describe() }
