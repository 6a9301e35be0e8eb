package mcp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connec/connec/callctx"
	cmcp "github.com/connec/connec/mcp"
)

// rawStdio drives connec's stdio transport with raw JSON-RPC lines, as a
// host process does over a pipe: what is checked is exactly what connec
// writes on stdout.
type rawStdio struct {
	t    *testing.T
	in   io.WriteCloser
	msgs chan map[string]any
	raw  chan string
	done chan error
	next int
	mu   sync.Mutex
}

// stdio starts a stdio session as the token's user over in-process pipes.
func (e *env) stdio(token string) *rawStdio {
	e.t.Helper()
	return e.stdioOn(e.srv, token)
}

// stdioOn is stdio on another server over e's core.
func (e *env) stdioOn(srv *cmcp.Server, token string) *rawStdio {
	e.t.Helper()
	if _, err := e.app.Identity.Authenticate(context.Background(), token); err != nil {
		e.t.Fatalf("authenticate: %v", err)
	}
	sr, cw := io.Pipe()
	cr, sw := io.Pipe()
	s := &rawStdio{t: e.t, in: cw, msgs: make(chan map[string]any, 256), raw: make(chan string, 256), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		err := cmcp.RunStdio(ctx, srv, tokenAuth(e, token), sr, sw, e.app.Log)
		sw.Close()
		s.done <- err
	}()
	go func() {
		defer close(s.msgs)
		sc := bufio.NewScanner(cr)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			s.raw <- line
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				m = map[string]any{"_not_json": line}
			}
			s.msgs <- m
		}
	}()
	e.t.Cleanup(func() { cw.Close(); cancel(); <-s.done })
	return s
}

func (s *rawStdio) writeLine(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// request sends a request and returns its id.
func (s *rawStdio) request(method string, params any) int {
	s.t.Helper()
	s.mu.Lock()
	s.next++
	id := s.next
	s.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	s.writeLine(string(b))
	return id
}

func (s *rawStdio) notify(method string, params any) {
	s.t.Helper()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": method, "params": params})
	s.writeLine(string(b))
}

// initialize performs the 2025-11-25 handshake.
func (s *rawStdio) initialize() map[string]any {
	s.t.Helper()
	id := s.request("initialize", map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "raw", "version": "1"}})
	m := s.await(id)
	s.notify("notifications/initialized", nil)
	return m
}

// next returns the next message connec writes.
func (s *rawStdio) nextMessage() (map[string]any, bool) {
	s.t.Helper()
	select {
	case m, ok := <-s.msgs:
		return m, ok
	case <-time.After(30 * time.Second):
		s.t.Fatal("no message from the stdio server in 30s")
		return nil, false
	}
}

// await returns the response with id, failing on anything but notifications
// before it.
func (s *rawStdio) await(id int) map[string]any {
	s.t.Helper()
	for {
		m, ok := s.nextMessage()
		if !ok {
			s.t.Fatalf("stdout closed before the response to %d", id)
		}
		if m["id"] == nil && m["method"] != nil {
			continue
		}
		if n, _ := m["id"].(float64); int(n) == id {
			return m
		}
		s.t.Fatalf("want the response to %d, got %v", id, m)
	}
}

// closeAndDrain closes stdin and returns every message written until the
// server ended, and how it ended.
func (s *rawStdio) closeAndDrain() ([]map[string]any, error) {
	s.t.Helper()
	s.in.Close()
	var out []map[string]any
	for {
		m, ok := s.nextMessage()
		if !ok {
			break
		}
		out = append(out, m)
	}
	select {
	case err := <-s.done:
		s.done <- err
		return out, err
	case <-time.After(30 * time.Second):
		s.t.Fatal("stdio server did not end after stdin closed")
		return nil, nil
	}
}

func byID(msgs []map[string]any) map[int]map[string]any {
	out := map[int]map[string]any{}
	for _, m := range msgs {
		if n, ok := m["id"].(float64); ok {
			out[int(n)] = m
		}
	}
	return out
}

// toolResult returns the structured content of a tools/call response.
func toolResult(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	res, _ := m["result"].(map[string]any)
	sc, _ := res["structuredContent"].(map[string]any)
	if sc == nil {
		t.Fatalf("no structured content in %v", m)
	}
	return sc
}

func short2(v any) string {
	b, _ := json.Marshal(v)
	s := string(b)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return strings.TrimSpace(s)
}

// waitFor polls cond until it holds, failing after a generous deadline (a
// hang guard, not a speed assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tokenAuth authenticates a stdio session's every request with token, as
// connec serve --stdio does with CONNEC_TOKEN.
func tokenAuth(e *env, token string) cmcp.StdioAuth {
	return func(ctx context.Context) (callctx.Principal, error) { return e.app.Identity.Authenticate(ctx, token) }
}
