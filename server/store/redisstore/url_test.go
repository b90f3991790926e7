package redisstore

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestParseURL checks what each URL form builds: the client kind, its
// addresses, TLS, credentials, the options canaryd sets and its own query
// options; and that malformed URLs are errors without the password.
func TestParseURL(t *testing.T) {
	t.Setenv(PasswordEnv, "")
	t.Setenv(SentinelPasswordEnv, "sentinel-env")
	const pw = "pw-s3cret"
	type want struct {
		kind     string // single, cluster, sentinel
		addrs    []string
		tls      bool
		password string
		master   string
		db       int
		minRepl  int
		timeout  time.Duration
	}
	for _, tt := range []struct {
		url  string
		want want
	}{
		{"redis://:" + pw + "@r1:6380/2", want{kind: "single", addrs: []string{"r1:6380"}, password: pw, db: 2, timeout: time.Second}},
		{"rediss://r1/0?min_replicas=1", want{kind: "single", addrs: []string{"r1:6379"}, tls: true, minRepl: 1, timeout: time.Second}},
		{"redis+cluster://u:" + pw + "@n1:7000,n2:7001,n3/?min_replicas=1&replica_timeout=250ms&dial_timeout=2s",
			want{kind: "cluster", addrs: []string{"n1:7000", "n2:7001", "n3:6379"}, password: pw, minRepl: 1, timeout: 250 * time.Millisecond}},
		{"redis+cluster+tls://n1:7000", want{kind: "cluster", addrs: []string{"n1:7000"}, tls: true, timeout: time.Second}},
		{"rediss+cluster://n1:7000/", want{kind: "cluster", addrs: []string{"n1:7000"}, tls: true, timeout: time.Second}},
		{"redis+sentinel://:" + pw + "@s1,s2:26380/mymaster/3?replica_timeout=2",
			want{kind: "sentinel", addrs: []string{"s1:26379", "s2:26380"}, password: pw, master: "mymaster", db: 3, timeout: 2 * time.Second}},
		{"redis+sentinel+tls://s1/m", want{kind: "sentinel", addrs: []string{"s1:26379"}, tls: true, master: "m", timeout: time.Second}},
		{"redis://[::1]:6390", want{kind: "single", addrs: []string{"[::1]:6390"}, timeout: time.Second}},
	} {
		tg, err := parseURL(tt.url, Options{})
		if err != nil {
			t.Errorf("parseURL(%q): %v", tt.url, err)
			continue
		}
		defer tg.client.Close()
		var got want
		got.minRepl, got.timeout = tg.minReplicas, tg.replicaTimeout
		switch c := tg.client.(type) {
		case *redis.ClusterClient:
			o := c.Options()
			got.kind, got.addrs, got.tls, got.password = "cluster", o.Addrs, o.TLSConfig != nil, o.Password
			if o.Protocol != 2 || o.MaxRetries != -1 || !o.ContextTimeoutEnabled {
				t.Errorf("%s: cluster options %d %d %v", tt.url, o.Protocol, o.MaxRetries, o.ContextTimeoutEnabled)
			}
		case *redis.Client:
			o := c.Options()
			got.kind, got.addrs, got.tls, got.password, got.db = "single", []string{o.Addr}, o.TLSConfig != nil, o.Password, o.DB
			if o.Protocol != 2 || o.MaxRetries > 0 || !o.ContextTimeoutEnabled { // go-redis stores -1 as 0
				t.Errorf("%s: client options %d %d %v", tt.url, o.Protocol, o.MaxRetries, o.ContextTimeoutEnabled)
			}
			if tt.want.kind == "sentinel" {
				got.kind, got.addrs, got.master = "sentinel", tg.addrs, tt.want.master // a failover client: its options are not exposed
			}
		default:
			t.Fatalf("%s: client %T", tt.url, c)
		}
		if strings.Join(got.addrs, ",") != strings.Join(tt.want.addrs, ",") || got.kind != tt.want.kind ||
			got.tls != tt.want.tls || got.minRepl != tt.want.minRepl || got.timeout != tt.want.timeout ||
			(got.kind != "sentinel" && (got.password != tt.want.password || got.db != tt.want.db)) {
			t.Errorf("parseURL(%q) = %+v, want %+v", tt.url, got, tt.want)
		}
	}

	for _, bad := range []string{
		"redis+cluster://:" + pw + "@n1:7000,:7001/",
		"redis+cluster://:" + pw + "@n1:7000/1",
		"redis+cluster://:" + pw + "@n1:70000/",
		"redis+sentinel://:" + pw + "@s1/",
		"redis+sentinel://:" + pw + "@s1/m/1/2",
		"redis://:" + pw + "@r1,r2/0",
		"redis://:" + pw + "@r1/0?min_replicas=x",
		"redis://:" + pw + "@r1/0?replica_timeout=-1s",
		"redis://:" + pw + "@r1/0?bogus=1",
		"redis+cluster://:" + pw + "@r1/?bogus=1",
		"redis+sentinel://:" + pw + "@r1/m?bogus=1",
		"mongodb://:" + pw + "@r1/0",
		"redis+cluster+ssl://:" + pw + "@r1/",
	} {
		tg, err := parseURL(bad, Options{})
		if err == nil {
			tg.client.Close()
			t.Errorf("parseURL(%q) succeeded, want an error", bad)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("parseURL(%q): the error holds the password: %v", bad, err)
		}
	}
}
