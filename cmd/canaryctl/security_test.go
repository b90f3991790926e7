package main

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/canaryd/canaryd/internal/testcerts"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// seen records the bearer token and the client certificate's CN of the
// calls a server received.
type seen struct {
	mu     sync.Mutex
	tokens []string
	cns    []string
}

func (s *seen) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	s.mu.Lock()
	md, _ := metadata.FromIncomingContext(ctx)
	s.tokens = append(s.tokens, strings.Join(md.Get("authorization"), ","))
	cn := ""
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			cn = ti.State.PeerCertificates[0].Subject.CommonName
		}
	}
	s.cns = append(s.cns, cn)
	s.mu.Unlock()
	return h(ctx, req)
}

func (s *seen) last() (tok, cn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tokens) == 0 {
		return "", ""
	}
	return s.tokens[len(s.tokens)-1], s.cns[len(s.cns)-1]
}

// TestTLSFlags: canaryctl connects with TLS verified against --tls-ca,
// presents --tls-cert/--tls-key, and sends --token as a bearer token;
// each also from the environment (CANARY_TLS_CA, CANARY_TLS_CERT,
// CANARY_TLS_KEY, CANARY_TOKEN), the flags overriding it. Not parallel:
// it sets the environment.
func TestTLSFlags(t *testing.T) {
	ca := testcerts.NewCA(t, "ctl test CA")
	srvPair, cli := ca.Server(t), ca.Client(t, "ctl-client")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var s seen
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{srvPair.TLS}, ClientCAs: ca.Pool,
			ClientAuth: tls.VerifyClientCertIfGiven})),
		grpc.UnaryInterceptor(s.intercept))
	canaryv1.RegisterCanaryServiceServer(gs, &fakeService{run: testRun()})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	addr := lis.Addr().String()

	// From the environment.
	t.Setenv("CANARY_TLS_CA", ca.CertFile)
	t.Setenv("CANARY_TLS_CERT", cli.CertFile)
	t.Setenv("CANARY_TLS_KEY", cli.KeyFile)
	t.Setenv("CANARY_TOKEN", "env-token")
	if code, _, errOut := ctl(t, "", "run", "get", "run-1", "--addr", addr); code != 0 {
		t.Fatalf("run get with the environment: exit %d: %s", code, errOut)
	}
	if tok, cn := s.last(); tok != "Bearer env-token" || cn != "ctl-client" {
		t.Errorf("server saw token %q, certificate %q; want Bearer env-token, ctl-client", tok, cn)
	}
	// Flags override it.
	if code, _, errOut := ctl(t, "", "run", "get", "run-1", "--addr", addr, "--token", "flag-token"); code != 0 {
		t.Fatalf("run get --token: exit %d: %s", code, errOut)
	}
	if tok, _ := s.last(); tok != "Bearer flag-token" {
		t.Errorf("server saw token %q, want Bearer flag-token", tok)
	}
	// TLS without a client certificate, no token.
	t.Setenv("CANARY_TLS_CERT", "")
	t.Setenv("CANARY_TLS_KEY", "")
	t.Setenv("CANARY_TOKEN", "")
	if code, _, errOut := ctl(t, "", "run", "get", "run-1", "--addr", addr); code != 0 {
		t.Fatalf("run get over TLS only: exit %d: %s", code, errOut)
	}
	if tok, cn := s.last(); tok != "" || cn != "" {
		t.Errorf("server saw token %q, certificate %q; want neither", tok, cn)
	}
	// Plaintext to a TLS server fails; so does TLS without the CA (the
	// system roots do not know it).
	t.Setenv("CANARY_TLS_CA", "")
	for _, args := range [][]string{{}, {"--tls"}} {
		a := append([]string{"run", "get", "run-1", "--addr", addr, "--timeout", "3s"}, args...)
		if code, _, _ := ctl(t, "", a...); code != 1 {
			t.Errorf("canaryctl %v against a TLS server with an unknown CA: exit %d, want 1", args, code)
		}
	}
	// Bad usage.
	for _, c := range []struct {
		env  string
		args []string
		want string
	}{
		{"", []string{"--tls-cert", cli.CertFile}, "--tls-cert and --tls-key go together"},
		{"", []string{"--tls-ca", cli.KeyFile}, "no PEM certificate"},
		{"maybe", nil, "CANARY_TLS"},
	} {
		t.Setenv("CANARY_TLS", c.env)
		code, _, errOut := ctl(t, "", append([]string{"run", "get", "run-1", "--addr", addr}, c.args...)...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("canaryctl %v (CANARY_TLS=%q): exit %d, %q; want 2 and %q", c.args, c.env, code, errOut, c.want)
		}
	}
}

// TestPaginateEmptyPages: a listing goes on across an empty page that
// moves the token (a scoped caller's page where its services are rare),
// and stops at one that does not.
func TestPaginateEmptyPages(t *testing.T) {
	t.Parallel()
	pages := map[string]struct {
		items []string
		next  string
	}{"": {[]string{"a"}, "1"}, "1": {nil, "2"}, "2": {[]string{"b"}, ""}, "s": {nil, "s"}}
	list := func(_ context.Context, _ int32, tok string) ([]string, string, error) {
		p := pages[tok]
		return p.items, p.next, nil
	}
	got, next, err := paginate(context.Background(), &pageFlags{limit: 50}, list)
	if err != nil || strings.Join(got, ",") != "a,b" || next != "" {
		t.Errorf("across an empty page: %v %q %v, want a,b", got, next, err)
	}
	got, next, err = paginate(context.Background(), &pageFlags{limit: 50, token: "s"}, list)
	if err != nil || len(got) != 0 || next != "s" {
		t.Errorf("stuck token: %v %q %v, want nothing and the token back", got, next, err)
	}
}
