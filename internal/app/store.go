package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/canaryd/canaryd/server"
	"github.com/canaryd/canaryd/server/store"
	"github.com/canaryd/canaryd/server/store/embedded"
	"github.com/canaryd/canaryd/server/store/redisstore"
)

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// Logger receives the store's logs (and, for Redis, the client's);
	// nil discards them.
	Logger *slog.Logger
	// Retention, VerdictRetention and CompactThreshold: see Options.
	Retention        time.Duration
	VerdictRetention time.Duration
	CompactThreshold int64
}

// OpenStore opens the store a --store value names: a file path (or
// file:// URL) opens the embedded store; a redis:// or rediss:// (TLS) URL,
// redis://[[user]:password@]host[:port][/db], opens the Redis backend that
// replicas share (password from the URL, else the environment variable
// redisstore.PasswordEnv), as do redis+cluster://host:port,host:port/ (a
// Redis Cluster) and redis+sentinel://host:port,host:port/master (the
// primary Sentinel names); see redisstore.Open. A value that holds "://" is a URL: one that does
// not parse, or of another scheme, is an error, never a file name. No
// error or log line holds the URL's password.
func OpenStore(ctx context.Context, spec string, o StoreOptions) (server.Store, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := spec
	if scheme, _, ok := strings.Cut(spec, "://"); ok && strings.HasPrefix(scheme, "redis") && !strings.Contains(scheme, "/") {
		// Redis URLs are parsed by redisstore: a cluster's or the
		// Sentinels' host list (h1:6379,h2:6379) is not one URL host.
		// go-redis logs through a process-wide logger; route it to ours
		// (at debug level: a failed dial is reported by the health check
		// and by the calls that fail, not once per attempt).
		redis.SetLogger(redisLogger{log: log.With("component", "go-redis")})
		s, err := redisstore.Open(ctx, spec, redisstore.Options{
			Logger:           log,
			Retention:        o.Retention,
			VerdictRetention: o.VerdictRetention,
		})
		if err != nil {
			return nil, scrubbed(fmt.Errorf("store %s: %w", redactStore(spec), err), nil, passwordOf(spec))
		}
		return s, nil
	}
	if strings.Contains(spec, "://") {
		u, err := parseStoreURL(spec)
		if err != nil {
			return nil, err
		}
		switch u.Scheme {
		case "file":
			if u.Host != "" && u.Host != "localhost" {
				return nil, fmt.Errorf("store %s: a file URL names no host (file:///path)", u.Redacted())
			}
			if path = u.Path; path == "" {
				return nil, fmt.Errorf("store %s: no path", u.Redacted())
			}
		default:
			return nil, fmt.Errorf("store %s: unknown scheme %q; use a file path, file:///path or a redis://, rediss://, redis+cluster:// or redis+sentinel:// URL",
				u.Redacted(), u.Scheme)
		}
	}
	s, err := embedded.Open(path, embedded.Options{
		Logger:           log,
		Retention:        o.Retention,
		VerdictRetention: o.VerdictRetention,
		CompactThreshold: o.CompactThreshold,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// parseStoreURL parses a --store value that holds "://". Its errors hold
// the value redacted (see redactStore), not net/url's message, which
// quotes the whole URL, password included.
func parseStoreURL(spec string) (*url.URL, error) {
	u, err := url.Parse(spec)
	if err != nil {
		var ue *url.Error
		reason := "not a valid URL"
		if errors.As(err, &ue) {
			reason = "not a valid URL: " + ue.Err.Error()
		}
		return nil, scrubbed(fmt.Errorf("store %s: %s", redactStore(spec), reason), nil, passwordOf(spec))
	}
	if u.Scheme == "" || u.Opaque != "" {
		return nil, fmt.Errorf("store %s: not a valid URL (scheme://...)", redactStore(spec))
	}
	return u, nil
}

// passwordOf returns the password of a URL-like value, found without
// parsing it, or "".
func passwordOf(spec string) string {
	auth, ok := authority(spec)
	if !ok {
		return ""
	}
	at := strings.LastIndex(auth, "@")
	if at < 0 {
		return ""
	}
	_, pw, _ := strings.Cut(auth[:at], ":")
	return pw
}

// authority returns the part of a URL-like value between "://" and the
// next "/", "?" or "#".
func authority(spec string) (string, bool) {
	i := strings.Index(spec, "://")
	if i < 0 {
		return "", false
	}
	rest := spec[i+3:]
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		rest = rest[:end]
	}
	return rest, true
}

// scrubbed returns err with every occurrence of the password of u, and of
// the extra secrets, removed from its message; it still wraps err.
func scrubbed(err error, u *url.URL, secrets ...string) error {
	if u != nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			secrets = append(secrets, pw)
		}
	}
	msg := err.Error()
	for _, sec := range secrets {
		if sec != "" {
			msg = strings.ReplaceAll(msg, sec, "xxxxx")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &scrubbedError{msg: msg, err: err}
}

// scrubbedError is an error whose message had a secret removed.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// openStoreWaiting opens the store, retrying with backoff for up to
// opts.StoreWait while it is unavailable, so that canaryd started before
// its Redis comes up by itself.
func openStoreWaiting(ctx context.Context, opts Options) (server.Store, error) {
	deadline := time.Now().Add(opts.StoreWait)
	for backoff := 250 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := OpenStore(octx, opts.Store, StoreOptions{
			Logger:           opts.Logger.With("component", "store"),
			Retention:        opts.Retention,
			VerdictRetention: opts.VerdictRetention,
			CompactThreshold: opts.CompactThreshold,
		})
		cancel()
		if err == nil || !errors.Is(err, store.ErrUnavailable) || time.Now().Add(backoff).After(deadline) {
			return st, err
		}
		opts.Logger.Warn("store unavailable, retrying", "store", redactStore(opts.Store), "in", backoff, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, fmt.Errorf("open store: %w", ctx.Err())
		}
	}
}

// redactStore returns a --store value without the password of a URL
// (u.Redacted), or, for one that does not parse, without its user
// information.
func redactStore(spec string) string {
	if u, err := url.Parse(spec); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	auth, ok := authority(spec)
	if !ok {
		return spec
	}
	at := strings.LastIndex(auth, "@")
	if at < 0 {
		return spec
	}
	i := strings.Index(spec, "://") + 3
	return spec[:i] + "xxxxx" + spec[i+at:]
}

// redisLogger is the go-redis logger on slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
