//go:build !linux

package testproc

import "os/exec"

// SetPdeathsig does nothing outside Linux.
func SetPdeathsig(*exec.Cmd) {}
