// Package redisstore is the storage backend for canaryd replicas that
// share one Redis (github.com/redis/go-redis/v9): runs, their ingested
// batches, configs and the verdict history live in Redis, so that any
// replica can serve any request.
//
// # Atomicity
//
// Every write is one command or one Lua script (EVALSHA, see scripts.go) on
// one hash slot, atomic on the Redis server, so concurrent replicas need no
// locks: AppendBatch checks that the run is running, adds the batch id to
// the run's set and appends the delta to the run's stream only if the id
// was new, in one script; a batch retried through any replica is stored
// once.
//
// The operations that span slots (CreateRun: the request-id table and
// run index, then the run; FinishRun: the run, then the run index and the
// verdict history; PutConfig: the name index, then the versions) are
// ordered so that a crash between steps leaves nothing a later call or the
// maintenance loop cannot complete:
//   - CreateRun claims the request id and indexes the run first, then
//     writes the run record; a retry of the request finds the claim and
//     writes the record with the claimed id and create time. Listings skip
//     index entries whose record is not written (yet).
//   - FinishRun marks the run pending in the history, then commits it (the
//     run's state flips, in one script on the run's slot: from then on the
//     run is finished and its final verdict durable), then moves its index
//     entries and adds the verdict to the history, clearing the mark. A
//     pending mark whose run is finished is completed by Maintain, which
//     every replica runs periodically; all these steps are idempotent.
//
// Unlike the embedded store's single transaction, a reader can see a run
// finished whose verdict is not in the history yet, while FinishRun runs
// (or, after a failure past its commit, until Maintain completes it).
//
// # Redis Cluster
//
// Each script and transaction touches the keys of one slot only, so the
// store runs on a Redis Cluster (a redis+cluster:// URL, or OpenClient
// with a ClusterClient with Protocol 2, MaxRetries -1 and
// ContextTimeoutEnabled). What the deployment has to know:
//   - The keys of one run share the hash tag {run:<id>}: ingest
//     (AppendBatch), reads, snapshots and updates of different runs spread
//     over the nodes by run id.
//   - The run index and request ids, and the verdict history and its
//     indexes, are split into NumShards shards each, whose hash tags are
//     spread evenly over the slot space; the config names ({cfgs}) are one
//     global key, written once per new config name.
//   - CreateRun, FinishRun and PutConfig span slots and are done in the
//     ordered steps above; ListRuns and ListConfigs read records from many
//     slots with pipelines, which the ClusterClient splits by node.
//
// The scripts declare their keys and carry a shebang, so Redis in cluster
// mode refuses any that would reach into another slot; the conformance
// suite runs against a one-node cluster to prove that no operation does.
// See keys.go for the layout.
//
// # Replicas following a run
//
// The contract of store.Store lets one process own a run's data in memory.
// For replicas that share runs, the Store also offers (outside the
// contract) a position in a run's deltas, Cursor, with ReadBatchesFrom
// (the deltas after a position), WaitBatches (block until there is one,
// XREAD BLOCK on the run's stream), SnapshotThrough (a snapshot that
// folds up to a position and never moves back, safe when two replicas
// snapshot the same run, which Snapshot's count of deltas is not) and
// FinishRunThrough (FinishRun only if no delta was appended after the
// position the final verdict folds: a batch another replica acknowledged
// meanwhile is never left out of it). These make the Store a store.Tailer.
//
// # Failures
//
// Connection errors, timeouts and the replies of a Redis that cannot serve
// (LOADING, READONLY, MASTERDOWN, CLUSTERDOWN, TRYAGAIN, BUSY, OOM, MISCONF,
// ...) are returned wrapping store.ErrUnavailable. Commands are not retried
// by the client (MaxRetries -1): a write whose reply was lost might have
// been applied, and a transparent retry would report it as a duplicate
// (AppendBatch) or as ErrFinished (FinishRun) although this call stored it.
// The caller retries instead, and the idempotence of the writes makes that
// safe. The client reconnects by itself when Redis is back.
//
// # Durability
//
// A write is as durable as Redis's own configuration makes it: with
// appendonly yes and appendfsync always, Redis fsyncs its append-only file
// before it replies, so whatever a method acknowledged survives a crash of
// Redis; with appendfsync everysec (the Redis default for AOF) up to a
// second of acknowledged writes can be lost, and without AOF everything
// since the last RDB save.
//
// Replication is asynchronous: a replica promoted by Sentinel or Cluster
// may lack the last writes its primary acknowledged. With
// Options.MinReplicas (the URL's min_replicas) every write waits for that
// many replicas (WAIT after the script, on the same connection), so a
// failover that promotes one of them loses no acknowledged batch, run or
// verdict; a write the replicas do not confirm within ReplicaTimeout
// fails with ErrUnavailable and is retried by the client (an append
// retried finds its batch id, and its script writes a counter so that its
// WAIT covers the first append too). The cost is one replication round
// trip per write, and writes fail while fewer replicas are up. The default
// is 0: a failover can lose the writes of the last moments (typically
// milliseconds) before it. A replica of canaryd that read a delta lost so
// reads the run again (the read script checks that its position is still
// in the run's stream).
//
// # Requirements
//
// Redis 7.0 or later (script flags), with maxmemory-policy noeviction:
// Redis must refuse writes when it is full (OOM, returned as
// ErrUnavailable) rather than evict keys. Open warns otherwise.
//
// # Retention
//
// When a run finishes, its raw data (batch ids, deltas, snapshot) expire
// after Options.Retention; its record and final verdict are kept, for
// Options.VerdictRetention when set (Maintain deletes older ones) or
// forever.
package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/canaryd/canaryd/server/store"
)

