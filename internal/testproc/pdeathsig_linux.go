package testproc

import (
	"os/exec"
	"syscall"
)

// SetPdeathsig has the kernel kill the command if the test process dies
// without running its cleanups (a panic, a timeout).
func SetPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
