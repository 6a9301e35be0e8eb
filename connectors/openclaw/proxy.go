package openclaw

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

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/egress"
)

// proxyHeaderTimeout bounds reading a proxy request's head.
const proxyHeaderTimeout = 10 * time.Second

// egressProxy is the only way out of one plugin host: an HTTP CONNECT and
// plain-HTTP forward proxy on a Unix socket in the host's private state
// directory (0700). Every connection is checked by the current call's
// egress (connectors/egress: allowlist, DNS pinning, private address
// rules) and logged. Between calls it refuses everything, and when a call
// ends every connection opened for it is closed, so a plugin cannot keep
// talking after its call.
type egressProxy struct {
	ln       net.Listener
	log      *slog.Logger
	instance string
	typeName string

	mu    sync.Mutex
	scope *proxyScope
	wg    sync.WaitGroup
}

// proxyScope is one call's view of the proxy.
type proxyScope struct {
	ctx context.Context
	eg  connectors.Egress

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	refused []refusal
	allowed int
	closed  bool
}

type refusal struct {
	Host   string
	Reason string
}

func newEgressProxy(sock string, log *slog.Logger, typeName, instance string) (*egressProxy, error) {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("openclaw: egress proxy: %w", err)
	}
	p := &egressProxy{ln: ln, log: log, instance: instance, typeName: typeName}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// begin opens a call's scope: until end, connections are checked by eg (nil
// refuses everything).
func (p *egressProxy) begin(ctx context.Context, eg connectors.Egress) *proxyScope {
	s := &proxyScope{ctx: ctx, eg: eg, conns: map[net.Conn]struct{}{}}
	p.mu.Lock()
	p.scope = s
	p.mu.Unlock()
	return s
}

// end closes the scope and every connection made in it.
func (p *egressProxy) end(s *proxyScope) {
	p.mu.Lock()
	if p.scope == s {
		p.scope = nil
	}
	p.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	clear(s.conns)
	s.mu.Unlock()
}

func (s *proxyScope) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *proxyScope) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// refusals returns what the proxy refused during the scope.
func (s *proxyScope) refusals() []refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]refusal(nil), s.refused...)
}

func (p *egressProxy) current() *proxyScope {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.scope
}

func (p *egressProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	s := p.scope
	p.mu.Unlock()
	if s != nil {
		p.end(s)
	}
	p.wg.Wait()
}

func (p *egressProxy) serve() {
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

// refuse answers 403 with the reason and logs the refusal.
func (p *egressProxy) refuse(c net.Conn, s *proxyScope, method, host, reason string) {
	p.log.Warn("openclaw egress refused", "type", p.typeName, "instance", p.instance, "method", method, "host", host, "allowed", false, "reason", reason)
	if s != nil {
		s.mu.Lock()
		if len(s.refused) < 32 {
			s.refused = append(s.refused, refusal{Host: host, Reason: reason})
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

func (p *egressProxy) handle(c net.Conn) {
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
		var re *egress.RefusedError
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
	if !s.track(c) || !s.track(up) {
		p.refuse(c, s, req.Method, target, "the call is over")
		return
	}
	defer s.untrack(c)
	defer s.untrack(up)
	s.mu.Lock()
	s.allowed++
	s.mu.Unlock()
	p.log.Info("openclaw egress", "type", p.typeName, "instance", p.instance, "method", req.Method, "host", target, "allowed", true)

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

// refusedSummary describes refusals for an error message.
func refusedSummary(rs []refusal) string {
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
