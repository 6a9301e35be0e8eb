package openclaw

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/connec/connec/connectors/egress/driverkit"
	"github.com/connec/connec/fault"
)

// hostProgram is the Node host, written into each host's private state
// directory (read-only) when it starts.
//
//go:embed host/host.mjs
var hostProgram []byte

// Reasons in fault details specific to plugin hosts. A dead host is
// unavailable, not transient: the executor retries transient read-kind
// failures by itself, and a plugin's "read" tool may have had effects
// before it died.
const (
	ReasonHostExited      = "host_exited"     // the host process died
	ReasonHostStart       = "host_start"      // the host could not start or load the plugin
	ReasonHostBackoff     = "host_backoff"    // the host is restarting after repeated failures
	ReasonPluginError     = "plugin_error"    // the plugin's tool or channel threw
	ReasonRegister        = "register_failed" // the plugin's register(api) threw
	ReasonUnsupportedAPI  = "unsupported_api" // the plugin called an API the host does not serve
	ReasonNotRegistered   = "not_registered"  // the plugin did not register the tool or channel
	ReasonCredentialInOut = "credential_in_output"
)

// rpcFrame is one JSON-RPC 2.0 message.
type rpcFrame struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    struct {
		Kind string `json:"kind"`
		API  string `json:"api"`
	} `json:"data"`
}

// readyParams is the host's ready notification.
type readyParams struct {
	OK         bool   `json:"ok"`
	Error      string `json:"error"`
	Host       string `json:"host"`
	Node       string `json:"node"`
	TypeScript bool   `json:"typescript"`
}

// hostSpec is everything needed to start one host.
type hostSpec struct {
	opts       *options
	typeName   string
	instance   string
	installDir string // read-allowed: the package and its dependencies
	pkgDir     string
	entry      string // absolute
	tsRuntime  string // absolute amaro directory, or ""
	pluginID   string
}

// hostProc is one running plugin host.
type hostProc struct {
	cmd      *exec.Cmd
	pid      int
	stdin    *os.File
	state    string
	proxy    *egressProxy
	log      *slog.Logger
	maxFrame int
	isolated bool
	argv     []string

	writeMu sync.Mutex
	nextID  atomic.Int64
	mu      sync.Mutex
	pending map[int64]chan rpcFrame
	ready   chan readyParams

	dead     chan struct{}
	failOnce sync.Once
	deathErr error
	exited   chan struct{}

	redMu sync.Mutex
	red   *driverkit.Redactor // the latest call's, for stderr lines
}

// start launches a host and waits for its ready notification.
func startHost(ctx context.Context, hs hostSpec) (*hostProc, error) {
	o := hs.opts
	rt, err := o.runtime()
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "Node.js is not usable for OpenClaw plugins: %v", err).WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	isolate := o.isolation != IsolationOff && namespacesSupported && !o.noNamespaces.Load()
	h, err := launch(hs, rt, isolate)
	if err != nil && isolate && o.isolation == IsolationAuto && errors.Is(err, errNamespaces) {
		if o.noNamespaces.CompareAndSwap(false, true) {
			o.log.Warn("openclaw: cannot create user and network namespaces for plugin hosts; their egress is then enforced by the Node runtime only", "err", err)
		}
		h, err = launch(hs, rt, false)
	}
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(o.startTimeout)
	defer timer.Stop()
	select {
	case rp := <-h.ready:
		if !rp.OK {
			h.fail(fault.New(fault.Unavailable, "the plugin host did not start"), true)
			<-h.exited
			msg := rp.Error
			if len(msg) > 500 {
				msg = msg[:500] + "…"
			}
			return nil, fault.New(fault.Unavailable, "the OpenClaw plugin could not be loaded: %s", msg).WithDetails(map[string]any{"reason": ReasonHostStart})
		}
		h.log.Debug("openclaw host ready", "pid", h.pid, "node", rp.Node, "isolated", h.isolated, "typescript", rp.TypeScript)
		return h, nil
	case <-h.dead:
		<-h.exited
		return nil, fault.Wrap(fault.Unavailable, h.deathErr, "the OpenClaw plugin host exited while starting").WithDetails(map[string]any{"reason": ReasonHostStart})
	case <-timer.C:
		h.fail(fault.New(fault.Unavailable, "the plugin host did not start in time"), true)
		return nil, fault.New(fault.Unavailable, "the OpenClaw plugin host did not start within %s", o.startTimeout).WithDetails(map[string]any{"reason": ReasonHostStart})
	case <-ctx.Done():
		h.fail(fault.New(fault.Unavailable, "start abandoned"), true)
		return nil, ctxFault(ctx, "the OpenClaw plugin host was starting")
	}
}

