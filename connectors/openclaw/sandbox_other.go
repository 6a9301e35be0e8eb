//go:build !linux

package openclaw

import (
	"os"
	"syscall"
)

const namespacesSupported = false

func sysProcAttr(bool) *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

func limitProcess(int) error { return nil }

func killGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}
