package openclaw

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/nodejs"
	"github.com/connec/connec/internal/platform/sandbox"
)

// ReasonSandbox is the fault reason when the machine cannot give plugin
// hosts their OS boundary: plugins then do not run at all.
const ReasonSandbox = "sandbox_unavailable"

// Paths inside a host's sandbox.
const (
	insidePlugin = "/plugin"             // the install directory, read-only, noexec
	insideHost   = "/connec/host.mjs"    // the host program, read-only
	insideEgress = "/connec/egress.mjs"  // its network module, read-only
	insideProxy  = "/connec/egress.sock" // the egress proxy: the only way out
	insideHome   = "/home"               // HOME and TMPDIR: a tmpfs of its own
)

// SandboxStatus reports whether this machine can run plugin hosts behind
// their OS boundary, and what that boundary is made of. Plugins never run
// without it: where it is unavailable, installing and calling them fail
// with the reason.
func SandboxStatus() (string, error) {
	f, err := sandbox.Available()
	if err != nil {
		return "", err
	}
	return f.String(), nil
}

func sandboxFault(err error) error {
	return fault.Wrap(fault.Unavailable, err, "OpenClaw plugins cannot run on this machine: it cannot give them their sandbox (%v); "+
		"see connectors/openclaw/doc.go", err).WithDetails(map[string]any{"reason": ReasonSandbox})
}

// startHost launches a host in its sandbox and waits for its ready
// notification.
func startHost(ctx context.Context, hs hostSpec) (*hostProc, error) {
	o := hs.opts
	if _, err := sandbox.Available(); err != nil {
		return nil, sandboxFault(err)
	}
	rt, err := o.runtime()
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "Node.js is not usable for OpenClaw plugins: %v", err).WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	h, err := launch(hs, rt)
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(o.startTimeout)
	defer timer.Stop()
	select {
	case rp := <-h.ready:
		if !rp.OK {
			h.stop()
			msg := rp.Error
			if len(msg) > 500 {
				msg = msg[:500] + "…"
			}
			return nil, fault.New(fault.Unavailable, "the OpenClaw plugin could not be loaded: %s", msg).WithDetails(map[string]any{"reason": ReasonHostStart})
		}
		h.log.Debug("openclaw host ready", "pid", h.pid, "node", rp.Node, "typescript", rp.TypeScript)
		return h, nil
	case <-h.dead:
		<-h.exited
		return nil, fault.Wrap(fault.Unavailable, h.deathErr, "the OpenClaw plugin host exited while starting (%s)", h.status).WithDetails(map[string]any{"reason": ReasonHostStart})
	case <-timer.C:
		h.stop()
		return nil, fault.New(fault.Unavailable, "the OpenClaw plugin host did not start within %s", o.startTimeout).WithDetails(map[string]any{"reason": ReasonHostStart})
	case <-ctx.Done():
		h.stop()
		return nil, ctxFault(ctx, "the OpenClaw plugin host was starting")
	}
}

// maxSocketPath leaves room under the 108-byte sun_path limit.
const maxSocketPath = 100

