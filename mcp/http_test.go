package mcp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/core"
)

// Legacy streamable HTTP sessions follow the spec: a terminated or unknown
// session answers 404, a request that needs a session and names none 400,
// and a session is usable only by the subject that opened it.
func TestStreamableHTTPLegacySessions(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	_, bobTok := e.user("bob", false)
	alice := e.openRaw(aliceTok, "2025-11-25")
	if alice.session == "" {
		t.Fatal("initialize issued no session id")
	}
	if st, _, body := alice.send("tools/list", nil); st != http.StatusOK {
		t.Fatalf("tools/list on a live session: %d %s", st, body)
	}

	made := *alice
	made.session = "mcp-session-1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	if st, _, body := made.send("tools/list", nil); st != http.StatusNotFound {
		t.Fatalf("made-up session id: %d %s, want 404", st, body)
	}
	none := *alice
	none.session = ""
	if st, _, body := none.send("tools/list", nil); st != http.StatusBadRequest {
		t.Fatalf("no session id: %d %s, want 400", st, body)
	}
	bob := *alice
	bob.token = bobTok
	if st, _, body := bob.send("tools/list", nil); st != http.StatusNotFound {
		t.Fatalf("bob using alice's session: %d %s, want 404", st, body)
	}
	if st := bob.delete(); st != http.StatusNotFound {
		t.Fatalf("bob ending alice's session: %d, want 404", st)
	}
	if st, _, body := alice.send("tools/list", nil); st != http.StatusOK {
		t.Fatalf("alice's session after bob's attempts: %d %s", st, body)
	}

	if st := alice.delete(); st != http.StatusOK {
		t.Fatalf("DELETE: %d", st)
	}
	if st, _, body := alice.send("tools/list", nil); st != http.StatusNotFound {
		t.Fatalf("request on a terminated session: %d %s, want 404", st, body)
	}
}

func (r *rawMCP) delete() int {
	r.t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, r.url, nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Mcp-Session-Id", r.session)
	req.Header.Set("MCP-Protocol-Version", r.rev)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// sseStream is a legacy SSE session opened by hand.
type sseStream struct {
	t        *testing.T
	endpoint string
	events   chan string
	cancel   context.CancelFunc
}

func (e *env) openSSE(token string) *sseStream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.http.URL+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /sse: %d", res.StatusCode)
	}
	s := &sseStream{t: e.t, events: make(chan string, 64), cancel: cancel}
	e.t.Cleanup(func() { cancel(); res.Body.Close() })
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		var event string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event:"):
				event = strings.TrimSpace(line[6:])
			case strings.HasPrefix(line, "data:"):
				s.events <- event + " " + strings.TrimSpace(line[5:])
			}
		}
	}()
	first := s.next()
	ep, ok := strings.CutPrefix(first, "endpoint ")
	if !ok {
		e.t.Fatalf("first SSE event: %q", first)
	}
	s.endpoint = e.http.URL + ep
	return s
}

// response returns the next event that is not a notification (list-change
// announcements may arrive at any time on a legacy stream).
func (s *sseStream) response() string {
	s.t.Helper()
	for {
		ev := s.next()
		var m struct {
			Method string `json:"method"`
		}
		_, data, _ := strings.Cut(ev, " ")
		if json.Unmarshal([]byte(data), &m) == nil && m.Method != "" {
			continue
		}
		return ev
	}
}

func (s *sseStream) next() string {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatal("SSE stream closed")
		}
		return ev
	case <-time.After(30 * time.Second):
		s.t.Fatal("no SSE event in 30s")
		return ""
	}
}

