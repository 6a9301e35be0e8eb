package mcpserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/nodejs"
	"github.com/connec/connec/internal/platform/sandbox"
)

// StdioSpec is how connec starts a local server speaking MCP on stdio:
// an npm package it installed (pinned, scripts never run) or a program an
// operator named. It runs in a sandbox of its own, never in connec's
// process or an agent's.
type StdioSpec struct {
	// Package and Version name the npm package (exact version); Bin is
	// its program, relative to the package's directory; Integrity is
	// npm's hash of what was installed.
	Package   string `json:"package,omitempty"`
	Version   string `json:"version,omitempty"`
	Integrity string `json:"integrity,omitempty"`
	Bin       string `json:"bin,omitempty"`
	// Command is the absolute path of a program (an ELF executable), when
	// there is no package.
	Command string `json:"command,omitempty"`
	// Args are the program's arguments (none secret: other users of the
	// machine may read a process's argv).
	Args []string `json:"args,omitempty"`
	// Env are variables the server needs (none secret).
	Env map[string]string `json:"env,omitempty"`
	// CredentialEnv names the variable an instance's credential (a bearer
	// token or a header credential's value) reaches the server in. With
	// none, instances of the type take no credential.
	CredentialEnv string `json:"credential_env,omitempty"`
	// EgressHosts are the hosts (host or host:port patterns, "*" for any
	// an instance names) the server may reach, only during a call and only
	// through connec's egress proxy; with none it has no network at all.
	EgressHosts []string `json:"egress_hosts,omitempty"`
}

// Paths inside a server's sandbox.
const (
	insideServer = "/server" // the package's install directory, read-only
	insideHome   = "/home"   // HOME and TMPDIR: a tmpfs of its own
	// insideState is the instance's own directory, kept across restarts
	// (STATE_DIRECTORY).
	insideState = "/state"
	// insideProxy is the egress proxy's socket and insideEgress the Node
	// module that sends fetch, http and https through it (servers with
	// egress hosts only).
	insideProxy  = "/connec/egress.sock"
	insideEgress = "/connec/egress.mjs"
)

// Limits of a local server's sandbox.
const (
	stdioMemoryBytes = 1 << 30
	stdioStateBytes  = 64 << 20
	// stdioCPUSeconds is CPU time over the process's whole life: a server
	// that uses it up is killed and started again at its next call.
	stdioCPUSeconds = 600
	stdioThreads    = 128
	stdioStart      = 30 * time.Second
	stdioIdle       = 10 * time.Minute
	maxStdioBackoff = 30 * time.Second
)

