// Package egress is the network gate every connector driver goes through.
//
// A Guard is built from an allowlist of host patterns and implements
// connectors.Egress. It admits a connection only when the requested host is
// on the list and every address the host resolves to is acceptable; it then
// dials the address it checked (there is no second DNS lookup, so no DNS
// rebinding window), and checks the socket's actual peer address once more
// just before connect (net.Dialer.Control). Its HTTP client dials through the
// same checks, ignores proxy settings from the environment, and re-checks
// every redirect target against the allowlist (at most 5 redirects, never
// https to http).
//
// Patterns (matched case-insensitively; names must be ASCII, use punycode):
//
//	example.com          exactly that name, any port
//	example.com:443      that name, port 443 only
//	*.example.com        any name below example.com (not example.com itself)
//	*.example.com:8443   the same, port 8443 only
//	192.0.2.10, [2001:db8::1]:443
//	                     an IP literal, matched only when the caller asks for
//	                     that literal (a name resolving to it does not match)
//
// A Proxy (proxy.go) is the same gate for a sandboxed program that makes
// its own connections (an OpenClaw plugin host, a local MCP server): an
// HTTP CONNECT proxy on a Unix socket, open only during calls, each
// connection checked by the call's Guard.
//
// "*" (any host) is not a valid Guard pattern: a type that declares "*"
// reaches only the hosts its instance's configuration names. Drivers that
// derive hosts from the configuration implement Scoped; Narrow intersects
// the type's declared hosts with the instance's, and ForInstance builds the
// guard for one invocation from both.
//
// Addresses: unless Options.AllowPrivate is set, the guard refuses loopback,
// private (RFC 1918, fc00::/7), link-local, shared (100.64/10) and other
// non-global addresses after resolution, including IPv4 embedded in
// IPv4-mapped, NAT64 and 6to4 addresses. Unspecified, multicast and
// broadcast addresses, and the cloud metadata and credential endpoints of
// MetadataEndpoints (169.254.169.0/24, 169.254.170.0/24, 169.254.0.23,
// 100.100.100.200, 168.63.129.16, 192.0.0.192, fd00:ec2::/32), are refused
// even with AllowPrivate.
package egress

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrRefused matches (errors.Is) every refusal by a Guard.
var ErrRefused = errors.New("egress: destination refused")

// RefusedError says which destination a Guard refused and why. It carries
// host names and addresses only, never anything from a request's path,
// query or headers.
type RefusedError struct {
	// Host is the destination as asked for (host:port, or a URL's host).
	Host string
	// Addr is the resolved address that was refused, when the refusal came
	// after resolution.
	Addr string
	// Reason says why, for people.
	Reason string
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	b.WriteString("egress: refused ")
	b.WriteString(e.Host)
	if e.Addr != "" {
		b.WriteString(" (")
		b.WriteString(e.Addr)
		b.WriteString(")")
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Resolver looks up a host's addresses. *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options tune a Guard. The zero value is the strict default.
type Options struct {
	// AllowPrivate admits loopback, private, link-local and other
	// non-global unicast destinations.
	AllowPrivate bool
	// Resolver replaces net.DefaultResolver (tests use it to map names).
	Resolver Resolver
	// DialTimeout caps one connection attempt (default 10s). The caller's
	// context still applies.
	DialTimeout time.Duration
	// TLSConfig is cloned into the HTTP client's transport (for example to
	// trust a private CA). Nil means the system defaults, TLS 1.2 at least.
	TLSConfig *tls.Config
}

// Default timeouts of the HTTP client. The caller's context still applies
// and is normally the tighter bound.
const (
	defaultDialTimeout       = 10 * time.Second
	tlsHandshakeTimeout      = 10 * time.Second
	responseHeaderTimeout    = 60 * time.Second
	idleConnTimeout          = 30 * time.Second
	clientTimeout            = 5 * time.Minute
	maxResponseHeaderBytes   = 64 << 10
	maxRedirects             = 5
	maxIdleConnsPerHost      = 4
	expectContinueTimeoutDur = time.Second
)

// Guard admits outbound connections to allowlisted hosts only. It is safe
// for concurrent use.
type Guard struct {
	patterns []pattern
	opts     Options

	once      sync.Once
	transport *http.Transport
	client    *http.Client
}

// New returns a guard admitting the hosts allow lists. An empty list admits
// nothing.
func New(allow []string, opts Options) (*Guard, error) {
	g := &Guard{opts: opts}
	for _, s := range allow {
		p, err := parsePattern(s, false)
		if err != nil {
			return nil, err
		}
		g.patterns = append(g.patterns, p)
	}
	if g.opts.Resolver == nil {
		g.opts.Resolver = net.DefaultResolver
	}
	if g.opts.DialTimeout <= 0 {
		g.opts.DialTimeout = defaultDialTimeout
	}
	return g, nil
}

// Allowlist returns the guard's patterns in canonical form.
func (g *Guard) Allowlist() []string {
	out := make([]string, len(g.patterns))
	for i, p := range g.patterns {
		out[i] = p.String()
	}
	return out
}

// AllowPrivate reports whether the guard admits non-global addresses.
func (g *Guard) AllowPrivate() bool { return g.opts.AllowPrivate }

// DialContext connects to addr (host:port) over TCP if the host is on the
// allowlist and every address it resolves to is acceptable. It dials the
// checked addresses themselves, in the resolver's order.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &RefusedError{Host: addr, Reason: "network " + strconv.Quote(network) + " is not allowed"}
	}
	hostPart, portPart, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &RefusedError{Host: addr, Reason: "not a host:port address"}
	}
	port, err := parsePort(portPart)
	if err != nil {
		return nil, &RefusedError{Host: addr, Reason: err.Error()}
	}
	host, lit, err := normalizeHost(hostPart)
	if err != nil {
		return nil, &RefusedError{Host: addr, Reason: err.Error()}
	}
	display := net.JoinHostPort(host, portPart)
	if !g.allowed(host, lit, port) {
		return nil, &RefusedError{Host: display, Reason: "host is not on the egress allowlist"}
	}

	var addrs []netip.Addr
	if lit.IsValid() {
		addrs = []netip.Addr{lit}
	} else {
		ipNet := "ip"
		switch network {
		case "tcp4":
			ipNet = "ip4"
		case "tcp6":
			ipNet = "ip6"
		}
		found, err := g.opts.Resolver.LookupNetIP(ctx, ipNet, host)
		if err != nil {
			return nil, fmt.Errorf("egress: resolve %s: %w", host, err)
		}
		for _, a := range found {
			addrs = append(addrs, a.Unmap().WithZone(""))
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	// Every address must pass: a name that resolves to one public and one
	// private address is refused outright.
	for _, a := range addrs {
		if reason := g.addrReason(a); reason != "" {
			return nil, &RefusedError{Host: display, Addr: a.String(), Reason: reason}
		}
	}

	// Like net.Dialer, share the dial timeout among the addresses (at least
	// 2s each), so one black-holed address does not use it all.
	var firstErr error
	start := time.Now()
	for i, a := range addrs {
		left := g.opts.DialTimeout - time.Since(start)
		if left <= 0 {
			break
		}
		per := max(left/time.Duration(len(addrs)-i), min(left, 2*time.Second))
		target := netip.AddrPortFrom(a, port)
		d := net.Dialer{Timeout: per, Control: g.control(display, a)}
		conn, err := d.DialContext(ctx, network, target.String())
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil || errors.Is(err, ErrRefused) {
			break
		}
	}
	if firstErr == nil {
		firstErr = &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded}
	}
	return nil, firstErr
}