// launch starts node running the host program in a sandbox of its own:
// its root holds node and its libraries, the host program, the plugin's
// install directory (read-only) and the egress proxy's socket, its home is
// a tmpfs, and the kernel enforces its limits (internal/platform/sandbox).
func launch(hs hostSpec, rt *nodejs.Runtime) (_ *hostProc, err error) {
	o := hs.opts
	startFault := func(err error, what string) error {
		return fault.Wrap(fault.Unavailable, err, "%s", what).WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	ps, err := o.processState()
	if err != nil {
		return nil, startFault(err, "the plugin hosts' state directory is not usable")
	}
	state, err := os.MkdirTemp(ps.dir, "host-")
	if err != nil {
		return nil, startFault(err, "cannot create a plugin host state directory")
	}
	cleanup := []func(){func() { _ = os.RemoveAll(state) }}
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	root := filepath.Join(state, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		return nil, startFault(err, "cannot create the plugin host's root")
	}
	hostFile := filepath.Join(state, "host.mjs")
	if err := os.WriteFile(hostFile, hostProgram, 0o444); err != nil {
		return nil, startFault(err, "cannot write the plugin host program")
	}
	if err := os.WriteFile(filepath.Join(state, "egress.mjs"), nodejs.EgressModule, 0o444); err != nil {
		return nil, startFault(err, "cannot write the plugin host program")
	}
	log := o.log.With("type", hs.typeName, "instance", hs.instance)
	sock := filepath.Join(state, "egress.sock")
	if len(sock) > maxSocketPath {
		// Unix socket paths are short (108 bytes on Linux): use a private
		// directory of its own in the system temp directory.
		sd, err := os.MkdirTemp("", "connec-oc-")
		if err != nil {
			return nil, startFault(err, "cannot create the egress proxy's directory")
		}
		cleanup = append(cleanup, func() { _ = os.RemoveAll(sd) })
		sock = filepath.Join(sd, "s")
	}
	proxy, err := egress.NewProxy(sock, log, "openclaw egress", "type", hs.typeName, "instance", hs.instance)
	if err != nil {
		return nil, startFault(err, "cannot start the plugin's egress proxy")
	}
	cleanup = append(cleanup, proxy.Close)
	// As root the host runs as a uid of its own, which must be able to
	// connect; the socket's directory is connec's alone (0700).
	if err := os.Chmod(sock, 0o666); err != nil {
		return nil, startFault(err, "cannot open the egress proxy to the host")
	}

	spec, err := sandboxSpec(hs, rt, root, hostFile, sock)
	if err != nil {
		return nil, startFault(err, "cannot prepare the plugin host's sandbox")
	}

	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, startFault(err, "pipe")
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, startFault(err, "pipe")
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		for _, f := range []*os.File{stdinR, stdinW, stdoutR, stdoutW} {
			f.Close()
		}
		return nil, startFault(err, "pipe")
	}
	cmd, startErr := sandbox.Start(spec, stdinR, stdoutW, stderrW)
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()
	if startErr != nil {
		stdinW.Close()
		stdoutR.Close()
		stderrR.Close()
		var se *sandbox.SetupError
		if errors.As(startErr, &se) {
			return nil, sandboxFault(startErr)
		}
		return nil, startFault(startErr, "cannot start the OpenClaw plugin host")
	}
	h := &hostProc{
		cmd: cmd, pid: cmd.Process.Pid, stdin: stdinW, state: state, proxy: proxy, log: log,
		maxFrame: o.maxFrameBytes, argv: spec.Args,
		pending: map[int64]chan rpcFrame{}, ready: make(chan readyParams, 1),
		dead: make(chan struct{}), exited: make(chan struct{}),
		stderr: newLineLimiter(stderrBurst, stderrPerSecond),
	}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		h.stderrLoop(stderrR)
	}()
	go h.readLoop(stdoutR)
	go func() {
		werr := cmd.Wait()
		h.status = describeExit(cmd.ProcessState, spec.Limits, h.killed.Load())
		h.fail(exitFault(werr, h.status), false)
		close(h.exited)
		<-stderrDone
		h.logDropped()
		stdinW.Close()
		stdoutR.Close()
		stderrR.Close()
		h.wipeRedactor()
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}()
	return h, nil
}

// sandboxSpec is the host's sandbox: node and its libraries, the host
// program, the plugin's install directory and the egress socket, a tmpfs
// home, device nodes, and the kernel's resource limits.
func sandboxSpec(hs hostSpec, rt *nodejs.Runtime, root, hostFile, sock string) (sandbox.Spec, error) {
	o := hs.opts
	node, mounts, err := rt.Program()
	if err != nil {
		return sandbox.Spec{}, err
	}
	mounts = append(mounts,
		sandbox.Mount{Source: os.DevNull, Target: "/dev/null", Writable: true, Device: true},
		sandbox.Mount{Source: "/dev/zero", Target: "/dev/zero", Device: true},
		sandbox.Mount{Source: "/dev/random", Target: "/dev/random", Device: true},
		sandbox.Mount{Source: "/dev/urandom", Target: "/dev/urandom", Device: true},
		sandbox.Mount{Source: hs.installDir, Target: insidePlugin},
		sandbox.Mount{Source: hostFile, Target: insideHost},
		sandbox.Mount{Source: filepath.Join(filepath.Dir(hostFile), "egress.mjs"), Target: insideEgress},
		sandbox.Mount{Source: sock, Target: insideProxy},
	)
	cpu := o.cpuLimit
	if cpu <= 0 {
		cpu = max(hs.budget, o.startTimeout) + cpuStartAllowance
	}
	stateBytes := int64(o.stateMB) << 20
	args := append([]string{node}, nodeArgs(rt, hs, o)...)
	return sandbox.Spec{
		Path: node, Args: args, Env: hostEnv(insideHome, insideHome), Dir: insideHome,
		Root: root, Mounts: mounts, Hostname: "openclaw",
		Tmpfs: []sandbox.Tmpfs{{Target: insideHome, SizeBytes: stateBytes}},
		Limits: sandbox.Limits{
			DataBytes:  int64(o.memoryMB) << 20,
			CPUSeconds: int64((cpu + time.Second - 1) / time.Second),
			Threads:    int64(o.threads),
			Files:      1024,
			FileSize:   stateBytes,
		},
	}, nil
}

