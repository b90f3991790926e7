package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/canaryd/canaryd/internal/testcerts"
	"github.com/canaryd/canaryd/internal/testlog"
	canaryv1 "github.com/canaryd/canaryd/proto/canary/v1"
)

// dialTLS returns a client of addr over TLS verified with roots, with a
// client certificate when cert is not nil, and a bearer token when tok is
// set.
func dialTLS(t *testing.T, addr string, roots *x509.CertPool, cert *tls.Certificate, tok string) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	if tok != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(testBearer(tok)))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type testBearer string

func (b testBearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (testBearer) RequireTransportSecurity() bool { return true }

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestMTLS serves with a server certificate, a client CA and a tokens file
// whose names entries grant client certificates: a client without a
// certificate, or with one of another CA, is refused; certificates are
// named by their subject CN, else their first DNS SAN, and get the roles
// and services of their entry; a bearer token still works over mTLS;
// health and HTTPS /healthz need nothing; reflection is off.
func TestMTLS(t *testing.T) {
	t.Parallel()
	ca := testcerts.NewCA(t, "canaryd test CA")
	srv := ca.Server(t)
	deployer := ca.Client(t, "argo-rollouts.argo.svc", "ignored.example") // named by its CN
	ci := ca.Client(t, "", "ci-runner.build.svc")                         // by its DNS SAN
	stranger := ca.Client(t, "stranger")                                  // in no entry
	other := testcerts.NewCA(t, "another CA").Client(t, "argo-rollouts.argo.svc")
	tokens := writeFile(t, "tokens.yaml", `tokens:
  - name: deployer-mtls
    names: ["argo-rollouts.argo.svc"]
    roles: [read, operate]
    services: ["*"]
  - name: ci
    names: ["ci-runner.build.svc"]
    roles: [ingest, read]
    services: ["checkout-*"]
  - name: root
    sha256: `+sha("tok-root")+`
    roles: [admin]
    services: ["*"]
`)
	grpcAddr, httpAddr := startRun(t, Options{
		TLSCert: srv.CertFile, TLSKey: srv.KeyFile, ClientCA: ca.CertFile, AuthTokens: tokens, DisableReflection: true,
	})
	ctx := ctxT(t)
	api := func(conn *grpc.ClientConn) canaryv1.CanaryServiceClient { return canaryv1.NewCanaryServiceClient(conn) }

	// Refused at the handshake: plaintext, no certificate, another CA's.
	plain, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for name, conn := range map[string]*grpc.ClientConn{
		"plaintext":             plain,
		"no client certificate": dialTLS(t, grpcAddr, ca.Pool, nil, "tok-root"),
		"another CA's":          dialTLS(t, grpcAddr, ca.Pool, &other.TLS, ""),
	} {
		_, err := api(conn).ListConfigs(ctx, &canaryv1.ListConfigsRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: %v, want UNAVAILABLE (refused at the handshake)", name, err)
		}
	}

	// Root (a token over mTLS) puts the config.
	rootConn := dialTLS(t, grpcAddr, ca.Pool, &stranger.TLS, "tok-root")
	if _, err := api(rootConn).PutConfig(ctx, &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("shared")}}); err != nil {
		t.Fatalf("root over mTLS: %v", err)
	}
	createReq := func(svc string) *canaryv1.CreateRunRequest {
		return &canaryv1.CreateRunRequest{RequestId: svc, Service: svc, Stage: "s",
			Config: &canaryv1.CreateRunRequest_ConfigRef{ConfigRef: &canaryv1.ConfigRef{Name: "shared"}}}
	}

	// The SAN-only certificate creates a run of its services, not others.
	ciC := api(dialTLS(t, grpcAddr, ca.Pool, &ci.TLS, ""))
	run, err := ciC.CreateRun(ctx, createReq("checkout-api"))
	if err != nil {
		t.Fatalf("ci certificate: %v", err)
	}
	_, err = ciC.CreateRun(ctx, createReq("payments-api"))
	wantDenied(t, err, "client certificate ci-runner.build.svc is not allowed service payments-api")

	// The CN certificate reads and completes, but does not create.
	depC := api(dialTLS(t, grpcAddr, ca.Pool, &deployer.TLS, ""))
	_, err = depC.CreateRun(ctx, createReq("checkout-web"))
	wantDenied(t, err, "client certificate argo-rollouts.argo.svc lacks role ingest")
	if _, err := depC.CompleteRun(ctx, &canaryv1.CompleteRunRequest{RunId: run.GetRun().GetId()}); err != nil {
		t.Errorf("deployer certificate completes: %v", err)
	}

	// A certificate of the CA that no entry names is granted nothing.
	strC := dialTLS(t, grpcAddr, ca.Pool, &stranger.TLS, "")
	_, err = api(strC).ListRuns(ctx, &canaryv1.ListRunsRequest{})
	wantDenied(t, err, "client certificate stranger is not granted anything")

	// Health needs no token; reflection is off.
	if hc, err := healthpb.NewHealthClient(strC).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health without a token: %v %v", hc, err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(strC).ServerReflectionInfo(ctx)
	if err == nil {
		err = rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		if err == nil || errors.Is(err, io.EOF) {
			// io.EOF: the server ended the stream first; Recv has its status.
			_, err = rs.Recv()
		}
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection with --reflection=false: %v, want UNIMPLEMENTED", err)
	}

	// /healthz and /metrics over HTTPS, without a client certificate; not
	// over plain HTTP.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}, Timeout: 10 * time.Second}
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := hc.Get("https://" + httpAddr + path)
		if err != nil {
			t.Fatalf("GET https %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET https %s: %s", path, resp.Status)
		}
	}
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + httpAddr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("GET http /healthz on the TLS port: 200")
		}
	}
}

