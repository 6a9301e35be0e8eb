package mcp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
)

// Transport names recorded in audit rows.
const (
	TransportStdio      = "stdio"
	TransportSSE        = "sse"
	TransportStreamable = "streamable-http"
)

// RunStdio serves srv over in/out as principal until in closes or ctx ends.
// Only JSON-RPC frames are written to out; logs go elsewhere.
func RunStdio(ctx context.Context, srv *server.MCPServer, principal callctx.Principal, in io.Reader, out io.Writer, log *slog.Logger) error {
	principal.Transport = TransportStdio
	// mcp-go's default of 5 tool-call workers caps a stdio client at 5 calls
	// in flight, each waiting for its audit commit.
	stdio := server.NewStdioServer(srv)
	server.WithWorkerPoolSize(64)(stdio)
	stdio.SetErrorLogger(slog.NewLogLogger(log.Handler(), slog.LevelError))
	stdio.SetContextFunc(func(ctx context.Context) context.Context {
		return callctx.WithPrincipal(ctx, principal)
	})
	err := stdio.Listen(ctx, in, out)
	if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, io.EOF)) {
		return nil
	}
	return err
}

// MaxRequestBytes caps one MCP request body over HTTP.
const MaxRequestBytes = 4 << 20

// Authenticator resolves a bearer token to a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (callctx.Principal, error)
}

// HTTPHandler serves srv over SSE (GET /sse, POST /message) and streamable
// HTTP (/mcp). Every request must carry Authorization: Bearer <token>; a
// missing or bad token gets 401 (and an audit row) and never reaches MCP.
func HTTPHandler(srv *server.MCPServer, svc *connectors.Service, auth Authenticator, log *slog.Logger) http.Handler {
	sse := server.NewSSEServer(srv,
		server.WithSSEEndpoint("/sse"),
		server.WithMessageEndpoint("/message"),
		server.WithKeepAliveInterval(25*time.Second),
		server.WithSSEContextFunc(principalFromRequest(TransportSSE)),
	)
	stream := server.NewStreamableHTTPServer(srv,
		server.WithEndpointPath("/mcp"),
		server.WithStreamableHTTPLogger(log),
		server.WithHTTPContextFunc(principalFromRequest(TransportStreamable)),
	)
	mux := http.NewServeMux()
	mux.Handle("/sse", requireToken(sse.SSEHandler(), svc, auth, TransportSSE))
	mux.Handle("/message", requireToken(sse.MessageHandler(), svc, auth, TransportSSE))
	mux.Handle("/mcp", requireToken(stream, svc, auth, TransportStreamable))
	return mux
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
		return callctx.WithPrincipal(ctx, p)
	}
}

func requireToken(next http.Handler, svc *connectors.Service, auth Authenticator, transport string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		var p callctx.Principal
		var err error
		if ok {
			p, err = auth.Authenticate(r.Context(), token)
		}
		if !ok || err != nil {
			if err != nil && errors.Is(err, fault.ErrUnavailable) {
				http.Error(w, "service unavailable", http.StatusServiceUnavailable)
				return
			}
			ctx := callctx.WithRequestID(r.Context(), callctx.NewRequestID())
			ctx = callctx.WithPrincipal(ctx, callctx.Principal{Transport: transport})
			_ = svc.Refuse(ctx, "http:"+transport, "authenticate", fault.New(fault.Unauthenticated, "missing or invalid bearer token"))
			w.Header().Set("WWW-Authenticate", `Bearer realm="connec"`)
			http.Error(w, "unauthorized: a valid bearer token is required", http.StatusUnauthorized)
			return
		}
		p.Transport = transport
		// A JSON-RPC request is small; a huge body is refused, not buffered.
		r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
		next.ServeHTTP(w, r.WithContext(callctx.WithPrincipal(r.Context(), p)))
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}
