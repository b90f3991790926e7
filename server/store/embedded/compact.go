package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Compaction. bbolt reuses the pages that deletes free (retention, folded
// deltas) but never gives them back to the file system: the file keeps the
// size of its largest day. Open compacts it first when its free pages take
// at least Options.CompactThreshold bytes and a quarter of the file: it
// copies every bucket into FILE.compact with bbolt's Compact (the live
// data only), renames that over FILE (atomic; the directory is synced),
// and opens it. It runs before the store serves, holding the lock of the
// old file, so nothing writes meanwhile. What makes it safe:
//   - a crash before the rename leaves the old file whole (and a stale
//     FILE.compact, removed by the next attempt);
//   - a failure (no room for the copy) is logged and the old file is used;
//   - after the rename the old file gets a "moved" mark before its lock is
//     released, so another canaryd that was waiting for that lock (it
//     opened the old file before the rename) sees the mark and opens FILE
//     again instead of serving from a file that no longer has a name.
// It costs a copy of the live data: seconds per GiB.

// DefaultCompactThreshold is the default of Options.CompactThreshold.
const DefaultCompactThreshold = 64 << 20

// compactTxBytes bounds the bytes Compact copies per transaction.
const compactTxBytes = 64 << 20

// errMoved: the file was compacted into a new one at its path.
var errMoved = errors.New("file replaced by its compacted copy")

// keyMoved marks, in meta, a file that was compacted into a new one.
var keyMoved = []byte("moved")

// compactIfWorth compacts db (open, locked, at path) when its free pages
// reach the threshold, and returns the database to use: the compacted
// one, or db itself.
func compactIfWorth(db *bolt.DB, path string, opts Options, open func() (*bolt.DB, error)) (*bolt.DB, error) {
	if opts.CompactThreshold < 0 {
		return db, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return db, nil
	}
	st := db.Stats()
	free := max(int64(st.FreeAlloc), int64(st.FreePageN)*int64(db.Info().PageSize))
	if free < opts.CompactThreshold || 4*free < fi.Size() {
		return db, nil
	}
	start := time.Now()
	tmp := path + ".compact"
	if err := compactInto(db, tmp); err != nil {
		os.Remove(tmp)
		opts.Logger.Warn("embedded store not compacted; using it as it is", "path", path, "free_bytes", free, "err", err)
		return db, nil
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		opts.Logger.Warn("embedded store not compacted; using it as it is", "path", path, "err", err)
		return db, nil
	}
	syncDir(filepath.Dir(path))
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyMoved, []byte(path)) }); err != nil {
		opts.Logger.Warn("mark the old file of a compacted store", "path", path, "err", err)
	}
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("close store %s before reopening it compacted: %w", path, err)
	}
	ndb, err := open()
	if err != nil {
		return nil, err
	}
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	opts.Logger.Info("embedded store compacted", "path", path, "bytes_before", fi.Size(), "bytes_after", size,
		"elapsed", time.Since(start).Round(time.Millisecond))
	return ndb, nil
}

// compactInto copies the live data of db into a new file at tmp, synced.
func compactInto(db *bolt.DB, tmp string) error {
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	if err := bolt.Compact(dst, db, compactTxBytes); err != nil {
		dst.Close()
		return err
	}
	return dst.Close() // every transaction of Compact was synced
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
