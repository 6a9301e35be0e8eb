package mcpserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
)

// procPool keeps one running process per instance of a local server,
// started at its first call, stopped when idle, when its credential
// changes (after its calls in progress end) and when connec stops, and
// started again after a crash with a growing delay.
type procPool struct {
	d      *Driver
	key    [32]byte // fingerprints credentials without keeping them
	mu     sync.Mutex
	slots  map[string]*slot
	closed bool
	seq    atomic.Int64
}

// slot is one instance's process and its crash history.
type slot struct {
	mu       sync.Mutex
	proc     *stdioProc
	failures int
	lastFail time.Time
	lastWhy  string
}

func newProcPool(d *Driver) *procPool {
	pp := &procPool{d: d, slots: map[string]*slot{}}
	_, _ = rand.Read(pp.key[:])
	return pp
}

func (pp *procPool) slot(id string) (*slot, error) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.closed {
		return nil, fault.New(fault.Unavailable, "connec is stopping")
	}
	s := pp.slots[id]
	if s == nil {
		s = &slot{}
		pp.slots[id] = s
	}
	return s, nil
}

// fingerprint tells the credentials a process was started with apart.
func (pp *procPool) fingerprint(inv connectors.Invocation) string { return credentialMAC(&pp.key, inv) }

// stdioBackoff is the wait before the n-th restart in a row.
func stdioBackoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	return min(500*time.Millisecond<<min(n-2, 10), maxStdioBackoff)
}

// acquire returns the instance's running process, started if need be,
// with a call counted on it; release ends the call.
func (pp *procPool) acquire(ctx context.Context, inv connectors.Invocation, env []string) (*stdioProc, func(ok bool), error) {
	s, err := pp.slot(inv.InstanceID)
	if err != nil {
		return nil, nil, err
	}
	fp := pp.fingerprint(inv)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.proc; p != nil && (p.dead() || p.fp != fp) {
		if p.dead() {
			p.mu.Lock()
			crashed := !p.retiring
			why := p.status
			p.mu.Unlock()
			if crashed {
				s.failures++
				s.lastFail, s.lastWhy = time.Now(), why
				p.log.Warn("mcp server exited", "status", why, "failures", s.failures)
			}
		} else {
			p.retire() // its credential changed: new calls get a new process
		}
		s.proc = nil
	}
	if s.proc == nil {
		if wait := time.Until(s.lastFail.Add(stdioBackoff(s.failures))); wait > 0 {
			return nil, nil, fault.New(fault.Unavailable, "the MCP server exited (%s); connec starts it again in %s", s.lastWhy, wait.Round(100*time.Millisecond)).
				WithDetails(map[string]any{"reason": "server_exited", "retry_after_ms": wait.Milliseconds()})
		}
		red := driverkit.NewRedactor(inv.Credential)
		for _, v := range inv.Findings.SentValues() {
			red.Add(v.Expose())
		}
		log := pp.d.log.With("type", TypeName(pp.d.rec.Name), "instance", inv.InstanceID)
		state := ""
		if pp.d.dir != "" {
			if state = StateDir(pp.d.dir, pp.d.rec.Name, inv.InstanceID); state != "" {
				if err := os.MkdirAll(state, 0o700); err != nil {
					clear(env)
					return nil, nil, fault.Wrap(fault.Unavailable, err, "the instance's state directory cannot be made")
				}
			}
		}
		p, err := launchStdio(ctx, pp.d.rec.Name, *pp.d.rec.Stdio, pp.d.installDir(), state, env, red, log)
		clear(env)
		if err != nil {
			s.failures++
			s.lastFail, s.lastWhy = time.Now(), fault.As(err).Message
			return nil, nil, err
		}
		p.fp = fp
		s.proc = p
	}
	p := s.proc
	p.mu.Lock()
	p.inflight++
	if p.idle != nil {
		p.idle.Stop()
	}
	p.mu.Unlock()
	// The server reaches its hosts only while a call is in progress, as
	// this call's egress allows.
	var call *egress.ProxyCall
	if p.proxy != nil && inv.Egress != nil {
		call = p.proxy.Begin(ctx, inv.Egress)
	}
	release := func(ok bool) {
		if call != nil {
			p.proxy.End(call)
		}
		if ok {
			s.mu.Lock()
			s.failures = 0
			s.mu.Unlock()
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.inflight--
		if p.inflight > 0 {
			return
		}
		if p.retiring {
			go p.stop()
			return
		}
		p.idle = time.AfterFunc(stdioIdle, func() { pp.idleStop(s, p) })
	}
	return p, release, nil
}

// idleStop stops p when it is still idle and still the slot's.
func (pp *procPool) idleStop(s *slot, p *stdioProc) {
	s.mu.Lock()
	p.mu.Lock()
	idle := p.inflight == 0
	if idle {
		p.retiring = true
		if s.proc == p {
			s.proc = nil
		}
	}
	p.mu.Unlock()
	s.mu.Unlock()
	if idle {
		p.stop()
	}
}

// retire stops p once its calls in progress have ended.
func (p *stdioProc) retire() {
	p.mu.Lock()
	p.retiring = true
	n := p.inflight
	p.mu.Unlock()
	if n == 0 {
		go p.stop()
	}
}

// close stops every process; calls in progress fail.
func (pp *procPool) close() {
	pp.mu.Lock()
	pp.closed = true
	slots := pp.slots
	pp.slots = map[string]*slot{}
	pp.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range slots {
		s.mu.Lock()
		p := s.proc
		s.proc = nil
		s.mu.Unlock()
		if p != nil {
			p.mu.Lock()
			p.retiring = true
			p.mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); p.stop() }()
		}
	}
	wg.Wait()
}

