//go:build linux

package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// initArg0 is argv[0] of the re-executed binary acting as the init.
const initArg0 = "connec-sandbox-init"

// nsUID is the program's uid inside a user namespace (when connec is not
// root): not 0, so it holds no capability even there.
const nsUID = 1000

// UIDBase is the first of the uids sandboxes run as when connec runs as
// root (one per sandbox, cycling through 1<<20 of them): uids no account
// on the machine has, so a sandbox shares a uid with neither connec
// (root), PostgreSQL, nor another sandbox running at the same time.
const UIDBase = 2_100_000_000

// setupTimeout bounds the init's work before it executes the program.
const setupTimeout = 20 * time.Second

var uidCounter atomic.Uint32

// wireSpec is what the init reads from its spec pipe.
type wireSpec struct {
	Spec
	Probe bool `json:"probe"`
	// UserNS: the init runs as nsUID in its own user namespace with
	// ambient capabilities to set up, and drops them; otherwise it is root
	// and drops to UID.
	UserNS bool `json:"userns"`
	UID    int  `json:"uid"`
}

func init() {
	if len(os.Args) > 0 && os.Args[0] == initArg0 {
		runInit() // never returns
	}
}

// Start runs spec's program in the sandbox with the given standard
// streams. It returns once the program runs (the init has executed it);
// the caller Waits for it. Any failure to set the boundary up is returned
// as a *SetupError naming the step, and nothing runs.
func Start(spec Spec, stdin, stdout, stderr *os.File) (*exec.Cmd, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	w := wireSpec{Spec: spec, Probe: spec.probe}
	attr := &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	if os.Geteuid() == 0 {
		w.UID = UIDBase + int((uint32(os.Getpid())<<8+uidCounter.Add(1))%(1<<20))
	} else {
		w.UserNS, w.UID = true, nsUID
		attr.Cloneflags |= unix.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: nsUID, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: nsUID, HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
		attr.Credential = &syscall.Credential{Uid: nsUID, Gid: nsUID, NoSetGroups: true}
		// Only to build the root; dropped before the program runs.
		attr.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP}
	}
	body, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe", Args: []string{initArg0}, Env: []string{}, Dir: "/",
		Stdin: stdin, Stdout: stdout, Stderr: stderr,
		ExtraFiles:  []*os.File{specR, statW},
		SysProcAttr: attr,
	}
	err = cmd.Start()
	specR.Close()
	statW.Close()
	if err != nil {
		specW.Close()
		statR.Close()
		return nil, classifyStartError(err, w.UserNS)
	}
	// The spec goes by pipe, never argv or the environment: it may hold a
	// variable the program is given a credential in. It is small, and the
	// init reads it at once.
	_, werr := specW.Write(body)
	clear(body)
	specW.Close()
	status, rerr := readStatus(statR)
	statR.Close()
	if werr == nil && rerr == nil && len(status) == 0 {
		return cmd, nil
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	var se SetupError
	switch {
	case len(status) > 0 && json.Unmarshal(status, &se) == nil && se.Step != "":
		return nil, &se
	case rerr != nil:
		return nil, &SetupError{Step: "start", Err: rerr.Error()}
	default:
		return nil, &SetupError{Step: "start", Err: fmt.Sprintf("the init did not take its spec: %v", werr)}
	}
}

// readStatus reads the init's status pipe to EOF: nothing means the
// program was executed (the pipe is close-on-exec), otherwise a JSON
// SetupError.
func readStatus(r *os.File) ([]byte, error) {
	_ = r.SetReadDeadline(time.Now().Add(setupTimeout))
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, fmt.Errorf("the sandbox was not set up within %s", setupTimeout)
	}
	return b, err
}

// classifyStartError turns a failed clone into a clear SetupError.
func classifyStartError(err error, userns bool) error {
	step := "namespaces"
	msg := err.Error()
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EACCES) {
		if userns {
			msg += " (this kernel or container does not let an unprivileged process create user, mount, PID and network namespaces; " +
				"enable unprivileged user namespaces (kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0, " +
				"or an AppArmor profile allowing userns), or run connec as root, which needs no user namespace)"
		} else {
			msg += " (the container denies creating mount, PID and network namespaces: it needs CAP_SYS_ADMIN or a seccomp profile allowing unshare)"
		}
	}
	return &SetupError{Step: step, Err: msg}
}
