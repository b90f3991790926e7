package testredis

import (
	"os/exec"
	"syscall"
)

// setPdeathsig has the kernel kill redis-server if the test process dies
// without running its cleanups (a panic, a timeout).
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
