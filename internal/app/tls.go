package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
)

// serverTLS returns the TLS configs of the gRPC and the HTTP listener, nil
// without opts.TLSCert. With opts.ClientCA, the gRPC listener requires a
// client certificate that one of its CAs signed, for client
// authentication (ExtKeyUsage clientAuth); the HTTP listener
// (/metrics, /healthz) never asks for one.
func serverTLS(opts Options) (grpcTLS, httpTLS *tls.Config, err error) {
	if opts.TLSCert == "" {
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: load certificate %s and key %s: %w", opts.TLSCert, opts.TLSKey, err)
	}
	httpTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	grpcTLS = httpTLS.Clone()
	if opts.ClientCA != "" {
		pem, err := os.ReadFile(opts.ClientCA)
		if err != nil {
			return nil, nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("tls: client CA %s: no PEM certificate in it", opts.ClientCA)
		}
		grpcTLS.ClientCAs = pool
		grpcTLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return grpcTLS, httpTLS, nil
}

// warnExposure logs at start what an operator should know about the
// exposure of the listeners: an open service (neither tokens nor mTLS)
// listening beyond loopback, bearer tokens sent in clear text, and mTLS
// names granted without mTLS.
func warnExposure(log *slog.Logger, opts Options, grpcAddr, httpAddr net.Addr, tokens, names bool) {
	beyond := !isLoopback(grpcAddr) || !isLoopback(httpAddr)
	switch {
	case !tokens && opts.ClientCA == "" && beyond:
		log.Warn("no authentication (neither --auth-tokens nor --client-ca) while listening beyond loopback: "+
			"anyone who reaches the gRPC port can put configs and complete, abort or read any run",
			"grpc", grpcAddr.String(), "http", httpAddr.String())
	case tokens && opts.TLSCert == "" && !isLoopback(grpcAddr):
		log.Warn("bearer tokens without TLS (--tls-cert) while listening beyond loopback: tokens travel in clear text",
			"grpc", grpcAddr.String())
	}
	if names && opts.ClientCA == "" {
		log.Warn("the auth tokens file grants mTLS names, but without --client-ca no client certificate is asked for: those entries grant nothing")
	}
}

// isLoopback reports whether a listener's address is a loopback one.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
