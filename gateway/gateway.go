// Package gateway is connec's User API Gateway: the surface people and user
// interfaces manage connec through. It serves
//
//   - a REST API under /v1 (JSON; Authorization: Bearer <token>; errors as
//     RFC 9457 application/problem+json), described by the OpenAPI 3.1
//     document checked in as openapi.json and served at /v1/openapi.json;
//   - a server-rendered web UI under /ui (html/template, embedded CSS, no
//     JavaScript), logged in with the same API tokens held in an HttpOnly,
//     SameSite=Strict cookie, with CSRF tokens on every state-changing form;
//   - /readyz; and, on a listener of its own, /metrics (Prometheus, the
//     internal/platform/metrics registry: MetricsHandler).
//
// Like the MCP surface it is a transport and holds no business logic: the
// REST routes are the core's operation catalog (core.Catalog) translated —
// each request is authenticated, its path parameters, query and body bound
// to the entry's input, and the entry's use case run, which decides policy
// and writes the audit row; the OpenAPI document is generated from the same
// catalog (GenerateOpenAPI). Requests refused before they reach a use case
// (a missing token, a malformed body) are audited through the entry's
// Refuse, as MCP does. The UI calls the core's use cases directly.
//
// # Status codes
//
// A fault's stable type decides the status: invalid_argument and
// validation_error 400 (413 for a body over 1 MiB, 415 for a body that is
// not JSON), unauthenticated 401, not_found 404, conflict and every
// credential_* type 409, quota_exceeded 429 with Retry-After, unavailable
// and transient 503, timeout 504, permanent and response_too_large 502,
// internal 500. The service answers policy_denied both for a resource the
// caller may not act on and for one that does not exist, so that the two
// cannot be told apart; the gateway keeps that property: policy_denied is
// 404 on every URL that names one resource (a path with an {id} or {cid})
// and 403 on collection and creation URLs. The problem's type stays
// policy_denied either way.
package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/metrics"
)

// Transport names recorded in audit rows for calls through the gateway.
const (
	TransportREST = "rest"
	TransportWeb  = "web"
)

// maxBody bounds every request body.
const maxBody = 1 << 20

// Authenticator resolves a bearer token to a principal (identity.Store).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (callctx.Principal, error)
}

// SubjectNamer names the users and groups among subjects, in one lookup
// (identity.Store). The UI shows names with the ids at hand; subjects left
// out of the answer are shown as ids.
type SubjectNamer interface {
	Names(ctx context.Context, subjects []callctx.Subject) (map[callctx.Subject]string, error)
}

// Config is what a Gateway is built from.
type Config struct {
	// Service is the core every handler calls.
	Service *core.Service
	// Auth checks bearer tokens and UI session cookies.
	Auth Authenticator
	// Names names the owners and subjects the UI shows; nil shows ids.
	// It is asked only about subjects on rows the caller was shown.
	Names SubjectNamer
	// Checks are what /readyz runs.
	Checks []Check
	// InstanceHealth, when set, says what is wrong with a connector
	// instance's runtime (its plugin host crash-looping, say), or "": the
	// UI shows it on the instance.
	InstanceHealth func(in core.Instance) string
	// SecureCookies marks the UI cookies Secure even on plain HTTP (behind
	// a TLS-terminating proxy). They are Secure on TLS requests anyway.
	SecureCookies bool
	// Log receives the gateway's own log lines (never secrets or tokens).
	Log *slog.Logger
}

// Gateway serves the REST API, the web UI and /readyz.
type Gateway struct {
	svc     *core.Service
	auth    Authenticator
	names   SubjectNamer
	checks  []Check
	health  func(core.Instance) string
	secure  bool
	log     *slog.Logger
	routes  []*route
	api     *http.ServeMux
	ui      *http.ServeMux
	uiPages *pages
}

// New builds a gateway over cfg.
func New(cfg Config) *Gateway {
	g := &Gateway{svc: cfg.Service, auth: cfg.Auth, names: cfg.Names, checks: cfg.Checks,
		health: cfg.InstanceHealth, secure: cfg.SecureCookies, log: cfg.Log}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.uiPages = mustParsePages()
	g.api = http.NewServeMux()
	for _, rt := range g.restRoutes() {
		g.routes = append(g.routes, rt)
		g.api.Handle(rt.method+" "+rt.path, g.restHandler(rt))
	}
	g.ui = g.uiMux()
	return g
}

