package leaks

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/platform/pgcluster"
	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// logBuf collects every log line the server writes.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// env is one connec server on its own database, served over streamable
// HTTP as a deployment serves it.
type env struct {
	t    *testing.T
	app  *app.App
	http *httptest.Server
	logs *logBuf
}

func newEnv(t *testing.T) *env {
	t.Helper()
	logs := &logBuf{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	cfg := app.Config{DatabaseURL: pgtest.URL(t), DataDir: dir, KeyFile: filepath.Join(dir, "connec.key")}
	if _, err := vault.GenerateKeyFile(cfg.KeyFile, true); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("open app: %v", err)
	}
	t.Cleanup(a.Close)
	e := &env{t: t, app: a, logs: logs}
	e.http = httptest.NewServer(a.Handler(a.MCPServer()))
	t.Cleanup(e.http.Close)
	return e
}

// user creates a user with the owner rule, lets it install instances that
// reach private networks (the upstreams are on loopback), and returns a
// token for it.
func (e *env) user(name string) (callctx.Subject, string) {
	e.t.Helper()
	ctx := context.Background()
	u, err := e.app.AddUser(ctx, name, false)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.app.ChangeRule(ctx, authz.Rule{Subject: string(u.Subject()), Resource: authz.ResourcePrivateNetwork,
		Action: authz.ActionAdmin, Effect: authz.EffectAllow}, false); err != nil {
		e.t.Fatal(err)
	}
	tok, _, err := e.app.Identity.CreateToken(ctx, u.Subject(), "test", 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.Subject(), tok
}

// client connects over streamable HTTP with the token.
func (e *env) client(token string) *client.Client {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.NewStreamableHttpClient(e.http.URL+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	if err != nil {
		e.t.Fatal(err)
	}
	life, end := context.WithCancel(context.Background())
	e.t.Cleanup(end)
	if err := c.Start(life); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "connec-leaks", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// answer is one tool call's decoded result and everything it carried on
// the wire (structured content and text).
type answer struct {
	Status string          `json:"status"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	Wire string `json:"-"`
}

func call(t *testing.T, c *client.Client, tool string, args map[string]any) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = tool
	req.Params.Arguments = args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Errorf("%s: protocol error: %v", tool, err)
		return answer{}
	}
	var a answer
	raw, _ := json.Marshal(res.StructuredContent)
	if len(res.RawStructuredContent) > 0 {
		raw = res.RawStructuredContent
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Errorf("%s: structured content %s: %v", tool, raw, err)
	}
	// The wire carries the structured content and, for clients that read
	// only text, the same JSON as text: scan the text too when it differs.
	a.Wire = string(raw)
	for _, c := range res.Content {
		tc, ok := c.(mcp.TextContent)
		if !ok {
			wire, _ := json.Marshal(c)
			a.Wire += "\n" + string(wire)
			continue
		}
		var x, y bytes.Buffer
		if json.Compact(&x, raw) != nil || json.Compact(&y, []byte(tc.Text)) != nil || !bytes.Equal(x.Bytes(), y.Bytes()) {
			a.Wire += "\n" + tc.Text
		}
	}
	return a
}

func mustOK(t *testing.T, c *client.Client, tool string, args map[string]any) json.RawMessage {
	t.Helper()
	a := call(t, c, tool, args)
	if a.Status != "ok" {
		t.Fatalf("%s: want ok, got %s", tool, a.Wire)
	}
	return a.Result
}

// dump is a full text dump of the test database, as an operator's backup is.
func (e *env) dump() string {
	e.t.Helper()
	bin, err := pgcluster.FindBinaries()
	if err != nil {
		e.t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(e.app.Cfg.DatabaseURL)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "pg_dump"), "--no-owner", "-h", cfg.Host, "-p", strconv.Itoa(int(cfg.Port)), "-U", cfg.User, cfg.Database)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cfg.Password != "" {
		cmd.Env = append(cmd.Environ(), "PGPASSWORD="+cfg.Password)
	}
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("pg_dump: %v: %s", err, errb.String())
	}
	if !strings.Contains(out.String(), "connector_runs") {
		e.t.Fatalf("dump has no connector_runs table (%d bytes)", out.Len())
	}
	return out.String()
}

// rows returns every row of a table as JSON text.
func (e *env) rows(table string) []string {
	e.t.Helper()
	rs, err := e.app.Pool.Query(context.Background(), `SELECT row_to_json(r)::text FROM `+pgx.Identifier{table}.Sanitize()+` r`)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rs, pgx.RowTo[string])
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}
