package mcpserver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/connectors"
)

// Sessions with a remote server are kept between calls: a call then costs
// the pin check and the call (two round trips) instead of also opening and
// ending a session. A session serves one call at a time, so what the
// server sends during it (progress, a question for the user) belongs to
// that call.
const (
	maxIdleSessions = 32 // per instance and credential
	sessionIdleTTL  = 2 * time.Minute
)

// sessionPool keeps idle sessions by instance, credential, configuration
// and whether they may ask the user (declared at initialize).
type sessionPool struct {
	key    [32]byte
	mu     sync.Mutex
	idle   map[string][]*httpSession
	closed bool
	seq    atomic.Int64
}

// httpSession is one session with a remote server.
type httpSession struct {
	c    *client.Client
	call atomic.Pointer[stdioCall] // the call it serves now, if any
	used time.Time
}

func newSessionPool() *sessionPool {
	p := &sessionPool{idle: map[string][]*httpSession{}}
	_, _ = rand.Read(p.key[:])
	return p
}

// keyFor tells apart what a session was opened with, without keeping the
// credential (the key never leaves this process).
func (p *sessionPool) keyFor(inv connectors.Invocation, h hello) string {
	return credentialMAC(&p.key, inv, []byte(inv.InstanceID), inv.Config, []byte{boolByte(h.elicit), boolByte(h.modern)})
}

