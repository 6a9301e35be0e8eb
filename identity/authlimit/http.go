package authlimit

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
)

// WriteHTTP answers a request whose authentication failed with err (from
// Authenticate) in plain text: 429 with Retry-After for a source over its
// limit, 503 when the token or the refusal could not be checked or
// written, 401 with a Bearer challenge otherwise.
func WriteHTTP(w http.ResponseWriter, err error) {
	switch fault.As(err).Type {
	case fault.QuotaExceeded:
		w.Header().Set("Retry-After", strconv.FormatInt(RetryAfter(err), 10))
		http.Error(w, "too many requests: too many failed authentications from this address; try again later", http.StatusTooManyRequests)
	case fault.Unavailable:
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="connec"`)
		http.Error(w, "unauthorized: a valid bearer token is required", http.StatusUnauthorized)
	}
}

// RetryAfter is the whole seconds (at least 1) a quota_exceeded refusal
// asks the caller to wait.
func RetryAfter(err error) int64 {
	ms, _ := fault.As(err).Details["retry_after_ms"].(int64)
	return max((ms+999)/1000, 1)
}

// AuthenticateRequest authenticates an HTTP request by its
// "Authorization: Bearer <token>" header through the guard: the one way
// every HTTP transport (MCP and REST) turns a request into a principal,
// with failed attempts limited and audited per source. The principal
// carries transport.
func (g *Guard) AuthenticateRequest(r *http.Request, transport string, auth Authenticator) (callctx.Principal, error) {
	token, _ := BearerToken(r)
	return g.AuthenticateToken(r, transport, token, auth)
}

// AuthenticateToken is AuthenticateRequest for a token the request carries
// elsewhere (the web UI's session cookie, its login form).
func (g *Guard) AuthenticateToken(r *http.Request, transport, token string, auth Authenticator) (callctx.Principal, error) {
	p, err := g.Authenticate(r.Context(), Attempt{Source: g.Source(r), Transport: transport, Tool: "http:" + transport, Token: token}, auth)
	if err != nil {
		return callctx.Principal{}, err
	}
	p.Transport = transport
	return p, nil
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header (the scheme in any case), or false.
func BearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}
