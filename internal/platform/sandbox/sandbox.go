package sandbox

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Mount binds a file or directory of the machine into the sandbox.
type Mount struct {
	// Source is the path outside (a file, directory or Unix socket).
	Source string
	// Target is the absolute path inside.
	Target string
	// Writable leaves the bind writable (only device nodes need it;
	// writable space is a Tmpfs).
	Writable bool
	// Exec lets the sandbox execute and map as code what is under it (the
	// program and its libraries); everything else is noexec.
	Exec bool
	// Device keeps device nodes usable (for /dev/null and the like).
	Device bool
	// State makes a directory the program's own writable state that
	// outlives it: bound writable, writable under Landlock like a tmpfs,
	// and (as root) given to the sandbox's uid, whole, at every start.
	State bool
}

// Tmpfs is a writable, size-capped, non-executable directory owned by the
// sandbox's uid. It lives in the sandbox's mount namespace only: it is gone
// when the sandbox exits, and nothing outside can see it.
type Tmpfs struct {
	Target    string
	SizeBytes int64
}

// Limits are the resource limits the kernel enforces on the program.
type Limits struct {
	// DataBytes caps private writable memory (RLIMIT_DATA): heap, array
	// buffers, every anonymous mapping.
	DataBytes int64
	// CPUSeconds caps the CPU time of all the program's threads together
	// (RLIMIT_CPU, soft and hard: the kernel kills it at the limit).
	CPUSeconds int64
	// Threads caps the processes and threads of the sandbox's uid
	// (RLIMIT_NPROC).
	Threads int64
	// Files caps open file descriptors (RLIMIT_NOFILE).
	Files int64
	// FileSize caps the size of a file the program writes (RLIMIT_FSIZE).
	FileSize int64
}

// Spec is one sandboxed program.
type Spec struct {
	// Path is the program's path inside (it must be under an Exec mount).
	Path string
	// Args is argv, Args[0] included.
	Args []string
	// Env is the whole environment.
	Env []string
	// Dir is the working directory inside (default "/").
	Dir string
	// Root is an empty directory outside, owned by the caller, that the
	// new root is mounted on (in the sandbox's own mount namespace: it
	// stays empty outside).
	Root string
	// Mounts are bound in, in order (parents before children).
	Mounts []Mount
	// Tmpfs are the writable directories.
	Tmpfs []Tmpfs
	// Limits are the resource limits.
	Limits Limits
	// Hostname is the sandbox's host name (default "sandbox").
	Hostname string

	// probe sets everything up and exits 0 instead of executing Path.
	probe bool
}

// SetupError is a failure of one step of setting the boundary up.
type SetupError struct {
	Step string
	Err  string
}

func (e *SetupError) Error() string {
	return "sandbox: " + e.Step + ": " + e.Err
}

// ErrUnsupported is returned where the platform has no sandbox.
var ErrUnsupported = errors.New("sandbox: this platform cannot isolate untrusted programs (Linux with mount, PID and network namespaces, and user namespaces or root, is needed)")

func (s *Spec) validate() error {
	if !s.probe && !path.IsAbs(s.Path) {
		return fmt.Errorf("sandbox: program path %q is not absolute", s.Path)
	}
	if s.Root == "" || !path.IsAbs(s.Root) {
		return fmt.Errorf("sandbox: root mount point %q is not an absolute path", s.Root)
	}
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Source) || !cleanInside(m.Target) {
			return fmt.Errorf("sandbox: mount %q → %q: paths must be absolute and clean", m.Source, m.Target)
		}
		if m.State && (m.Exec || m.Device) {
			return fmt.Errorf("sandbox: state directory %q may hold no programs or devices", m.Target)
		}
	}
	for _, t := range s.Tmpfs {
		if !cleanInside(t.Target) || t.SizeBytes <= 0 {
			return fmt.Errorf("sandbox: tmpfs %q needs a clean absolute path and a size", t.Target)
		}
	}
	return nil
}

// cleanInside reports whether p is an absolute, clean path other than "/".
func cleanInside(p string) bool {
	return path.IsAbs(p) && path.Clean(p) == p && p != "/" && !strings.Contains(p, "\x00")
}
