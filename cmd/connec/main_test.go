package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/connec once per test process.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "connec-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "connec")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build connec: %v", buildErr)
	}
	return binPath
}

func run(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// Every command answers --help.
func TestHelpOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"serve", "--help"}, {"migrate", "--help"}, {"user", "add", "--help"}, {"user", "list", "--help"},
		{"group", "add", "--help"}, {"group", "member", "add", "--help"}, {"token", "create", "--help"}, {"token", "list", "--help"}, {"token", "revoke", "--help"},
		{"policy", "allow", "--help"}, {"policy", "deny", "--help"}, {"policy", "list", "--help"}, {"policy", "remove", "--help"}, {"policy", "check", "--help"},
		{"key", "init", "--help"}, {"key", "add", "--help"}, {"key", "status", "--help"}, {"key", "rotate", "--help"},
		{"credential", "create", "--help"}, {"credential", "rotate", "--help"}, {"credential", "revoke", "--help"},
		{"audit", "verify", "--help"}, {"audit", "export", "--help"}, {"openclaw", "add", "--help"}, {"openclaw", "list", "--help"},
		{"openclaw", "remove", "--help"}, {"user", "disable", "--help"}, {"user", "enable", "--help"}, {"user", "remove", "--help"},
		{"group", "list", "--help"}, {"group", "disable", "--help"}, {"group", "enable", "--help"}, {"group", "remove", "--help"},
		{"group", "member", "remove", "--help"}, {"mcp", "add", "--help"}, {"mcp", "approve", "--help"}, {"mcp", "list", "--help"},
		{"mcp", "remove", "--help"},
	} {
		out, errOut, err := run(t, nil, args...)
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Fatalf("%v: err %v\n%s%s", args, err, out, errOut)
		}
	}
}

// The README quick start: `connec serve --stdio` with no DATABASE_URL starts
// its own PostgreSQL in the data dir, creates a key and the local operator,
// and an MCP client over stdio can use it at once.
func TestQuickStartEmbeddedStdio(t *testing.T) {
	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := []string{"CONNEC_DATA_DIR=" + dataDir, "CONNEC_LOG_FORMAT=json", "DATABASE_URL=", "CONNEC_SUBJECT=", "CONNEC_TOKEN="}
	for round := 0; round < 2; round++ {
		tr := transport.NewStdio(binary(t), append(os.Environ(), env...), "serve", "--stdio")
		c := client.NewClient(tr)
		if err := c.Start(ctx); err != nil {
			t.Fatalf("start: %v", err)
		}
		stderr, _ := client.GetStderr(c)
		var logs bytes.Buffer
		var logMu sync.Mutex
		logDone := make(chan struct{})
		go func() {
			defer close(logDone)
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				logMu.Lock()
				logs.WriteString(sc.Text() + "\n")
				logMu.Unlock()
			}
		}()
		req := mcp.InitializeRequest{}
		req.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
		req.Params.ClientInfo = mcp.Implementation{Name: "quickstart", Version: "1"}
		if _, err := c.Initialize(ctx, req); err != nil {
			t.Fatalf("initialize: %v", err)
		}
		tools, err := c.ListTools(ctx, mcp.ListToolsRequest{})
		if err != nil {
			t.Fatalf("list tools: %v", err)
		}
		if len(tools.Tools) < 8 {
			t.Fatalf("local operator sees %d tools", len(tools.Tools))
		}
		call := mcp.CallToolRequest{}
		call.Params.Name = "connector.instance.install"
		call.Params.Arguments = map[string]any{"type": "echo", "display_name": "quick", "enable": true}
		res, err := c.CallTool(ctx, call)
		if err != nil || res.IsError {
			t.Fatalf("install: %v %+v", err, res)
		}
		raw, _ := json.Marshal(res.StructuredContent)
		id := regexp.MustCompile(`"id":"([0-9a-f-]{36})"`).FindStringSubmatch(string(raw))
		if id == nil {
			t.Fatalf("no id in %s", raw)
		}
		call.Params.Name = "connector.op.invoke"
		call.Params.Arguments = map[string]any{"instance_id": id[1], "operation": "echo.read", "arguments": map[string]any{"message": "hello"}}
		res, err = c.CallTool(ctx, call)
		if err != nil || res.IsError {
			t.Fatalf("invoke: %v %+v", err, res)
		}
		_ = c.Close()
		<-logDone
		logMu.Lock()
		text := logs.String()
		logMu.Unlock()
		created := strings.Contains(text, "created the local operator")
		if round == 0 && (!created || !strings.Contains(text, "ADMIN")) {
			t.Fatalf("first run must say plainly it created an admin local operator; logs:\n%s", text)
		}
		if round == 1 && created {
			t.Fatalf("second run created the operator again; logs:\n%s", text)
		}
		// connec stops its PostgreSQL when it exits: the server removes its
		// pid file on a clean shutdown.
		pid := filepath.Join(dataDir, "postgres", "postmaster.pid")
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(pid); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("embedded PostgreSQL still running after connec exited; logs:\n%s", text)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "postgres", "PG_VERSION")); err != nil {
		t.Fatalf("no cluster in the data dir: %v", err)
	}
}

