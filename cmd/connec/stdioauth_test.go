package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A `connec serve --stdio` session started with CONNEC_TOKEN stops working
// at once when another process revokes its token (`connec token revoke`):
// every stdio call is authenticated as an HTTP call is.
func TestStdioSessionEndsWhenItsTokenIsRevoked(t *testing.T) {
	env := keyedEnv(t)
	mustRun := cli(t, env)
	mustRun("user", "add", "alice")
	tok := strings.TrimSpace(mustRun("token", "create", "--subject", "alice", "--name", "stdio"))
	s := startRaw(t, "stdio", append(env, "CONNEC_TOKEN="+tok, "CONNEC_SUBJECT="), binary(t), "serve", "--stdio")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s.initialize(ctx)
	if _, err := s.callTool(ctx, "connector.instance.list", map[string]any{}); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	id := strings.Fields(strings.Split(mustRun("token", "list", "--subject", "alice"), "\n")[1])[0]
	mustRun("token", "revoke", id)
	// The revocation reaches the session's process by PostgreSQL's
	// notification; from then on every call is refused. Until it has
	// arrived a call may still pass (docs/reliability.md says how long).
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.callTool(ctx, "connector.instance.list", map[string]any{})
		var rerr *rpcError
		if errors.As(err, &rerr) && strings.Contains(rerr.Message, "unauthenticated") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls still succeed 30s after the token was revoked (last: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range 3 {
		if _, err := s.callTool(ctx, "connector.instance.list", map[string]any{}); err == nil {
			t.Fatal("a call succeeded after one was refused for the revoked token")
		}
	}
}

// `connec token create --project … --agent …` issues a token bound to that
// task context: listed as such, and a call with it that names another
// project is refused.
func TestTokenCreateBindsATaskContext(t *testing.T) {
	env := keyedEnv(t)
	mustRun := cli(t, env)
	mustRun("user", "add", "alice")
	project := "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	tok := strings.TrimSpace(mustRun("token", "create", "--subject", "alice", "--project", project, "--agent", "planner-1", "--expires", "1h"))
	if list := mustRun("token", "list", "--subject", "alice"); !strings.Contains(list, "project="+project+",agent=planner-1") {
		t.Fatalf("token list does not show the binding:\n%s", list)
	}
	if _, errOut, err := run(t, env, "token", "create", "--subject", "alice", "--project", "not-a-uuid"); err == nil || !strings.Contains(errOut, "project_id") {
		t.Fatalf("a malformed binding: %v %s", err, errOut)
	}
	s := startRaw(t, "bound", append(env, "CONNEC_TOKEN="+tok, "CONNEC_SUBJECT="), binary(t), "serve", "--stdio")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.initialize(ctx)
	raw, err := s.request(ctx, "tools/call", map[string]any{"name": "connector.instance.list", "arguments": map[string]any{},
		"_meta": map[string]any{"connec.dev/task": map[string]any{"project_id": "2b4e28ba-2fa1-11d2-883f-0016d3cca427"}}})
	if err != nil || !strings.Contains(string(raw), "invalid_argument") || !strings.Contains(string(raw), "bound") {
		t.Fatalf("a call naming another project: %v %s", err, raw)
	}
}