// validEnvName accepts a portable variable name.
func validEnvName(n string) bool {
	if n == "" || len(n) > 64 || n[0] >= '0' && n[0] <= '9' {
		return false
	}
	for _, r := range n {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// reservedEnv are the variables connec sets for the sandbox itself.
var reservedEnv = map[string]bool{"HOME": true, "TMPDIR": true, "PATH": true, "LANG": true, "TZ": true, "NODE_OPTIONS": true, "STATE_DIRECTORY": true}

func (s StdioSpec) validate() error {
	switch {
	case s.Package == "" && s.Command == "":
		return errors.New("a local server needs an npm package or a command")
	case s.Package != "" && s.Command != "":
		return errors.New("a local server is an npm package or a command, not both")
	case s.Package != "" && (s.Bin == "" || !filepath.IsLocal(s.Bin)):
		return errors.New("the package's program must be a path inside the package")
	case s.Command != "" && !filepath.IsAbs(s.Command):
		return errors.New("the command must be an absolute path")
	}
	for k, v := range s.Env {
		if !validEnvName(k) || reservedEnv[k] || strings.ContainsRune(v, 0) {
			return fmt.Errorf("environment variable %q cannot be set for the server", k)
		}
	}
	if s.CredentialEnv != "" && (!validEnvName(s.CredentialEnv) || reservedEnv[s.CredentialEnv] || s.Env[s.CredentialEnv] != "") {
		return fmt.Errorf("the credential's variable %q is not a free variable name", s.CredentialEnv)
	}
	for _, a := range s.Args {
		if strings.ContainsRune(a, 0) {
			return errors.New("an argument holds a NUL byte")
		}
	}
	return ValidEgressHosts(s.EgressHosts)
}

// ValidEgressHosts checks a local server's declared hosts: host or
// host:port patterns, or "*" (each instance names its own).
func ValidEgressHosts(hosts []string) error {
	if len(hosts) > 64 {
		return errors.New("at most 64 egress hosts")
	}
	for _, h := range hosts {
		if h == "*" {
			continue
		}
		if _, err := egress.New([]string{h}, egress.Options{}); err != nil {
			return fmt.Errorf("egress host %q is not a host or host:port pattern (like api.example.com or *.example.com:443)", h)
		}
	}
	return nil
}

// stdioProc is one running server: its sandboxed process and connec's
// MCP client session with it, shared by the calls of one instance.
type stdioProc struct {
	c      *client.Client
	stop   func()
	exited chan struct{}
	status string // how it ended, set before exited is closed
	red    *driverkit.Redactor
	proxy  *egress.Proxy // its only way out (nil: no network at all)
	fp     string        // the credential it was started with (fingerprint)
	log    *slog.Logger

	mu       sync.Mutex
	tools    []listedTool // as listed at start (for review)
	calls    map[string]*stdioCall
	inflight int
	retiring bool
	idle     *time.Timer
	lastErr  string // the last stderr line, redacted
	// watchers are the watches of each URI (watch.go); subMu orders the
	// subscribing and unsubscribing their joining and leaving cause.
	watchers map[string][]*watcher
	subMu    sync.Mutex
}

// stdioCall is a call in progress on a stdioProc.
type stdioCall struct {
	progress func(progress, total float64, message string)
	log      connectors.Log
	elicit   elicitation
	token    string // its progress token (over HTTP)
}

func (p *stdioProc) dead() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// launchStdio starts the server in its sandbox with env added to its
// environment, and opens an MCP session with it.
func launchStdio(ctx context.Context, name string, s StdioSpec, installDir, stateDir string, env []string, red *driverkit.Redactor, log *slog.Logger) (_ *stdioProc, err error) {
	if _, err := sandbox.Available(); err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "local MCP servers cannot run on this machine: it cannot give them their sandbox (%v)", err).
			WithDetails(map[string]any{"reason": "sandbox_unavailable"})
	}
	startFault := func(err error, what string) error {
		return fault.Wrap(fault.Unavailable, err, "the MCP server %s cannot be started: %s", name, what).WithDetails(map[string]any{"reason": "server_start"})
	}
	var proxy *egress.Proxy
	proxyDir := ""
	if len(s.EgressHosts) > 0 {
		if proxyDir, proxy, err = startProxy(name, log); err != nil {
			return nil, startFault(err, "its egress proxy did not start")
		}
	}
	// Until the process owns them, the proxy and its directory go with a
	// failed start.
	cleanupProxy := func() {
		if proxy != nil {
			proxy.Close()
			_ = os.RemoveAll(proxyDir)
		}
	}
	spec, err := stdioSandbox(s, installDir, stateDir, proxyDir, env)
	if err != nil {
		cleanupProxy()
		return nil, startFault(err, err.Error())
	}
	root, err := os.MkdirTemp("", "connec-mcp-")
	if err != nil {
		cleanupProxy()
		return nil, startFault(err, "no directory for its sandbox")
	}
	spec.Root = root
	var pipes [6]*os.File
	for i := 0; i < 6; i += 2 {
		if pipes[i], pipes[i+1], err = os.Pipe(); err != nil {
			_ = os.RemoveAll(root)
			cleanupProxy()
			return nil, startFault(err, "pipe")
		}
	}
	stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW := pipes[0], pipes[1], pipes[2], pipes[3], pipes[4], pipes[5]
	cmd, err := sandbox.Start(spec, stdinR, stdoutW, stderrW)
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdinW.Close()
		stdoutR.Close()
		stderrR.Close()
		_ = os.RemoveAll(root)
		cleanupProxy()
		return nil, startFault(err, "its sandbox did not start")
	}
	p := &stdioProc{exited: make(chan struct{}), red: red, log: log, proxy: proxy, calls: map[string]*stdioCall{}}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		p.stderrLoop(stderrR)
	}()
	go func() {
		werr := cmd.Wait()
		<-stderrDone
		p.mu.Lock()
		p.status = exitStatus(cmd.ProcessState, werr)
		if p.lastErr != "" {
			p.status += "; it last said: " + p.lastErr
		}
		p.mu.Unlock()
		stdoutR.Close()
		stderrR.Close()
		_ = os.RemoveAll(root)
		cleanupProxy()
		close(p.exited)
	}()
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			stdinW.Close() // a server ends when its input does
			select {
			case <-p.exited:
			case <-time.After(2 * time.Second):
				_ = cmd.Process.Kill() // the sandbox's init: its PID namespace goes with it
			}
		})
	}
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	tr := transport.NewIO(stdoutR, stdinW, nil)
	p.c = client.NewClient(tr, client.WithElicitationHandler(p))
	if err := p.c.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, startFault(err, "no session")
	}
	p.c.OnNotification(p.notified)
	sctx, cancel := context.WithTimeout(ctx, stdioStart)
	defer cancel()
	// One session serves every caller of the instance: 2025-11-25, which
	// servers of both revisions speak.
	if err := initialize(sctx, p.c, hello{elicit: true}); err != nil {
		return nil, p.exitFault(upstreamFault(err))
	}
	tools, err := listTools(sctx, p.c)
	if err != nil {
		return nil, p.exitFault(upstreamFault(err))
	}
	p.tools = tools
	return p, nil
}

