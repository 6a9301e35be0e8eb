package mcp_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	js "github.com/santhosh-tekuri/jsonschema/v6"

	cmcp "github.com/connec/connec/mcp"
)

// The protocol revisions connec serves, each checked against the spec's own
// published schema (vendored in testdata/mcp-schema, see its README).
var revisions = []string{"2025-11-25", "2026-07-28"}

var (
	specOnce     sync.Mutex
	specCompiled = map[string]*js.Schema{}
)

// specDef compiles one definition of a revision's published schema, or the
// JSON Schema 2020-12 meta-schema when rev is "meta".
func specDef(t *testing.T, rev, def string) *js.Schema {
	t.Helper()
	specOnce.Lock()
	defer specOnce.Unlock()
	key := rev + "#" + def
	if s, ok := specCompiled[key]; ok {
		return s
	}
	c := js.NewCompiler()
	c.DefaultDraft(js.Draft2020)
	loc := "https://json-schema.org/draft/2020-12/schema"
	if rev != "meta" {
		raw, err := os.ReadFile(filepath.Join("testdata", "mcp-schema", rev+".schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := js.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		loc = "https://modelcontextprotocol.io/schema/" + rev + ".json"
		if err := c.AddResource(loc, doc); err != nil {
			t.Fatal(err)
		}
		loc += "#/$defs/" + def
	}
	s, err := c.Compile(loc)
	if err != nil {
		t.Fatalf("compile %s: %v", key, err)
	}
	specCompiled[key] = s
	return s
}

// conforms reports how doc breaks the definition, or nil.
func conforms(t *testing.T, rev, def string, doc []byte) error {
	t.Helper()
	v, err := js.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return specDef(t, rev, def).Validate(v)
}

// rawMCP speaks streamable HTTP by hand, so what is checked is exactly what
// connec writes on the wire, not what a client library makes of it.
type rawMCP struct {
	t       *testing.T
	url     string
	token   string
	rev     string
	session string
	next    int
	// caps are the client capabilities a 2026-07-28 request declares
	// (none when nil).
	caps map[string]any
}

// openRaw starts a session at revision rev: an initialize handshake for the
// 2025 revisions; nothing for 2026-07-28, which has none.
func (e *env) openRaw(token, rev string) *rawMCP {
	r := &rawMCP{t: e.t, url: e.http.URL + "/mcp", token: token, rev: rev}
	if rev == "2026-07-28" {
		return r
	}
	status, h, body := r.send("initialize", map[string]any{"protocolVersion": rev, "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "raw", "version": "1"}})
	if status != http.StatusOK {
		e.t.Fatalf("initialize: %d %s", status, body)
	}
	r.session = h.Get("Mcp-Session-Id")
	r.notify("notifications/initialized", nil)
	return r
}

func (r *rawMCP) message(method string, params map[string]any, id bool) []byte {
	msg := map[string]any{"jsonrpc": "2.0", "method": method}
	if r.rev == "2026-07-28" {
		if params == nil {
			params = map[string]any{}
		}
		meta, _ := params["_meta"].(map[string]any)
		if meta == nil {
			meta = map[string]any{}
		}
		meta["io.modelcontextprotocol/protocolVersion"] = r.rev
		caps := r.caps
		if caps == nil {
			caps = map[string]any{}
		}
		meta["io.modelcontextprotocol/clientCapabilities"] = caps
		meta["io.modelcontextprotocol/clientInfo"] = map[string]any{"name": "raw", "version": "1"}
		params["_meta"] = meta
	}
	if params != nil {
		msg["params"] = params
	}
	if id {
		r.next++
		msg["id"] = r.next
	}
	b, _ := json.Marshal(msg)
	return b
}

func (r *rawMCP) post(body []byte, method, name string) (int, http.Header, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+r.token)
	if r.session != "" {
		req.Header.Set("Mcp-Session-Id", r.session)
	}
	if r.rev != "" && method != "initialize" {
		req.Header.Set("MCP-Protocol-Version", r.rev)
	}
	if r.rev == "2026-07-28" {
		req.Header.Set("Mcp-Method", method)
		if name != "" {
			req.Header.Set("Mcp-Name", name)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("%s: %v", method, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		raw = lastSSEData(raw)
	}
	return res.StatusCode, res.Header, raw
}

// send posts a request and returns the JSON-RPC response.
func (r *rawMCP) send(method string, params map[string]any) (int, http.Header, []byte) {
	r.t.Helper()
	name, _ := params["name"].(string)
	if uri, ok := params["uri"].(string); ok && name == "" {
		name = uri // resources/read names its resource in Mcp-Name
	}
	return r.post(r.message(method, params, true), method, name)
}

func (r *rawMCP) notify(method string, params map[string]any) int {
	r.t.Helper()
	status, _, _ := r.post(r.message(method, params, false), method, "")
	return status
}

// lastSSEData returns the data of the last event of an SSE body: the
// response, after any notifications.
func lastSSEData(b []byte) []byte {
	var last, cur []byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("data:")):
			cur = append(cur, bytes.TrimSpace(line[5:])...)
		case len(line) == 0 && cur != nil:
			last, cur = cur, nil
		}
	}
	if cur != nil {
		last = cur
	}
	return last
}

// TestToolsListConformsToSpec checks connec's whole tools/list answer, at
// each revision, against the spec's published schema, and every tool's
// input and output schema against the JSON Schema 2020-12 meta-schema: for a
// subject that sees every tool and for one that sees a few.
func TestToolsListConformsToSpec(t *testing.T) {
	e := newEnv(t)
	root, rootTok := e.user("root", true)
	e.allow(root, "**", "*", "")
	_, bobTok := e.user("bob", false)
	all := len(cmcp.Inventory())
	for _, rev := range revisions {
		for _, who := range []struct {
			name, token string
			sees        func(n int) bool
		}{
			{"every-tool", rootTok, func(n int) bool { return n == all }},
			{"a-few-tools", bobTok, func(n int) bool { return n > 0 && n < all }},
		} {
			t.Run(rev+"/"+who.name, func(t *testing.T) {
				r := e.openRaw(who.token, rev)
				status, _, body := r.send("tools/list", nil)
				if status != http.StatusOK {
					t.Fatalf("tools/list: %d %s", status, body)
				}
				if err := conforms(t, rev, "JSONRPCResultResponse", body); err != nil {
					t.Fatalf("tools/list response breaks the %s JSONRPCResultResponse schema: %v", rev, err)
				}
				var msg struct {
					Result json.RawMessage `json:"result"`
				}
				if err := json.Unmarshal(body, &msg); err != nil {
					t.Fatal(err)
				}
				if err := conforms(t, rev, "ListToolsResult", msg.Result); err != nil {
					t.Fatalf("tools/list result breaks the %s ListToolsResult schema: %v", rev, err)
				}
				var list struct {
					Tools []struct {
						Name         string          `json:"name"`
						InputSchema  json.RawMessage `json:"inputSchema"`
						OutputSchema json.RawMessage `json:"outputSchema"`
					} `json:"tools"`
				}
				if err := json.Unmarshal(msg.Result, &list); err != nil {
					t.Fatal(err)
				}
				if !who.sees(len(list.Tools)) {
					t.Fatalf("%s sees %d of %d tools", who.name, len(list.Tools), all)
				}
				for _, tool := range list.Tools {
					if err := conforms(t, "meta", "", tool.InputSchema); err != nil {
						t.Errorf("%s: inputSchema is not a valid JSON Schema 2020-12: %v", tool.Name, err)
					}
					if len(tool.OutputSchema) == 0 {
						t.Errorf("%s declares no outputSchema", tool.Name)
						continue
					}
					if err := conforms(t, "meta", "", tool.OutputSchema); err != nil {
						t.Errorf("%s: outputSchema is not a valid JSON Schema 2020-12: %v", tool.Name, err)
					}
				}
			})
		}
	}
}
