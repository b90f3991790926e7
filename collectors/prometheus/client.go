package prometheus

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/canaryd/canaryd/collectors/prometheus/promconfig"
)

// The kinds of Error: what went wrong with a metric's interval, so that
// the service can hold the metric with the reason and retry.
var (
	// ErrUnreachable: no answer from Prometheus (connection refused,
	// timeout, 5xx, an authentication failure). Transient: retry.
	ErrUnreachable = errors.New("prometheus unreachable")
	// ErrBadQuery: Prometheus rejected the query (bad PromQL, an execution
	// error), or its result does not fit the metric (no le label, NaN,
	// buckets that are not a histogram). A config problem: retrying the
	// same query fails again.
	ErrBadQuery = errors.New("bad query")
	// ErrNoData: the query returned no series for a cohort (its labels
	// match nothing, or the series are not scraped yet). It may come
	// later.
	ErrNoData = errors.New("no data")
)

// Error is a failed read of one metric: errors.Is(err, ErrUnreachable),
// ErrBadQuery or ErrNoData tells which kind.
type Error struct {
	// Kind is ErrUnreachable, ErrBadQuery or ErrNoData.
	Kind error
	// Metric is the metric read; Query names its query ("buckets") and
	// Cohort the cohort it was read for ("canary"), when the error is
	// theirs.
	Metric, Query, Cohort string
	// Err is the cause.
	Err error
}

func (e *Error) Error() string {
	where := e.Metric
	if e.Cohort != "" {
		where += " (" + e.Cohort
		if e.Query != "" {
			where += " " + e.Query + " query"
		}
		where += ")"
	}
	if e.Err == nil {
		return where + ": " + e.Kind.Error()
	}
	return fmt.Sprintf("%s: %v: %v", where, e.Kind, e.Err)
}

// Unwrap returns the kind and the cause, for errors.Is and errors.As.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// ClientOptions tune the HTTP clients of a Pool.
type ClientOptions struct {
	// MaxConnsPerHost bounds the connections to one Prometheus; queries
	// beyond it wait for a free one. 0 means 4.
	MaxConnsPerHost int
	// QueryTimeout bounds one query, on the client and (as the timeout
	// parameter) on the server. 0 means 30s.
	QueryTimeout time.Duration
}

func (o *ClientOptions) validate() error {
	if o.MaxConnsPerHost == 0 {
		o.MaxConnsPerHost = 4
	}
	if o.QueryTimeout == 0 {
		o.QueryTimeout = 30 * time.Second
	}
	if o.MaxConnsPerHost < 0 || o.QueryTimeout < 0 {
		return fmt.Errorf("prometheus: MaxConnsPerHost and QueryTimeout must be >= 0 (got %d, %v)", o.MaxConnsPerHost, o.QueryTimeout)
	}
	return nil
}

// Client queries one Prometheus over one HTTP transport: its connections
// are reused by every collector that reads from it, and bounded by
// ClientOptions.MaxConnsPerHost. It is safe for concurrent use.
type Client struct {
	url       string
	api       v1.API
	transport *http.Transport
	timeout   time.Duration
}

// NewClient returns a client of the Prometheus src names. Most callers
// get theirs from a Pool, which shares one per Prometheus.
func NewClient(src *promconfig.Prometheus, o ClientOptions) (*Client, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxConnsPerHost:       o.MaxConnsPerHost,
		MaxIdleConns:          o.MaxConnsPerHost,
		MaxIdleConnsPerHost:   o.MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: o.QueryTimeout + 5*time.Second,
		// The answers are small (a cohort's series of one metric): gzip
		// cost more CPU than it saved (BENCHMARKS.md).
		DisableCompression: true,
	}
	if src.TLSCAFile != "" {
		pem, err := os.ReadFile(src.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("prometheus %s: tls_ca_file: %w", src.URL, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("prometheus %s: tls_ca_file %s holds no PEM certificate", src.URL, src.TLSCAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper = tr
	if src.BearerTokenFile != "" {
		rt = &bearerFile{path: src.BearerTokenFile, next: tr}
	}
	c, err := api.NewClient(api.Config{Address: src.URL, Client: &http.Client{Transport: rt}})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", src.URL, err)
	}
	return &Client{url: src.URL, api: v1.NewAPI(c), transport: tr, timeout: o.QueryTimeout}, nil
}

// URL is the Prometheus the client queries.
func (c *Client) URL() string { return c.url }

// Query runs an instant query at ts.
func (c *Client) Query(ctx context.Context, q string, ts time.Time, opts ...v1.Option) (model.Value, v1.Warnings, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, w, _, err := c.api.Query(ctx, q, ts, append(opts, v1.WithTimeout(c.timeout))...)
	return v, w, err
}

// QueryRange runs a range query.
func (c *Client) QueryRange(ctx context.Context, q string, r v1.Range, opts ...v1.Option) (model.Value, v1.Warnings, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, w, _, err := c.api.QueryRange(ctx, q, r, append(opts, v1.WithTimeout(c.timeout))...)
	return v, w, err
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.transport.CloseIdleConnections() }

// bearerFile sends the content of a file as a bearer token, read again
// whenever the file changes (mounted service-account tokens rotate).
type bearerFile struct {
	path string
	next http.RoundTripper

	mu      sync.Mutex
	modTime time.Time
	size    int64
	token   string
}

func (b *bearerFile) RoundTrip(req *http.Request) (*http.Response, error) {
	token, err := b.read()
	if err != nil {
		return nil, err
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+token)
	return b.next.RoundTrip(req)
}

func (b *bearerFile) read() (string, error) {
	fi, err := os.Stat(b.path)
	if err != nil {
		return "", fmt.Errorf("bearer_token_file: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token != "" && fi.ModTime().Equal(b.modTime) && fi.Size() == b.size {
		return b.token, nil
	}
	raw, err := os.ReadFile(b.path)
	if err != nil {
		return "", fmt.Errorf("bearer_token_file: %w", err)
	}
	token := string(bytes.TrimSpace(raw))
	if token == "" {
		return "", fmt.Errorf("bearer_token_file %s is empty", b.path)
	}
	b.token, b.modTime, b.size = token, fi.ModTime(), fi.Size()
	return token, nil
}

// Pool shares one Client per Prometheus (URL, token file and CA file), so
// that every run reading from the same Prometheus reuses its connections.
// It is safe for concurrent use.
type Pool struct {
	opts ClientOptions

	mu      sync.Mutex
	clients map[promconfig.Prometheus]*Client
}

// NewPool returns an empty pool whose clients have the options o.
func NewPool(o ClientOptions) (*Pool, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	return &Pool{opts: o, clients: map[promconfig.Prometheus]*Client{}}, nil
}

// Client returns the pool's client of the Prometheus src names, creating
// it on first use.
func (p *Pool) Client(src *promconfig.Prometheus) (*Client, error) {
	key := promconfig.Prometheus{URL: src.URL, BearerTokenFile: src.BearerTokenFile, TLSCAFile: src.TLSCAFile}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[key]; ok {
		return c, nil
	}
	c, err := NewClient(&key, p.opts)
	if err != nil {
		return nil, err
	}
	p.clients[key] = c
	return c, nil
}

// Close closes the idle connections of every client.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clients {
		c.Close()
	}
}

// classify returns the kind of a query error.
func classify(err error) error {
	var apiErr *v1.Error
	if errors.As(err, &apiErr) {
		switch apiErr.Type {
		case v1.ErrBadData, v1.ErrExec:
			return ErrBadQuery
		}
	}
	return ErrUnreachable
}
