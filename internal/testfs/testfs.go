// Package testfs gives tests a small file system of their own, to test
// what a full disk does for real: Tmpfs mounts a tmpfs of a given size
// (which needs root, or CAP_SYS_ADMIN), unmounted at the end of the test.
// A test that cannot mount one is skipped with a message on stderr, or
// fails when the environment has CI=true, so that CI cannot pass without
// running the disk-full tests.
package testfs

import (
	"fmt"
	"os"
	"testing"
)

// Tmpfs mounts a tmpfs of size (a mount option value: "2m") on a new
// directory and returns the directory.
func Tmpfs(t testing.TB, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := mount(dir, size); err != nil {
		skip(t, fmt.Sprintf("cannot mount a tmpfs of %s on %s: %v (needs root or CAP_SYS_ADMIN)", size, dir, err))
	}
	t.Cleanup(func() {
		if err := unmount(dir); err != nil {
			t.Errorf("testfs: unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file of zeros at path until the file system is full, and
// returns how many bytes it took.
func Fill(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("testfs: %v", err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			return n
		}
	}
}

func skip(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testfs: %s; CI=true, so this is a failure", msg)
	}
	fmt.Fprintf(os.Stderr, "\n*** testfs: %s: SKIPPING %s — disk-full behaviour is NOT tested ***\n\n", msg, t.Name())
	t.Skipf("testfs: %s", msg)
}
