//go:build !linux

package testredis

import "os/exec"

func setPdeathsig(*exec.Cmd) {}
