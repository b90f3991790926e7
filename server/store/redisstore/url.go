package redisstore

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelPasswordEnv names the environment variable Open takes the
// password of the Sentinels from (redis+sentinel URLs), when
// Options.SentinelPassword is empty.
const SentinelPasswordEnv = "CANARYD_REDIS_SENTINEL_PASSWORD"

// DefaultReplicaTimeout is how long a write waits for its replicas with
// min_replicas and no replica_timeout.
const DefaultReplicaTimeout = time.Second

// Store URLs
//
// Open takes one of three forms of URL; "rediss" or a "+tls" suffix of
// the scheme (redis+cluster+tls) means TLS:
//
//	redis://[[user]:password@]host[:port][/db][?option=value&...]
//	    one Redis server (a primary);
//	redis+cluster://[[user]:password@]host[:port][,host[:port]...][/][?...]
//	    a Redis Cluster: the hosts are seed nodes, any of its nodes;
//	redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db][?...]
//	    the primary that the Sentinels at the hosts (port 26379 by
//	    default) name for master; the client follows failovers.
//
// user and password are those of the Redis nodes (for Sentinel: of the
// primary and replicas; the Sentinels' own password, if any, comes from
// Options.SentinelPassword or SentinelPasswordEnv). The options are those
// of go-redis's ParseURL, ParseClusterURL and ParseFailoverURL (dial_timeout,
// read_timeout, pool_size, ...), and canaryd's own:
//
//	min_replicas=N       every write waits (WAIT) until N replicas have it
//	                     (default 0: the reply of the primary suffices)
//	replica_timeout=D    how long it waits (default 1s; a Go duration or
//	                     seconds); a write that fewer replicas confirmed
//	                     in time fails with store.ErrUnavailable, and the
//	                     client retries it (the retry is deduplicated).
type target struct {
	client         redis.UniversalClient
	addrs          []string // for errors and logs
	minReplicas    int
	replicaTimeout time.Duration
}

