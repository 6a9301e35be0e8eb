package mcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
)

// fakeAPI is a real HTTP server standing in for a SaaS API: it checks the
// bearer token, echoes request headers back (as careless APIs do), hangs or
// floods on request, and redirects off the allowlist.
type fakeAPI struct {
	*httptest.Server
	token string
	posts atomic.Int64
}

func newFakeAPI(t *testing.T, token string) *fakeAPI {
	f := &fakeAPI{token: token}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			http.Error(w, `{"error":"bad token `+r.Header.Get("Authorization")+`"}`, http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/api/echo-headers":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"headers": r.Header})
		case "/api/items":
			if r.Method == http.MethodPost {
				f.posts.Add(1)
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"items":[1,2,3],"method":"` + r.Method + `"}`))
		case "/api/hang":
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		case "/api/huge":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"blob":"` + strings.Repeat("x", 3<<20) + `"}`))
		case "/api/redirect":
			http.Redirect(w, r, "http://example.invalid/steal", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

// The http type through the whole governed path, for each case the executor
// must handle, every call audited with its task context.
func TestHTTPConnectorThroughTheBoundary(t *testing.T) {
	e := newEnv(t)
	alice, tok := e.user("alice", false)
	c := e.client(transports[2], tok)
	secret := canary()
	api := newFakeAPI(t, secret)
	install := func(cfg map[string]any, limits map[string]any) string {
		args := map[string]any{"type": "http", "display_name": "api", "enable": true, "config": cfg}
		if limits != nil {
			args["limits"] = limits
		}
		id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, args, nil))
		mustOK(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": secret}}, nil)
		return id
	}
	cfg := map[string]any{"base_url": api.URL + "/api", "auth": map[string]any{"style": "bearer"}, "allow_private_network": true}
	// Reaching private networks (the test API is on loopback) is the
	// operator's to grant: an owner alone is refused, audited, and nothing
	// is installed.
	before := e.count(`SELECT count(*) FROM connector_instances`)
	mustFail(t, c, core.ToolInstanceInstall, map[string]any{"type": "http", "display_name": "api", "enable": true, "config": cfg}, nil, "policy_denied")
	if n := e.count(`SELECT count(*) FROM connector_instances`); n != before {
		t.Fatal("a refused install left an instance")
	}
	if rows := e.audit("tool = 'connector.instance.install' AND decision = 'deny' AND resource = $1", authz.ResourcePrivateNetwork); len(rows) != 1 {
		t.Fatalf("refused install audited as %+v", rows)
	}
	e.allow(alice, authz.ResourcePrivateNetwork, authz.ActionAdmin, "")
	id := install(cfg, map[string]any{"per_subject": map[string]any{"requests": 30, "window_seconds": 3600}})
	task := uuid.NewString()
	meta := map[string]any{callctx.MetaKey: map[string]any{"task_id": task, "agent_id": "worker"}}
	get := func(path string, extra map[string]any) map[string]any {
		args := map[string]any{"instance_id": id, "operation": "http.get", "arguments": map[string]any{"path": path}}
		for k, v := range extra {
			args[k] = v
		}
		return args
	}
	var all strings.Builder

	t.Run("success", func(t *testing.T) {
		out := mustOK(t, c, core.ToolOpInvoke, get("/items", nil), meta)
		all.Write(out)
		if !strings.Contains(string(out), `"items":[1,2,3]`) || !strings.Contains(string(out), `"status":200`) {
			t.Fatalf("get: %s", out)
		}
	})
	t.Run("credential echoed by the server is not returned", func(t *testing.T) {
		out := mustOK(t, c, core.ToolOpInvoke, get("/echo-headers", nil), meta)
		all.Write(out)
		if strings.Contains(string(out), secret) || !strings.Contains(string(out), "[REDACTED]") {
			t.Fatalf("echoed headers: %s", out)
		}
		// The driver redacted it; the audit row says so.
		if n := e.count(`SELECT count(*) FROM audit_events WHERE instance_id = $1 AND reason LIKE '%redacted%'`, id); n != 1 {
			t.Fatalf("redaction not flagged in audit: %d rows", n)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		o := mustFail(t, c, core.ToolOpInvoke, get("/hang", map[string]any{"timeout_ms": 300}), meta, "timeout")
		all.WriteString(o.Raw)
		if time.Since(start) > 10*time.Second {
			t.Fatalf("timeout took %s", time.Since(start))
		}
	})
	t.Run("oversized response", func(t *testing.T) {
		o := mustFail(t, c, core.ToolOpInvoke, get("/huge", nil), meta, "response_too_large")
		all.WriteString(o.Raw)
	})
	t.Run("redirect off the allowlist", func(t *testing.T) {
		o, err := call(t, c, core.ToolOpInvoke, get("/redirect", nil), meta)
		if err != nil || !o.IsError {
			t.Fatalf("redirect followed: %v %s", err, o.Raw)
		}
		all.WriteString(o.Raw)
	})
	t.Run("private network refused unless the instance allows it", func(t *testing.T) {
		strict := map[string]any{"base_url": api.URL + "/api", "auth": map[string]any{"style": "bearer"}}
		sid := install(strict, nil)
		o := mustFail(t, c, core.ToolOpInvoke, map[string]any{"instance_id": sid, "operation": "http.get", "arguments": map[string]any{"path": "/items"}}, meta, "permanent")
		all.WriteString(o.Raw)
	})
	t.Run("bad credential", func(t *testing.T) {
		bid := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "http", "display_name": "b", "enable": true, "config": cfg}, nil))
		wrong := canary()
		mustOK(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": bid, "kind": "bearer", "secret": map[string]any{"token": wrong}}, nil)
		o := mustFail(t, c, core.ToolOpInvoke, map[string]any{"instance_id": bid, "operation": "http.get", "arguments": map[string]any{"path": "/items"}}, meta, "permanent")
		if strings.Contains(o.Raw, wrong) {
			t.Fatalf("bad credential echoed: %s", o.Raw)
		}
	})
	t.Run("idempotent replay", func(t *testing.T) {
		post := map[string]any{"instance_id": id, "operation": "http.post", "arguments": map[string]any{"path": "/items", "body": map[string]any{"n": 1}}, "idempotency_key": "order-42"}
		first := mustOK(t, c, core.ToolOpInvoke, post, meta)
		second := mustOK(t, c, core.ToolOpInvoke, post, meta)
		if api.posts.Load() != 1 {
			t.Fatalf("POST executed %d times", api.posts.Load())
		}
		var a, b core.InvokeResult
		_ = json.Unmarshal(first, &a)
		_ = json.Unmarshal(second, &b)
		var ao, bo any
		_ = json.Unmarshal(a.Output, &ao)
		_ = json.Unmarshal(b.Output, &bo)
		if !b.Replayed || a.RunID != b.RunID || !reflect.DeepEqual(ao, bo) {
			t.Fatalf("replay: %s vs %s", first, second)
		}
		// Idempotency keys are for send-kind operations only.
		mustFail(t, c, core.ToolOpInvoke, get("/items", map[string]any{"idempotency_key": "k"}), meta, "invalid_argument")
	})
	t.Run("revoked mid-stream", func(t *testing.T) {
		var credID string
		if err := e.app.Pool.QueryRow(t.Context(), `SELECT id::text FROM connector_credentials WHERE instance_id = $1`, id).Scan(&credID); err != nil {
			t.Fatal(err)
		}
		mustOK(t, c, core.ToolOpInvoke, get("/items", nil), meta)
		mustOK(t, c, core.ToolCredentialRevoke, map[string]any{"credential_id": credID}, nil)
		mustFail(t, c, core.ToolOpInvoke, get("/items", nil), meta, "credential_revoked")
		mustOK(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": id, "kind": "bearer", "secret": map[string]any{"token": secret}}, nil)
		mustOK(t, c, core.ToolOpInvoke, get("/items", nil), meta)
	})
	t.Run("rate limit", func(t *testing.T) {
		var o outcome
		for i := 0; i < 40; i++ {
			var err error
			if o, err = call(t, c, core.ToolOpInvoke, get("/items", nil), meta); err != nil {
				t.Fatal(err)
			}
			if o.IsError {
				break
			}
		}
		if o.Error == nil || o.Error.Type != "quota_exceeded" || o.Error.Details["retry_after_ms"] == nil {
			t.Fatalf("no quota_exceeded with retry-after: %s", o.Raw)
		}
	})
	if strings.Contains(all.String(), secret) || strings.Contains(e.logs.String(), secret) {
		t.Fatal("secret leaked into a response or the logs")
	}
	// Every invoke is audited with the task context, and has a run row.
	rows := e.audit("tool = 'connector.op.invoke' AND instance_id = $1", id)
	if len(rows) < 10 {
		t.Fatalf("audit rows: %d", len(rows))
	}
	for _, r := range rows {
		if str(r.TaskID) != task || str(r.AgentID) != "worker" {
			t.Fatalf("invoke audited without task context: %+v", r)
		}
	}
	types := map[string]bool{}
	for _, r := range rows {
		types[str(r.ErrorType)] = true
	}
	for _, want := range []string{"", "timeout", "response_too_large", "credential_revoked", "quota_exceeded"} {
		if !types[want] {
			t.Fatalf("no audit row with error type %q: %v", want, types)
		}
	}
	if n := e.count(`SELECT count(*) FROM connector_runs WHERE instance_id = $1 AND task_id = $2`, id, task); n < 8 {
		t.Fatalf("run rows: %d", n)
	}
}

