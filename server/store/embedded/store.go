// Package embedded is canaryd's default storage backend: a single-file,
// durable store on bbolt (go.etcd.io/bbolt), a B+tree with ACID
// transactions that fsyncs on every commit.
//
// Every write goes through one committer goroutine that groups the writes
// waiting for it into one transaction (group commit): a lone write costs one
// commit, and many concurrent writers share one, so ingest throughput grows
// with concurrency while each write is still durable when its method
// returns. Reads run in concurrent read-only transactions.
//
// Listings (ListVerdicts, ListRuns) are served by composite indexes, one for
// each subset of the filterable fields, so any filter combination with a time
// range is one cursor seek plus one step per entry returned. See keys.go for
// the key layout.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/canaryd/canaryd/server/store"
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// Logger receives open, close and write-failure events; nil discards
	// them.
	Logger *slog.Logger
	// Now stamps new config versions; nil means time.Now.
	Now func() time.Time
	// LockTimeout bounds the wait for the file lock when another process
	// holds the file open (another canaryd); 0 means DefaultLockTimeout.
	// Open then fails with ErrLocked.
	LockTimeout time.Duration
	// InitialMmapSize is the size in bytes of the initial memory map of
	// the file; 0 maps what the file needs. The map grows with the file,
	// and growing it waits for open read transactions and copies the
	// pages the open write transaction touched; a map as large as the
	// expected file avoids that.
	InitialMmapSize int
	// MaxGroupWrites caps the writes grouped into one transaction; 0 means
	// 1024.
	MaxGroupWrites int
	// MaxGroupBytes caps the payload bytes (deltas, snapshots) grouped
	// into one transaction; a single larger write still goes through on
	// its own. 0 means 64 MiB.
	MaxGroupBytes int
	// Retention is how long the raw data of a finished run (batch ids,
	// deltas, snapshot) are kept after it finished; 0 means
	// DefaultRetention. See maintain.go.
	Retention time.Duration
	// VerdictRetention is how long a final verdict, and the record of its
	// run, are kept after the verdict's time; 0 keeps them forever.
	VerdictRetention time.Duration
	// MaintenanceInterval is the period of Maintain in the background (it
	// also runs at Open); 0 means DefaultMaintenanceInterval, negative
	// disables it.
	MaintenanceInterval time.Duration
	// CompactThreshold: Open compacts the file first when its free pages
	// take at least this many bytes and a quarter of the file (see
	// compact.go); 0 means DefaultCompactThreshold, negative never.
	CompactThreshold int64
}

