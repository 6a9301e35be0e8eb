package openclaw

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
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
	// budget is the time the host may run for (its call's time limit, or
	// the start timeout for a describe): its CPU limit derives from it.
	budget time.Duration
}

// hostProc is one running plugin host.
type hostProc struct {
	cmd      *exec.Cmd
	pid      int
	stdin    *os.File
	state    string
	proxy    *egress.Proxy
	log      *slog.Logger
	maxFrame int
	argv     []string // as the host sees them (inside the sandbox)
	// status is the host's exit, described for logs and errors once it
	// has exited.
	status string
	// stderr bounds what of its stderr reaches connec's log.
	stderr lineLimiter
	// killed says connec sent it SIGKILL.
	killed atomic.Bool

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

func exitFault(err error, status string) error {
	return fault.Wrap(fault.Unavailable, err, "the OpenClaw plugin host exited unexpectedly (%s); the next call starts a new one", status).
		WithDetails(map[string]any{"reason": ReasonHostExited})
}

// fail records why the host is unusable (first cause wins), wakes every
// waiting call and, with kill, kills the host.
func (h *hostProc) fail(err error, kill bool) {
	h.failOnce.Do(func() {
		h.deathErr = err
		close(h.dead)
	})
	if kill {
		h.killed.Store(true)
		// os.Process signals through a pidfd on Linux: safe even if the
		// host was already reaped. The host is pid 1 of its own PID
		// namespace: the kernel kills whatever else runs in it.
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
		for isPrefix && err == nil {
			_, isPrefix, err = br.ReadLine() // drop the rest of an overlong line
		}
		if !h.stderr.allow(time.Now()) {
			continue // over the rate: counted, reported once the host ends
		}
		s := string(line)
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

// stop ends the host at once and waits for it: SIGKILL, since nothing it
// holds may outlive its call and its home is a tmpfs that goes with it.
func (h *hostProc) stop() {
	h.fail(fault.New(fault.Unavailable, "the plugin host was stopped"), true)
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
