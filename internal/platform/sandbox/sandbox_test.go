//go:build linux

package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test binary is also the program the tests run in a sandbox: with
// helperEnv set, TestMain runs probe() instead of the tests.
const (
	helperEnv = "CONNEC_SANDBOX_TEST_HELPER"
	childEnv  = "CONNEC_SANDBOX_TEST_UNPRIVILEGED"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		b, _ := json.Marshal(inside())
		os.Stdout.Write(b)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// inside tries, from inside the sandbox, what the boundary must refuse,
// and reports each outcome: "ok" or the errno's name.
func inside() map[string]string {
	r := map[string]string{}
	res := func(err error) string {
		if err == nil {
			return "ok"
		}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return unix.ErrnoName(errno)
		}
		return err.Error()
	}
	r["uid"] = fmt.Sprint(unix.Getuid())
	r["pid"] = fmt.Sprint(unix.Getpid())
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	_ = unix.Capget(&hdr, &caps[0])
	r["caps"] = fmt.Sprintf("%x%x", caps[0].Effective|caps[0].Permitted, caps[1].Effective|caps[1].Permitted)
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && (k == "Seccomp" || k == "NoNewPrivs") {
				r[k] = strings.TrimSpace(v)
			}
		}
	}
	entries, _ := os.ReadDir("/")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	r["root"] = strings.Join(names, ",")
	pids, _ := os.ReadDir("/proc")
	var ps []string
	for _, p := range pids {
		ps = append(ps, p.Name())
	}
	r["proc"] = strings.Join(ps, ",")
	_, err := os.Open("/etc/passwd")
	r["open_outside"] = res(err)
	r["write_root"] = res(os.WriteFile("/x", nil, 0o644))
	r["write_home"] = res(os.WriteFile("/home/x", []byte("x"), 0o644))
	r["mkfifo_home"] = res(unix.Mkfifo("/home/fifo", 0o600))
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	r["socket_inet"] = res(err)
	if err == nil {
		unix.Close(fd)
	}
	fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	r["socket_unix"] = res(err)
	if err == nil {
		unix.Close(fd)
	}
	fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, 0)
	r["socket_netlink"] = res(err)
	if err == nil {
		unix.Close(fd)
	}
	pid, _, errno := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if errno == 0 && pid == 0 {
		unix.Exit(0) // the child, had fork worked
	}
	r["fork"] = res(errnoErr(errno))
	r["unshare_user"] = res(unix.Unshare(unix.CLONE_NEWUSER))
	r["mount"] = res(unix.Mount("tmpfs", "/home", "tmpfs", 0, ""))
	r["kill_outside"] = res(unix.Kill(1<<22-1, 0))
	_, _, errno = unix.RawSyscall6(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
	r["mmap_shared_anon"] = res(errnoErr(errno))
	_, err = unix.MemfdCreate("x", 0)
	r["memfd"] = res(err)
	_, _, errno = unix.RawSyscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&[120]byte{})), 0)
	r["io_uring"] = res(errnoErr(errno))
	r["ptrace"] = res(unix.PtraceAttach(1))
	// Beyond RLIMIT_DATA (256 MiB, see runInside): refused by the kernel.
	_, err = unix.Mmap(-1, 0, 512<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	r["mmap_over_limit"] = res(err)
	return r
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// runInside runs the test binary's inside() in a sandbox and returns its
// report.
func runInside(t *testing.T) map[string]string {
	t.Helper()
	self, mounts, err := Program(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	spec := Spec{
		Path: self, Args: []string{self, "-test.run=^$"}, Env: []string{helperEnv + "=1", "GOMAXPROCS=2"},
		Root: root, Mounts: mounts, Tmpfs: []Tmpfs{{Target: "/home", SizeBytes: 1 << 20}},
		Limits: Limits{DataBytes: 1 << 30, CPUSeconds: 30, Threads: 64, Files: 64, FileSize: 1 << 20},
	}
	// The limit is measured with a mapping over it (not under the race
	// detector: its shadow memory needs no limit at all).
	spec.Limits.DataBytes = 256 << 20
	if raceEnabled {
		spec.Limits.DataBytes = 0
	}
	var out, errb bytes.Buffer
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _, _ = out.ReadFrom(r); close(done) }()
	er, ew, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errDone := make(chan struct{})
	go func() { _, _ = errb.ReadFrom(er); close(errDone) }()
	cmd, err := Start(spec, nil, w, ew)
	w.Close()
	ew.Close()
	if err != nil {
		t.Fatal(err)
	}
	werr := cmd.Wait()
	<-done
	<-errDone
	if werr != nil {
		t.Fatalf("the program in the sandbox: %v\n%s", werr, errb.String())
	}
	var rep map[string]string
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report %q: %v\n%s", out.String(), err, errb.String())
	}
	return rep
}