// exitFault names how the process ended when err came from its ending:
// its output closed (the transport says so), and it exits within a moment.
func (p *stdioProc) exitFault(err error) error {
	wait := 100 * time.Millisecond
	if errors.Is(err, transport.ErrTransportClosed) || errors.Is(err, io.EOF) {
		wait = 5 * time.Second // it is going: wait to say how
	} else if !p.dead() {
		return err
	}
	select {
	case <-p.exited:
	case <-time.After(wait):
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return fault.New(fault.Unavailable, "the MCP server exited (%s)", p.status).WithDetails(map[string]any{"reason": "server_exited"})
}

// stderrLoop logs what the server writes to stderr, its credential
// redacted, at most 200 characters a line.
func (p *stdioProc) stderrLoop(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := strings.ToValidUTF8(p.red.String(sc.Text()), "�")
		if len(line) > 200 {
			line = line[:200] + "…"
		}
		p.mu.Lock()
		p.lastErr = line
		p.mu.Unlock()
		p.log.Debug("mcp server stderr", "line", line)
	}
	_, _ = io.Copy(io.Discard, r)
}

// notified routes the server's progress notifications to the call whose
// token they name.
func (p *stdioProc) notified(n mcp.JSONRPCNotification) {
	switch n.Method {
	case string(mcp.MethodNotificationProgress):
		token, _ := n.Params.AdditionalFields["progressToken"].(string)
		p.mu.Lock()
		call := p.calls[token]
		p.mu.Unlock()
		if call != nil && call.progress != nil {
			reportProgress(n, call.progress)
		}
	case mcp.MethodNotificationResourceUpdated:
		if uri, ok := updatedURI(n); ok {
			p.updated(uri)
		}
	case string(mcp.MethodNotificationMessage):
		// A log message names no call: it goes to the one in progress,
		// and nowhere when there are several (not to the wrong caller).
		if only := p.onlyCall(); only != nil && only.log != nil {
			reportLog(n, only.log)
		}
	}
}

// onlyCall is the call in progress when there is exactly one (nil
// otherwise).
func (p *stdioProc) onlyCall() *stdioCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.calls) != 1 {
		return nil
	}
	for _, c := range p.calls {
		return c
	}
	return nil
}

// Elicit hands an elicitation request to the call that asked. Over stdio
// a server's request names no call: connec binds it only when exactly one
// call is in progress, and refuses it otherwise rather than ask the wrong
// user.
func (p *stdioProc) Elicit(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	only := p.onlyCall()
	switch {
	case only == nil:
		return nil, errors.New("connec cannot tell which of the calls in progress this request belongs to")
	case only.elicit == nil:
		return nil, errors.New("the caller's client cannot be asked for input")
	}
	return only.elicit.Elicit(ctx, req)
}

