package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/vault"
)

// binFixture sets up what the invoke measurements need on a new database
// for the connec binary c, through that binary only (`user add`, `token
// create`, then `serve --http` and its own MCP tools to install the echo
// instance and its bearer credential), so each binary migrates and fills
// its own database whatever its schema: an earlier binary measured beside
// the current one (Config.ConnecBefore) never sees a schema it does not
// know. name tells the databases, key files and logs apart.
func binFixture(ctx context.Context, d *DB, work, name string, c Command, dbParams string) (*fixture, error) {
	url, err := d.Create(ctx, name)
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(work, name+".key")
	if _, err := vault.GenerateKeyFile(keyFile, true); err != nil {
		return nil, err
	}
	procURL := url
	if dbParams != "" {
		sep := "?"
		if strings.Contains(procURL, "?") {
			sep = "&"
		}
		procURL += sep + dbParams
	}
	cfg := app.Config{DatabaseURL: url, DataDir: filepath.Join(work, name+"-data"), KeyFile: keyFile, LogFormat: "json", LogLevel: "warn"}
	f := &fixture{cfg: cfg, env: []string{
		"DATABASE_URL=" + procURL, "CONNEC_KEY_FILE=" + keyFile, "CONNEC_DATA_DIR=" + cfg.DataDir,
		"CONNEC_LOG_FORMAT=json", "CONNEC_LOG_LEVEL=warn", "CONNEC_SUBJECT=", "CONNEC_TOKEN=",
	}}
	logPath := filepath.Join(work, name+"-setup.log")
	if _, err := runCLI(ctx, c, f.env, logPath, "user", "add", "bench"); err != nil {
		return nil, err
	}
	out, err := runCLI(ctx, c, f.env, logPath, "token", "create", "--subject", "bench")
	if err != nil {
		return nil, err
	}
	f.token = strings.TrimSpace(out)
	if f.token == "" || strings.ContainsAny(f.token, " \t\n") {
		return nil, fmt.Errorf("%s token create: want one token on stdout, got %d bytes", name, len(out))
	}
	srv, _, err := startHTTPServer(ctx, name, c, f.env, logPath, "serve", "--http", "{addr}")
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	t := &target{name: name, url: srv.url, headers: map[string]string{"Authorization": "Bearer " + f.token}}
	ss, err := t.connect(ctx, Streamable, newHTTPClient())
	if err != nil {
		return nil, err
	}
	defer ss.close()
	call := func(tool string, args map[string]any) (map[string]any, error) {
		req := mcp.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = tool, args
		res, err := ss.c.CallTool(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", name, tool, err)
		}
		raw, _ := json.Marshal(res.StructuredContent)
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil || res.IsError {
			return nil, fmt.Errorf("%s %s: tool error: %s", name, tool, raw)
		}
		// connec answers {status, result, error}; the object is result.
		if r, ok := v["result"].(map[string]any); ok {
			return r, nil
		}
		return v, nil
	}
	inst, err := call("connector.instance.install", map[string]any{"type": "echo", "display_name": "bench", "enable": true})
	if err != nil {
		return nil, err
	}
	id, _ := inst["id"].(string)
	if id == "" {
		return nil, fmt.Errorf("%s connector.instance.install: no instance id in %v", name, inst)
	}
	f.instanceID = id
	if _, err := call("connector.credential.create", map[string]any{"instance_id": id, "kind": "bearer",
		"secret": map[string]any{"token": "bench-bearer-secret-0123456789"}}); err != nil {
		return nil, err
	}
	return f, nil
}

// runCLI runs one connec command to its end and returns its stdout; its
// stderr goes to logPath.
func runCLI(ctx context.Context, c Command, env []string, logPath string, args ...string) (string, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	var out bytes.Buffer
	cmd := c.command(ctx, env, args...)
	cmd.Stdout, cmd.Stderr = &out, logf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("connec %s: %w (log: %s)", strings.Join(args, " "), err, tail(logPath))
	}
	return out.String(), nil
}

// binaryID names a binary by its file's SHA-256 (first 12 hex digits), so
// the report says which builds were measured.
func binaryID(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unknown"
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