// inside maps a path under the install directory to the sandbox's view.
func (hs hostSpec) inside(p string) string {
	if p == "" {
		return ""
	}
	rel, err := filepath.Rel(hs.installDir, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return p
	}
	return path.Join(insidePlugin, filepath.ToSlash(rel))
}

// nodeArgs are the host's flags, with paths as the sandbox sees them: the
// permission model (read the host program and the plugin's install
// directory, write only the home; no child processes, workers, addons or
// WASI, none of which is allowed), a heap cap, and the host's own
// arguments (none secret).
func nodeArgs(rt *nodejs.Runtime, hs hostSpec, o *options) []string {
	a := []string{"--disable-warning=ExperimentalWarning", "--max-old-space-size=" + strconv.Itoa(o.maxOldSpaceMB)}
	if !o.noRuntimeGuards {
		a = append(a, rt.PermissionFlag,
			"--allow-fs-read="+insideHost,
			"--allow-fs-read="+insideEgress,
			"--allow-fs-read="+insidePlugin+"/",
			"--allow-fs-write="+insideHome+"/",
			"--no-addons",
		)
	}
	if hs.tsRuntime != "" {
		a = append(a, "--experimental-vm-modules")
	}
	a = append(a, insideHost,
		"--plugin-dir", hs.inside(hs.pkgDir),
		"--entry", hs.inside(hs.entry),
		"--proxy", insideProxy,
		"--max-frame", strconv.Itoa(o.maxFrameBytes),
	)
	if hs.pluginID != "" {
		a = append(a, "--plugin-id", hs.pluginID)
	}
	if hs.tsRuntime != "" {
		a = append(a, "--ts-runtime", hs.inside(hs.tsRuntime))
	}
	if o.noRuntimeGuards {
		a = append(a, "--no-guards", "1")
	}
	return a
}

// privateDir makes dir (0700) if missing and insists that it is a real
// directory of ours that nobody else can enter: it is in a shared temp
// directory by default.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s belongs to uid %d, not to connec's uid %d", dir, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}

// hostEnv is the host's whole environment: nothing is inherited from
// connec.
func hostEnv(home, tmp string) []string {
	return []string{
		"HOME=" + home,
		"TMPDIR=" + tmp,
		"PATH=/usr/bin:/bin",
		"LANG=C.UTF-8",
		"TZ=UTC",
	}
}

// describeExit says how a host ended, naming the kernel's limits when one
// of them ended it. killed says connec killed it.
func describeExit(ps *os.ProcessState, l sandbox.Limits, killed bool) string {
	if ps == nil {
		return "unknown"
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return ps.String()
	}
	// A SIGKILL connec did not send comes from the kernel: its RLIMIT_CPU
	// (SIGXCPU where a soft limit is below the hard one). rusage is
	// sampled and scaled, the limit uses the precise run time: the CPU
	// time shown may be a little under the limit.
	cpu := ps.UserTime() + ps.SystemTime()
	if l.CPUSeconds > 0 && (ws.Signal() == syscall.SIGXCPU || ws.Signal() == syscall.SIGKILL && !killed) && cpu >= time.Duration(l.CPUSeconds)*time.Second/2 {
		return fmt.Sprintf("killed by %s: it used up its CPU time limit (%d s; it used %s)", unixSignalName(ws.Signal()), l.CPUSeconds, cpu.Round(10*time.Millisecond))
	}
	switch ws.Signal() {
	case syscall.SIGXFSZ:
		return fmt.Sprintf("killed by SIGXFSZ: it wrote a file over its limit (%d bytes)", l.FileSize)
	case syscall.SIGSYS:
		return "killed by SIGSYS: a system call its sandbox forbids"
	default:
		return fmt.Sprintf("killed by %s after %s of CPU time", unixSignalName(ws.Signal()), cpu.Round(10*time.Millisecond))
	}
}

func unixSignalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGSEGV:
		return "SIGSEGV (it crashed, possibly out of memory: its limit is enforced by the kernel)"
	case syscall.SIGABRT:
		return "SIGABRT (it aborted, possibly out of memory)"
	case syscall.SIGTRAP:
		return "SIGTRAP (V8 stopped it, possibly out of heap)"
	default:
		return s.String()
	}
}
