package mcp_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/platform/jsonschema"
	"github.com/connec/connec/internal/testkit/pgtest"
	cmcp "github.com/connec/connec/mcp"
	"github.com/connec/connec/vault"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one connec core on a fresh database, served over real transports.
type env struct {
	t    *testing.T
	app  *app.App
	srv  *cmcp.Server
	http *httptest.Server
	logs *lockedBuilder
}

// lockedBuilder collects every log line the servers write.
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

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvPrepared(t, nil)
}

// newEnvPrepared is newEnv with prepare run on the configuration (and its
// data directory) before the application opens.
func newEnvPrepared(t *testing.T, prepare func(cfg *app.Config)) *env {
	t.Helper()
	ctx := context.Background()
	logs := &lockedBuilder{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	cfg := app.Config{DatabaseURL: pgtest.URL(t), DataDir: dir, KeyFile: filepath.Join(dir, "connec.key")}
	if prepare != nil {
		prepare(&cfg)
	}
	if _, err := vault.GenerateKeyFile(cfg.KeyFile, true); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		t.Fatalf("open app: %v", err)
	}
	t.Cleanup(a.Close)
	e := &env{t: t, app: a, logs: logs}
	e.srv = a.MCPServer()
	e.http = httptest.NewServer(a.Handler(e.srv))
	t.Cleanup(e.http.Close)
	return e
}

// peer opens a second connec server on the same database and key, as a
// second instance of a deployment would be.
func (e *env) peer() *env {
	e.t.Helper()
	return e.peerWith(nil)
}

// peerWithKey is peer with a key file of its own (the same database): a
// server that shares nothing secret with e.
func (e *env) peerWithKey() *env {
	e.t.Helper()
	return e.peerWith(func(cfg *app.Config) {
		cfg.KeyFile = filepath.Join(e.t.TempDir(), "other.key")
		if _, err := vault.GenerateKeyFile(cfg.KeyFile, true); err != nil {
			e.t.Fatal(err)
		}
	})
}

// peerWithDataDir is peer with a data directory of its own, as a server of
// a deployment on another machine would be.
func (e *env) peerWithDataDir() *env {
	e.t.Helper()
	return e.peerWith(func(cfg *app.Config) { cfg.DataDir = e.t.TempDir() })
}