// parseURL builds the client of a store URL. Its errors never hold the
// URL's password.
func parseURL(raw string, opts Options) (*target, error) {
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("not a URL (redis://host:port)")
	}
	kind, tls := "", false
	base := scheme
	if b, ok := strings.CutSuffix(base, "+tls"); ok {
		base, tls = b, true
	}
	switch base {
	case "redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel":
	default:
		return nil, fmt.Errorf("unknown scheme %q: want redis, rediss, redis+cluster or redis+sentinel (+tls)", scheme)
	}
	if strings.HasPrefix(base, "rediss") {
		tls = true
	}
	if _, k, ok := strings.Cut(base, "+"); ok {
		kind = k
	}
	// The host list is taken out before url.Parse, which reads a port
	// after the last colon of the whole list.
	_, rest, _ := strings.Cut(raw, "://")
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hostList := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hostList = authority[:i+1], authority[i+1:]
	}
	u, err := url.Parse("redis://" + userinfo + "placeholder" + tail)
	if err != nil {
		return nil, fmt.Errorf("not a valid URL")
	}
	t := &target{replicaTimeout: DefaultReplicaTimeout}
	q := u.Query()
	if v := q.Get("min_replicas"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return nil, fmt.Errorf("min_replicas=%q: want a number of replicas, 0 to 100", v)
		}
		t.minReplicas = n
	}
	if v := q.Get("replica_timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			n, nerr := strconv.Atoi(v)
			d, err = time.Duration(n)*time.Second, nerr
		}
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("replica_timeout=%q: want a positive duration (500ms, 2s)", v)
		}
		t.replicaTimeout = d
	}
	q.Del("min_replicas")
	q.Del("replica_timeout")

	defPort := "6379"
	if kind == "sentinel" {
		defPort = "26379"
	}
	var hosts []string
	for h := range strings.SplitSeq(hostList, ",") {
		if h == "" {
			return nil, fmt.Errorf("empty host in %q", hostList)
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = h, defPort
			switch {
			case strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]"):
				host = h[1 : len(h)-1] // [::1]
			case strings.ContainsAny(h, ":[]"):
				return nil, fmt.Errorf("host %q: not host[:port]", h)
			}
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("host %q: bad port", h)
		}
		if host == "" {
			return nil, fmt.Errorf("host %q: no host name", h)
		}
		hosts = append(hosts, net.JoinHostPort(host, port))
	}
	t.addrs = hosts
	// The URL go-redis parses: the first host, the others as addr=.
	gs := "redis"
	if tls {
		gs = "rediss"
	}
	g := &url.URL{Scheme: gs, User: u.User, Host: hosts[0]}
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}

	// A write's WAIT must be answered before the read times out.
	readTimeout := func(d time.Duration) time.Duration {
		if t.minReplicas == 0 || d < 0 {
			return d
		}
		return max(d, 3*time.Second, t.replicaTimeout+time.Second)
	}
	password := func(pw string) string {
		if pw != "" {
			return pw
		}
		if opts.Password != "" {
			return opts.Password
		}
		return os.Getenv(PasswordEnv)
	}
	switch kind {
	case "":
		if len(hosts) > 1 {
			return nil, fmt.Errorf("%d hosts: a redis:// URL names one server (redis+cluster:// or redis+sentinel:// for more)", len(hosts))
		}
		g.Path = u.Path
		g.RawQuery = q.Encode()
		ro, err := redis.ParseURL(g.String())
		if err != nil {
			return nil, fmt.Errorf("%s", scrubPassword(err.Error(), u))
		}
		ro.Password = password(ro.Password)
		ro.ReadTimeout = readTimeout(ro.ReadTimeout)
		ro.Protocol, ro.MaxRetries, ro.ContextTimeoutEnabled, ro.DisableIdentity = 2, -1, true, true
		t.client = redis.NewClient(ro)
	case "cluster":
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("path %q: a cluster has no database number", u.Path)
		}
		g.RawQuery = q.Encode()
		co, err := redis.ParseClusterURL(g.String())
		if err != nil {
			return nil, fmt.Errorf("%s", scrubPassword(err.Error(), u))
		}
		co.Password = password(co.Password)
		co.ReadTimeout = readTimeout(co.ReadTimeout)
		co.Protocol, co.MaxRetries, co.ContextTimeoutEnabled, co.DisableIdentity = 2, -1, true, true
		t.client = redis.NewClusterClient(co)
	case "sentinel":
		parts := strings.FieldsFunc(u.Path, func(r rune) bool { return r == '/' })
		if len(parts) == 0 || len(parts) > 2 {
			return nil, fmt.Errorf("path %q: want /master or /master/db", u.Path)
		}
		q.Set("master_name", parts[0])
		if len(parts) == 2 {
			g.Path = "/" + parts[1]
		}
		g.User = nil
		g.RawQuery = q.Encode()
		fo, err := redis.ParseFailoverURL(g.String())
		if err != nil {
			return nil, fmt.Errorf("%s", scrubPassword(err.Error(), u))
		}
		if u.User != nil {
			fo.Username = u.User.Username()
			fo.Password, _ = u.User.Password()
		}
		fo.Password = password(fo.Password)
		fo.SentinelPassword = opts.SentinelPassword
		if fo.SentinelPassword == "" {
			fo.SentinelPassword = os.Getenv(SentinelPasswordEnv)
		}
		fo.ReadTimeout = readTimeout(fo.ReadTimeout)
		fo.Protocol, fo.MaxRetries, fo.ContextTimeoutEnabled, fo.DisableIdentity = 2, -1, true, true
		t.client = redis.NewFailoverClient(fo)
	}
	return t, nil
}

// scrubPassword removes the password of u from msg.
func scrubPassword(msg string, u *url.URL) string {
	if pw, ok := u.User.Password(); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}