// PasswordEnv names the environment variable Open takes the Redis password
// from when neither the URL nor Options.Password has one.
const PasswordEnv = "CANARYD_REDIS_PASSWORD"

// Defaults.
const (
	DefaultPrefix              = "canaryd"
	DefaultRetention           = 7 * 24 * time.Hour
	DefaultMaintenanceInterval = time.Minute
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// Logger receives open, close and maintenance events; nil discards
	// them.
	Logger *slog.Logger
	// Prefix is the namespace of every key; "" means DefaultPrefix. It
	// must not contain braces (they would change the hash tags).
	Prefix string
	// Retention is how long the raw data of a finished run (batch ids,
	// deltas, snapshot) are kept after it finished; 0 means
	// DefaultRetention.
	Retention time.Duration
	// VerdictRetention is how long a final verdict, and the record of its
	// run, are kept after the verdict's time; 0 keeps them forever.
	VerdictRetention time.Duration
	// MaintenanceInterval is the period of Maintain in the background;
	// 0 means DefaultMaintenanceInterval, negative disables it.
	MaintenanceInterval time.Duration
	// Password is used by Open when the URL has none; when both are empty
	// Open reads the environment variable PasswordEnv.
	Password string
	// SentinelPassword is the password of the Sentinels of a
	// redis+sentinel URL; when empty Open reads SentinelPasswordEnv.
	SentinelPassword string
	// MinReplicas makes every write wait (WAIT) until that many replicas
	// of its primary have it, for at most ReplicaTimeout; a write fewer
	// replicas confirmed fails with store.ErrUnavailable (it may be
	// stored: its retry is deduplicated). 0, the default, acknowledges a
	// write when the primary has it. See "Durability" above.
	MinReplicas int
	// ReplicaTimeout bounds the wait of MinReplicas; 0 means
	// DefaultReplicaTimeout.
	ReplicaTimeout time.Duration
	// Now stamps new config versions and dates verdicts for
	// VerdictRetention; nil means time.Now.
	Now func() time.Time
}

