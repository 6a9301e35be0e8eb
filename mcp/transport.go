package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/identity/authlimit"
)

// Transport names recorded in audit rows.
const (
	TransportStdio      = "stdio"
	TransportSSE        = "sse"
	TransportStreamable = "streamable-http"
)

// MaxRequestBytes caps one MCP request body over HTTP (and one stdio line).
const MaxRequestBytes = 4 << 20

// Authenticator resolves a bearer token to a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (callctx.Principal, error)
}

// HTTPOptions configure the HTTP transports.
type HTTPOptions struct {
	// AllowedOrigins are the browser origins (scheme://host[:port]) allowed
	// to call the MCP endpoints, beyond loopback origins on a loopback
	// listener. Requests without an Origin header (non-browser clients) are
	// not affected.
	AllowedOrigins []string
	Log            *slog.Logger
}

// sessionIdle is how long an unused legacy streamable HTTP session lives.
const sessionIdle = 30 * time.Minute

// HTTPHandler serves srv over SSE (GET /sse, POST /message) and streamable
// HTTP (/mcp). Every request must come from an allowed origin and carry
// Authorization: Bearer <token>; a missing or bad token gets 401 (and an
// audit row) and never reaches MCP.
func HTTPHandler(srv *Server, auth Authenticator, o HTTPOptions) http.Handler {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	h := &httpTransport{srv: srv, auth: auth, log: o.Log, sessions: newSessions(), origins: newOriginPolicy(o.AllowedOrigins)}
	h.sessions.ended = srv.subs.endSession
	sse := server.NewSSEServer(srv.MCPServer,
		server.WithSSEEndpoint("/sse"),
		server.WithMessageEndpoint("/message"),
		server.WithKeepAliveInterval(25*time.Second),
		server.WithSSEContextFunc(principalFromRequest(TransportSSE)),
		server.WithSessionIDGenerator(h.sseSessionID),
	)
	stream := server.NewStreamableHTTPServer(srv.MCPServer,
		server.WithEndpointPath("/mcp"),
		server.WithStreamableHTTPLogger(quietSessions(o.Log)),
		server.WithHTTPContextFunc(principalFromRequest(TransportStreamable)),
		server.WithSessionIdManagerResolver(h.sessions.resolver()),
		server.WithSessionIdleTTL(sessionIdle),
	)
	h.sse = sse
	mux := http.NewServeMux()
	mux.Handle("/sse", h.guard(TransportSSE, h.sseStream(sse.SSEHandler())))
	mux.Handle("/message", h.guard(TransportSSE, h.messages(TransportSSE, sse.MessageHandler())))
	mux.Handle("/mcp", h.guard(TransportStreamable, h.messages(TransportStreamable, stream)))
	return mux
}

type httpTransport struct {
	srv      *Server
	sse      *server.SSEServer
	auth     Authenticator
	log      *slog.Logger
	sessions *sessions
	origins  originPolicy
}

// principalFromRequest moves the principal the auth middleware put on the
// request onto the context MCP handlers see.
func principalFromRequest(transport string) func(ctx context.Context, r *http.Request) context.Context {
	return func(ctx context.Context, r *http.Request) context.Context {
		p, ok := callctx.PrincipalFrom(r.Context())
		if !ok {
			return ctx
		}
		p.Transport = transport
		ctx = callctx.WithPrincipal(ctx, p)
		if v, ok := r.Context().Value(visibilityKey{}).(*visibility); ok {
			ctx = context.WithValue(ctx, visibilityKey{}, v)
		}
		if t, ok := core.InstanceToolOf(r.Context()); ok {
			ctx = core.AsInstanceTool(ctx, t) // translated by messages
		}
		return ctx
	}
}

// guard admits a request from an allowed origin with a valid bearer token.
func (h *httpTransport) guard(transport string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := h.origins.refuse(r); why != "" {
			http.Error(w, "forbidden: "+why, http.StatusForbidden)
			return
		}
		p, err := h.srv.svc.AuthGuard().AuthenticateRequest(r, transport, h.auth)
		if err != nil {
			authlimit.WriteHTTP(w, err)
			return
		}
		// A JSON-RPC request is small; a huge body is refused, not buffered.
		r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
		next.ServeHTTP(w, r.WithContext(callctx.WithPrincipal(r.Context(), p)))
	})
}

