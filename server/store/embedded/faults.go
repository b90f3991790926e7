package embedded

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/canaryd/canaryd/server/store"
)

// Write failures. A commit that fails because the file system cannot take
// the write now (full, over quota, read-only, I/O error) stored nothing
// (bbolt rolls the transaction back: the meta page that would publish it
// is written last), and may succeed later: such failures are returned
// wrapping store.ErrUnavailable, the store reports itself unhealthy until
// a write succeeds again, and they are logged at most once per
// failureLogEvery, with a count. While writes fail, Healthy probes with a
// write as large as the largest that failed (up to maxProbeBytes, removed
// again right after), and only once the file system has headroom (see
// headroom) again: a write may fit in the file's free pages, or in the
// blocks a failed write left allocated, while the next batch does not, and
// health would flap while the disk stays nearly full.

// failureLogEvery is the shortest interval between two logs of failing
// writes.
const failureLogEvery = 10 * time.Second

// unavailableErrnos are the errors of a file system that cannot take a
// write now.
var unavailableErrnos = []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EIO}

// isUnavailable reports whether err, from a commit, is a failure of the
// file system (see unavailableErrnos). bbolt formats the errors of growing
// the file with %s, so their text is matched too.
func isUnavailable(err error) bool {
	for _, e := range unavailableErrnos {
		if errors.Is(err, e) || strings.Contains(err.Error(), e.Error()) {
			return true
		}
	}
	return false
}

// writeHealth is the state of the store's writes: failing since the first
// of a run of failed commits, until a commit succeeds.
type writeHealth struct {
	mu         sync.Mutex
	err        error // the last failure, while failing; nil otherwise
	since      time.Time
	nFailed    int       // failed writes since since
	lastLog    time.Time // of the last failure logged
	suppressed int       // failed writes since the last log
	size       int       // payload bytes of the largest failed commit, capped at maxProbeBytes
}

// maxProbeBytes caps the probe of Healthy.
const maxProbeBytes = 4 << 20

// failed records a failed commit of n writes of size payload bytes and
// reports whether to log it now, with the failures not logged since the
// last log.
func (h *writeHealth) failed(err error, n, size int, now time.Time) (log bool, suppressed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.since = now
		h.nFailed, h.size = 0, 0
	}
	h.err = err
	h.nFailed += n
	h.size = min(max(h.size, size), maxProbeBytes)
	if now.Sub(h.lastLog) < failureLogEvery {
		h.suppressed += n
		return false, 0
	}
	suppressed, h.suppressed, h.lastLog = h.suppressed, 0, now
	return true, suppressed
}

// succeeded records a successful commit. It returns how long writes had
// been failing and how many failed, if they were.
func (h *writeHealth) succeeded(now time.Time) (failing time.Duration, failed int, was bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		return 0, 0, false
	}
	failing, failed = now.Sub(h.since), h.nFailed
	h.err, h.suppressed, h.lastLog = nil, 0, time.Time{}
	return failing, failed, true
}

// failing returns the last write failure while writes are failing, and
// the size of the probe that tells when they succeed again.
func (h *writeHealth) failing() (err error, probeSize int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err, h.size
}

// unavailable returns the error of a commit that failed for want of space
// (or another failure of the file system), for the writes of the group.
func unavailable(err error) error {
	return fmt.Errorf("%w: write failed: %w", store.ErrUnavailable, err)
}

// commitFailed records and logs (rate-limited) a commit of n writes of
// size payload bytes that failed with err, a failure of the file system.
func (s *Store) commitFailed(err error, n, size int) {
	if log, suppressed := s.health.failed(err, n, size, time.Now()); log {
		s.opts.Logger.Error("embedded store writes failing; answering UNAVAILABLE until a write succeeds",
			"path", s.db.Path(), "err", err, "writes", n, "failed_writes_not_logged", suppressed,
			"log_every", failureLogEvery)
	}
}

// commitSucceeded records a successful commit.
func (s *Store) commitSucceeded() {
	if failing, failed, was := s.health.succeeded(time.Now()); was {
		s.opts.Logger.Info("embedded store writes succeed again", "path", s.db.Path(),
			"failing_for", failing.Round(time.Millisecond), "failed_writes", failed)
	}
}

// headroom is the free space Healthy wants on the file system, once writes
// failed, before it probes: four times the largest write that failed, at
// least minHeadroom.
func headroom(probeSize int) int64 { return max(4*int64(probeSize), minHeadroom) }

// minHeadroom is the least headroom.
const minHeadroom = 1 << 20

// keyProbe is the meta key Healthy writes while writes are failing.
var keyProbe = []byte("probe")