// peerWith is peer with its configuration changed by change.
func (e *env) peerWith(change func(cfg *app.Config)) *env {
	e.t.Helper()
	cfg := e.app.Cfg
	if change != nil {
		change(&cfg)
	}
	p := &env{t: e.t, logs: e.logs}
	a, err := app.Open(context.Background(), cfg, e.app.Log)
	if err != nil {
		e.t.Fatalf("open peer: %v", err)
	}
	e.t.Cleanup(a.Close)
	p.app = a
	p.srv = a.MCPServer()
	p.http = httptest.NewServer(a.Handler(p.srv))
	e.t.Cleanup(p.http.Close)
	return p
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

var transports = []string{cmcp.TransportStdio, cmcp.TransportSSE, cmcp.TransportStreamable}

// client connects over transport as the token's user (stdio: in-process
// pipes acting as that user's principal). mcp-go keeps one stdio session per
// process, as a real stdio server has one client: a test opens at most one
// stdio client at a time.
func (e *env) client(transportName, token string) *client.Client {
	e.t.Helper()
	return e.clientAt(transportName, token, mcp.LATEST_PROTOCOL_VERSION)
}

// clientAt is client speaking revision version.
func (e *env) clientAt(transportName, token, version string) *client.Client {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var c *client.Client
	var err error
	headers := map[string]string{"Authorization": "Bearer " + token}
	switch transportName {
	case cmcp.TransportSSE:
		c, err = client.NewSSEMCPClient(e.http.URL+"/sse", client.WithHeaders(headers))
	case cmcp.TransportStreamable:
		c, err = client.NewStreamableHttpClient(e.http.URL+"/mcp", transport.WithHTTPHeaders(headers))
	case cmcp.TransportStdio:
		_, aerr := e.app.Identity.Authenticate(ctx, token)
		if aerr != nil {
			e.t.Fatalf("authenticate: %v", aerr)
		}
		sr, cw := io.Pipe()
		cr, sw := io.Pipe()
		sctx, scancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = cmcp.RunStdio(sctx, e.srv, tokenAuth(e, token), sr, sw, e.app.Log)
			sw.Close()
		}()
		e.t.Cleanup(func() { cw.Close(); cr.Close(); scancel(); <-done })
		c = client.NewClient(transport.NewIO(cr, cw, io.NopCloser(strings.NewReader(""))))
	default:
		e.t.Fatalf("unknown transport %s", transportName)
	}
	if err != nil {
		e.t.Fatalf("client %s: %v", transportName, err)
	}
	// The SSE stream lives as long as the context Start gets.
	life, end := context.WithCancel(context.Background())
	e.t.Cleanup(end)
	if err := c.Start(life); err != nil {
		e.t.Fatalf("start %s: %v", transportName, err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = version
	req.Params.ClientInfo = mcp.Implementation{Name: "connec-test", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		e.t.Fatalf("initialize %s: %v", transportName, err)
	}
	return c
}

// outcome is a decoded tool result.
type outcome struct {
	Status string          `json:"status"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Type    string         `json:"type"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
	IsError bool   `json:"-"`
	Raw     string `json:"-"`
}

// call invokes a tool and decodes the structured result. rpcErr is set when
// the call failed at the protocol level (e.g. a hidden tool).
func call(t *testing.T, c *client.Client, name string, args map[string]any, meta map[string]any) (outcome, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	if meta != nil {
		req.Params.Meta = &mcp.Meta{AdditionalFields: meta}
	}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return outcome{}, err
	}
	var o outcome
	raw, _ := json.Marshal(res.StructuredContent)
	if len(res.RawStructuredContent) > 0 {
		raw = res.RawStructuredContent
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("%s: structured content %s: %v", name, raw, err)
	}
	// Every answer must be what the tool declares it sends.
	if err := outputSchemaOf(t, name).Validate(raw); err != nil {
		t.Fatalf("%s: structured content breaks the tool's outputSchema: %v\n%s", name, err, raw)
	}
	o.IsError = res.IsError
	var text []string
	for _, ct := range res.Content {
		if tc, ok := ct.(mcp.TextContent); ok {
			text = append(text, tc.Text)
		}
	}
	o.Raw = string(raw) + strings.Join(text, "")
	return o, nil
}

var (
	outputMu      sync.Mutex
	outputSchemas = map[string]*jsonschema.Schema{}
)

// outputSchemaOf compiles the outputSchema connec declares for a tool.
func outputSchemaOf(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	outputMu.Lock()
	defer outputMu.Unlock()
	if s, ok := outputSchemas[name]; ok {
		return s
	}
	for _, tool := range cmcp.Inventory() {
		if tool.Def.Name == name {
			s, err := jsonschema.Compile(tool.Def.RawOutputSchema)
			if err != nil {
				t.Fatalf("%s: outputSchema does not compile: %v", name, err)
			}
			outputSchemas[name] = s
			return s
		}
	}
	t.Fatalf("no tool %s in the inventory", name)
	return nil
}

func mustOK(t *testing.T, c *client.Client, name string, args map[string]any, meta map[string]any) json.RawMessage {
	t.Helper()
	o, err := call(t, c, name, args, meta)
	if err != nil {
		t.Fatalf("%s: protocol error: %v", name, err)
	}
	if o.Status != "ok" || o.IsError {
		t.Fatalf("%s: want ok, got %s", name, o.Raw)
	}
	return o.Result
}

func mustFail(t *testing.T, c *client.Client, name string, args map[string]any, meta map[string]any, wantType string) outcome {
	t.Helper()
	o, err := call(t, c, name, args, meta)
	if err != nil {
		t.Fatalf("%s: protocol error: %v", name, err)
	}
	if o.Status != "error" || !o.IsError || o.Error == nil || o.Error.Type != wantType {
		t.Fatalf("%s: want error %s, got %s", name, wantType, o.Raw)
	}
	return o
}

func toolNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("list tools: %v", err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return names
}

// auditRow is what tests read back from audit_events.
type auditRow struct {
	Subject, Tool, Decision, Reason, Status, Transport  string
	ErrorType, InstanceID, Operation, TaskID, ProjectID *string
	AgentID, ConnectorType                              *string
}

func (e *env) audit(where string, args ...any) []auditRow {
	e.t.Helper()
	rows, err := e.app.Pool.Query(context.Background(), `SELECT subject, tool, decision, reason, status, transport,
 error_type, instance_id::text, operation, task_id::text, project_id::text, agent_id, connector_type
FROM audit_events WHERE `+where+` ORDER BY seq`, args...)
	if err != nil {
		e.t.Fatalf("read audit: %v", err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.Subject, &r.Tool, &r.Decision, &r.Reason, &r.Status, &r.Transport, &r.ErrorType, &r.InstanceID,
			&r.Operation, &r.TaskID, &r.ProjectID, &r.AgentID, &r.ConnectorType); err != nil {
			e.t.Fatalf("scan audit: %v", err)
		}
		out = append(out, r)
	}
	return out
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.app.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("count: %v", err)
	}
	return n
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func decodeID(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var in struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &in); err != nil || in.ID == "" {
		t.Fatalf("no id in %s", raw)
	}
	return in.ID
}

func httpRequest(url, auth string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req, nil
}