// messages checks each message before the MCP server sees it: the protocol
// errors mcp-go would mishandle, legacy session ownership, and client
// cancellations (whose requests then get no answer).
func (h *httpTransport) messages(transport string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := callctx.PrincipalFrom(r.Context())
		session := r.Header.Get(server.HeaderKeySessionID)
		if transport == TransportSSE {
			session = r.URL.Query().Get("sessionId")
		}
		modern := mcp.IsModernProtocol(r.Header.Get(mcp.HeaderProtocolVersion))
		if r.Method != http.MethodPost {
			// GET opens a legacy notification stream, DELETE ends a session:
			// both name a session the caller must own.
			if transport == TransportStreamable && !modern && (r.Method == http.MethodDelete || session != "") && !h.sessionOK(w, session, p.Subject) {
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m wireMessage
		if json.Unmarshal(body, &m) != nil || m.Method == "" {
			next.ServeHTTP(w, r) // responses and parse errors: mcp-go's own handling
			return
		}
		if transport == TransportSSE && m.Method == string(mcp.MethodInitialize) {
			// A client that would speak 2026-07-28 is offered the newest
			// revision this transport has: initialize negotiates.
			if rewritten, ok := sseInitialize(body); ok {
				body = rewritten
				r.Body = io.NopCloser(bytes.NewReader(body))
				_ = json.Unmarshal(body, &m)
			}
		}
		modern = modern || modernParams(m.Params)
		if modern && transport == TransportSSE {
			h.refuseModernOnSSE(w, session, m)
			return
		}
		if reply := checkRequest(m); reply != nil {
			status := http.StatusOK
			if bytes.Equal(reply.(rpcErrorMessage).ID, []byte("null")) {
				status = http.StatusBadRequest // not a request this server can answer by id
			}
			writeJSON(w, status, reply)
			return
		}
		if len(m.ID) == 0 && modern {
			// 2026-07-28 has no client notifications over HTTP: a client
			// cancels by closing the response stream. Accept and drop them,
			// as an HTTP server accepts any notification.
			w.WriteHeader(http.StatusAccepted)
			return
		}
		if !modern && m.Method != string(mcp.MethodInitialize) && !h.sessionOK(w, session, p.Subject) {
			return
		}
		if !modern && len(m.ID) == 0 && m.Method == string(mcp.MethodNotificationCancelled) {
			var c struct {
				RequestID json.RawMessage `json:"requestId"`
			}
			if json.Unmarshal(m.Params, &c) == nil && len(c.RequestID) > 0 {
				h.sessions.cancel(session, string(c.RequestID))
			}
		}
		if m.Method == string(mcp.MethodToolsList) && transport == TransportStreamable {
			// (Over SSE the answer goes on the stream, past this handler.)
			h.serveList(w, r, m, next)
			return
		}
		if body, ictx, name, target, ok := h.srv.translateCall(r.Context(), body); ok && headerAgrees(r.Header, name) {
			if t, _ := core.InstanceToolOf(ictx); modern {
				// The parameter headers the tool's schema binds must agree
				// with the arguments (SEP-2243), as mcp-go checks them for
				// the tools it holds itself.
				def := instanceToolDef(t, name)
				if err := mcp.ValidateParamHeadersLookup(func(k string) (string, bool) {
					v, ok := r.Header[http.CanonicalHeaderKey(k)]
					if !ok || len(v) == 0 {
						return "", false
					}
					return v[0], true
				}, &def, m.Params); err != nil {
					writeJSON(w, http.StatusBadRequest, rpcError(m.ID, mcp.HEADER_MISMATCH, "header mismatch: "+err.Error()))
					return
				}
			}
			r = r.WithContext(ictx)
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			if r.Header.Get(mcp.HeaderName) != "" {
				// The headers mirror the body (2026-07-28), which now
				// names connector.op.invoke.
				r.Header.Set(mcp.HeaderName, target)
			}
		}
		if pbody, ictx, asked, ok := h.srv.translatePrompt(r.Context(), body); ok && headerAgrees(r.Header, asked) {
			r = translated(ictx, r, pbody, instancePrompt)
		}
		if rbody, ictx, asked, ok := h.srv.translateResource(r.Context(), body); ok && headerAgrees(r.Header, asked) {
			r = translated(ictx, r, rbody, instanceResource)
		}
		if answersOwnError[m.Method] && len(m.ID) > 0 {
			ctx, slot := withAnswerSlotFor(withSubscribeParams(r.Context(), m), m.Method)
			if checkedLate[m.Method] {
				slot.late = func() *rpcAnswer { return paramsProblem(m) }
			}
			r = r.WithContext(ctx)
			if transport == TransportSSE {
				h.sessions.expect(session, string(m.ID), slot)
			} else {
				aw := &answering{ResponseWriter: w, slot: slot, id: m.ID, modern: modern}
				defer aw.finish()
				w = aw
			}
		}
		if transport == TransportStreamable && !modern && len(m.ID) > 0 {
			id := string(m.ID)
			w = &cancelable{ResponseWriter: w, canceled: func() bool { return h.sessions.wasCanceled(session, id, false) }}
			defer h.sessions.wasCanceled(session, id, true)
		}
		next.ServeHTTP(w, r)
	})
}

// translated is r carrying body, a request a transport translated, in ctx;
// its Mcp-Name header, if any, mirrors the body's new name.
func translated(ctx context.Context, r *http.Request, body []byte, name string) *http.Request {
	r = r.WithContext(ctx)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	if r.Header.Get(mcp.HeaderName) != "" {
		r.Header.Set(mcp.HeaderName, name)
	}
	return r
}

// headerAgrees reports whether a request's Mcp-Name header, if any, names
// the tool its body calls: a request whose header disagrees is left as it
// came, for mcp-go to refuse (HeaderMismatch).
func headerAgrees(h http.Header, name string) bool {
	v := h.Get(mcp.HeaderName)
	return v == "" || v == name
}