// Each mechanism of the boundary, seen from inside, with a program that is
// not Node: the kernel refuses what the sandbox must not do.
func TestTheKernelEnforcesTheBoundary(t *testing.T) {
	if _, err := Available(); err != nil {
		t.Skipf("no sandbox here: %v", err)
	}
	rep := runInside(t)
	t.Logf("inside: %v", rep)
	want := map[string]string{
		"pid": "1", "caps": "00", "NoNewPrivs": "1", "Seccomp": "2",
		"open_outside": "ENOENT", "write_root": "EROFS", "write_home": "ok",
		"socket_inet": "EPERM", "socket_unix": "ok", "socket_netlink": "EPERM",
		"fork": "EPERM", "unshare_user": "EPERM", "mount": "EPERM", "kill_outside": "ESRCH",
		"mmap_shared_anon": "EPERM", "memfd": "EPERM", "io_uring": "EPERM", "ptrace": "EPERM",
		"mmap_over_limit": "ENOMEM",
	}
	if raceEnabled {
		delete(want, "mmap_over_limit")
	}
	if LandlockABI() > 0 {
		// The tmpfs allows a FIFO; only Landlock refuses it.
		want["mkfifo_home"] = "EACCES"
	}
	for k, v := range want {
		if rep[k] != v {
			t.Errorf("%s: %q, want %q", k, rep[k], v)
		}
	}
	if got := strings.Split(rep["proc"], ","); !slices.Equal(got, []string{"1", "self", "thread-self"}) && rep["proc"] != "" {
		t.Errorf("/proc shows %v: other processes are visible", got)
	}
	for _, name := range strings.Split(rep["root"], ",") {
		if !slices.Contains([]string{"dev", "home", "lib", "lib64", "proc", "tmp", "usr", "work", "root"}, name) {
			t.Errorf("the root holds %s", name)
		}
	}
	if os.Geteuid() == 0 {
		if rep["uid"] == "0" {
			t.Error("the program runs as root")
		}
	} else if rep["uid"] != "1000" {
		t.Errorf("uid %s in the user namespace, want 1000", rep["uid"])
	}
}

// As an unprivileged user the same holds, in a user namespace.
func TestTheKernelEnforcesTheBoundaryUnprivileged(t *testing.T) {
	if os.Getenv(childEnv) != "" || os.Geteuid() != 0 {
		t.Skip("this run is already unprivileged")
	}
	shared, err := os.MkdirTemp("", "connec-sandbox-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(shared, "sandbox.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^TestTheKernelEnforcesTheBoundary$", "-test.v")
	cmd.Env = []string{childEnv + "=1", "TMPDIR=" + shared, "HOME=" + shared}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestTheKernelEnforcesTheBoundary")) {
		t.Fatalf("as uid 65534: %v\n%s", err, out)
	}
}

// A boundary that cannot be built is an error naming the step, and nothing
// runs.
func TestSetupFailureIsReportedAndNothingRuns(t *testing.T) {
	if _, err := Available(); err != nil {
		t.Skipf("no sandbox here: %v", err)
	}
	self, mounts, err := Program(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	spec := Spec{Path: self, Args: []string{self, "-test.run=^$"}, Env: []string{helperEnv + "=1"}, Root: t.TempDir(),
		Mounts: append(mounts, Mount{Source: filepath.Join(t.TempDir(), "missing"), Target: "/missing"})}
	start := time.Now()
	_, err = Start(spec, nil, nil, nil)
	var se *SetupError
	if !errors.As(err, &se) || se.Step != "bind /missing" || !strings.Contains(se.Err, "no such file") {
		t.Fatalf("Start = %v, want a SetupError for bind /missing", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the program ran")
	}
	t.Logf("refused in %s: %v", time.Since(start).Round(time.Millisecond), err)

	for _, bad := range []Spec{
		{Path: "relative", Root: "/tmp"},
		{Path: "/x", Root: ""},
		{Path: "/x", Root: "/tmp", Mounts: []Mount{{Source: "/etc", Target: "/"}}},
		{Path: "/x", Root: "/tmp", Tmpfs: []Tmpfs{{Target: "/home"}}},
		{Path: "/x", Root: "/tmp", Mounts: []Mount{{Source: "/etc", Target: "/a/../b"}}},
	} {
		if _, err := Start(bad, nil, nil, nil); err == nil {
			t.Errorf("spec %+v accepted", bad)
		}
	}
}

// Program binds the program, its interpreter and its libraries, nothing
// else.
func TestProgramFindsItsLibraries(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	inside, mounts, err := Program(sh)
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(sh)
	if inside != real || mounts[0].Target != real || !mounts[0].Exec || mounts[0].Writable {
		t.Fatalf("program %s mounts %+v", inside, mounts[0])
	}
	var libc bool
	for _, m := range mounts {
		if !m.Exec || m.Writable || m.Device {
			t.Errorf("mount %+v is not read-only code", m)
		}
		if strings.Contains(filepath.Base(m.Target), "libc.so") {
			libc = true
		}
		if fi, err := os.Stat(m.Source); err != nil || fi.IsDir() {
			t.Errorf("mount source %s is not a file", m.Source)
		}
	}
	if !libc {
		t.Errorf("no libc among %+v", mounts)
	}
}