// Run history and async runs over MCP.
func TestREQ_CONNEC_0116_RunHistory(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	_, malTok := e.user("mallory", false)
	c := e.client(transports[2], tok)
	m := e.client(transports[1], malTok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	task := uuid.NewString()
	for i := 0; i < 3; i++ {
		mustOK(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x"}, "task_id": task}, nil)
	}
	mustFail(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.read", "arguments": map[string]any{"message": "x", "delay_ms": 2000}, "timeout_ms": 50}, nil, "timeout")
	var list struct {
		Runs []core.Run `json:"runs"`
	}
	if err := json.Unmarshal(mustOK(t, c, core.ToolRunList, map[string]any{"instance_id": id}, nil), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Runs) != 4 || list.Runs[0].Status != "failed" || list.Runs[0].ErrorType != "timeout" || list.Runs[1].Status != "succeeded" {
		t.Fatalf("runs: %+v", list.Runs)
	}
	if list.Runs[1].Task.TaskID != task || list.Runs[1].DurationMS == nil || list.Runs[1].BytesIn == 0 || list.Runs[1].BytesOut == 0 {
		t.Fatalf("run row: %+v", list.Runs[1])
	}
	if err := json.Unmarshal(mustOK(t, c, core.ToolRunList, map[string]any{"task_id": task}, nil), &list); err != nil || len(list.Runs) != 3 {
		t.Fatalf("runs by task: %d %v", len(list.Runs), err)
	}
	got := mustOK(t, c, core.ToolRunGet, map[string]any{"run_id": list.Runs[0].ID}, nil)
	if !strings.Contains(string(got), list.Runs[0].ID) {
		t.Fatalf("run get: %s", got)
	}
	// Another user sees none of it, and cannot tell a run from a missing one.
	mustFail(t, m, core.ToolRunGet, map[string]any{"run_id": list.Runs[0].ID}, nil, "policy_denied")
	mustFail(t, m, core.ToolRunGet, map[string]any{"run_id": uuid.NewString()}, nil, "policy_denied")
	mustFail(t, m, core.ToolRunList, map[string]any{"instance_id": id}, nil, "policy_denied")
	if err := json.Unmarshal(mustOK(t, m, core.ToolRunList, nil, nil), &list); err != nil || len(list.Runs) != 0 {
		t.Fatalf("mallory's own runs: %d", len(list.Runs))
	}
}

// Async operations answer with a run id at once; run.get reports progress
// and the result; run.cancel stops one.
func TestAsyncRuns(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(transports[2], tok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	var started core.InvokeResult
	if err := json.Unmarshal(mustOK(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.later", "arguments": map[string]any{"message": "later", "delay_ms": 100}}, nil), &started); err != nil {
		t.Fatal(err)
	}
	if started.Status != "pending" || started.RunID == "" {
		t.Fatalf("async invoke: %+v", started)
	}
	var run core.Run
	eventually(t, func() bool {
		_ = json.Unmarshal(mustOK(t, c, core.ToolRunGet, map[string]any{"run_id": started.RunID}, nil), &run)
		return run.Status == "succeeded"
	})
	if !strings.Contains(string(run.Result), `"message":"later"`) || run.FinishedAt == nil {
		t.Fatalf("async result: %+v", run)
	}
	// Cancel a long one.
	if err := json.Unmarshal(mustOK(t, c, core.ToolOpInvoke, map[string]any{"instance_id": id, "operation": "echo.later", "arguments": map[string]any{"message": "never", "delay_ms": 50000}}, nil), &started); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		_ = json.Unmarshal(mustOK(t, c, core.ToolRunGet, map[string]any{"run_id": started.RunID}, nil), &run)
		return run.Status == "running"
	})
	mustOK(t, c, core.ToolRunCancel, map[string]any{"run_id": started.RunID}, nil)
	e.app.Service.Wait()
	_ = json.Unmarshal(mustOK(t, c, core.ToolRunGet, map[string]any{"run_id": started.RunID}, nil), &run)
	if run.Status != "canceled" {
		t.Fatalf("canceled run: %+v", run)
	}
	mustFail(t, c, core.ToolRunCancel, map[string]any{"run_id": started.RunID}, nil, "conflict")
	// Decision and outcome rows for both async runs.
	if n := e.count(`SELECT count(*) FROM audit_events WHERE tool = 'connector.op.invoke' AND instance_id = $1`, id); n != 4 {
		t.Fatalf("async audit rows: %d", n)
	}
}

// Only an async run can be canceled: canceling a synchronous send in flight
// is refused (it would only falsify history: the send goes on), the send's
// run records what happened, and a replay of its key returns that.
func TestCancelSyncSendRefusedHistoryTrue(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	c := e.client(transports[2], tok)
	other := e.client(transports[1], tok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	send := map[string]any{"instance_id": id, "operation": "echo.send", "idempotency_key": "k-1",
		"arguments": map[string]any{"message": "sent", "delay_ms": 1500}}
	done := make(chan json.RawMessage, 1)
	go func() {
		o, err := call(t, c, core.ToolOpInvoke, send, nil)
		if err != nil {
			t.Error(err)
		}
		done <- json.RawMessage(o.Raw)
	}()
	var runID string
	eventually(t, func() bool {
		_ = e.app.Pool.QueryRow(context.Background(), `SELECT id::text FROM connector_runs WHERE instance_id = $1 AND status = 'running'`, id).Scan(&runID)
		return runID != ""
	})
	refused := mustFail(t, other, core.ToolRunCancel, map[string]any{"run_id": runID}, nil, "conflict")
	if !strings.Contains(refused.Error.Message, "asynchronous") {
		t.Fatalf("cancel of a synchronous run: %q", refused.Error.Message)
	}
	if got := <-done; !strings.Contains(string(got), `"status":"ok"`) {
		t.Fatalf("the send: %s", got)
	}
	var run core.Run
	if err := json.Unmarshal(mustOK(t, c, core.ToolRunGet, map[string]any{"run_id": runID}, nil), &run); err != nil {
		t.Fatal(err)
	}
	if run.Status != core.RunSucceeded {
		t.Fatalf("the send's run says %s (%s), but it succeeded", run.Status, run.ErrorType)
	}
	var replay core.InvokeResult
	if err := json.Unmarshal(mustOK(t, c, core.ToolOpInvoke, send, nil), &replay); err != nil || !replay.Replayed || replay.RunID != runID {
		t.Fatalf("replay: %+v %v", replay, err)
	}
}