func (s *sseStream) post(token string, msg string) int {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.endpoint, strings.NewReader(msg))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// An SSE session belongs to the subject that opened it: another user who
// learns its id cannot post into it (and so cannot have answers, with ids
// of their choosing, delivered on the first user's stream). Session ids stay
// out of the logs.
func TestSSESessionBoundToSubject(t *testing.T) {
	e := newEnv(t)
	_, aliceTok := e.user("alice", false)
	_, bobTok := e.user("bob", false)
	s := e.openSSE(aliceTok)
	if st := s.post(aliceTok, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`); st != http.StatusAccepted {
		t.Fatalf("alice initialize: %d", st)
	}
	if ev := s.response(); !strings.Contains(ev, `"id":1`) {
		t.Fatalf("initialize answer: %s", ev)
	}
	if st := s.post(bobTok, `{"jsonrpc":"2.0","id":"bob-1","method":"tools/list"}`); st != http.StatusNotFound {
		t.Fatalf("bob posting into alice's session: %d, want 404", st)
	}
	if st := s.post(aliceTok, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); st != http.StatusAccepted {
		t.Fatalf("alice tools/list: %d", st)
	}
	if ev := s.response(); !strings.Contains(ev, `"id":2`) {
		t.Fatalf("want alice's answer next on her stream, got %s", ev)
	}
	session := s.endpoint[strings.Index(s.endpoint, "sessionId=")+len("sessionId="):]
	if strings.Contains(e.logs.String(), session) {
		for _, l := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(l, session) {
				t.Errorf("the session id appears in the logs: %s", l)
			}
		}
	}
}

// A request whose id is null gets an Invalid Request error over HTTP too.
func TestHTTPNullIDIsAnswered(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	r := e.openRaw(tok, "2025-11-25")
	st, _, body := r.post([]byte(`{"jsonrpc":"2.0","id":null,"method":"tools/list"}`), "tools/list", "")
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	errObj, _ := m["error"].(map[string]any)
	if st != http.StatusBadRequest || errObj == nil || errObj["code"] != float64(-32600) || m["id"] != nil {
		t.Fatalf("id null: %d %s", st, body)
	}
}

// The MCP endpoints refuse a browser page from a foreign origin (DNS
// rebinding) and a foreign Host on a loopback listener; allowed origins
// come from the configuration.
func TestOriginAndHostValidated(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	do := func(path, origin, host string) int {
		t.Helper()
		method := http.MethodPost
		var body io.Reader = strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
		if path == "/sse" {
			method, body = http.MethodGet, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, method, e.http.URL+path, body)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if host != "" {
			req.Host = host
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for _, path := range []string{"/mcp", "/sse", "/message"} {
		if st := do(path, "http://evil.example", ""); st != http.StatusForbidden {
			t.Errorf("%s with a foreign Origin: %d, want 403", path, st)
		}
		if st := do(path, "", "evil.example:80"); st != http.StatusForbidden {
			t.Errorf("%s with a foreign Host on a loopback listener: %d, want 403", path, st)
		}
	}
	if st := do("/mcp", "http://localhost:6274", ""); st != http.StatusOK {
		t.Errorf("/mcp from a loopback origin on a loopback listener: %d, want 200", st)
	}
	if st := do("/mcp", "", ""); st != http.StatusOK {
		t.Errorf("/mcp without an Origin: %d, want 200", st)
	}

	e.app.Cfg.AllowedOrigins = []string{"https://agents.example.com"}
	allowed := newEnvFrom(t, e)
	e.http = allowed
	if st := do("/mcp", "https://agents.example.com", ""); st != http.StatusOK {
		t.Errorf("/mcp from an allowed origin: %d, want 200", st)
	}
	if st := do("/mcp", "https://other.example.com", ""); st != http.StatusForbidden {
		t.Errorf("/mcp from an origin not in the list: %d, want 403", st)
	}
}

// A tools/list with a cursor connec never issued is refused in plain words.
func TestToolsListCursorRefusedPlainly(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	r := e.openRaw(tok, "2025-11-25")
	_, _, body := r.send("tools/list", map[string]any{"cursor": "abcd!"})
	var m struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &m)
	if m.Error.Code != -32602 || strings.Contains(m.Error.Message, "base64") || !strings.Contains(m.Error.Message, "cursor") {
		t.Fatalf("bad cursor: %s", body)
	}
}

// A legacy streamable HTTP request the client cancels gets no answer, and
// under 2026-07-28 a notifications/cancelled POST is accepted (202), not
// refused (which made the Go SDK drop its session).
func TestHTTPCancellation(t *testing.T) {
	e := newEnv(t)
	root, tok := e.user("root", true)
	e.allow(root, "**", "*", "")
	r := e.openRaw(tok, "2025-11-25")
	_, _, body := r.send("tools/call", map[string]any{"name": core.ToolInstanceInstall,
		"arguments": map[string]any{"type": "echo", "display_name": "cancel", "enable": true}})
	var inst struct {
		Result struct {
			StructuredContent struct {
				Result struct {
					ID string `json:"id"`
				} `json:"result"`
			} `json:"structuredContent"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &inst); err != nil || inst.Result.StructuredContent.Result.ID == "" {
		t.Fatalf("install: %s", body)
	}
	id := inst.Result.StructuredContent.Result.ID
	type answer struct {
		status int
		body   []byte
	}
	done := make(chan answer, 1)
	call := r.message("tools/call", map[string]any{"name": core.ToolOpInvoke, "arguments": map[string]any{
		"instance_id": id, "operation": "echo.send", "arguments": map[string]any{"message": "never", "delay_ms": 20000}}}, true)
	reqID := r.next
	go func() {
		st, _, b := r.post(call, "tools/call", core.ToolOpInvoke)
		done <- answer{st, b}
	}()
	waitFor(t, "the send to start", func() bool {
		return e.count(`SELECT count(*) FROM connector_runs WHERE instance_id = $1 AND status = 'running'`, id) == 1
	})
	if st := r.notify("notifications/cancelled", map[string]any{"requestId": reqID, "reason": "gave up"}); st != http.StatusAccepted {
		t.Fatalf("cancel notification: %d", st)
	}
	a := <-done
	if bytes.Contains(a.body, []byte(`"result"`)) || bytes.Contains(a.body, []byte(`"error"`)) {
		t.Fatalf("the canceled request was answered: %d %s", a.status, a.body)
	}
	waitFor(t, "the run to end canceled", func() bool {
		return e.count(`SELECT count(*) FROM connector_runs WHERE instance_id = $1 AND status = 'canceled'`, id) == 1
	})

	modern := e.openRaw(tok, "2026-07-28")
	if st := modern.notify("notifications/cancelled", map[string]any{"requestId": 99}); st != http.StatusAccepted {
		t.Fatalf("2026-07-28 notifications/cancelled: %d, want 202", st)
	}
}