// process returns the instance's running process, its credential in the
// declared variable, with a call counted on it.
func (d *Driver) process(ctx context.Context, inv connectors.Invocation) (*stdioProc, func(ok bool), error) {
	env, err := credentialEnv(inv, d.rec.Stdio.CredentialEnv)
	if err != nil {
		return nil, nil, err
	}
	return d.procs.acquire(ctx, inv, env)
}

// invokeStdio calls tool on the instance's process.
func (d *Driver) invokeStdio(ctx context.Context, inv connectors.Invocation, tool *ToolRecord) (json.RawMessage, error) {
	p, release, err := d.process(ctx, inv)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() { release(ok) }()
	// The list is read before every call, as over HTTP: a server's
	// list_changed may arrive after the result of the call that changed a
	// tool, and the next call must not slip through in between.
	lctx, cancel := context.WithTimeout(ctx, stdioStart)
	current, err := listTools(lctx, p.c)
	cancel()
	if err != nil {
		return nil, p.exitFault(upstreamFault(err))
	}
	if err := checkPin(*tool, current); err != nil {
		return nil, err
	}
	token := "connec-" + strconv.FormatInt(d.procs.seq.Add(1), 10)
	call := &stdioCall{progress: inv.Progress, log: inv.Log}
	if inv.Elicit != nil {
		call.elicit = elicitation(inv.Elicit)
	}
	p.mu.Lock()
	p.calls[token] = call
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.calls, token)
		p.mu.Unlock()
	}()
	out, err := callTool(ctx, p.c, tool, inv, token)
	if err != nil {
		return nil, p.exitFault(unpinned(err))
	}
	ok = true
	return out, nil
}

// credentialEnv is the instance's credential as the variable the server
// reads it from. The value is declared sent, so the executor redacts it.
func credentialEnv(inv connectors.Invocation, name string) ([]string, error) {
	var v []byte
	switch inv.CredentialKind {
	case "":
		return nil, nil
	case "bearer":
		v = inv.Credential["token"].Expose()
	case "header":
		v = inv.Credential["value"].Expose()
	default:
		return nil, fault.Invalid("credential", "credential kind %s is not one this type takes", inv.CredentialKind)
	}
	if name == "" {
		return nil, fault.Invalid("credential", "this MCP server takes no credential (it was added without --credential-env)")
	}
	inv.Findings.Sent(v)
	return []string{name + "=" + string(v)}, nil
}
