package egress_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/egress"
)

var _ connectors.Egress = (*egress.Guard)(nil)

// hosts is a resolver over a fixed table that counts lookups.
type hosts struct {
	table map[string][]string
	calls atomic.Int64
}

func (h *hosts) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	h.calls.Add(1)
	addrs, ok := h.table[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

// counted starts a server counting the requests it gets.
func counted(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if h != nil {
			h(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func port(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

func guard(t *testing.T, allow []string, opts egress.Options) *egress.Guard {
	t.Helper()
	g, err := egress.New(allow, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.CloseIdleConnections)
	return g
}

func get(t *testing.T, g *egress.Guard, u string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := g.HTTPClient().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func wantRefused(t *testing.T, err error, contains string) {
	t.Helper()
	if !errors.Is(err, egress.ErrRefused) {
		t.Fatalf("error = %v, want one matching ErrRefused", err)
	}
	var re *egress.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("error %v carries no *RefusedError", err)
	}
	if contains != "" && !strings.Contains(re.Error(), contains) {
		t.Fatalf("refusal %q does not mention %q", re.Error(), contains)
	}
}

func TestAllowedHost(t *testing.T) {
	srv, n := counted(t, nil)
	p := port(t, srv)
	res := &hosts{table: map[string][]string{"api.test": {"127.0.0.1"}}}
	for _, tc := range []struct {
		name  string
		allow []string
		url   string
	}{
		{"ip literal with port", []string{"127.0.0.1:" + p}, srv.URL},
		{"ip literal any port", []string{"127.0.0.1"}, srv.URL},
		{"name with port", []string{"api.test:" + p}, "http://api.test:" + p + "/"},
		{"name, case and trailing dot", []string{"API.Test."}, "http://api.TEST.:" + p + "/"},
		{"wildcard", []string{"*.test"}, "http://api.test:" + p + "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := guard(t, tc.allow, egress.Options{AllowPrivate: true, Resolver: res})
			body, err := get(t, g, tc.url)
			if err != nil || body != "ok" {
				t.Fatalf("GET = %q, %v", body, err)
			}
		})
	}
	if n.Load() != 5 {
		t.Fatalf("server saw %d requests, want 5", n.Load())
	}
}

func TestHostOffListRefused(t *testing.T) {
	srv, n := counted(t, nil)
	p := port(t, srv)
	res := &hosts{table: map[string][]string{"api.test": {"127.0.0.1"}, "other.test": {"127.0.0.1"}}}
	for _, tc := range []struct {
		name  string
		allow []string
		url   string
	}{
		{"other name", []string{"other.test"}, "http://api.test:" + p + "/"},
		{"wrong port", []string{"api.test:1"}, "http://api.test:" + p + "/"},
		{"wildcard excludes apex", []string{"*.api.test"}, "http://api.test:" + p + "/"},
		{"suffix is not a label boundary", []string{"i.test"}, "http://api.test:" + p + "/"},
		{"name does not admit its address", []string{"api.test"}, srv.URL},
		{"empty list", nil, srv.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := guard(t, tc.allow, egress.Options{AllowPrivate: true, Resolver: res})
			_, err := get(t, g, tc.url)
			wantRefused(t, err, "allowlist")
		})
	}
	if n.Load() != 0 {
		t.Fatalf("server was contacted %d times", n.Load())
	}
	if res.calls.Load() != 0 {
		t.Fatalf("resolver was asked %d times for hosts off the list", res.calls.Load())
	}
}

func TestPrivateRefusedByDefault(t *testing.T) {
	srv, n := counted(t, nil)
	g := guard(t, []string{"127.0.0.1", "10.0.0.1", "192.168.1.1", "169.254.1.1", "::1", "100.64.0.1", "::ffff:127.0.0.1"}, egress.Options{})
	_, err := get(t, g, srv.URL)
	wantRefused(t, err, "non-public")
	for _, addr := range []string{"10.0.0.1:80", "192.168.1.1:443", "169.254.1.1:80", "[::1]:80", "100.64.0.1:80", "[::ffff:127.0.0.1]:80"} {
		_, err := g.DialContext(context.Background(), "tcp", addr)
		wantRefused(t, err, "non-public")
	}
	if n.Load() != 0 {
		t.Fatalf("server was contacted %d times", n.Load())
	}
}

func TestLoopbackAllowedWithAllowPrivate(t *testing.T) {
	srv, _ := counted(t, nil)
	g := guard(t, []string{"127.0.0.1"}, egress.Options{AllowPrivate: true})
	if body, err := get(t, g, srv.URL); err != nil || body != "ok" {
		t.Fatalf("GET = %q, %v", body, err)
	}
	conn, err := g.DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
}

func TestAlwaysRefused(t *testing.T) {
	g := guard(t, []string{"169.254.169.254", "0.0.0.0", "255.255.255.255", "224.0.0.1", "fd00:ec2::254", "64:ff9b::a9fe:a9fe"}, egress.Options{AllowPrivate: true})
	for _, addr := range []string{"169.254.169.254:80", "0.0.0.0:80", "255.255.255.255:80", "224.0.0.1:80", "[fd00:ec2::254]:80", "[64:ff9b::a9fe:a9fe]:80"} {
		_, err := g.DialContext(context.Background(), "tcp", addr)
		wantRefused(t, err, "")
	}
	_, err := g.DialContext(context.Background(), "udp", "169.254.169.254:53")
	wantRefused(t, err, "network")
}

func TestRedirectOffListRefused(t *testing.T) {
	evil, evilHits := counted(t, nil)
	res := &hosts{table: map[string][]string{"api.test": {"127.0.0.1"}, "evil.test": {"127.0.0.1"}}}
	front, _ := counted(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://evil.test:"+port(t, evil)+"/steal", http.StatusFound)
	})
	g := guard(t, []string{"api.test:" + port(t, front)}, egress.Options{AllowPrivate: true, Resolver: res})
	_, err := get(t, g, "http://api.test:"+port(t, front)+"/")
	wantRefused(t, err, "evil.test")
	// Even a redirect to the same address under a name off the list fails.
	if evilHits.Load() != 0 {
		t.Fatalf("redirect target was contacted %d times", evilHits.Load())
	}
}

func TestRedirectCap(t *testing.T) {
	srv, n := counted(t, func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/r/"))
		if i >= 100 || r.URL.Query().Get("stop") == strconv.Itoa(i) {
			_, _ = io.WriteString(w, "done")
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/r/%d?%s", i+1, r.URL.RawQuery), http.StatusFound)
	})
	g := guard(t, []string{"127.0.0.1"}, egress.Options{AllowPrivate: true})
	if body, err := get(t, g, srv.URL+"/r/0?stop=5"); err != nil || body != "done" {
		t.Fatalf("5 redirects: %q, %v", body, err)
	}
	n.Store(0)
	_, err := get(t, g, srv.URL+"/r/0?stop=6")
	wantRefused(t, err, "redirects")
	if n.Load() != 6 {
		t.Fatalf("server saw %d requests, want 6 (5 redirects followed)", n.Load())
	}
}

func TestDNSToPrivateRefused(t *testing.T) {
	res := &hosts{table: map[string][]string{
		"internal.example.com": {"10.1.2.3"},
		"mixed.example.com":    {"93.184.216.34", "127.0.0.1"},
		"nat64.example.com":    {"64:ff9b::7f00:1"},
	}}
	g := guard(t, []string{"*.example.com"}, egress.Options{Resolver: res})
	for host, addr := range map[string]string{"internal.example.com": "10.1.2.3", "mixed.example.com": "127.0.0.1", "nat64.example.com": "64:ff9b::7f00:1"} {
		_, err := g.DialContext(context.Background(), "tcp", host+":443")
		wantRefused(t, err, addr)
		var re *egress.RefusedError
		errors.As(err, &re)
		if re.Addr != addr || !strings.HasPrefix(re.Host, host) {
			t.Fatalf("refusal = %+v, want host %s address %s", re, host, addr)
		}
	}
	_, err := g.DialContext(context.Background(), "tcp", "missing.example.com:443")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("unknown host: %v, want a not-found DNS error", err)
	}
}

func TestResolvesOnce(t *testing.T) {
	srv, _ := counted(t, nil)
	res := &hosts{table: map[string][]string{"api.test": {"127.0.0.1"}}}
	g := guard(t, []string{"api.test"}, egress.Options{AllowPrivate: true, Resolver: res})
	if _, err := get(t, g, "http://api.test:"+port(t, srv)+"/"); err != nil {
		t.Fatal(err)
	}
	if res.calls.Load() != 1 {
		t.Fatalf("resolver called %d times for one connection, want 1", res.calls.Load())
	}
}

func TestHTTPSDowngradeRefused(t *testing.T) {
	plain, hits := counted(t, nil)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL, http.StatusFound)
	}))
	t.Cleanup(tlsSrv.Close)
	g := guard(t, []string{"127.0.0.1"}, egress.Options{AllowPrivate: true, TLSConfig: tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig})
	_, err := get(t, g, tlsSrv.URL)
	wantRefused(t, err, "https")
	if hits.Load() != 0 {
		t.Fatal("plain-http target contacted")
	}
}

