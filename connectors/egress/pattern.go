package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// pattern is one parsed allowlist entry.
type pattern struct {
	any      bool       // "*": any host (type declarations only)
	wildcard bool       // "*.suffix"
	name     string     // exact name, or the suffix of a wildcard
	ip       netip.Addr // IP literal
	port     uint16     // 0: any port
}

func (p pattern) String() string {
	var h string
	switch {
	case p.any:
		h = "*"
	case p.ip.IsValid():
		h = p.ip.String()
		if p.ip.Is6() && p.port != 0 {
			h = "[" + h + "]"
		}
	case p.wildcard:
		h = "*." + p.name
	default:
		h = p.name
	}
	if p.port != 0 {
		h += ":" + strconv.Itoa(int(p.port))
	}
	return h
}

// parsePattern parses an allowlist entry. anyOK admits "*" and "*:port".
func parsePattern(s string, anyOK bool) (pattern, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return pattern{}, errors.New("egress: empty host pattern")
	}
	host, portStr := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return pattern{}, fmt.Errorf("egress: host pattern %q: unclosed '['", orig)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return pattern{}, fmt.Errorf("egress: host pattern %q: junk after ']'", orig)
			}
			portStr = rest[1:]
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return pattern{}, fmt.Errorf("egress: host pattern %q: brackets need an IPv6 literal", orig)
		}
	case strings.Count(s, ":") > 1:
		// A bare IPv6 literal: no port possible.
	case strings.Contains(s, ":"):
		var err error
		host, portStr, err = net.SplitHostPort(s)
		if err != nil {
			return pattern{}, fmt.Errorf("egress: host pattern %q: %v", orig, err)
		}
	}
	var p pattern
	if portStr != "" {
		port, err := parsePort(portStr)
		if err != nil {
			return pattern{}, fmt.Errorf("egress: host pattern %q: %v", orig, err)
		}
		p.port = port
	}
	switch {
	case host == "*":
		if !anyOK {
			return pattern{}, fmt.Errorf("egress: host pattern %q admits any host; narrow it to the instance's hosts first", orig)
		}
		p.any = true
		return p, nil
	case strings.HasPrefix(host, "*."):
		name, err := normalizeName(host[2:])
		if err != nil {
			return pattern{}, fmt.Errorf("egress: host pattern %q: %v", orig, err)
		}
		p.wildcard, p.name = true, name
		return p, nil
	case strings.Contains(host, "*"):
		return pattern{}, fmt.Errorf("egress: host pattern %q: '*' only as a whole leading label", orig)
	}
	h, lit, err := normalizeHost(host)
	if err != nil {
		return pattern{}, fmt.Errorf("egress: host pattern %q: %v", orig, err)
	}
	if lit.IsValid() {
		p.ip = lit
	} else {
		p.name = h
	}
	return p, nil
}

// matches reports whether a request for host (normalized; lit set when it
// is an IP literal) on port fits the pattern.
func (p pattern) matches(host string, lit netip.Addr, port uint16) bool {
	if p.port != 0 && p.port != port {
		return false
	}
	switch {
	case p.any:
		return true
	case p.ip.IsValid():
		return lit.IsValid() && lit == p.ip
	case lit.IsValid():
		return false
	case p.wildcard:
		return strings.HasSuffix(host, "."+p.name)
	default:
		return host == p.name
	}
}

// intersect returns the pattern admitting exactly what both a (a type's
// pattern) and b (an instance's) admit, when that is one pattern.
func intersect(a, b pattern) (pattern, bool) {
	var r pattern
	switch {
	case a.port == 0:
		r.port = b.port
	case b.port == 0 || b.port == a.port:
		r.port = a.port
	default:
		return pattern{}, false
	}
	if b.any {
		return pattern{}, false
	}
	under := func(name, suffix string) bool { return strings.HasSuffix(name, "."+suffix) }
	switch {
	case a.any:
		r.ip, r.name, r.wildcard = b.ip, b.name, b.wildcard
	case a.ip.IsValid() || b.ip.IsValid():
		if a.ip != b.ip {
			return pattern{}, false
		}
		r.ip = a.ip
	case !a.wildcard && !b.wildcard:
		if a.name != b.name {
			return pattern{}, false
		}
		r.name = a.name
	case a.wildcard && !b.wildcard:
		if !under(b.name, a.name) {
			return pattern{}, false
		}
		r.name = b.name
	case !a.wildcard && b.wildcard:
		if !under(a.name, b.name) {
			return pattern{}, false
		}
		r.name = a.name
	default: // both wildcards: the narrower one
		switch {
		case a.name == b.name || under(b.name, a.name):
			r.wildcard, r.name = true, b.name
		case under(a.name, b.name):
			r.wildcard, r.name = true, a.name
		default:
			return pattern{}, false
		}
	}
	return r, true
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// normalizeHost lowercases a host and strips a trailing dot. IP literals
// come back in lit (IPv4-mapped IPv6 unmapped); zones are refused.
func normalizeHost(host string) (string, netip.Addr, error) {
	bracketed := strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")
	if bracketed {
		host = host[1 : len(host)-1]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if bracketed && !a.Is6() {
			return "", netip.Addr{}, errors.New("brackets hold an IPv6 literal only")
		}
		if a.Zone() != "" {
			return "", netip.Addr{}, errors.New("IPv6 zones are not allowed")
		}
		a = a.Unmap()
		return a.String(), a, nil
	}
	if bracketed || strings.ContainsAny(host, "[]") {
		return "", netip.Addr{}, errors.New("brackets hold an IPv6 literal only")
	}
	name, err := normalizeName(host)
	return name, netip.Addr{}, err
}

// normalizeName checks a DNS name: ASCII labels of letters, digits, '-' and
// '_', 1 to 63 bytes each, at most 253 in all, and a last label that is not
// all digits (so "127.1" or "0x7f.1" cannot pose as names). Its errors do
// not repeat the name (it may come from an instance's configuration); the
// caller knows which it was.
func normalizeName(name string) (string, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" || len(name) > 253 {
		return "", errors.New("host name is empty or too long")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", errors.New("host name has an empty or overlong label")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", errors.New("host name has a character outside [a-z0-9-_] (use punycode)")
			}
		}
	}
	last := labels[len(labels)-1]
	numeric := true
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			numeric = false
			break
		}
	}
	if numeric || strings.HasPrefix(last, "0x") {
		return "", errors.New("host name looks like a numeric address")
	}
	return name, nil
}