// sessionOK refuses a request naming no session (400) or a session the
// caller does not own (404, as for an unknown or terminated one).
func (h *httpTransport) sessionOK(w http.ResponseWriter, session string, subject callctx.Subject) bool {
	if session == "" {
		http.Error(w, "bad request: this request needs the session id from initialize (Mcp-Session-Id)", http.StatusBadRequest)
		return false
	}
	if !h.sessions.owned(session, subject) {
		http.Error(w, "not found: unknown or terminated session; initialize a new one", http.StatusNotFound)
		return false
	}
	return true
}

// serveList runs a tools/list and answers it with an error instead when a
// visibility check could not be made (the list would be short, not true).
func (h *httpTransport) serveList(w http.ResponseWriter, r *http.Request, m wireMessage, next http.Handler) {
	ctx := withListCheck(r.Context())
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	next.ServeHTTP(rec, r.WithContext(ctx))
	if reply := listFailure(ctx, m, nil); reply != nil {
		writeJSON(w, http.StatusOK, reply)
		return
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(rec.body.Bytes())
}

// sseSessionID mints the id of a new SSE session, bound to the subject
// that opened the stream.
func (h *httpTransport) sseSessionID(_ context.Context, r *http.Request) (string, error) {
	p, _ := callctx.PrincipalFrom(r.Context())
	id := h.sessions.open(p.Subject)
	if hold, ok := r.Context().Value(sseHoldKey{}).(*sseHold); ok {
		hold.id = id
	}
	return id, nil
}

type sseHoldKey struct{}

type sseHold struct{ id string }

// sseStream serves one SSE stream: the session it opens ends with it, and
// answers to requests the client canceled are left out of it.
func (h *httpTransport) sseStream(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hold := &sseHold{}
		r = r.WithContext(context.WithValue(r.Context(), sseHoldKey{}, hold))
		defer func() { h.sessions.close(hold.id) }()
		next.ServeHTTP(&sseFilter{ResponseWriter: w, drop: func(id string) bool {
			return hold.id != "" && h.sessions.wasCanceled(hold.id, id, true)
		}, answer: func(id string) *answerSlot {
			if hold.id == "" || id == "" {
				return nil
			}
			return h.sessions.answered(hold.id, id)
		}}, r)
	})
}

// modernParams reports whether a message's params name a 2026-07-28 (or
// later) revision in _meta, as every request of those revisions does.
func modernParams(params json.RawMessage) bool {
	if len(params) == 0 {
		return false
	}
	var p struct {
		Meta struct {
			Version string `json:"io.modelcontextprotocol/protocolVersion"`
		} `json:"_meta"`
	}
	return json.Unmarshal(params, &p) == nil && mcp.IsModernProtocol(p.Meta.Version)
}

// refuseModernOnSSE answers a 2026-07-28 request on the legacy SSE
// transport, which that revision does not define, the way the protocol
// says a server refuses a revision: an UnsupportedProtocolVersion error
// listing what this transport serves, delivered on the session's stream like
// every answer there (a client then falls back to initialize).
func (h *httpTransport) refuseModernOnSSE(w http.ResponseWriter, session string, m wireMessage) {
	var id any
	if len(m.ID) == 0 || json.Unmarshal(m.ID, &id) != nil {
		w.WriteHeader(http.StatusAccepted) // a notification: nothing to answer
		return
	}
	var legacy []string
	for _, v := range mcp.ValidProtocolVersions {
		if !mcp.IsModernProtocol(v) {
			legacy = append(legacy, v)
		}
	}
	reply := mcp.UnsupportedProtocolVersionError{Version: mcp.ProtocolVersion20260728, Supported: legacy}.JSONRPCError()
	reply.ID = mcp.NewRequestId(id)
	if err := h.sse.SendEventToSession(session, reply); err != nil {
		http.Error(w, "not found: unknown or terminated session; open a new SSE stream", http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// sseRevision is the newest protocol revision the legacy SSE transport
// serves (2026-07-28 defines stdio and streamable HTTP only).
const sseRevision = "2025-11-25"

// sseInitialize rewrites an initialize asking for 2026-07-28 or later into
// one asking for sseRevision, without the 2026 request metadata, and
// reports whether it changed anything.
func sseInitialize(body []byte) ([]byte, bool) {
	var msg map[string]any
	if json.Unmarshal(body, &msg) != nil {
		return body, false
	}
	params, _ := msg["params"].(map[string]any)
	if params == nil {
		return body, false
	}
	meta, _ := params["_meta"].(map[string]any)
	asked, _ := params["protocolVersion"].(string)
	metaVersion, _ := meta[mcp.MetaKeyProtocolVersion].(string)
	if !mcp.IsModernProtocol(asked) && !mcp.IsModernProtocol(metaVersion) {
		return body, false
	}
	params["protocolVersion"] = sseRevision
	for k := range meta {
		if strings.HasPrefix(k, "io.modelcontextprotocol/") {
			delete(meta, k)
		}
	}
	out, err := json.Marshal(msg)
	if err != nil {
		return body, false
	}
	return out, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
