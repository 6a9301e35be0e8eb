//go:build linux

package openclaw

import (
	"os"
	"syscall"
	"unsafe"
)

// sandboxUID is the host's uid inside its user namespace: not 0, so the
// host holds no capabilities, even in its own namespaces. It maps to
// connec's own uid outside.
const sandboxUID = 1000

// namespacesSupported reports that this platform can isolate the host.
const namespacesSupported = true

// sysProcAttr returns the host's process attributes. With isolate, the host
// gets new user, network and IPC namespaces: its network has no interface
// up at all, so the egress proxy's Unix socket is its only way out, and a
// plugin opening raw sockets reaches nothing. Always: its own process
// group (a terminal's Ctrl-C to connec does not reach it) and SIGKILL when
// the connec thread that started it dies.
func sysProcAttr(isolate bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if isolate {
		a.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC
		a.UidMappings = []syscall.SysProcIDMap{{ContainerID: sandboxUID, HostID: os.Getuid(), Size: 1}}
		a.GidMappings = []syscall.SysProcIDMap{{ContainerID: sandboxUID, HostID: os.Getgid(), Size: 1}}
		a.GidMappingsEnableSetgroups = false
		a.Credential = &syscall.Credential{Uid: sandboxUID, Gid: sandboxUID, NoSetGroups: true}
	}
	return a
}

// limitProcess sets RLIMIT_CORE to 0 on pid: a crashing host must not dump
// its memory (which may hold a credential) to disk.
func limitProcess(pid int) error {
	lim := syscall.Rlimit{Cur: 0, Max: 0}
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_CORE),
		uintptr(unsafe.Pointer(&lim)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
