//go:build !linux

package openclaw

import "syscall"

// namespacesSupported: only Linux hosts get their own namespaces.
const namespacesSupported = false

func sysProcAttr(bool) *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

func limitProcess(int) error { return nil }