func (o *Options) validate() error {
	switch {
	case strings.ContainsAny(o.Prefix, "{}"):
		return fmt.Errorf("prefix %q contains a brace", o.Prefix)
	case o.Retention < 0:
		return fmt.Errorf("retention %v is negative", o.Retention)
	case o.VerdictRetention < 0:
		return fmt.Errorf("verdict retention %v is negative", o.VerdictRetention)
	case o.MinReplicas < 0 || o.ReplicaTimeout < 0:
		return fmt.Errorf("min replicas %d, replica timeout %v: negative", o.MinReplicas, o.ReplicaTimeout)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.MaintenanceInterval == 0 {
		o.MaintenanceInterval = DefaultMaintenanceInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReplicaTimeout == 0 {
		o.ReplicaTimeout = DefaultReplicaTimeout
	}
}

// Store is the Redis backend. It implements store.Store and is safe for
// concurrent use, by any number of Stores on the same Redis and prefix.
type Store struct {
	c    redis.UniversalClient
	k    keys
	opts Options

	quit  chan struct{} // closed by Close
	done  chan struct{} // closed when the maintenance loop has exited
	close sync.Once
	err   error // of Close
}

var _ store.Store = (*Store)(nil)

// Open connects to the Redis a URL names (one server, a Redis Cluster, or
// the primary of a Sentinel setup; see url.go for the forms and options),
// checks that it answers and that the key layout is this version's
// (migrating layout 1, see migrate.go), and starts the maintenance loop.
// The URL's min_replicas and replica_timeout override Options'.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	t, err := parseURL(url, opts)
	if err != nil {
		return nil, fmt.Errorf("open redis store: %w", err)
	}
	if t.minReplicas > 0 {
		opts.MinReplicas, opts.ReplicaTimeout = t.minReplicas, t.replicaTimeout
	}
	s, err := OpenClient(ctx, t.client, opts)
	if err != nil {
		return nil, fmt.Errorf("open redis store %s: %w", strings.Join(t.addrs, ","), err)
	}
	return s, nil
}

// OpenClient returns a Store on c (a Client, a failover Client of
// Sentinel, or a ClusterClient), which it owns and closes. c should have
// Protocol 2, MaxRetries -1 and ContextTimeoutEnabled, as Open sets them.
func OpenClient(ctx context.Context, c redis.UniversalClient, opts Options) (*Store, error) {
	if err := opts.validate(); err != nil {
		_ = c.Close()
		return nil, err
	}
	opts.setDefaults()
	s := &Store{
		c:    c,
		k:    newKeys(opts.Prefix),
		opts: opts,
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	if err := s.checkSchema(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	s.checkEviction(ctx)
	go s.maintainLoop()
	opts.Logger.Info("redis store open", "prefix", opts.Prefix, "retention", opts.Retention,
		"verdict_retention", opts.VerdictRetention, "min_replicas", opts.MinReplicas)
	return s, nil
}

// checkSchema sets the layout version of a new store, migrates a layout-1
// store (migrate.go) and refuses any other version.
func (s *Store) checkSchema(ctx context.Context) error {
	if err := s.c.SetNX(ctx, s.k.schema(), schemaVersion, 0).Err(); err != nil {
		return s.fail(ctx, err)
	}
	v, err := s.c.Get(ctx, s.k.schema()).Result()
	if err != nil {
		return s.fail(ctx, err)
	}
	switch v {
	case schemaVersion:
		return nil
	case "1":
		return s.migrate1(ctx)
	}
	return fmt.Errorf("schema version %q under prefix %q, this canaryd reads %q", v, s.opts.Prefix, schemaVersion)
}

// checkEviction warns when Redis may evict keys: it would drop runs,
// batch ids or index entries without an error. Managed services that
// refuse CONFIG are not checked.
func (s *Store) checkEviction(ctx context.Context) {
	v, err := s.c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		s.opts.Logger.Debug("cannot read maxmemory-policy", "err", err)
		return
	}
	if p := v["maxmemory-policy"]; p != "" && p != "noeviction" {
		s.opts.Logger.Warn("Redis may evict keys, which loses data silently; set maxmemory-policy noeviction",
			"maxmemory-policy", p)
	}
}

// Healthy reports whether Redis takes writes: it writes a small key
// (P:health) rather than PING, which a Redis that refuses writes (OOM at
// maxmemory, MISCONF when it cannot persist, READONLY) still answers.
func (s *Store) Healthy(ctx context.Context) error {
	if s.closed() {
		return errClosed
	}
	if err := s.c.Set(ctx, s.k.health(), time.Now().UnixMilli(), time.Minute).Err(); err != nil {
		return fmt.Errorf("redis write probe: %w", s.fail(ctx, err))
	}
	return nil
}

// Close stops the maintenance loop and closes the client. It is safe to
// call more than once.
func (s *Store) Close() error {
	s.close.Do(func() {
		close(s.quit)
		<-s.done
		if err := s.c.Close(); err != nil {
			s.err = fmt.Errorf("close redis store: %w", err)
		}
		s.opts.Logger.Info("redis store closed", "prefix", s.opts.Prefix)
	})
	return s.err
}

// errClosed is returned by every method after Close.
var errClosed = fmt.Errorf("redis store closed: %w", store.ErrUnavailable)

func (s *Store) closed() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// unavailableReplies are the prefixes of the error replies of a Redis that
// cannot serve now but may later.
var unavailableReplies = []string{
	"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
	"BUSY", "OOM", "MISCONF", "MOVED", "ASK", "UNBLOCKED", "ERR max number of clients",
}

// fail maps an error of the client: error replies of a Redis that cannot
// serve, and every error that is not a reply (connection, timeout, closed
// client), wrap store.ErrUnavailable; other replies are returned as they
// are.
func (s *Store) fail(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if s.closed() && errors.Is(err, redis.ErrClosed) {
		return errClosed
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		msg := reply.Error()
		for _, p := range unavailableReplies {
			if strings.HasPrefix(msg, p) {
				s.reloadCluster(ctx)
				return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
			}
		}
		return err
	}
	s.reloadCluster(ctx)
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// reloadCluster has a cluster client read the cluster's slots again (in
// the background, at most every 200ms): after a failover, commands reach
// the promoted replica as soon as the cluster has promoted it, rather
// than when the client's periodic reload comes.
func (s *Store) reloadCluster(ctx context.Context) {
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
}

// run runs a script and maps its error.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) (any, error) {
	if s.closed() {
		return nil, errClosed
	}
	v, err := sc.Run(ctx, s.c, keys, args...).Result()
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	return v, nil
}

// runAcked runs a writing script; with Options.MinReplicas it then waits
// for that many replicas to have the write (WAIT, on the same connection
// of the primary of keys[0]'s slot, in one pipeline with the script).
func (s *Store) runAcked(ctx context.Context, sc *redis.Script, keys []string, args ...any) (any, error) {
	if s.opts.MinReplicas <= 0 {
		return s.run(ctx, sc, keys, args...)
	}
	if s.closed() {
		return nil, errClosed
	}
	c, err := s.primaryFor(ctx, keys[0])
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	v, n, err := s.evalWait(ctx, c, sc, keys, args, false)
	if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		v, n, err = s.evalWait(ctx, c, sc, keys, args, true)
	}
	if err != nil {
		s.reloadCluster(ctx) // the slot may have moved (failover)
		return nil, s.fail(ctx, err)
	}
	if n < int64(s.opts.MinReplicas) {
		return nil, fmt.Errorf("%w: the write reached %d of %d replicas within %v",
			store.ErrUnavailable, n, s.opts.MinReplicas, s.opts.ReplicaTimeout)
	}
	return v, nil
}

// evalWait runs a script (EVALSHA, or EVAL) and WAIT on c in one pipeline.
func (s *Store) evalWait(ctx context.Context, c *redis.Client, sc *redis.Script, keys []string, args []any, eval bool) (any, int64, error) {
	pipe := c.Pipeline()
	var ev *redis.Cmd
	if eval {
		ev = sc.Eval(ctx, pipe, keys, args...)
	} else {
		ev = sc.EvalSha(ctx, pipe, keys, args...)
	}
	w := pipe.Do(ctx, "WAIT", s.opts.MinReplicas, s.opts.ReplicaTimeout.Milliseconds())
	_, _ = pipe.Exec(ctx)
	if err := ev.Err(); err != nil {
		return nil, 0, err
	}
	n, err := w.Int64()
	if err != nil {
		return nil, 0, err
	}
	return ev.Val(), n, nil
}

// primaryFor returns the client of the primary that serves key.
func (s *Store) primaryFor(ctx context.Context, key string) (*redis.Client, error) {
	switch c := s.c.(type) {
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, key)
	case *redis.Client:
		return c, nil
	}
	return nil, fmt.Errorf("min replicas: client %T not supported", s.c)
}