// control is the last check, on the address the socket really connects to.
func (g *Guard) control(display string, want netip.Addr) func(network, address string, c syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &RefusedError{Host: display, Addr: address, Reason: "unparseable socket address"}
		}
		a := ap.Addr().Unmap().WithZone("")
		if a != want {
			return &RefusedError{Host: display, Addr: a.String(), Reason: "socket address differs from the checked address"}
		}
		if reason := g.addrReason(a); reason != "" {
			return &RefusedError{Host: display, Addr: a.String(), Reason: reason}
		}
		return nil
	}
}

// HTTPClient returns a client whose every connection goes through
// DialContext and whose every redirect is re-checked against the
// allowlist. Calls share one transport (and its connection pool); each
// returns its own *http.Client value, so changing it affects no other
// caller.
func (g *Guard) HTTPClient() *http.Client {
	g.once.Do(func() {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if g.opts.TLSConfig != nil {
			tlsCfg = g.opts.TLSConfig.Clone()
			if tlsCfg.MinVersion < tls.VersionTLS12 {
				tlsCfg.MinVersion = tls.VersionTLS12
			}
		}
		g.transport = &http.Transport{
			Proxy:                  nil, // never from the environment
			DialContext:            g.DialContext,
			TLSClientConfig:        tlsCfg,
			ForceAttemptHTTP2:      true,
			TLSHandshakeTimeout:    tlsHandshakeTimeout,
			ResponseHeaderTimeout:  responseHeaderTimeout,
			ExpectContinueTimeout:  expectContinueTimeoutDur,
			IdleConnTimeout:        idleConnTimeout,
			MaxIdleConns:           16,
			MaxIdleConnsPerHost:    maxIdleConnsPerHost,
			MaxResponseHeaderBytes: maxResponseHeaderBytes,
		}
		g.client = &http.Client{
			Transport:     g.transport,
			CheckRedirect: g.checkRedirect,
			Timeout:       clientTimeout,
		}
	})
	c := *g.client
	return &c
}

// CloseIdleConnections closes the HTTP client's idle connections.
func (g *Guard) CloseIdleConnections() {
	if g.transport != nil {
		g.transport.CloseIdleConnections()
	}
}

func (g *Guard) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return &RefusedError{Host: req.URL.Host, Reason: fmt.Sprintf("more than %d redirects", maxRedirects)}
	}
	if len(via) > 0 && via[len(via)-1].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return &RefusedError{Host: req.URL.Host, Reason: "redirect from https to " + req.URL.Scheme}
	}
	return g.CheckURL(req.URL)
}

