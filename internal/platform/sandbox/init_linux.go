//go:build linux

package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Inherited descriptors of the init.
const (
	specFD   = 3
	statusFD = 4
)

// initFailure is a failed setup step.
type initFailure struct {
	step string
	err  error
}

// runInit is the re-executed binary: it builds the boundary and executes
// the program, or reports the step that failed on the status pipe and
// exits. It never returns.
func runInit() {
	// Landlock, seccomp, no_new_privs, capabilities and the parent-death
	// signal belong to the thread that executes the program.
	runtime.LockOSThread()
	status := os.NewFile(statusFD, "status")
	report := func(step string, err error) {
		b, _ := json.Marshal(SetupError{Step: step, Err: err.Error()})
		_, _ = status.Write(b)
		os.Exit(125)
	}
	var w wireSpec
	specFile := os.NewFile(specFD, "spec")
	b, err := io.ReadAll(io.LimitReader(specFile, 1<<20))
	specFile.Close()
	if err != nil {
		report("spec", err)
	}
	if err := json.Unmarshal(b, &w); err != nil {
		report("spec", err)
	}
	if f := setup(&w); f != nil {
		report(f.step, f.err)
	}
	if w.Probe {
		os.Exit(0)
	}
	// Everything but the standard streams closes on exec: the status pipe
	// closing tells Start that the program runs.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		report("close descriptors", err)
	}
	dir := w.Dir
	if dir == "" {
		dir = "/"
	}
	if err := unix.Chdir(dir); err != nil {
		report("chdir", err)
	}
	err = unix.Exec(w.Path, w.Args, w.Env)
	report("exec "+w.Path, err)
}

func setup(w *wireSpec) *initFailure {
	fail := func(step string, err error) *initFailure { return &initFailure{step, err} }
	host := w.Hostname
	if host == "" {
		host = "sandbox"
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		return fail("hostname", err)
	}
	if err := buildRoot(w); err != nil {
		return err
	}
	if err := setLimits(w.Limits); err != nil {
		return fail("resource limits", err)
	}
	if err := dropPrivileges(w); err != nil {
		return fail("drop privileges", err)
	}
	// Credential changes clear the parent-death signal: set it again.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fail("parent-death signal", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail("no_new_privs", err)
	}
	if err := applyLandlock(w); err != nil {
		return fail("landlock", err)
	}
	if err := applySeccomp(); err != nil {
		return fail("seccomp", err)
	}
	return nil
}

// buildRoot mounts the new root, binds what the spec names into it,
// pivots into it and detaches the old one.
func buildRoot(w *wireSpec) *initFailure {
	fail := func(step string, err error) *initFailure { return &initFailure{step, err} }
	// Nothing mounted here propagates back to the machine.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail("make mounts private", err)
	}
	root := w.Root
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=4m"); err != nil {
		return fail("mount the new root", err)
	}
	for _, m := range w.Mounts {
		if m.State {
			m.Writable = true
		}
		if err := bindMount(root, m); err != nil {
			return fail("bind "+m.Target, err)
		}
		if m.State && !w.UserNS {
			// This start's uid differs from the last one's: the state
			// becomes its own. A link out of the directory cannot lead
			// the walk elsewhere (links are not followed; hard links
			// across mounts do not exist).
			if err := ownTree(filepath.Join(root, m.Target), w.UID); err != nil {
				return fail("own "+m.Target, err)
			}
		}
	}
	for _, t := range w.Tmpfs {
		dst := filepath.Join(root, t.Target)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fail("tmpfs "+t.Target, err)
		}
		opts := "mode=0700,size=" + strconv.FormatInt(t.SizeBytes, 10) + ",uid=" + strconv.Itoa(w.UID) + ",gid=" + strconv.Itoa(w.UID)
		if err := unix.Mount("tmpfs", dst, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
			return fail("tmpfs "+t.Target, err)
		}
	}
	// A proc of the sandbox's own PID namespace, showing its own process
	// only (Node reads its memory use there). Best effort: a container
	// that hides parts of its /proc does not let a user namespace mount
	// another, and nothing of the boundary depends on it.
	procDir := filepath.Join(root, "proc")
	if err := os.Mkdir(procDir, 0o555); err != nil {
		return fail("proc", err)
	}
	if err := unix.Mount("proc", procDir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, "subset=pid,hidepid=invisible"); err != nil {
		_ = os.Remove(procDir)
	}
	if err := unix.Chdir(root); err != nil {
		return fail("enter the new root", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fail("pivot_root", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fail("detach the old root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fail("chdir /", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fail("make the root read-only", err)
	}
	return nil
}

// bindMount binds m.Source at m.Target under root, then remounts it with
// the restrictive flags (keeping the flags the source mount already has:
// a user namespace may not clear them).
func bindMount(root string, m Mount) error {
	fi, err := os.Stat(m.Source)
	if err != nil {
		return err
	}
	dst := filepath.Join(root, m.Target)
	if fi.IsDir() {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	if err := unix.Mount(m.Source, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return err
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID)
	flags |= uintptr(st.Flags) & (unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_RDONLY)
	if !m.Writable {
		flags |= unix.MS_RDONLY
	}
	if !m.Exec {
		flags |= unix.MS_NOEXEC
	}
	if !m.Device {
		flags |= unix.MS_NODEV
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("remount: %w", err)
	}
	return nil
}

// ownTree gives dir and everything in it to uid.
func ownTree(dir string, uid int) error {
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
}

func setLimits(l Limits) error {
	set := func(res int, v int64) error {
		if v <= 0 {
			return nil
		}
		return unix.Setrlimit(res, &unix.Rlimit{Cur: uint64(v), Max: uint64(v)})
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return err
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 64 << 10, Max: 64 << 10}); err != nil {
		return err
	}
	if err := unix.Setrlimit(unix.RLIMIT_MSGQUEUE, &unix.Rlimit{}); err != nil {
		return err
	}
	for _, x := range []struct {
		res int
		v   int64
	}{{unix.RLIMIT_CPU, l.CPUSeconds}, {unix.RLIMIT_DATA, l.DataBytes}, {unix.RLIMIT_NPROC, l.Threads}, {unix.RLIMIT_NOFILE, l.Files}, {unix.RLIMIT_FSIZE, l.FileSize}} {
		if err := set(x.res, x.v); err != nil {
			return err
		}
	}
	return nil
}

// dropPrivileges leaves the init with no capability: as root it becomes
// the sandbox's own uid; in a user namespace it is already uid 1000 there
// and drops the ambient capabilities it set up with, and the bounding set.
func dropPrivileges(w *wireSpec) error {
	if !w.UserNS {
		if err := syscall.Setgroups(nil); err != nil {
			return err
		}
		if err := syscall.Setresgid(w.UID, w.UID, w.UID); err != nil {
			return err
		}
		if err := syscall.Setresuid(w.UID, w.UID, w.UID); err != nil {
			return err
		}
	} else {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
			return err
		}
		for c := 0; c <= unix.CAP_LAST_CAP; c++ {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return err
		}
	}
	// Verify: a boundary that did not drop is no boundary.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	for _, d := range data {
		if d.Effective != 0 || d.Permitted != 0 || d.Inheritable != 0 {
			return errors.New("capabilities remain after dropping them")
		}
	}
	if unix.Getuid() != w.UID || unix.Geteuid() != w.UID {
		return fmt.Errorf("uid is %d/%d, not %d", unix.Getuid(), unix.Geteuid(), w.UID)
	}
	return nil
}
