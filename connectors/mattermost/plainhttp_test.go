package mattermost_test

import (
	"context"
	"net"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/connectors/mattermost"
	"github.com/connec/connec/fault"
)

// A bearer token never crosses the network in clear text unless the
// instance asks for it explicitly, and then only to a loopback, private or
// link-local address.
func TestPlainHTTPOnlyWhenAskedAndPrivate(t *testing.T) {
	token := drivertest.Canary(t)
	s := newServer(t, token)
	// Straight to the driver (a harness refuses a configuration the driver
	// refuses), with an egress that admits the server and private networks.
	call := func(cfg map[string]any) error {
		u, _ := url.Parse(cfg["server_url"].(string))
		g, err := egress.New([]string{u.Host}, egress.Options{AllowPrivate: true})
		if err != nil {
			t.Fatal(err)
		}
		_, err = mattermost.New().Invoke(context.Background(), connectors.Invocation{InstanceID: "i", Config: drivertest.JSON(t, cfg),
			Operation: "chat.read", Args: drivertest.JSON(t, map[string]any{"channel_id": chTown}), CredentialKind: "bearer",
			Credential: drivertest.Fields("token", token), Egress: g})
		return err
	}
	base := s.srv.URL + "/mm"

	// http:// alone: refused before connecting.
	err := call(map[string]any{"server_url": base, "allow_private_network": true})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonConfig)
	drivertest.NoLeak(t, nil, err, token)
	// Asking for plain HTTP needs the private network allowed too.
	err = call(map[string]any{"server_url": base, "allow_plain_http": true})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonConfig)
	if n := s.hits.Load(); n != 0 {
		t.Fatalf("the server was contacted %d times", n)
	}
	// Both, to loopback: allowed.
	if err := call(map[string]any{"server_url": base, "allow_plain_http": true, "allow_private_network": true}); err != nil {
		t.Fatal(err)
	}

	// Both, but the server's address is neither loopback, private nor
	// link-local: refused before the request (and its token) is sent.
	ip := nonPrivateAddress()
	if ip == "" {
		t.Skip("no non-private address on this machine to try plain HTTP against")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skip(err)
	}
	pub := httptest.NewUnstartedServer(s.srv.Config.Handler)
	pub.Listener.Close()
	pub.Listener = ln
	pub.Start()
	t.Cleanup(pub.Close)
	before := s.hits.Load()
	err = call(map[string]any{"server_url": pub.URL + "/mm", "allow_plain_http": true, "allow_private_network": true})
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonEgress)
	drivertest.NoLeak(t, nil, err, token)
	if s.hits.Load() != before {
		t.Fatal("the token went in clear text to a non-private address")
	}
}

// nonPrivateAddress is an IPv4 address of this machine that is neither
// loopback, private nor link-local, or "".
func nonPrivateAddress() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsPrivate() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}