// credentialMAC is an HMAC under key of the parts and inv's credential:
// it tells credentials apart without being a hash anyone could test
// guesses against (the key never leaves this process).
func credentialMAC(key *[32]byte, inv connectors.Invocation, parts ...[]byte) string {
	m := hmac.New(sha256.New, key[:])
	for _, part := range parts {
		m.Write([]byte(strconv.Itoa(len(part))))
		m.Write([]byte{':'})
		m.Write(part)
	}
	m.Write([]byte(inv.CredentialKind))
	for _, n := range inv.Credential.Names() {
		v := inv.Credential[n].Expose()
		m.Write([]byte{0})
		m.Write([]byte(n))
		m.Write([]byte{0, byte(len(v) >> 24), byte(len(v) >> 16), byte(len(v) >> 8), byte(len(v))})
		m.Write(v)
	}
	return hex.EncodeToString(m.Sum(nil))
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// get returns an idle session for key, or opens one with dial (fresh).
func (p *sessionPool) get(key string, dial func() (*httpSession, error)) (s *httpSession, fresh bool, err error) {
	var stale []*httpSession
	p.mu.Lock()
	list := p.idle[key]
	for len(list) > 0 && s == nil {
		last := list[len(list)-1]
		list = list[:len(list)-1]
		if time.Since(last.used) > sessionIdleTTL {
			stale = append(stale, last)
			continue
		}
		s = last
	}
	p.idle[key] = list
	if len(list) == 0 {
		delete(p.idle, key)
	}
	p.mu.Unlock()
	for _, x := range stale {
		_ = x.c.Close()
	}
	if s != nil {
		return s, false, nil
	}
	s, err = dial()
	return s, true, err
}

// put keeps s for the next call, unless the pool is full or closed.
func (p *sessionPool) put(key string, s *httpSession) {
	s.used = time.Now()
	p.mu.Lock()
	if !p.closed && len(p.idle[key]) < maxIdleSessions {
		p.idle[key] = append(p.idle[key], s)
		s = nil
	}
	p.mu.Unlock()
	if s != nil {
		_ = s.c.Close()
	}
}

func (p *sessionPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = map[string][]*httpSession{}
	p.mu.Unlock()
	for _, list := range idle {
		for _, s := range list {
			_ = s.c.Close()
		}
	}
}

// notified passes the server's progress and log messages on to the call
// the session serves.
func (s *httpSession) notified(n mcp.JSONRPCNotification) {
	if n.Method == string(mcp.MethodNotificationMessage) {
		if call := s.call.Load(); call != nil && call.log != nil {
			reportLog(n, call.log)
		}
		return
	}
	if n.Method != string(mcp.MethodNotificationProgress) {
		return
	}
	call := s.call.Load()
	if call == nil || call.progress == nil {
		return
	}
	if token, _ := n.Params.AdditionalFields["progressToken"].(string); token != call.token {
		return
	}
	reportProgress(n, call.progress)
}

// Elicit hands the server's question to the call the session serves.
func (s *httpSession) Elicit(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	call := s.call.Load()
	if call == nil || call.elicit == nil {
		return nil, errors.New("the caller's client cannot be asked for input")
	}
	return call.elicit.Elicit(ctx, req)
}

// invokeHTTP calls tool on a session with the server: a kept one when
// there is one (once more on a fresh one if the server has forgotten it,
// which it answers before running anything), else a new one.
func (d *Driver) invokeHTTP(ctx context.Context, inv connectors.Invocation, tool *ToolRecord) (json.RawMessage, error) {
	headers, err := remoteHeaders(inv)
	if err != nil {
		return nil, err
	}
	h := hello{elicit: inv.Elicit != nil || inv.Input != nil && inv.Input.Passthrough, modern: inv.Input != nil}
	key := d.sessions.keyFor(inv, h)
	dial := func() (*httpSession, error) {
		s := &httpSession{}
		var opts []client.ClientOption
		if h.elicit {
			opts = append(opts, client.WithElicitationHandler(s))
		}
		c, err := connect(ctx, d.rec.URL, d.rec.Transport, headers, inv.Egress.HTTPClient(), h, opts...)
		if err != nil {
			return nil, err
		}
		s.c = c
		c.OnNotification(s.notified)
		return s, nil
	}
	if d.rec.Transport == TransportSSE {
		// A kept SSE session hangs on its event stream, which an HTTP
		// client's timeout or a proxy may cut between calls, after which
		// a call cannot tell whether it ran: one session per call.
		s, err := dial()
		if err != nil {
			return nil, err
		}
		defer s.c.Close()
		out, err := d.callOn(ctx, s, tool, inv)
		return out, unpinned(err)
	}
	for attempt := 0; ; attempt++ {
		s, fresh, err := d.sessions.get(key, dial)
		if err != nil {
			return nil, err
		}
		out, err := d.callOn(ctx, s, tool, inv)
		switch {
		case err == nil, errors.Is(err, errPinned):
			// A result, or connec's verdict before the call: the session
			// is fine for the next one.
			d.sessions.put(key, s)
			return out, unpinned(err)
		case errors.Is(err, transport.ErrSessionTerminated) && !fresh && attempt == 0:
			_ = s.c.Close()
			continue
		default:
			_ = s.c.Close()
			return nil, err
		}
	}
}

// remoteHeaders are the instance's credential as the headers its
// configuration asks for.
func remoteHeaders(inv connectors.Invocation) (map[string]string, error) {
	cfg, err := parseConfig(inv.Config)
	if err != nil {
		return nil, err
	}
	return authHeaders(inv, cfg)
}

// callOn checks the tool's pin and calls it on s.
func (d *Driver) callOn(ctx context.Context, s *httpSession, tool *ToolRecord, inv connectors.Invocation) (json.RawMessage, error) {
	current, err := listTools(ctx, s.c)
	if err != nil {
		return nil, wrapTerminated(err)
	}
	if err := checkPin(*tool, current); err != nil {
		return nil, pinned{err}
	}
	token := "connec-" + strconv.FormatInt(d.sessions.seq.Add(1), 10)
	call := &stdioCall{progress: inv.Progress, log: inv.Log, token: token}
	if inv.Elicit != nil {
		call.elicit = elicitation(inv.Elicit)
	}
	s.call.Store(call)
	defer s.call.Store(nil)
	return callTool(ctx, s.c, tool, inv, token)
}

// errPinned marks connec's verdicts on a call that leave the session fine.
var errPinned = errors.New("refused before the call")

type pinned struct{ err error }

func (p pinned) Error() string   { return p.err.Error() }
func (p pinned) Unwrap() []error { return []error{p.err, errPinned} }

// unpinned is err without the marker callOn put on its verdicts.
func unpinned(err error) error {
	var p pinned
	if errors.As(err, &p) {
		return p.err
	}
	return err
}

// wrapTerminated maps a failure to reach the server, keeping
// ErrSessionTerminated findable (the retry needs it).
func wrapTerminated(err error) error {
	if errors.Is(err, transport.ErrSessionTerminated) {
		return errors.Join(upstreamFault(err), transport.ErrSessionTerminated)
	}
	return upstreamFault(err)
}
