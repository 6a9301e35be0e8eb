package authlimit_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one connec (MCP, REST and UI on one HTTP listener) on a fresh
// database.
type env struct {
	t   testing.TB
	app *app.App
	url string
	db  string // the database's URL
	// tokens of the users made before the server started (withUsers).
	tokens map[string]string
}

type option func(*app.Config, *[]string)

// withConfig changes the server's configuration.
func withConfig(m func(*app.Config)) option { return func(c *app.Config, _ *[]string) { m(c) } }

// withUsers makes users (with the owner rule) and a token each before the
// server starts, as another server would have: their notifications were
// sent before this one listened, so nothing makes it forget their tokens
// once it knows them.
func withUsers(names ...string) option {
	return func(_ *app.Config, users *[]string) { *users = append(*users, names...) }
}

func newEnv(t testing.TB, opts ...option) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := app.Config{DatabaseURL: pgtest.URL(t), DataDir: dir, KeyFile: filepath.Join(dir, "connec.key")}
	var users []string
	for _, o := range opts {
		o(&cfg, &users)
	}
	if _, err := vault.GenerateKeyFile(cfg.KeyFile, true); err != nil {
		t.Fatal(err)
	}
	open := func() *app.App {
		a, err := app.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatalf("open app: %v", err)
		}
		return a
	}
	e := &env{t: t, db: cfg.DatabaseURL, tokens: map[string]string{}}
	if len(users) > 0 {
		e.app = open()
		for _, name := range users {
			e.tokens[name] = e.user(name)
		}
		e.app.Close()
	}
	e.app = open()
	t.Cleanup(e.app.Close)
	srv := httptest.NewServer(e.app.Handler(e.app.MCPServer()))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// from returns a client whose connections leave from the loopback address
// ip: on Linux every 127.0.0.0/8 address is the loopback interface's, so
// each is a source of its own as the server sees it.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}}
}

// badRequest is one request with a bad credential, alternating between the
// MCP endpoint and the REST API; it returns the status.
func (e *env) badRequest(c *http.Client, i int, header http.Header) int {
	e.t.Helper()
	var req *http.Request
	if i%2 == 0 {
		req, _ = http.NewRequest("POST", e.url+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
	} else {
		req, _ = http.NewRequest("GET", e.url+"/v1/connector-instances", nil)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer cnc_not-a-token")
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("request %d: %v", i, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// user makes a user with the owner rule and a token for it.
func (e *env) user(name string) string {
	e.t.Helper()
	ctx := context.Background()
	u, err := e.app.AddUser(ctx, name, false)
	if err != nil {
		e.t.Fatal(err)
	}
	tok, _, err := e.app.Identity.CreateToken(ctx, u.Subject(), "test", 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// revokedToken is a well-formed token that was revoked: checking it takes a
// database lookup.
func (e *env) revokedToken() string {
	e.t.Helper()
	ctx := context.Background()
	u, err := e.app.AddUser(ctx, "gone", true)
	if err != nil {
		e.t.Fatal(err)
	}
	tok, meta, err := e.app.Identity.CreateToken(ctx, u.Subject(), "old", 0)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.app.Identity.RevokeToken(ctx, meta.ID); err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) count(sql string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.app.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// anonymousRows counts the audit rows of failed authentications.
func (e *env) anonymousRows() int64 {
	return e.count(`SELECT count(*) FROM audit_events WHERE subject = 'anonymous' AND error_type = 'unauthenticated'`)
}

// databaseDown refuses every connection to the test's database and ends
// the open ones, as if PostgreSQL had gone away for this server; the
// returned function lets connections in again.
func (e *env) databaseDown() (up func()) {
	e.t.Helper()
	ctx := context.Background()
	u, err := url.Parse(e.db)
	if err != nil {
		e.t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	admin, err := pgx.Connect(ctx, u.String())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `ALTER DATABASE "`+name+`" WITH ALLOW_CONNECTIONS false`); err != nil {
		e.t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name); err != nil {
		e.t.Fatal(err)
	}
	up = func() {
		if _, err := admin.Exec(ctx, `ALTER DATABASE "`+name+`" WITH ALLOW_CONNECTIONS true`); err != nil {
			e.t.Fatal(err)
		}
		admin.Close(ctx)
	}
	e.t.Cleanup(func() {
		if !admin.IsClosed() {
			up()
		}
	})
	return up
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
