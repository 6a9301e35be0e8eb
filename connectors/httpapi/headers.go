package httpapi

import "strings"

// The header policy: one list, applied to the headers a caller passes and
// to those an instance's configuration sets, for every operation.
//
//	credentials   Authorization, Cookie, Proxy-* (and the instance's
//	              credential header, auth.header_name)
//	framing       Host, Content-Length, Transfer-Encoding, Connection,
//	              Keep-Alive, TE, Trailer, Upgrade, Expect, Accept-Encoding,
//	              User-Agent
//	routing and   Forwarded, Via, X-Forwarded-*, X-Real-IP, X-Client-IP,
//	client        True-Client-IP, X-Cluster-Client-IP, CF-Connecting-IP,
//	identity      Fastly-Client-IP, X-Originating-IP, X-Remote-IP,
//	              X-Remote-Addr, X-ProxyUser-IP, X-Host, X-Original-URL,
//	              X-Rewrite-URL, X-Original-Host, X-Envoy-*,
//	              X-Middleware-Subrequest
//	method        X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override,
//	override      X-Original-Method, and the query parameters _method,
//	              x-http-method-override, x-http-method, x-method-override
//	              (any case)
//
// Proxies and frameworks trust routing headers to say who the client is
// and which path or method it asked for, and honour method overrides: a
// caller allowed only http.get could otherwise have a GET served as a
// DELETE, and a caller allowed one send operation another. Everything else
// (Accept, Accept-Language, If-None-Match, X-Api-Version, ...) passes.
var refusedHeaders = map[string]string{
	"authorization": reasonCredential, "cookie": reasonCredential,

	"host": reasonFraming, "content-length": reasonFraming, "transfer-encoding": reasonFraming, "connection": reasonFraming,
	"keep-alive": reasonFraming, "te": reasonFraming, "trailer": reasonFraming, "upgrade": reasonFraming, "expect": reasonFraming,
	"accept-encoding": reasonFraming, "user-agent": reasonFraming,

	"forwarded": reasonRouting, "via": reasonRouting, "x-real-ip": reasonRouting, "x-client-ip": reasonRouting,
	"true-client-ip": reasonRouting, "x-cluster-client-ip": reasonRouting, "cf-connecting-ip": reasonRouting,
	"fastly-client-ip": reasonRouting, "x-originating-ip": reasonRouting, "x-remote-ip": reasonRouting,
	"x-remote-addr": reasonRouting, "x-proxyuser-ip": reasonRouting, "x-host": reasonRouting, "x-original-url": reasonRouting,
	"x-rewrite-url": reasonRouting, "x-original-host": reasonRouting, "x-middleware-subrequest": reasonRouting,

	"x-http-method-override": reasonOverride, "x-http-method": reasonOverride, "x-method-override": reasonOverride,
	"x-original-method": reasonOverride,
}

// Prefixes of refused header names.
var refusedPrefixes = map[string]string{"proxy-": reasonCredential, "x-forwarded-": reasonRouting, "x-envoy-": reasonRouting}

const (
	reasonCredential = "it carries credentials"
	reasonFraming    = "connec sets the connection and framing headers"
	reasonRouting    = "proxies trust it to route the request or name the client"
	reasonOverride   = "it overrides the request method"
)

// refusedHeader says why a header may not be set, or "" if it may.
// credentialHeader relaxes the rule for the header a credential is sent in
// (auth.header_name, which may be Authorization).
func refusedHeader(name string, credentialHeader bool) string {
	n := strings.ToLower(name)
	if r, ok := refusedHeaders[n]; ok {
		if credentialHeader && (n == "authorization" || n == "cookie") {
			return ""
		}
		return r
	}
	for p, r := range refusedPrefixes {
		if strings.HasPrefix(n, p) {
			return r
		}
	}
	return ""
}

// methodOverrideParam reports query parameters frameworks read as the
// request's method.
func methodOverrideParam(name string) bool {
	switch strings.ToLower(name) {
	case "_method", "x-http-method-override", "x-http-method", "x-method-override":
		return true
	}
	return false
}
