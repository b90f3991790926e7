// Package testproc holds what the test harnesses that run a real server
// process (internal/testprom, internal/testalertmanager) share: finding
// the binary or skipping loudly, free loopback ports, and having the
// kernel kill the process when the test process dies.
package testproc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
)

// LookPath returns the path of the named binary, or ends the test: it
// skips with a message on stderr, or fails when the environment has
// CI=true, so that CI cannot pass without running the tests that need it.
// pkg names the Debian package that provides it.
func LookPath(t testing.TB, name, pkg, what string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err == nil {
		return bin
	}
	msg := fmt.Sprintf("%s is not installed (apt-get install %s)", name, pkg)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI=true, so this is a failure", msg)
	}
	fmt.Fprintf(os.Stderr, "\n*** %s: SKIPPING %s — %s is NOT tested ***\n\n", msg, t.Name(), what)
	t.Skip(msg)
	return ""
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