// CheckURL reports whether the guard would admit a request to u's host (by
// name; addresses are checked at dial time). It refuses schemes other than
// http and https.
func (g *Guard) CheckURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return &RefusedError{Host: u.Host, Reason: "scheme " + strconv.Quote(u.Scheme) + " is not allowed"}
	}
	host, port, err := URLHostPort(u)
	if err != nil {
		return &RefusedError{Host: u.Host, Reason: err.Error()}
	}
	h, lit, err := normalizeHost(host)
	if err != nil {
		return &RefusedError{Host: u.Host, Reason: err.Error()}
	}
	if !g.allowed(h, lit, port) {
		return &RefusedError{Host: net.JoinHostPort(h, strconv.Itoa(int(port))), Reason: "host is not on the egress allowlist"}
	}
	if lit.IsValid() {
		if reason := g.addrReason(lit); reason != "" {
			return &RefusedError{Host: u.Host, Addr: lit.String(), Reason: reason}
		}
	}
	return nil
}

func (g *Guard) allowed(host string, lit netip.Addr, port uint16) bool {
	for _, p := range g.patterns {
		if p.matches(host, lit, port) {
			return true
		}
	}
	return false
}

// URLHostPort returns u's host and port, the port defaulting by scheme
// (80 for http, 443 for https).
func URLHostPort(u *url.URL) (string, uint16, error) {
	host := u.Hostname()
	if host == "" {
		return "", 0, errors.New("URL has no host")
	}
	ps := u.Port()
	if ps == "" {
		switch u.Scheme {
		case "http":
			return host, 80, nil
		case "https":
			return host, 443, nil
		default:
			return "", 0, errors.New("URL has no port and no default for its scheme")
		}
	}
	p, err := parsePort(ps)
	return host, p, err
}

// URLPattern returns the exact allowlist pattern (host:port) for u.
func URLPattern(u *url.URL) (string, error) {
	host, port, err := URLHostPort(u)
	if err != nil {
		return "", err
	}
	return HostPattern(host, int(port))
}

// HostPattern returns the exact allowlist pattern for host (a DNS name or
// an IP literal, brackets optional) and port: the host normalized (lower
// case, no trailing dot), an IPv6 literal bracketed.
func HostPattern(host string, port int) (string, error) {
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("port %d is not from 1 to 65535", port)
	}
	h, _, err := normalizeHost(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(h, strconv.Itoa(port)), nil
}

// Scope is the egress one instance's configuration asks for.
type Scope struct {
	// Hosts are the patterns the configuration names (usually one
	// host:port). They are narrowed by the type's EgressHosts.
	Hosts []string
	// AllowPrivate is the configuration's allow_private_network.
	AllowPrivate bool
}

// Scoped is implemented by drivers whose reachable hosts come from the
// instance's configuration (types that declare EgressHosts ["*"], or that
// let an instance pick among their hosts). The executor builds the guard
// from Narrow(spec.EgressHosts, scope.Hosts) and scope.AllowPrivate.
type Scoped interface {
	EgressScope(config json.RawMessage) (Scope, error)
}

// ForInstance builds the guard for one invocation: the type's declared
// hosts, narrowed by the instance's scope when the driver is Scoped. A
// driver that is not Scoped reaches its declared hosts only (a bare "*" is
// dropped), never private addresses. opts.AllowPrivate is overridden by the
// scope.
func ForInstance(typeHosts []string, driver any, config json.RawMessage, opts Options) (*Guard, error) {
	opts.AllowPrivate = false
	hosts := make([]string, 0, len(typeHosts))
	if s, ok := driver.(Scoped); ok {
		scope, err := s.EgressScope(config)
		if err != nil {
			return nil, err
		}
		hosts = Narrow(typeHosts, scope.Hosts)
		opts.AllowPrivate = scope.AllowPrivate
	} else {
		for _, h := range typeHosts {
			if p, err := parsePattern(h, false); err == nil {
				hosts = append(hosts, p.String())
			}
		}
	}
	return New(hosts, opts)
}

// Narrow returns the instance's hosts that the type allows: for each
// instance pattern, its intersection with each type pattern, where a type
// pattern "*" (or "*:port") allows any host. Invalid patterns, and an
// instance asking for "*", contribute nothing. The result is deduplicated
// and in instance order.
func Narrow(typeHosts []string, instanceHosts []string) []string {
	var tps []pattern
	for _, s := range typeHosts {
		if p, err := parsePattern(s, true); err == nil {
			tps = append(tps, p)
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, s := range instanceHosts {
		ip, err := parsePattern(s, false)
		if err != nil {
			continue
		}
		for _, tp := range tps {
			if r, ok := intersect(tp, ip); ok {
				k := r.String()
				if !seen[k] {
					seen[k] = true
					out = append(out, k)
				}
			}
		}
	}
	return out
}
