package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// proxyHeaderTimeout bounds reading a proxy request's head.
const proxyHeaderTimeout = 10 * time.Second

// Dialer is what a Proxy dials through: a Guard (connectors.Egress).
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Proxy is the only way out of a sandboxed program (an OpenClaw host, a
// local MCP server): an HTTP CONNECT and plain-HTTP forward proxy on a
// Unix socket in a private directory, bound into the sandbox. It admits a
// connection only while a call is in progress, checked by that call's
// Dialer (the instance's Guard: allowlist, DNS pinning, private address
// rules), and logs every connection. When the last call in progress ends
// every connection made during calls is closed, so the program cannot
// keep talking between calls.
type Proxy struct {
	ln    net.Listener
	log   *slog.Logger
	msg   string
	attrs []any

	mu     sync.Mutex
	scopes []*ProxyCall          // calls in progress, oldest first
	conns  map[net.Conn]struct{} // connections opened during calls
	wg     sync.WaitGroup
}

// ProxyCall is one call's view of the proxy.
type ProxyCall struct {
	ctx context.Context
	eg  Dialer

	mu      sync.Mutex
	refused []Refusal
}

// Refusal is one connection the proxy refused.
type Refusal struct {
	Host   string
	Reason string
}

// NewProxy listens on the Unix socket sock. Every connection is logged as
// msg (msg+" refused" when refused) with attrs (e.g. "type", t, "instance",
// id).
func NewProxy(sock string, log *slog.Logger, msg string, attrs ...any) (*Proxy, error) {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	p := &Proxy{ln: ln, log: log, msg: msg, attrs: attrs, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the socket's path.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Begin opens a call's scope: until End, connections are checked by eg
// (nil refuses everything). With several calls in progress, the newest
// call's eg checks (they are one instance's, hence alike).
func (p *Proxy) Begin(ctx context.Context, eg Dialer) *ProxyCall {
	s := &ProxyCall{ctx: ctx, eg: eg}
	p.mu.Lock()
	p.scopes = append(p.scopes, s)
	p.mu.Unlock()
	return s
}

// End closes the scope; when no call is left in progress, every
// connection made during calls is closed.
func (p *Proxy) End(s *ProxyCall) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, o := range p.scopes {
		if o == s {
			p.scopes = append(p.scopes[:i], p.scopes[i+1:]...)
			break
		}
	}
	if len(p.scopes) > 0 {
		return
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// track keeps c until the last call ends; false when no call is left.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.scopes) == 0 {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Refusals returns what the proxy refused during the scope.
func (s *ProxyCall) Refusals() []Refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Refusal(nil), s.refused...)
}

func (p *Proxy) current() *ProxyCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.scopes) == 0 {
		return nil
	}
	return p.scopes[len(p.scopes)-1]
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.scopes = nil
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *Proxy) logAttrs(method, host string, allowed bool, more ...any) []any {
	a := append(append([]any{}, p.attrs...), "method", method, "host", host, "allowed", allowed)
	return append(a, more...)
}

// refuse answers 403 with the reason and logs the refusal.
func (p *Proxy) refuse(c net.Conn, s *ProxyCall, method, host, reason string) {
	p.log.Warn(p.msg+" refused", p.logAttrs(method, host, false, "reason", reason)...)
	if s != nil {
		s.mu.Lock()
		if len(s.refused) < 32 {
			s.refused = append(s.refused, Refusal{Host: host, Reason: reason})
		}
		s.mu.Unlock()
	}
	reason = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, reason)
	fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nX-Connec-Egress: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", reason)
}

func (p *Proxy) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(proxyHeaderTimeout))
	br := bufio.NewReaderSize(c, 16<<10)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	s := p.current()

	var target string
	switch {
	case req.Method == http.MethodConnect:
		target = req.RequestURI
	case req.URL.IsAbs() && req.URL.Scheme == "http":
		port := req.URL.Port()
		if port == "" {
			port = "80"
		}
		target = net.JoinHostPort(req.URL.Hostname(), port)
	default:
		p.refuse(c, s, req.Method, req.Host, "only CONNECT and absolute http:// requests are proxied")
		return
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		p.refuse(c, s, req.Method, target, "not a host:port destination")
		return
	}
	if s == nil {
		p.refuse(c, s, req.Method, target, "no call is in progress")
		return
	}
	if s.eg == nil {
		p.refuse(c, s, req.Method, target, "the invocation was given no egress")
		return
	}
	up, err := s.eg.DialContext(s.ctx, "tcp", target)
	if err != nil {
		reason := "connection failed"
		var re *RefusedError
		if errors.As(err, &re) {
			reason = re.Reason
			if re.Addr != "" {
				reason += " (" + re.Addr + ")"
			}
		} else if s.ctx.Err() != nil {
			reason = "the call is over"
		}
		p.refuse(c, s, req.Method, target, reason)
		return
	}
	defer up.Close()
	if !p.track(c) || !p.track(up) {
		p.refuse(c, s, req.Method, target, "the call is over")
		return
	}
	defer p.untrack(c)
	defer p.untrack(up)
	p.log.Info(p.msg, p.logAttrs(req.Method, target, true)...)

	if req.Method == http.MethodConnect {
		if _, err := io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
			return
		}
		splice(c, br, up)
		return
	}
	forward(c, req, up)
}

// splice copies both ways until either side closes.
func splice(c net.Conn, br *bufio.Reader, up net.Conn) {
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(up, br) // br holds anything the client sent early
		closeWrite(up)
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(c, up)
		closeWrite(c)
		done <- struct{}{}
	}()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

// hopHeaders are not forwarded.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forward relays one plain-HTTP request and its response, then closes.
func forward(c net.Conn, req *http.Request, up net.Conn) {
	out := req.Clone(req.Context())
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.RequestURI = ""
	out.Close = true
	out.Header.Set("Connection", "close")
	if err := out.Write(up); err != nil {
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(up), out)
	if err != nil {
		fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	defer resp.Body.Close()
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	resp.Close = true
	_ = resp.Write(c)
}

// RefusedSummary describes refusals for an error message.
func RefusedSummary(rs []Refusal) string {
	seen := map[string]bool{}
	var parts []string
	for _, r := range rs {
		if seen[r.Host] {
			continue
		}
		seen[r.Host] = true
		parts = append(parts, r.Host+" ("+r.Reason+")")
		if len(parts) == 3 {
			parts = append(parts, "and more")
			break
		}
	}
	return strings.Join(parts, ", ")
}