func TestHTTPClientIgnoresProxyEnv(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("http_proxy", "http://127.0.0.1:1")
	srv, _ := counted(t, nil)
	g := guard(t, []string{"127.0.0.1"}, egress.Options{AllowPrivate: true})
	if body, err := get(t, g, srv.URL); err != nil || body != "ok" {
		t.Fatalf("GET = %q, %v", body, err)
	}
	c := g.HTTPClient()
	c.CheckRedirect = nil
	if g.HTTPClient().CheckRedirect == nil {
		t.Fatal("changing one client changed the guard's")
	}
}

func TestPatterns(t *testing.T) {
	for _, bad := range []string{"", "*", "*:443", "a.*.com", "exa mple.com", "127.1", "host:0", "host:99999", "[::1", "[::1]x", "[example.com]:80", "fe80::1%eth0", "bücher.de", "0x7f000001"} {
		if _, err := egress.New([]string{bad}, egress.Options{}); err == nil {
			t.Errorf("New(%q) succeeded, want an error", bad)
		}
	}
	g := guard(t, []string{"Example.COM.", "*.svc.example.net:8443", "[2001:db8::1]:443", "::ffff:192.0.2.1", "10.0.0.1:25"}, egress.Options{})
	want := []string{"example.com", "*.svc.example.net:8443", "[2001:db8::1]:443", "192.0.2.1", "10.0.0.1:25"}
	if got := g.Allowlist(); !slices.Equal(got, want) {
		t.Fatalf("Allowlist = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://example.com/x", true},
		{"http://example.com:8080/", true},
		{"https://www.example.com/", false},
		{"https://a.svc.example.net:8443/", true},
		{"https://a.b.svc.example.net:8443/", true},
		{"https://a.svc.example.net/", false},
		{"https://svc.example.net:8443/", false},
		{"ftp://example.com/", false},
	} {
		u, _ := url.Parse(tc.url)
		if err := g.CheckURL(u); (err == nil) != tc.ok {
			t.Errorf("CheckURL(%s) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

func TestNarrow(t *testing.T) {
	for _, tc := range []struct {
		typ, inst, want []string
	}{
		{[]string{"*"}, []string{"api.example.com:443"}, []string{"api.example.com:443"}},
		{[]string{"*"}, []string{"*"}, nil},
		{[]string{"*"}, nil, nil},
		{[]string{"*:443"}, []string{"a.example.com", "b.example.com:80"}, []string{"a.example.com:443"}},
		{[]string{"*.slack.com"}, []string{"hooks.slack.com", "evil.com", "*.files.slack.com"}, []string{"hooks.slack.com", "*.files.slack.com"}},
		{[]string{"api.example.com:443"}, []string{"api.example.com"}, []string{"api.example.com:443"}},
		{[]string{"api.example.com"}, []string{"*.example.com:443"}, []string{"api.example.com:443"}},
		{[]string{"*.example.com"}, []string{"*.com"}, []string{"*.example.com"}},
		{[]string{"10.0.0.1"}, []string{"10.0.0.1:8080", "10.0.0.2"}, []string{"10.0.0.1:8080"}},
		{[]string{"example.com"}, []string{"example.com", "EXAMPLE.com.", "bad host"}, []string{"example.com"}},
		{nil, []string{"example.com"}, nil},
	} {
		if got := egress.Narrow(tc.typ, tc.inst); !slices.Equal(got, tc.want) {
			t.Errorf("Narrow(%q, %q) = %q, want %q", tc.typ, tc.inst, got, tc.want)
		}
	}
}

type scoped struct{ scope egress.Scope }

func (s scoped) EgressScope(json.RawMessage) (egress.Scope, error) { return s.scope, nil }

func TestForInstance(t *testing.T) {
	g, err := egress.ForInstance([]string{"*"}, scoped{egress.Scope{Hosts: []string{"api.example.com:443"}, AllowPrivate: true}}, nil, egress.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.Allowlist(), []string{"api.example.com:443"}) || !g.AllowPrivate() {
		t.Fatalf("scoped guard: %q private=%v", g.Allowlist(), g.AllowPrivate())
	}
	g, err = egress.ForInstance([]string{"*", "api.example.com"}, struct{}{}, nil, egress.Options{AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.Allowlist(), []string{"api.example.com"}) || g.AllowPrivate() {
		t.Fatalf("unscoped guard: %q private=%v", g.Allowlist(), g.AllowPrivate())
	}
}