func (o *Options) validate() error {
	switch {
	case o.LockTimeout < 0:
		return fmt.Errorf("lock timeout %v is negative", o.LockTimeout)
	case o.InitialMmapSize < 0:
		return fmt.Errorf("initial mmap size %d is negative", o.InitialMmapSize)
	case o.MaxGroupWrites < 0:
		return fmt.Errorf("max group writes %d is negative", o.MaxGroupWrites)
	case o.MaxGroupBytes < 0:
		return fmt.Errorf("max group bytes %d is negative", o.MaxGroupBytes)
	case o.Retention < 0:
		return fmt.Errorf("retention %v is negative", o.Retention)
	case o.VerdictRetention < 0:
		return fmt.Errorf("verdict retention %v is negative", o.VerdictRetention)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.MaxGroupWrites == 0 {
		o.MaxGroupWrites = 1024
	}
	if o.MaxGroupBytes == 0 {
		o.MaxGroupBytes = 64 << 20
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.MaintenanceInterval == 0 {
		o.MaintenanceInterval = DefaultMaintenanceInterval
	}
	if o.CompactThreshold == 0 {
		o.CompactThreshold = DefaultCompactThreshold
	}
}

// DefaultLockTimeout is the default of Options.LockTimeout.
const DefaultLockTimeout = time.Second

// ErrLocked: another process (another canaryd) holds the store's file.
var ErrLocked = errors.New("locked by another process (another canaryd?)")

// Store is the embedded backend. It implements store.Store and is safe for
// concurrent use.
type Store struct {
	db   *bolt.DB
	opts Options

	writes chan *write   // unbuffered: a send succeeds once the committer has taken the write
	quit   chan struct{} // closed by Close
	done   chan struct{} // closed when the committer has exited
	// maintDone is closed when the maintenance loop has exited.
	maintDone chan struct{}
	close     sync.Once
	err       error // of Close

	health writeHealth // see faults.go
	tails  tails       // see tail.go
	leases leases      // see lease.go
}

var _ store.Store = (*Store)(nil)

// errClosed is returned by every method after Close.
var errClosed = fmt.Errorf("embedded store closed: %w", store.ErrUnavailable)

// Open opens the store in the file at path, creating it if needed. Only one
// process can have a file open at a time; Open waits up to
// Options.LockTimeout for the lock, then fails with ErrLocked.
func Open(path string, opts Options) (*Store, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	opts.setDefaults()
	open := func() (*bolt.DB, error) {
		for attempt := 0; ; attempt++ {
			db, err := bolt.Open(path, 0o600, &bolt.Options{
				Timeout:         opts.LockTimeout,
				FreelistType:    bolt.FreelistMapType,
				InitialMmapSize: opts.InitialMmapSize,
			})
			if errors.Is(err, berrors.ErrTimeout) {
				return nil, fmt.Errorf("store %s is %w: waited %v for its lock", path, ErrLocked, opts.LockTimeout)
			}
			if err != nil {
				return nil, fmt.Errorf("open store %s: %w", path, err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				if meta := tx.Bucket(bucketMeta); meta != nil && meta.Get(keyMoved) != nil {
					return errMoved // compacted by another process while we waited: open the path again
				}
				for _, name := range topLevelBuckets {
					if _, err := tx.CreateBucketIfNotExists(name); err != nil {
						return err
					}
				}
				meta := tx.Bucket(bucketMeta)
				switch v := meta.Get(keySchema); {
				case v == nil:
					if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
						return err
					}
				case string(v) != schemaVersion:
					return fmt.Errorf("schema version %q, this canaryd reads %q", v, schemaVersion)
				}
				return indexFinished(tx, opts.Now())
			})
			if err == nil {
				return db, nil
			}
			_ = db.Close()
			if !errors.Is(err, errMoved) || attempt >= 3 {
				return nil, fmt.Errorf("open store %s: %w", path, err)
			}
		}
	}
	db, err := open()
	if err != nil {
		return nil, err
	}
	if db, err = compactIfWorth(db, path, opts, open); err != nil {
		return nil, err
	}
	s := &Store{
		db:     db,
		opts:   opts,
		writes: make(chan *write),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),

		maintDone: make(chan struct{}),
	}
	go s.commitLoop()
	go s.maintainLoop()
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	opts.Logger.Info("embedded store open", "path", path, "bytes", size)
	return s, nil
}

// Path returns the path of the store's file.
func (s *Store) Path() string { return s.db.Path() }

// Healthy returns nil while the store is open and takes writes. While
// writes are failing (the file system is full: see faults.go) it probes
// with a small write, and returns nil once one succeeds.
func (s *Store) Healthy(ctx context.Context) error {
	if s.closed() {
		return errClosed
	}
	failing, size := s.health.failing()
	if failing == nil {
		return nil
	}
	if free, ok := freeBytes(s.db.Path()); ok && free < headroom(size) {
		return fmt.Errorf("embedded store %s: %w: %d bytes free on its file system, want %d before writing again (last failure: %w)",
			s.db.Path(), store.ErrUnavailable, free, headroom(size), failing)
	}
	err := s.update(ctx, size, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyProbe, make([]byte, size))
	})
	if err != nil {
		return fmt.Errorf("embedded store %s: %w", s.db.Path(), err)
	}
	// Its pages are free again for the writes it stood for.
	if err := s.update(ctx, 0, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyProbe) }); err != nil {
		return fmt.Errorf("embedded store %s: %w", s.db.Path(), err)
	}
	return nil
}

