//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// Features describes the boundary this machine gives.
type Features struct {
	// UserNamespace: connec is not root, so the sandbox runs in a user
	// namespace mapped to connec's uid; as root it runs as a uid of its own.
	UserNamespace bool `json:"user_namespace"`
	// Landlock is the kernel's Landlock ABI (0: none).
	Landlock int `json:"landlock_abi"`
	// Seccomp is always true where the sandbox is available.
	Seccomp bool `json:"seccomp"`
}

func (f Features) String() string {
	uid := "a uid of its own (connec runs as root)"
	if f.UserNamespace {
		uid = "uid 1000 of a user namespace mapped to connec's uid"
	}
	ll := "no Landlock (kernel without it)"
	if f.Landlock > 0 {
		ll = fmt.Sprintf("Landlock ABI %d", f.Landlock)
	}
	return "mount, PID, network, IPC and UTS namespaces, " + uid + ", seccomp, " + ll
}

// probeRetry is how long a failed probe's answer stands before Available
// tries again (an administrator may enable user namespaces meanwhile).
const probeRetry = 30 * time.Second

var (
	probeMu   sync.Mutex
	probed    bool
	probeAt   time.Time
	probeErr  error
	probeFeat Features
)

// Available sets a whole sandbox up (namespaces, the new root, dropping
// privileges, Landlock, seccomp) without running anything in it, and
// reports what this machine gives, or why it cannot isolate a program. A
// success is kept for the life of the process, a failure for 30 s.
func Available() (Features, error) {
	probeMu.Lock()
	defer probeMu.Unlock()
	if !probed || probeErr != nil && time.Since(probeAt) > probeRetry {
		probeFeat, probeErr = probe()
		probed, probeAt = true, time.Now()
	}
	return probeFeat, probeErr
}

func probe() (Features, error) {
	f := Features{UserNamespace: os.Geteuid() != 0, Landlock: LandlockABI()}
	if _, err := filter(); err != nil {
		return f, err
	}
	dir, err := os.MkdirTemp("", "connec-sandbox-probe-")
	if err != nil {
		return f, fmt.Errorf("sandbox: probe directory: %w", err)
	}
	defer os.RemoveAll(dir)
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return f, err
	}
	defer devnull.Close()
	spec := Spec{Root: dir, Tmpfs: []Tmpfs{{Target: "/home", SizeBytes: 1 << 20}}, probe: true,
		Mounts: []Mount{{Source: os.DevNull, Target: "/dev/null", Writable: true, Device: true}}}
	cmd, err := Start(spec, devnull, devnull, devnull)
	if err != nil {
		return f, err
	}
	if err := cmd.Wait(); err != nil {
		return f, &SetupError{Step: "probe", Err: err.Error()}
	}
	f.Seccomp = true
	return f, nil
}