// Mount registers the gateway's routes on mux: /v1/, /ui/ (and / redirecting
// to it) and GET /readyz. It leaves /healthz to the caller, and serves no
// metrics: those go on their own listener (MetricsHandler), so usage
// figures are not open to whoever can reach the API port.
func (g *Gateway) Mount(mux *http.ServeMux) {
	mux.Handle("/v1/", http.HandlerFunc(g.serveAPI))
	mux.Handle("/ui/", g.ui)
	mux.Handle("GET /{$}", instrument("GET /", http.RedirectHandler("/ui/", http.StatusSeeOther)))
	mux.Handle("GET /readyz", instrument("GET /readyz", http.HandlerFunc(g.readyz)))
}

// MetricsHandler serves GET /metrics (Prometheus) alone, for the metrics
// listener (CONNEC_METRICS_ADDR).
func MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", instrument("GET /metrics", metrics.Handler()))
	return mux
}

// Handler returns the gateway alone on a mux of its own.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	g.Mount(mux)
	return mux
}

// Route is one REST route: its method and its path in OpenAPI template form,
// which is also its http.ServeMux pattern.
type Route struct {
	Method string
	Path   string
}

// Routes lists the REST routes the gateway serves.
func (g *Gateway) Routes() []Route {
	out := make([]Route, 0, len(g.routes))
	for _, rt := range g.routes {
		out = append(out, Route{Method: rt.method, Path: rt.path})
	}
	return out
}

// serveAPI dispatches /v1/ requests: the OpenAPI document is public, every
// other route needs a bearer token first, so an unauthenticated caller
// learns nothing, not even which routes exist. Unknown routes and methods
// answer problem+json like everything else.
func (g *Gateway) serveAPI(w http.ResponseWriter, r *http.Request) {
	h, pattern := g.api.Handler(r)
	if pattern != "" {
		// ServeHTTP (not h) so that the path values are set.
		g.api.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	ctx, ok := g.authenticate(rw, r, TransportREST)
	if ok {
		// Ask the mux what it would answer (404 or 405 and Allow) without
		// letting it write its text/plain body.
		probe := &probeWriter{header: http.Header{}}
		h.ServeHTTP(probe, r.WithContext(ctx))
		if allow := probe.header.Get("Allow"); allow != "" {
			rw.Header().Set("Allow", allow)
		}
		if probe.status == http.StatusMethodNotAllowed {
			writeProblem(rw, r.WithContext(ctx), gatewayProblem(http.StatusMethodNotAllowed, typeMethodNotAllowed,
				"this route does not answer "+r.Method))
		} else {
			writeProblem(rw, r.WithContext(ctx), gatewayProblem(http.StatusNotFound, typeRouteNotFound,
				"no API route matches "+r.URL.Path))
		}
	}
	metrics.ObserveHTTP("unmatched", r.Method, rw.code(), time.Since(start))
}

// authenticate checks the bearer token and returns the context carrying the
// principal and a fresh request id. On failure it writes the problem (401;
// 429 for a source over its limit of failed authentications; 503 if tokens
// cannot be checked) and returns false; failures are audited per source
// (authlimit).
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, transport string) (context.Context, bool) {
	ctx := requestContext(w, r)
	p, err := g.svc.AuthGuard().AuthenticateRequest(r.WithContext(ctx), transport, g.auth)
	if err == nil {
		return callctx.WithPrincipal(ctx, p), true
	}
	if errors.Is(err, fault.ErrUnauthenticated) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="connec"`)
		err = fault.New(fault.Unauthenticated, "missing or invalid bearer token")
	}
	writeProblem(w, r.WithContext(ctx), err)
	return nil, false
}

// requestContext gives the request a fresh id, on the context (so audit rows
// carry it) and in the X-Request-Id response header.
func requestContext(w http.ResponseWriter, r *http.Request) context.Context {
	id := callctx.NewRequestID()
	w.Header().Set("X-Request-Id", id)
	return callctx.WithRequestID(r.Context(), id)
}

// tokenDigest identifies a token without holding it (log fields, cookies'
// CSRF binding).
func tokenDigest(token string) []byte {
	s := sha256.Sum256([]byte("connec.gateway.token\x00" + token))
	return s[:]
}

// statusWriter remembers the status code written, for metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streamed responses (JSON Lines) reach the client as they go.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// probeWriter records what a handler would answer and discards its body.
type probeWriter struct {
	header http.Header
	status int
}

func (p *probeWriter) Header() http.Header { return p.header }
func (p *probeWriter) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *probeWriter) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return len(b), nil
}

// instrument records a request's status and latency under route.
func instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		metrics.ObserveHTTP(route, r.Method, sw.code(), time.Since(start))
	})
}
