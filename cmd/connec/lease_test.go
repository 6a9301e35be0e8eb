package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

// A server killed (SIGKILL) while an async run is open leaves the run's row
// "pending"; once the killed server's lease runs out, another server fails
// it, audited, and the chain still verifies.
func TestRunsOfAKilledServerAreFailed(t *testing.T) {
	url := pgtest.URL(t)
	keyFile := filepath.Join(t.TempDir(), "connec.key")
	if _, err := vault.GenerateKeyFile(keyFile, false); err != nil {
		t.Fatal(err)
	}
	b, _ := openApp(t, url, keyFile) // server B, in process; makes the user "rotator"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var killed *exec.Cmd
	env := append(os.Environ(), "DATABASE_URL="+url, "CONNEC_KEY_FILE="+keyFile, "CONNEC_SUBJECT=rotator",
		"CONNEC_SERVER_LEASE=300ms", "CONNEC_LOG_FORMAT=json", "CONNEC_TOKEN=")
	tr := transport.NewStdioWithOptions(binary(t), env, []string{"serve", "--stdio"},
		transport.WithCommandFunc(func(ctx context.Context, command string, env []string, args []string) (*exec.Cmd, error) {
			killed = exec.CommandContext(ctx, command, args...)
			killed.Env = env
			return killed, nil
		}))
	c := client.NewClient(tr)
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer c.Close()
	hello := mcp.InitializeRequest{}
	hello.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	hello.Params.ClientInfo = mcp.Implementation{Name: "lease-test", Version: "1"}
	if _, err := c.Initialize(ctx, hello); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	call := func(name string, args map[string]any) string {
		t.Helper()
		req := mcp.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = name, args
		res, err := c.CallTool(ctx, req)
		if err != nil || res.IsError {
			t.Fatalf("%s: %v %+v", name, err, res)
		}
		raw, _ := json.Marshal(res.StructuredContent)
		return string(raw)
	}
	inst := regexp.MustCompile(`"id":"([0-9a-f-]{36})"`).FindStringSubmatch(call(core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}))
	if inst == nil {
		t.Fatal("no instance id")
	}
	run := regexp.MustCompile(`"run_id":"([0-9a-f-]{36})"`).FindStringSubmatch(call(core.ToolOpInvoke, map[string]any{"instance_id": inst[1],
		"operation": "echo.later", "arguments": map[string]any{"message": "never", "delay_ms": 60000}}))
	if run == nil {
		t.Fatal("no run id")
	}
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = killed.Wait()
	status := func() (st string) {
		t.Helper()
		if err := b.Pool.QueryRow(ctx, `SELECT status FROM connector_runs WHERE id = $1`, run[1]).Scan(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status(); st != core.RunPending && st != core.RunRunning {
		t.Fatalf("run %s before anyone noticed", st)
	}
	lctx, stopLease := context.WithCancel(ctx)
	defer stopLease()
	if err := b.Service.StartLease(lctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for status() != core.RunFailed {
		if time.Now().After(deadline) {
			t.Fatalf("the killed server's run is still %s", status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var n int
	if err := b.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tool = $1 AND reason LIKE '%' || $2 || '%'`, core.ToolRunReap, run[1]).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d audit rows for the failed run (%v), want 1", n, err)
	}
	if rep, err := audit.Verify(ctx, b.Pool); err != nil || rep.Broken != nil {
		t.Fatalf("chain: %v %+v", err, rep.Broken)
	}
}
