package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/gateway"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one connec core on a fresh database with the gateway mounted in
// front of the app's own handler (MCP, /healthz), served over real HTTP.
type env struct {
	t    *testing.T
	app  *app.App
	gw   *gateway.Gateway
	http *httptest.Server
	logs *lockedBuilder
	// seen collects every response body, to check secrets never leak.
	seen *bodies
}

type bodies struct {
	mu  sync.Mutex
	all [][]byte
}

// on returns e reporting to t (a subtest's).
func (e *env) on(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

type lockedBuilder struct {
	mu sync.Mutex
	sb strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

type envOption func(*gateway.Config, *app.App)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	return newEnvIn(t, t.TempDir(), opts...)
}

// newEnvIn is newEnv on a data directory the test prepared (with OpenClaw
// plugins installed, say).
func newEnvIn(t *testing.T, dir string, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	logs := &lockedBuilder{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := app.Config{DatabaseURL: pgtest.URL(t), DataDir: dir, KeyFile: filepath.Join(dir, "connec.key")}
	if _, err := vault.GenerateKeyFile(cfg.KeyFile, true); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		t.Fatalf("open app: %v", err)
	}
	t.Cleanup(a.Close)
	// The configuration connec serves (internal/app), but without run
	// history unless a test asks for it, and logging here.
	gcfg := a.GatewayConfig()
	gcfg.Log = log
	for _, o := range opts {
		o(&gcfg, a)
	}
	e := &env{t: t, app: a, logs: logs, gw: gateway.New(gcfg), seen: &bodies{}}
	mux := http.NewServeMux()
	e.gw.Mount(mux)
	mux.Handle("/", a.Handler(a.MCPServer()))
	e.http = httptest.NewServer(mux)
	t.Cleanup(e.http.Close)
	return e
}

// user creates a user (with the owner rule unless bare) and a token for it.
func (e *env) user(name string, bare bool) (callctx.Subject, string) {
	e.t.Helper()
	ctx := context.Background()
	u, err := e.app.AddUser(ctx, name, bare)
	if err != nil {
		e.t.Fatalf("add user %s: %v", name, err)
	}
	tok, _, err := e.app.Identity.CreateToken(ctx, u.Subject(), "test", 0)
	if err != nil {
		e.t.Fatalf("token for %s: %v", name, err)
	}
	return u.Subject(), tok
}

// admin creates a user holding every right (as the local operator does).
func (e *env) admin(name string) (callctx.Subject, string) {
	e.t.Helper()
	sub, tok := e.user(name, true)
	ctx := context.Background()
	for _, r := range app.LocalOperatorRules {
		r.Subject = string(sub)
		if _, err := e.app.Authz.AddRule(ctx, e.app.Pool, r); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.app.Authz.Refresh(ctx); err != nil {
		e.t.Fatal(err)
	}
	return sub, tok
}

// allow grants a rule directly (test setup, not through the API).
func (e *env) allow(sub callctx.Subject, resource, action string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.app.Authz.AddRule(ctx, e.app.Pool, authz.Rule{Subject: string(sub), Resource: resource, Action: action, Effect: authz.EffectAllow}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.app.Authz.Refresh(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// response is one answered request.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) String() string { return string(r.Body) }

// json decodes the body into v, failing the test if it does not decode.
func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func (r response) id(t *testing.T) string {
	t.Helper()
	var v struct {
		ID string `json:"id"`
	}
	r.json(t, &v)
	if v.ID == "" {
		t.Fatalf("no id in %s", r.Body)
	}
	return v.ID
}

// do sends a request with a bearer token ("" for none). body is sent as is
// when it is a string or []byte, else JSON-encoded; nil sends no body.
func (e *env) do(method, path, token string, body any) response {
	e.t.Helper()
	return e.doWith(method, path, body, func(h http.Header) {
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
	})
}

func (e *env) doWith(method, path string, body any, hdr func(http.Header)) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if hdr != nil {
		hdr(req.Header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := e.http.Client().Do(req.WithContext(ctx))
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.seen.mu.Lock()
	e.seen.all = append(e.seen.all, raw)
	e.seen.mu.Unlock()
	return response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// must sends a request and fails the test unless it answers want.
func (e *env) must(want int, method, path, token string, body any) response {
	e.t.Helper()
	r := e.do(method, path, token, body)
	if r.Status != want {
		e.t.Fatalf("%s %s: want %d, got %d: %s", method, path, want, r.Status, r.Body)
	}
	return r
}

// problem checks that r is an RFC 9457 problem of the given status and
// stable error type, and returns it.
func problem(t *testing.T, r response, status int, errType string) gateway.Problem {
	t.Helper()
	if r.Status != status {
		t.Fatalf("want status %d (%s), got %d: %s", status, errType, r.Status, r.Body)
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/problem+json" {
		t.Fatalf("want application/problem+json, got %q: %s", r.Header.Get("Content-Type"), r.Body)
	}
	var p gateway.Problem
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %s: %v", r.Body, err)
	}
	if p.Type != gateway.ProblemTypeBase+errType || p.ErrorType != errType || p.Status != status || p.Title == "" || p.Detail == "" {
		t.Fatalf("want problem %d %s, got %+v", status, errType, p)
	}
	if p.RequestID == "" || p.RequestID != r.Header.Get("X-Request-Id") {
		t.Fatalf("problem request id %q, header %q", p.RequestID, r.Header.Get("X-Request-Id"))
	}
	validate(t, "Problem", r.Body)
	return p
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.app.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("count: %v", err)
	}
	return n
}

// bodiesContain reports whether any response seen so far contains s.
func (e *env) bodiesContain(s string) bool {
	e.seen.mu.Lock()
	defer e.seen.mu.Unlock()
	for _, b := range e.seen.all {
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// invoke runs an operation through the core as the token's user, as an
// agent would over MCP, and returns the run id.
func (e *env) invoke(token, instance, operation string, task callctx.TaskContext) string {
	e.t.Helper()
	ctx := context.Background()
	p, err := e.app.Identity.Authenticate(ctx, token)
	if err != nil {
		e.t.Fatal(err)
	}
	p.Transport = "test"
	ctx = callctx.WithTask(callctx.WithPrincipal(ctx, p), task)
	res, err := e.app.Service.Invoke(ctx, core.InvokeInput{InstanceID: instance, Operation: operation,
		Arguments: json.RawMessage(`{"message":"hello"}`)})
	if err != nil {
		e.t.Fatalf("invoke %s: %v", operation, err)
	}
	return res.RunID
}
