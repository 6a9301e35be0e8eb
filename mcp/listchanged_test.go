package mcp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/core"
	cmcp "github.com/connec/connec/mcp"
)

// What a subject may see changes with policy; connec says so: it advertises
// tools.listChanged and, when a rule changes (through any server), tells
// legacy sessions with notifications/tools/list_changed.
func TestToolListChangesAnnounced(t *testing.T) {
	e := newEnv(t)
	bob, tok := e.user("bob", true)
	other := e.peer() // the change is made through e; bob's session is on other
	s := other.stdio(tok)
	init := s.initialize()
	caps, _ := init["result"].(map[string]any)["capabilities"].(map[string]any)
	tools, _ := caps["tools"].(map[string]any)
	if tools["listChanged"] != true {
		t.Fatalf("capabilities do not advertise tools.listChanged: %s", short2(init))
	}
	if n := len(listed(t, s)); n != 0 {
		t.Fatalf("bob without rules sees %d tools", n)
	}
	e.allow(bob, "catalog", "connector.catalog.read", "")
	awaitListChanged(t, s)
	// connector.catalog.list and connector.server.list.
	if n := len(listed(t, s)); n != 2 {
		t.Fatalf("after the announcement bob sees %d tools, want 2", n)
	}
}

// Instance tools come and go with instances: installing and enabling one
// through one server is announced to a session on another, whose next list
// has the new tools; disabling it is announced too and takes them away.
func TestInstanceToolChangesAnnounced(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	other := e.peer()
	s := other.stdio(tok)
	s.initialize()
	before := len(listed(t, s))
	c := e.client(cmcp.TransportStreamable, tok)
	id := decodeID(t, mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "Mail", "enable": true}, nil))
	awaitListChanged(t, s)
	if n := len(listed(t, s)); n != before+3 {
		t.Fatalf("after the install was announced alice sees %d tools, want %d", n, before+3)
	}
	mustOK(t, c, core.ToolInstanceDisable, map[string]any{"instance_id": id}, nil)
	awaitListChanged(t, s)
	if n := len(listed(t, s)); n != before {
		t.Fatalf("after the disable was announced alice sees %d tools, want %d", n, before)
	}
}

func awaitListChanged(t *testing.T, s *rawStdio) {
	t.Helper()
	for {
		m, ok := s.nextMessage()
		if !ok {
			t.Fatal("stdout closed")
		}
		if m["method"] == string(mcp.MethodNotificationToolsListChanged) {
			return
		}
	}
}

func listed(t *testing.T, s *rawStdio) []any {
	t.Helper()
	m := s.await(s.request("tools/list", map[string]any{}))
	tools, _ := m["result"].(map[string]any)["tools"].([]any)
	return tools
}

// Under 2026-07-28 a client opts in with subscriptions/listen and gets
// toolsListChanged on that stream; tools/list answers say how long they may
// be kept (not at all: they hold instance tools) and that they are private
// to the caller.
func TestToolListChangesOnSubscriptionStream(t *testing.T) {
	e := newEnv(t)
	bob, tok := e.user("bob", true)
	r := e.openRaw(tok, "2026-07-28")
	_, _, body := r.send("tools/list", nil)
	var list struct {
		Result struct {
			TTL   *int64 `json:"ttlMs"`
			Scope string `json:"cacheScope"`
		} `json:"result"`
	}
	// Stale at once (ttlMs 0): the list holds instance tools, which come
	// and go with instances; private to the caller.
	if err := json.Unmarshal(body, &list); err != nil || list.Result.TTL == nil || *list.Result.TTL != 0 || list.Result.Scope != "private" {
		t.Fatalf("tools/list caching hints: %s", body)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(r.message("subscriptions/listen",
		map[string]any{"notifications": map[string]any{"toolsListChanged": true}}, true)))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "subscriptions/listen")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
				events <- strings.TrimSpace(d)
			}
		}
	}()
	next := func() string {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("subscription stream closed (status %d)", res.StatusCode)
			}
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("no event on the subscription stream in 30s")
			return ""
		}
	}
	if ack := next(); !strings.Contains(ack, "notifications/subscriptions/acknowledged") || !strings.Contains(ack, `"toolsListChanged":true`) {
		t.Fatalf("subscription not acknowledged with toolsListChanged: %s", ack)
	}
	e.allow(bob, "catalog", "connector.catalog.read", "")
	if ev := next(); !strings.Contains(ev, string(mcp.MethodNotificationToolsListChanged)) {
		t.Fatalf("want tools/list_changed on the stream, got %s", ev)
	}
}

// modernMeta is the _meta every 2026-07-28 request carries.
func modernMeta() map[string]any {
	return map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28",
		"io.modelcontextprotocol/clientCapabilities": map[string]any{},
		"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "raw", "version": "1"}}
}

// Over stdio at 2026-07-28 notifications are opt-in too: a client that did
// not subscribe gets no tools/list_changed, one that did gets it on its
// subscriptions/listen stream.
func TestModernStdioNotificationsOptIn(t *testing.T) {
	e := newEnv(t)
	bob, tok := e.user("bob", true)
	legacy := e.stdio(tok)
	legacy.initialize()
	quiet := e.stdio(tok)
	quiet.await(quiet.request("tools/list", map[string]any{"_meta": modernMeta()}))
	listening := e.stdio(tok)
	listen := listening.request("subscriptions/listen", map[string]any{"_meta": modernMeta(),
		"notifications": map[string]any{"toolsListChanged": true}})
	if ack, _ := listening.nextMessage(); ack["method"] != "notifications/subscriptions/acknowledged" {
		t.Fatalf("want the subscription acknowledged, got %s", short2(ack))
	}

	e.allow(bob, "catalog", "connector.catalog.read", "")
	for {
		m, ok := legacy.nextMessage()
		if !ok {
			t.Fatal("stdout closed")
		}
		if m["method"] == string(mcp.MethodNotificationToolsListChanged) {
			break
		}
	}
	m, _ := listening.nextMessage()
	if m["method"] != string(mcp.MethodNotificationToolsListChanged) {
		t.Fatalf("subscribed stdio client: want tools/list_changed, got %s", short2(m))
	}
	// Tagged with the subscription, as every message of a listen stream.
	params, _ := m["params"].(map[string]any)
	meta, _ := params["_meta"].(map[string]any)
	if id, _ := meta[mcp.MetaKeySubscriptionID].(float64); int(id) != listen {
		t.Fatalf("subscribed stdio client: tools/list_changed is not tagged with its subscription %d: %s", listen, short2(m))
	}
	for range 2 {
		id := quiet.request("tools/list", map[string]any{"_meta": modernMeta()})
		for {
			m, ok := quiet.nextMessage()
			if !ok {
				t.Fatal("stdout closed")
			}
			if m["method"] != nil {
				t.Fatalf("a 2026-07-28 client that did not subscribe got %s", short2(m))
			}
			if n, _ := m["id"].(float64); int(n) == id {
				break
			}
		}
	}
	listening.notify("notifications/cancelled", map[string]any{"requestId": listen})
}