func wantDenied(t *testing.T, err error, msg string) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Errorf("%v, want PERMISSION_DENIED %q", err, msg)
	}
}

// TestTLSTokens serves TLS without client certificates, with tokens: a
// token over TLS works, no token is UNAUTHENTICATED, health and
// reflection need none, plaintext is refused. With a client CA and no
// tokens file, every certificate of the CA may do everything.
func TestTLSTokens(t *testing.T) {
	t.Parallel()
	ca := testcerts.NewCA(t, "canaryd test CA")
	srv := ca.Server(t)
	t.Run("tokens", func(t *testing.T) {
		t.Parallel()
		tokens := writeFile(t, "tokens.yaml", "tokens:\n  - name: root\n    sha256: "+sha("tok-root")+"\n    roles: [admin]\n    services: [\"*\"]\n")
		grpcAddr, _ := startRun(t, Options{TLSCert: srv.CertFile, TLSKey: srv.KeyFile, AuthTokens: tokens})
		ctx := ctxT(t)
		if _, err := canaryv1.NewCanaryServiceClient(dialTLS(t, grpcAddr, ca.Pool, nil, "tok-root")).ListRuns(ctx, &canaryv1.ListRunsRequest{}); err != nil {
			t.Errorf("token over TLS: %v", err)
		}
		anon := dialTLS(t, grpcAddr, ca.Pool, nil, "")
		if _, err := canaryv1.NewCanaryServiceClient(anon).ListRuns(ctx, &canaryv1.ListRunsRequest{}); status.Code(err) != codes.Unauthenticated ||
			!strings.Contains(err.Error(), "missing bearer token") {
			t.Errorf("no token: %v, want UNAUTHENTICATED, missing bearer token", err)
		}
		if _, err := healthpb.NewHealthClient(anon).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("health without a token: %v", err)
		}
		rs, err := reflectionpb.NewServerReflectionClient(anon).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		if r, err := rs.Recv(); err != nil || len(r.GetListServicesResponse().GetService()) == 0 {
			t.Errorf("reflection without a token: %v %v", r, err)
		}
		rs.CloseSend()
		plain, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		if _, err := healthpb.NewHealthClient(plain).Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
			t.Errorf("plaintext to the TLS port: %v, want UNAVAILABLE", err)
		}
	})
	t.Run("client CA without tokens", func(t *testing.T) {
		t.Parallel()
		grpcAddr, _ := startRun(t, Options{TLSCert: srv.CertFile, TLSKey: srv.KeyFile, ClientCA: ca.CertFile})
		cli := ca.Client(t, "anyone")
		c := canaryv1.NewCanaryServiceClient(dialTLS(t, grpcAddr, ca.Pool, &cli.TLS, ""))
		if _, err := c.PutConfig(ctxT(t), &canaryv1.PutConfigRequest{Source: &canaryv1.PutConfigRequest_Config{Config: testConfig("x")}}); err != nil {
			t.Errorf("a certificate of the CA, no tokens file: %v", err)
		}
	})
}