// The operator commands of the CLI contract, against a real database.
func TestOperatorCommands(t *testing.T) {
	env := []string{"DATABASE_URL=" + pgtest.URL(t), "CONNEC_LOG_FORMAT=json", "CONNEC_DATA_DIR=" + t.TempDir()}
	mustRun := cli(t, env)
	if out := mustRun("migrate"); !strings.Contains(out, "up to date") {
		t.Fatalf("migrate: %s", out)
	}
	alice := strings.Fields(mustRun("user", "add", "alice"))[0]
	if !regexp.MustCompile(`^user:[0-9a-f-]{36}$`).MatchString(alice) {
		t.Fatalf("user add printed %q", alice)
	}
	mustRun("user", "add", "bob", "--no-owner-rule")
	group := strings.Fields(mustRun("group", "add", "ops"))[0]
	mustRun("group", "member", "add", "ops", "bob")
	tok := strings.TrimSpace(mustRun("token", "create", "--subject", alice, "--name", "laptop"))
	if !strings.HasPrefix(tok, "cnc_") {
		t.Fatalf("token create printed %q", tok)
	}
	toks := mustRun("token", "list", "--subject", "alice")
	if strings.Contains(toks, tok) || !strings.Contains(toks, "laptop") {
		t.Fatalf("token list: %s", toks)
	}
	tokID := strings.Fields(strings.Split(toks, "\n")[1])[0]
	if out := mustRun("token", "revoke", tokID); !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke: %s", out)
	}
	row := strings.Fields(strings.Split(mustRun("token", "list", "--subject", "alice"), "\n")[1])
	if row[0] != tokID || row[len(row)-1] == "-" {
		t.Fatalf("token not marked revoked: %v", row)
	}
	mustRun("policy", "allow", "--subject", "group:ops", "--resource", "connectors/"+group+"/**", "--action", "connector.read")
	list := mustRun("policy", "list", "--subject", "group:ops")
	if !strings.Contains(list, "connector.read") || !strings.Contains(list, group) {
		t.Fatalf("policy list: %s", list)
	}
	mustRun("policy", "remove", "--subject", "group:ops", "--resource", "connectors/"+group+"/**", "--action", "connector.read")
	if list := mustRun("policy", "list", "--subject", "group:ops"); strings.Contains(list, "connector.read") {
		t.Fatalf("rule not removed: %s", list)
	}
	// Bad input: a clear error, nothing changed.
	_, errOut, err := run(t, env, "policy", "allow", "--subject", "group:ops", "--resource", "x y", "--action", "connector.read")
	if err == nil || !strings.Contains(errOut, "invalid_argument") {
		t.Fatalf("bad rule accepted: %v %s", err, errOut)
	}
	_, errOut, err = run(t, env, "user", "add", "alice")
	if err == nil || !strings.Contains(errOut, "conflict") {
		t.Fatalf("duplicate user: %v %s", err, errOut)
	}
	// serve --http answers health and refuses MCP without a token.
	_, errOut, err = run(t, env, "serve", "--http", "256.0.0.1:1")
	if err == nil || !strings.Contains(errOut, "listen") {
		t.Fatalf("bad listen address: %v %s", err, errOut)
	}
}

// cli returns a function that runs connec with env, fails the test unless
// the command succeeds, and returns its stdout.
func cli(t *testing.T, env []string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		out, errOut, err := run(t, env, args...)
		if err != nil {
			t.Fatalf("connec %v: %v\n%s%s", args, err, out, errOut)
		}
		return out
	}
}

// keyedEnv is the environment of connec commands on a fresh test database,
// with a fresh key file and data dir.
func keyedEnv(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "connec.key")
	if _, err := vault.GenerateKeyFile(key, true); err != nil {
		t.Fatal(err)
	}
	return []string{"DATABASE_URL=" + pgtest.URL(t), "CONNEC_KEY_FILE=" + key, "CONNEC_LOG_FORMAT=json", "CONNEC_DATA_DIR=" + dir}
}