// stdioSandbox is the server's sandbox: its program (node and the
// package, or the command) and their libraries read-only, a tmpfs home,
// device nodes, its own empty network namespace (the egress proxy's socket
// from proxyDir its only way out, when it has one), and the kernel's
// resource limits.
func stdioSandbox(s StdioSpec, installDir, stateDir, proxyDir string, extra []string) (sandbox.Spec, error) {
	var prog string
	var args []string
	var mounts []sandbox.Mount
	if s.Package != "" {
		rt, err := nodejs.Find("")
		if err != nil {
			return sandbox.Spec{}, err
		}
		node, m, err := rt.Program()
		if err != nil {
			return sandbox.Spec{}, err
		}
		prog, mounts = node, append(m, sandbox.Mount{Source: installDir, Target: insideServer})
		// Node's permission model on top of the sandbox: read the package
		// and the home, write only the home; no child processes, workers,
		// addons or WASI.
		args = []string{node, "--disable-warning=ExperimentalWarning", "--max-old-space-size=512", rt.PermissionFlag,
			"--allow-fs-read=" + insideServer + "/", "--allow-fs-read=" + insideHome + "/", "--allow-fs-write=" + insideHome + "/"}
		if stateDir != "" {
			args = append(args, "--allow-fs-read="+insideState+"/", "--allow-fs-write="+insideState+"/")
		}
		if proxyDir != "" {
			args = append(args, "--allow-fs-read="+insideEgress, "--import="+insideEgress)
			mounts = append(mounts, sandbox.Mount{Source: filepath.Join(proxyDir, "egress.mjs"), Target: insideEgress})
		}
		args = append(args, path.Join(insideServer, "node_modules", s.Package, filepath.ToSlash(s.Bin)))
	} else {
		inside, m, err := sandbox.Program(s.Command)
		if err != nil {
			return sandbox.Spec{}, fmt.Errorf("%s: %w", s.Command, err)
		}
		prog, mounts, args = inside, m, []string{inside}
	}
	mounts = append(mounts,
		sandbox.Mount{Source: os.DevNull, Target: "/dev/null", Writable: true, Device: true},
		sandbox.Mount{Source: "/dev/zero", Target: "/dev/zero", Device: true},
		sandbox.Mount{Source: "/dev/random", Target: "/dev/random", Device: true},
		sandbox.Mount{Source: "/dev/urandom", Target: "/dev/urandom", Device: true},
	)
	env := []string{"HOME=" + insideHome, "TMPDIR=" + insideHome, "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "TZ=UTC"}
	if stateDir != "" {
		mounts = append(mounts, sandbox.Mount{Source: stateDir, Target: insideState, State: true})
		env = append(env, "STATE_DIRECTORY="+insideState)
	}
	if proxyDir != "" {
		mounts = append(mounts, sandbox.Mount{Source: filepath.Join(proxyDir, "s"), Target: insideProxy})
		env = append(env, nodejs.EgressSocketEnv+"="+insideProxy)
	}
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	return sandbox.Spec{
		Path: prog, Args: append(args, s.Args...), Env: append(env, extra...), Dir: insideHome,
		Mounts: mounts, Hostname: "mcp",
		Tmpfs: []sandbox.Tmpfs{{Target: insideHome, SizeBytes: stdioStateBytes}},
		Limits: sandbox.Limits{DataBytes: stdioMemoryBytes, CPUSeconds: stdioCPUSeconds, Threads: stdioThreads,
			Files: 1024, FileSize: stdioStateBytes},
	}, nil
}

// startProxy starts a server's egress proxy on a socket in a private
// directory of its own (Unix socket paths are short), beside the Node
// module that uses it.
func startProxy(name string, log *slog.Logger) (dir string, p *egress.Proxy, err error) {
	if dir, err = os.MkdirTemp("", "connec-mcpx-"); err != nil {
		return "", nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, "egress.mjs"), nodejs.EgressModule, 0o444); err != nil {
		return "", nil, err
	}
	sock := filepath.Join(dir, "s")
	if p, err = egress.NewProxy(sock, log, "mcp server egress", "server", name); err != nil {
		return "", nil, err
	}
	// As root the server runs as a uid of its own, which must be able to
	// connect; the directory is connec's alone (0700).
	if err := os.Chmod(sock, 0o666); err != nil {
		p.Close()
		return "", nil, err
	}
	return dir, p, nil
}

func exitStatus(ps *os.ProcessState, err error) string {
	if ps == nil {
		if err != nil {
			return err.Error()
		}
		return "unknown"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		cpu := ps.UserTime() + ps.SystemTime()
		if (ws.Signal() == syscall.SIGKILL || ws.Signal() == syscall.SIGXCPU) && cpu >= stdioCPUSeconds*time.Second/2 {
			return "killed: it used up its CPU time limit (" + strconv.Itoa(stdioCPUSeconds) + " s)"
		}
		return "killed by " + ws.Signal().String()
	}
	return ps.String()
}
