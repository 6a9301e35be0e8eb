package authlimit

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies are the addresses of reverse proxies in front of connec, whose
// X-Forwarded-For header is believed.
type Proxies []netip.Prefix

// ParseProxies parses addresses and CIDR prefixes (192.0.2.10,
// 10.0.0.0/8, ::1).
func ParseProxies(list []string) (Proxies, error) {
	var out Proxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR prefix", s)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (p Proxies) trusts(a netip.Addr) bool {
	for _, pre := range p {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

// Source returns the source of an HTTP request: its peer's address, unless
// the peer is a trusted proxy; then X-Forwarded-For is read from the right
// (the hop the trusted proxy added) and the first address that is not a
// trusted proxy is the source. A malformed hop ends the walk at the last
// address trusted so far, so a client cannot choose its source by writing
// the header itself. Without trusted proxies the header is ignored.
func (g *Guard) Source(r *http.Request) Source {
	addr, ok := parseHop(r.RemoteAddr)
	if !ok {
		return Source("peer:" + truncate(r.RemoteAddr, 64))
	}
	if g.cfg.Proxies.trusts(addr) {
		var hops []string
		for _, v := range r.Header.Values("X-Forwarded-For") {
			hops = append(hops, strings.Split(v, ",")...)
		}
		for i := len(hops) - 1; i >= 0 && g.cfg.Proxies.trusts(addr); i-- {
			h, ok := parseHop(hops[i])
			if !ok {
				break
			}
			addr = h
		}
	}
	return ipSource(addr)
}

// parseHop reads an address with or without a port ("[::1]:80").
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// ipSource names an address; an IPv6 one by its /64, which one host or
// network commonly holds whole.
func ipSource(a netip.Addr) Source {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return Source("ip:" + p.String())
	}
	return Source("ip:" + a.String())
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
