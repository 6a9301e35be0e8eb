package mattermost

import (
	"context"
	"net"
	"net/http"
	"net/netip"

	"github.com/connec/connec/connectors"
)

// publicPlainHTTP refuses a plain-HTTP connection to an address that is not
// loopback, private or link-local.
type publicPlainHTTP struct{ addr string }

func (e *publicPlainHTTP) Error() string {
	return "plain HTTP to " + e.addr + ", which is not a loopback, private or link-local address"
}

// plainHTTPClient is the client for an http:// server_url (allowed only
// with allow_plain_http and allow_private_network): every connection goes
// through the instance's egress and must end at a loopback, RFC 1918/ULA or
// link-local address, checked on the connected socket before a byte (the
// token) is written. Connections are not kept.
func plainHTTPClient(eg connectors.Egress) *http.Client {
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := eg.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
			a := ap.Addr().Unmap()
			if err != nil || !(a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast()) {
				_ = c.Close()
				return nil, &publicPlainHTTP{addr: c.RemoteAddr().String()}
			}
			return c, nil
		},
	}
	return &http.Client{Transport: tr}
}
