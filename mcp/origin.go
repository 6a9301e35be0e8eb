package mcp

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// originPolicy protects the MCP endpoints from DNS rebinding and from web
// pages calling them from a browser: a request carrying an Origin must come
// from an allowed origin (or, on a loopback listener, from a loopback
// origin), and a request reaching a loopback listener must name a loopback
// host (or the host of an allowed origin) in Host. Clients that are not
// browsers send no Origin and are unaffected.
type originPolicy struct {
	origins map[string]bool // scheme://host:port, lower case
	hosts   map[string]bool // host:port of the allowed origins
}

func newOriginPolicy(allowed []string) originPolicy {
	p := originPolicy{origins: map[string]bool{}, hosts: map[string]bool{}}
	for _, a := range allowed {
		if o, host, ok := normalizeOrigin(a); ok {
			p.origins[o] = true
			p.hosts[host] = true
		}
	}
	return p
}

// ValidOrigin reports whether s is an origin the allowed-origins setting
// can hold (scheme://host[:port], nothing else).
func ValidOrigin(s string) bool {
	_, _, ok := normalizeOrigin(s)
	return ok
}

// normalizeOrigin returns scheme://host:port and host:port of an origin.
func normalizeOrigin(s string) (string, string, bool) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", false
	}
	host := strings.ToLower(u.Host)
	if u.Port() == "" {
		if u.Scheme == "https" {
			host = net.JoinHostPort(strings.Trim(strings.ToLower(u.Hostname()), "[]"), "443")
		} else {
			host = net.JoinHostPort(strings.Trim(strings.ToLower(u.Hostname()), "[]"), "80")
		}
	}
	return u.Scheme + "://" + host, host, true
}

// refuse returns why a request is refused, or "".
func (p originPolicy) refuse(r *http.Request) string {
	loopback := false
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && a != nil {
		loopback = isLoopback(a.String())
	}
	if loopback && !isLoopback(r.Host) && !p.hosts[hostPort(r.Host)] {
		return "this server listens on loopback and does not answer for host " + quoteShort(r.Host)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	o, host, ok := normalizeOrigin(origin)
	switch {
	case ok && p.origins[o]:
		return ""
	case ok && loopback && isLoopback(host):
		return ""
	}
	return "origin " + quoteShort(origin) + " is not allowed (CONNEC_ALLOWED_ORIGINS)"
}

func hostPort(h string) string {
	h = strings.ToLower(h)
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), "80")
}

// isLoopback reports whether addr (host or host:port) is a loopback host.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func quoteShort(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}
