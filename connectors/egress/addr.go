package egress

import "net/netip"

// MetadataEndpoints are the cloud metadata and credential endpoints a
// guard refuses whatever its options (allow_private_network included):
// where a cloud hands instance credentials to whoever asks from inside.
// Checked after resolution, on the address dialled, and on IPv4 addresses
// embedded in IPv4-mapped, NAT64 and 6to4 addresses.
var MetadataEndpoints = []netip.Prefix{
	netip.MustParsePrefix("169.254.169.0/24"),   // AWS, GCP, Azure, OpenStack, DigitalOcean... metadata (.254), Amazon DNS (.253), Time Sync (.123)
	netip.MustParsePrefix("169.254.170.0/24"),   // AWS ECS task credentials (.2), EKS Pod Identity agent (.23)
	netip.MustParsePrefix("169.254.0.23/32"),    // Tencent Cloud metadata
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
	netip.MustParsePrefix("168.63.129.16/32"),   // Azure WireServer (host agent, DNS)
	netip.MustParsePrefix("192.0.0.192/32"),     // Oracle Cloud metadata
	netip.MustParsePrefix("fd00:ec2::/32"),      // AWS IPv6 metadata (fd00:ec2::254), DNS, Time Sync, ECS
}

// IsMetadata reports whether a is one of the MetadataEndpoints, also as an
// IPv4 address embedded in an IPv6 one.
func IsMetadata(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range MetadataEndpoints {
		if p.Contains(a) {
			return true
		}
	}
	if e, ok := embeddedIPv4(a); ok {
		return IsMetadata(e)
	}
	return false
}

var (
	broadcast4 = netip.MustParseAddr("255.255.255.255")

	// Not global unicast: refused unless AllowPrivate. (Loopback, RFC 1918,
	// fc00::/7 and link-local are checked with the netip predicates.)
	nonGlobal = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
		netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
		netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
		netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
		netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
		netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
		netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
		netip.MustParsePrefix("240.0.0.0/4"),     // reserved
		netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated)
		netip.MustParsePrefix("100::/64"),        // discard-only
		netip.MustParsePrefix("2001::/32"),       // Teredo (hides an IPv4 address)
		netip.MustParsePrefix("2001:db8::/32"),   // documentation
		netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
	}
	// IPv6 prefixes embedding an IPv4 address, judged by that address.
	nat64     = []netip.Prefix{netip.MustParsePrefix("64:ff9b::/96"), netip.MustParsePrefix("64:ff9b:1::/48")}
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// addrReason returns why the guard refuses a, or "" if it admits it.
func (g *Guard) addrReason(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	switch {
	case !a.IsValid():
		return "invalid address"
	case a.IsUnspecified():
		return "unspecified address"
	case a.IsMulticast():
		return "multicast address"
	case a == broadcast4:
		return "broadcast address"
	}
	if IsMetadata(a) {
		return "cloud metadata or credential endpoint (refused whatever the instance allows)"
	}
	if e, ok := embeddedIPv4(a); ok {
		if r := g.addrReason(e); r != "" {
			return r + " (embedded in " + a.String() + ")"
		}
	}
	if !g.opts.AllowPrivate && !global(a) {
		return "non-public address (loopback, private, link-local or reserved); the instance does not allow private networks"
	}
	return ""
}

// global reports whether a is a globally routable unicast address.
func global(a netip.Addr) bool {
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range nonGlobal {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// embeddedIPv4 extracts the IPv4 address a NAT64 or 6to4 address carries.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	for _, p := range nat64 {
		if p.Contains(a) {
			return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
		}
	}
	if sixToFour.Contains(a) {
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}