// newEnvFrom serves e's core again over HTTP, with e's configuration as it
// is now.
func newEnvFrom(t *testing.T, e *env) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(e.app.Handler(e.srv))
	t.Cleanup(s.Close)
	return s
}

// 2026-07-28 defines no SSE transport: an initialize over SSE asking for it
// is answered with the newest revision SSE serves, and a 2026-07-28 request
// (its revision in _meta) is refused there in plain words.
func TestSSEServesRevisionsThatHaveIt(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	s := e.openSSE(tok)
	if st := s.post(tok, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2026-07-28","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`); st != http.StatusAccepted {
		t.Fatalf("initialize: %d", st)
	}
	if ev := s.response(); !strings.Contains(ev, `"protocolVersion":"2025-11-25"`) {
		t.Fatalf("initialize over SSE asking for 2026-07-28: %s", ev)
	}
	modern := `{"jsonrpc":"2.0","id":2,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	if st := s.post(tok, modern); st != http.StatusAccepted {
		t.Fatalf("a 2026-07-28 request over SSE: %d", st)
	}
	if ev := s.response(); !strings.Contains(ev, `"id":2`) || !strings.Contains(ev, `"code":-32`) || !strings.Contains(ev, `"supported":["2025-11-25"`) {
		t.Fatalf("a 2026-07-28 request over SSE is answered %s, want UnsupportedProtocolVersion listing 2025-11-25 first", ev)
	}
}
