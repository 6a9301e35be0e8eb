package authlimit_test

import (
	"net/http/httptest"
	"testing"

	"github.com/connec/connec/identity/authlimit"
)

// A request's source is its peer's address unless the peer is a trusted
// proxy; X-Forwarded-For is then read from the right, past trusted proxies,
// and never beyond a malformed entry.
func TestSourceOfARequest(t *testing.T) {
	proxies, err := authlimit.ParseProxies([]string{"10.0.0.0/8", " 192.0.2.1 ", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	trusting := authlimit.New(authlimit.Config{Proxies: proxies}, nil)
	plain := authlimit.New(authlimit.Config{}, nil)
	cases := []struct {
		name   string
		g      *authlimit.Guard
		peer   string
		xff    []string
		source authlimit.Source
	}{
		{"peer", plain, "198.51.100.7:5000", nil, "ip:198.51.100.7"},
		{"untrusted peer's header ignored", plain, "198.51.100.7:5000", []string{"203.0.113.1"}, "ip:198.51.100.7"},
		{"IPv6 by its /64", plain, "[2001:db8:1:2:aaaa::1]:443", nil, "ip:2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6 as IPv4", plain, "[::ffff:198.51.100.7]:80", nil, "ip:198.51.100.7"},
		{"not an address", plain, "@", nil, "peer:@"},
		{"trusted proxy, client it saw", trusting, "10.1.2.3:80", []string{"203.0.113.9, 198.51.100.7"}, "ip:198.51.100.7"},
		{"chain of trusted proxies", trusting, "192.0.2.1:80", []string{"198.51.100.7, 10.9.9.9"}, "ip:198.51.100.7"},
		{"header lines joined", trusting, "[::1]:80", []string{"203.0.113.9", "198.51.100.7,10.0.0.2"}, "ip:198.51.100.7"},
		{"hop with a port", trusting, "10.1.2.3:80", []string{"[2001:db8::5]:1234"}, "ip:2001:db8::/64"},
		{"malformed hop stops the walk", trusting, "10.1.2.3:80", []string{"198.51.100.7, unknown"}, "ip:10.1.2.3"},
		{"only trusted hops", trusting, "10.1.2.3:80", []string{"10.0.0.1"}, "ip:10.0.0.1"},
		{"trusted proxy without header", trusting, "10.1.2.3:80", nil, "ip:10.1.2.3"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/mcp", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := c.g.Source(r); got != c.source {
			t.Errorf("%s: source %q, want %q", c.name, got, c.source)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.1/8/1"} {
		if _, err := authlimit.ParseProxies([]string{bad}); err == nil {
			t.Errorf("ParseProxies(%q) accepted", bad)
		}
	}
	if a, b := authlimit.Session("stdio-1"), authlimit.Session("stdio-2"); a == b || len(a) != len("session:")+12 {
		t.Errorf("session sources %q and %q", a, b)
	}
}