// maxSocketPath leaves room under the 108-byte sun_path limit.
const maxSocketPath = 100

// errNamespaces marks a start failure caused by namespace creation.
var errNamespaces = errors.New("openclaw: namespaces unavailable")

func launch(hs hostSpec, rt *nodeRuntime, isolate bool) (_ *hostProc, err error) {
	o := hs.opts
	if err := privateDir(o.stateRoot); err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "the plugin hosts' state directory is not usable").WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	state, err := os.MkdirTemp(o.stateRoot, "host-")
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "cannot create a plugin host state directory").WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	cleanup := []func(){func() { _ = os.RemoveAll(state) }}
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	home := filepath.Join(state, "home")
	tmp := filepath.Join(home, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "cannot create the plugin host's home").WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	hostFile := filepath.Join(state, "host.mjs")
	if err := os.WriteFile(hostFile, hostProgram, 0o400); err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "cannot write the plugin host program").WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	log := o.log.With("type", hs.typeName, "instance", hs.instance)
	sock := filepath.Join(state, "egress.sock")
	if len(sock) > maxSocketPath {
		// Unix socket paths are short (108 bytes on Linux): use a private
		// directory of its own in the system temp directory.
		sd, err := os.MkdirTemp("", "connec-oc-")
		if err != nil {
			return nil, fault.Wrap(fault.Unavailable, err, "cannot create the egress proxy's directory").WithDetails(map[string]any{"reason": ReasonHostStart})
		}
		cleanup = append(cleanup, func() { _ = os.RemoveAll(sd) })
		sock = filepath.Join(sd, "s")
	}
	proxy, err := newEgressProxy(sock, log, hs.typeName, hs.instance)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "cannot start the plugin's egress proxy").WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	cleanup = append(cleanup, proxy.close)

	argv := nodeArgs(rt, hs, o, hostFile, home, sock)
	cmd := exec.Command(rt.path, argv...)
	cmd.Env = hostEnv(home, tmp)
	cmd.Dir = home
	cmd.SysProcAttr = sysProcAttr(isolate)

	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "pipe").WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, fault.Wrap(fault.Unavailable, err, "pipe").WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		for _, f := range []*os.File{stdinR, stdinW, stdoutR, stdoutW} {
			f.Close()
		}
		return nil, fault.Wrap(fault.Unavailable, err, "pipe").WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	startErr := cmd.Start()
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()
	if startErr != nil {
		stdinW.Close()
		stdoutR.Close()
		stderrR.Close()
		if isolate {
			return nil, fmt.Errorf("%w: %v", errNamespaces, startErr)
		}
		return nil, fault.Wrap(fault.Unavailable, startErr, "cannot start the OpenClaw plugin host").WithDetails(map[string]any{"reason": ReasonHostStart})
	}
	h := &hostProc{
		cmd: cmd, pid: cmd.Process.Pid, stdin: stdinW, state: state, proxy: proxy, log: log,
		maxFrame: o.maxFrameBytes, isolated: isolate, argv: append([]string{rt.path}, argv...),
		pending: map[int64]chan rpcFrame{}, ready: make(chan readyParams, 1),
		dead: make(chan struct{}), exited: make(chan struct{}),
	}
	if err := limitProcess(h.pid); err != nil {
		log.Warn("openclaw: could not disable core dumps of the plugin host", "pid", h.pid, "err", err)
	}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		h.stderrLoop(stderrR)
	}()
	go h.readLoop(stdoutR)
	go func() {
		werr := cmd.Wait()
		h.fail(exitFault(werr), false)
		close(h.exited)
		<-stderrDone
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

// nodeArgs are the host's flags: the permission model (read the host
// program and the plugin's install directory, write only the private
// home; no child processes, workers, addons or WASI, none of which is
// allowed), a heap cap, and the host's own arguments (none secret).
func nodeArgs(rt *nodeRuntime, hs hostSpec, o *options, hostFile, home, sock string) []string {
	a := []string{
		rt.permissionFlag,
		"--allow-fs-read=" + hostFile,
		"--allow-fs-read=" + dirArg(hs.installDir),
		"--allow-fs-write=" + dirArg(home),
		"--no-addons",
		"--disable-warning=ExperimentalWarning",
		"--max-old-space-size=" + strconv.Itoa(o.maxOldSpaceMB),
	}
	if hs.tsRuntime != "" {
		a = append(a, "--experimental-vm-modules")
	}
	a = append(a, hostFile,
		"--plugin-dir", hs.pkgDir,
		"--entry", hs.entry,
		"--proxy", sock,
		"--max-frame", strconv.Itoa(o.maxFrameBytes),
	)
	if hs.pluginID != "" {
		a = append(a, "--plugin-id", hs.pluginID)
	}
	if hs.tsRuntime != "" {
		a = append(a, "--ts-runtime", hs.tsRuntime)
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

func dirArg(d string) string {
	return strings.TrimRight(d, string(filepath.Separator)) + string(filepath.Separator)
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

func exitFault(err error) error {
	msg := "the OpenClaw plugin host exited unexpectedly"
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		msg += " (" + ee.ProcessState.String() + ")"
	} else if err == nil {
		msg += " (exit status 0)"
	}
	return fault.Wrap(fault.Unavailable, err, "%s; it restarts on the next call", msg).WithDetails(map[string]any{"reason": ReasonHostExited})
}

// fail records why the host is unusable (first cause wins), wakes every
// waiting call and, with kill, kills the host.
func (h *hostProc) fail(err error, kill bool) {
	h.failOnce.Do(func() {
		h.deathErr = err
		close(h.dead)
	})
	if kill {
		// os.Process signals through a pidfd on Linux: safe even if the
		// host was already reaped. The host cannot fork (permission
		// model), so it is its whole process group.
		_ = h.cmd.Process.Kill()
	}
}

func (h *hostProc) isDead() bool {
	select {
	case <-h.dead:
		return true
	default:
		return false
	}
}

// readLoop reads frames: bounded lines of JSON-RPC 2.0. A frame over the
// limit or one that is not JSON-RPC kills the host.
func (h *hostProc) readLoop(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := readFrame(br, h.maxFrame)
		if err != nil {
			switch {
			case errors.Is(err, errFrameTooLarge):
				h.log.Warn("openclaw host sent an oversized frame; killing it", "pid", h.pid, "limit", h.maxFrame)
				h.fail(fault.New(fault.ResponseTooLarge, "the OpenClaw plugin host sent a frame over %d bytes; it was killed and restarts on the next call", h.maxFrame), true)
			default:
				// EOF: the host closed stdout; give it a moment to exit so
				// the error can say how.
				select {
				case <-h.exited:
				case <-time.After(2 * time.Second):
					h.fail(fault.New(fault.Unavailable, "the OpenClaw plugin host closed its protocol stream; it was killed and restarts on the next call").WithDetails(map[string]any{"reason": ReasonHostExited}), true)
				}
			}
			return
		}
		var f rpcFrame
		if err := json.Unmarshal(line, &f); err != nil || f.JSONRPC != "2.0" {
			h.log.Warn("openclaw host wrote a malformed frame; killing it", "pid", h.pid, "bytes", len(line))
			h.fail(fault.New(fault.Permanent, "the OpenClaw plugin host wrote %d bytes that are not a JSON-RPC frame to its protocol stream (a plugin writing to stdout?); it was killed and restarts on the next call", len(line)).WithDetails(map[string]any{"reason": driverkit.ReasonProtocol}), true)
			return
		}
		switch {
		case f.Method == "ready" && len(f.ID) == 0:
			var rp readyParams
			_ = json.Unmarshal(f.Params, &rp)
			select {
			case h.ready <- rp:
			default:
			}
		case len(f.ID) > 0 && f.Method == "":
			id, err := strconv.ParseInt(string(f.ID), 10, 64)
			if err != nil {
				continue
			}
			h.mu.Lock()
			ch := h.pending[id]
			delete(h.pending, id)
			h.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		}
	}
}

var errFrameTooLarge = errors.New("openclaw: frame too large")

// readFrame returns the next line without its newline, refusing lines
// over max bytes (without reading them whole).
func readFrame(br *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > max+1 {
			return nil, errFrameTooLarge
		}
		buf = append(buf, frag...)
		switch {
		case err == nil:
			return bytes.TrimRight(buf[:len(buf)-1], "\r"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// maxStderrLine bounds one logged stderr line.
const maxStderrLine = 1000

// stderrLoop logs the host's stderr (the plugin's console and logger) at
// debug level, redacted with the latest call's credential, host errors at
// warn.
func (h *hostProc) stderrLoop(r io.Reader) {
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, isPrefix, err := br.ReadLine()
		if err != nil {
			return
		}
		s := string(line)
		for isPrefix && err == nil {
			_, isPrefix, err = br.ReadLine() // drop the rest of an overlong line
		}
		if len(s) > maxStderrLine {
			s = s[:maxStderrLine] + "…"
		}
		h.redMu.Lock()
		s = h.red.String(s)
		h.redMu.Unlock()
		if strings.HasPrefix(s, "host-error:") || strings.HasPrefix(s, "plugin-error:") {
			h.log.Warn("openclaw plugin host stderr", "pid", h.pid, "line", s)
		} else {
			h.log.Debug("openclaw plugin host stderr", "pid", h.pid, "line", s)
		}
	}
}

// setRedactor makes stderr lines redact r's values from now on.
func (h *hostProc) setRedactor(r *driverkit.Redactor) {
	h.redMu.Lock()
	old := h.red
	h.red = r
	h.redMu.Unlock()
	if old != nil && old != r {
		old.Wipe()
	}
}

func (h *hostProc) wipeRedactor() { h.setRedactor(nil) }

// write sends one frame, bounded by ctx (a host that stops reading its
// stdin must not block connec).
func (h *hostProc) write(ctx context.Context, frame []byte) error {
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	dl := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = h.stdin.SetWriteDeadline(dl)
	_, err := h.stdin.Write(frame)
	return err
}

// frame builds a JSON-RPC frame around already-encoded params.
func frame(id int64, method string, params []byte) []byte {
	b := make([]byte, 0, len(params)+80)
	b = append(b, `{"jsonrpc":"2.0",`...)
	if id > 0 {
		b = append(b, `"id":`...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, ',')
	}
	b = append(b, `"method":`...)
	b = strconv.AppendQuote(b, method)
	if len(params) > 0 {
		b = append(b, `,"params":`...)
		b = append(b, params...)
	}
	return append(b, "}\n"...)
}

// call sends a request and waits for its answer. params may hold a
// credential: the frame is wiped once written. On ctx's deadline the host
// is killed (a plugin that overran its time may be stuck in a loop); on
// cancellation it is sent $/cancel and killed only if it does not answer
// within the grace period.
func (h *hostProc) call(ctx context.Context, method string, params []byte, grace time.Duration) (rpcFrame, error) {
	id := h.nextID.Add(1)
	ch := make(chan rpcFrame, 1)
	h.mu.Lock()
	h.pending[id] = ch
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.pending, id)
		h.mu.Unlock()
	}()
	f := frame(id, method, params)
	err := h.write(ctx, f)
	clear(f)
	if err != nil {
		if h.isDead() {
			return rpcFrame{}, h.deathErr
		}
		h.fail(fault.Wrap(fault.Unavailable, err, "the OpenClaw plugin host stopped reading its input; it was killed and restarts on the next call").WithDetails(map[string]any{"reason": ReasonHostExited}), true)
		if ctx.Err() != nil {
			return rpcFrame{}, ctxFault(ctx, "the plugin call")
		}
		return rpcFrame{}, h.deathErr
	}
	select {
	case r := <-ch:
		return r, nil
	case <-h.dead:
		return rpcFrame{}, h.deathErr
	case <-ctx.Done():
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		h.log.Warn("openclaw plugin call overran its time limit; killing the host", "pid", h.pid, "method", method)
		h.fail(fault.New(fault.Timeout, "the plugin call overran its time limit"), true)
		return rpcFrame{}, ctxFault(ctx, "the plugin call")
	}
	cancelParams := []byte(`{"id":` + strconv.FormatInt(id, 10) + `}`)
	wctx, stop := context.WithTimeout(context.Background(), grace)
	defer stop()
	if err := h.write(wctx, frame(0, "$/cancel", cancelParams)); err != nil {
		h.fail(fault.New(fault.Unavailable, "the plugin host did not take a cancellation").WithDetails(map[string]any{"reason": ReasonHostExited}), true)
		return rpcFrame{}, ctxFault(ctx, "the plugin call")
	}
	select {
	case <-ch:
	case <-h.dead:
	case <-wctx.Done():
		h.log.Warn("openclaw plugin host did not answer a cancellation; killing it", "pid", h.pid, "method", method)
		h.fail(fault.New(fault.Unavailable, "the plugin host did not answer a cancellation").WithDetails(map[string]any{"reason": ReasonHostExited}), true)
	}
	return rpcFrame{}, ctxFault(ctx, "the plugin call")
}

// shutdown asks the host to exit and kills it if it does not within the
// grace period.
func (h *hostProc) shutdown(grace time.Duration) {
	if h.isDead() {
		<-h.exited
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	_, _ = h.call(ctx, "shutdown", nil, grace)
	select {
	case <-h.exited:
	case <-ctx.Done():
	}
	h.fail(fault.New(fault.Unavailable, "the plugin host was shut down"), true)
	<-h.exited
}

// ctxFault maps the end of ctx to connec's error types.
func ctxFault(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fault.Wrap(fault.Timeout, ctx.Err(), "%s did not finish in time; the plugin host was killed and restarts on the next call", what)
	}
	return fault.Wrap(fault.Transient, ctx.Err(), "%s was canceled", what).WithDetails(map[string]any{"reason": driverkit.ReasonCanceled})
}

// rpcFault maps a host's JSON-RPC error to connec's error types. The
// message (plugin text) is redacted and bounded.
func rpcFault(e *rpcError, red *driverkit.Redactor) error {
	msg := red.String(e.Message)
	if len(msg) > 1000 {
		msg = msg[:1000] + "…"
	}
	switch e.Data.Kind {
	case "unsupported_api":
		return fault.New(fault.Permanent, "%s", msg).WithDetails(map[string]any{"reason": ReasonUnsupportedAPI, "api": e.Data.API})
	case "register_failed":
		return fault.New(fault.Permanent, "the plugin failed to register: %s", msg).WithDetails(map[string]any{"reason": ReasonRegister})
	case "not_registered":
		return fault.New(fault.Permanent, "%s", msg).WithDetails(map[string]any{"reason": ReasonNotRegistered})
	case "too_large":
		return fault.New(fault.ResponseTooLarge, "the plugin's result is too large: %s", msg)
	case "cancelled":
		return fault.New(fault.Transient, "the plugin call was canceled").WithDetails(map[string]any{"reason": driverkit.ReasonCanceled})
	case "plugin_error":
		return fault.New(fault.Permanent, "%s", msg).WithDetails(map[string]any{"reason": ReasonPluginError})
	default:
		return fault.New(fault.Permanent, "the plugin host refused the call: %s", msg).WithDetails(map[string]any{"reason": driverkit.ReasonProtocol})
	}
}