// runAckedCode is runCode through runAcked.
func (s *Store) runAckedCode(ctx context.Context, sc *redis.Script, keys []string, args ...any) (int64, error) {
	v, err := s.runAcked(ctx, sc, keys, args...)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("script replied %T, want an integer", v)
	}
	return n, nil
}

// runCode runs a script that returns an integer code.
func (s *Store) runCode(ctx context.Context, sc *redis.Script, keys []string, args ...any) (int64, error) {
	v, err := s.run(ctx, sc, keys, args...)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("script replied %T, want an integer", v)
	}
	return n, nil
}

// runSlice runs a script that returns an array whose first element is an
// integer code.
func (s *Store) runSlice(ctx context.Context, sc *redis.Script, keys []string, args ...any) (int64, []any, error) {
	v, err := s.runAcked(ctx, sc, keys, args...)
	if err != nil {
		return 0, nil, err
	}
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return 0, nil, fmt.Errorf("script replied %T, want an array", v)
	}
	code, ok := a[0].(int64)
	if !ok {
		return 0, nil, fmt.Errorf("script replied %T as code, want an integer", a[0])
	}
	return code, a[1:], nil
}

// runSliceRO is runSlice for a script that writes nothing: never waits
// for replicas.
func (s *Store) runSliceRO(ctx context.Context, sc *redis.Script, keys []string, args ...any) (int64, []any, error) {
	v, err := s.run(ctx, sc, keys, args...)
	if err != nil {
		return 0, nil, err
	}
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return 0, nil, fmt.Errorf("script replied %T, want an array", v)
	}
	code, ok := a[0].(int64)
	if !ok {
		return 0, nil, fmt.Errorf("script replied %T as code, want an integer", a[0])
	}
	return code, a[1:], nil
}

// codeErr maps the common codes of the run scripts.
func codeErr(code int64) error {
	switch code {
	case codeNotFound:
		return store.ErrNotFound
	case codeFinished:
		return store.ErrFinished
	}
	return nil
}

// str returns a reply element as bytes; nil for a nil reply.
func str(v any) ([]byte, bool) {
	switch v := v.(type) {
	case string:
		return []byte(v), true
	case nil:
		return nil, false
	}
	return nil, false
}

// token returns a random token that identifies one call.
func token() string { return rand.Text() }