// Close waits for the writes in progress, rejects later ones and closes the
// file. It is safe to call more than once.
func (s *Store) Close() error {
	s.close.Do(func() {
		close(s.quit)
		<-s.maintDone
		<-s.done
		path := s.db.Path()
		if err := s.db.Close(); err != nil {
			s.err = fmt.Errorf("close store %s: %w", path, err)
		}
		s.opts.Logger.Info("embedded store closed", "path", path)
	})
	return s.err
}

func (s *Store) closed() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// view runs fn in a read-only transaction.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if s.closed() {
		return errClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return errClosed
	}
	return err
}

// A write is one method's change, applied by the committer inside a shared
// transaction. apply may run more than once (the group is retried write by
// write after a failure), so it sets its results afresh on every call.
//
// apply must either write nothing and return a rejection (the write is
// refused: a sentinel such as store.ErrFinished, or invalid input), or
// return nil having written, or return another error, which aborts the
// whole transaction.
type write struct {
	apply func(tx *bolt.Tx) error
	size  int
	done  chan error
}

// rejection marks an error returned by apply before it wrote anything.
type rejection struct{ err error }

func (r rejection) Error() string { return r.err.Error() }
func (r rejection) Unwrap() error { return r.err }

func reject(err error) error { return rejection{err} }

// unreject returns the error a rejection carries.
func unreject(err error) error {
	if r, ok := err.(rejection); ok {
		return r.err
	}
	return err
}

// update hands apply to the committer and waits until it is durable (or
// refused). A write that the committer has taken is always waited for, so
// that an error return means nothing was stored; ctx only cancels a write
// that is still waiting to be taken.
func (s *Store) update(ctx context.Context, size int, apply func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &write{apply: apply, size: size, done: make(chan error, 1)}
	select {
	case s.writes <- w:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return errClosed
	}
	return <-w.done
}

// commitLoop takes writes one group at a time: the first write waiting,
// plus every write that arrives while the previous group commits, up to the
// group limits.
func (s *Store) commitLoop() {
	defer close(s.done)
	var group []*write
	for {
		select {
		case w := <-s.writes:
			group = append(group[:0], w)
		case <-s.quit:
			return
		}
		bytes := group[0].size
	more:
		for len(group) < s.opts.MaxGroupWrites && bytes < s.opts.MaxGroupBytes {
			select {
			case w := <-s.writes:
				group = append(group, w)
				bytes += w.size
			default:
				break more
			}
		}
		s.commit(group)
		clear(group)
	}
}

// commit applies a group of writes in one transaction and reports each
// outcome. If the transaction fails, each write is retried in its own
// transaction, so that one bad write does not fail the others.
func (s *Store) commit(group []*write) {
	results := make([]error, len(group))
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i, w := range group {
			err := safeApply(w.apply, tx)
			if _, ok := err.(rejection); err != nil && !ok {
				return err
			}
			results[i] = unreject(err)
		}
		return nil
	})
	if err == nil {
		s.commitSucceeded()
		for i, w := range group {
			w.done <- results[i]
		}
		return
	}
	if isUnavailable(err) {
		// The file system cannot take the group: it would not take its
		// writes one by one either.
		s.commitFailed(err, len(group), groupBytes(group))
		err = unavailable(err)
		for _, w := range group {
			w.done <- err
		}
		return
	}
	if len(group) > 1 {
		s.opts.Logger.Warn("group commit failed, retrying its writes one by one", "writes", len(group), "err", err)
	}
	for _, w := range group {
		if len(group) > 1 {
			err = s.db.Update(func(tx *bolt.Tx) error { return safeApply(w.apply, tx) })
		}
		switch _, rejected := err.(rejection); {
		case err == nil:
			s.commitSucceeded()
		case rejected:
		case isUnavailable(err):
			s.commitFailed(err, 1, w.size)
			err = unavailable(err)
		default:
			s.opts.Logger.Error("write failed", "err", err)
		}
		w.done <- unreject(err)
	}
}

func groupBytes(group []*write) int {
	n := 0
	for _, w := range group {
		n += w.size
	}
	return n
}

func safeApply(apply func(tx *bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in write: %v", p)
		}
	}()
	return apply(tx)
}