// TestRunSecurityOptions: bad TLS and tokens options fail at start with
// errors that say what is wrong.
func TestRunSecurityOptions(t *testing.T) {
	t.Parallel()
	ca := testcerts.NewCA(t, "canaryd test CA")
	srv := ca.Server(t)
	bad := writeFile(t, "tokens.yaml", "tokens:\n  - name: ci\n    sha256: abc\n    roles: [read]\n    services: ['*']\n")
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"cert without key", Options{TLSCert: srv.CertFile}, "--tls-cert and --tls-key"},
		{"client CA without cert", Options{ClientCA: ca.CertFile}, "needs a server certificate"},
		{"missing cert", Options{TLSCert: "/nonexistent.pem", TLSKey: srv.KeyFile}, "/nonexistent.pem"},
		{"client CA not PEM", Options{TLSCert: srv.CertFile, TLSKey: srv.KeyFile, ClientCA: srv.KeyFile}, "no PEM certificate"},
		{"bad tokens file", Options{AuthTokens: bad}, "tokens[0] (ci): sha256 must be 64 hex digits"},
	} {
		c.o.GRPCAddr, c.o.HTTPAddr, c.o.Store = "127.0.0.1:0", "127.0.0.1:0", filepath.Join(t.TempDir(), "db")
		if err := Run(context.Background(), c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

// TestWarnExposure: an open service warns when either address is beyond
// loopback; tokens without TLS beyond loopback warn too.
func TestWarnExposure(t *testing.T) {
	t.Parallel()
	lo := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7070}
	lo6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 7071}
	any4 := &net.TCPAddr{IP: net.IPv4zero, Port: 7071}
	any6 := &net.TCPAddr{IP: net.IPv6unspecified, Port: 7070}
	for _, c := range []struct {
		name       string
		o          Options
		grpc, http net.Addr
		tokens     bool
		want       string
	}{
		{"open on loopback", Options{}, lo, lo6, false, ""},
		{"open, gRPC beyond loopback", Options{}, any6, lo, false, "no authentication"},
		{"open, HTTP beyond loopback", Options{}, lo, any4, false, "no authentication"},
		{"mTLS beyond loopback", Options{TLSCert: "c", ClientCA: "ca"}, any6, any4, false, ""},
		{"tokens with TLS beyond loopback", Options{TLSCert: "c"}, any6, any4, true, ""},
		{"tokens without TLS beyond loopback", Options{}, any6, lo, true, "clear text"},
		{"tokens without TLS on loopback", Options{}, lo, any4, true, ""},
	} {
		var b testlog.Buffer
		warnExposure(b.Logger(), c.o, c.grpc, c.http, c.tokens, false)
		got := b.String()
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) || (got != "" && !strings.Contains(got, "level=WARN")) {
			t.Errorf("%s: logged %q, want %s", c.name, got, fmt.Sprintf("a WARN with %q", c.want))
		}
	}
}
