package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
)

// Instance tools: each operation of each connector instance a caller may
// invoke, served as a tool of its own beside the management tools
// (core.InstanceTools names them and decides which a caller sees).
//
//   - tools/list: appendInstanceTools, an mcp-go after-list hook, merges
//     them into mcp-go's answer in name order and cuts the page there.
//     mcp-go's cursor is the last name of the previous page and it answers
//     every management tool after it (no page limit is set), so the merged
//     page continues exactly where the last one ended.
//   - tools/call: the transports translate a call of an instance tool into
//     connector.op.invoke on its instance and operation before mcp-go sees
//     it (translateCall), and the invoke handler answers with the
//     operation's own output (instanceResult).

// listPage bounds a tools/list page: a subject with thousands of instance
// tools pages through them.
const listPage = 200

// maxToolName is the longest tool name the MCP specification recommends;
// a longer instance tool is not served.
const maxToolName = 128

// maxLen is the longest tool name served in style n: the underscore style
// is for hosts that accept at most 64 characters.
func (n ToolNames) maxLen() int {
	if n == UnderscoreNames {
		return 64
	}
	return maxToolName
}

// appendInstanceTools adds the caller's instance tools to a tools/list
// answer and pages the whole.
func (s *Server) appendInstanceTools(ctx context.Context, _ any, req *mcp.ListToolsRequest, res *mcp.ListToolsResult) {
	tools, err := s.svc.InstanceTools(ctx)
	if err != nil {
		visibilityFailed(ctx)
		return
	}
	after, ok := cursorAfter(req.Params.Cursor)
	if !ok {
		return // refused already
	}
	if s.names != DottedNames {
		// Spelled otherwise, the names sort otherwise.
		tools = slices.Clone(tools)
		slices.SortFunc(tools, func(a, b core.InstanceTool) int {
			return strings.Compare(s.names.wireName(a.Name), s.names.wireName(b.Name))
		})
	}
	// Only the tools that can be on this page become definitions: the
	// first listPage after the cursor (the management tools come between),
	// and one more, which tells whether another page follows.
	i, _ := slices.BinarySearchFunc(tools, after, func(t core.InstanceTool, after string) int {
		if s.names.wireName(t.Name) <= after {
			return -1
		}
		return 1
	})
	all := res.Tools
	for _, t := range tools[i:] {
		if len(all) > len(res.Tools)+listPage {
			break
		}
		if t.IsWatch() {
			continue // served as resources/subscribe only
		}
		if wire := s.names.wireName(t.Name); len(wire) <= s.names.maxLen() {
			all = append(all, instanceToolDef(t, wire))
		}
	}
	slices.SortFunc(all, func(a, b mcp.Tool) int { return strings.Compare(a.Name, b.Name) })
	res.NextCursor = ""
	if len(all) > listPage {
		all = all[:listPage]
		res.NextCursor = mcp.Cursor(base64.StdEncoding.EncodeToString([]byte(all[listPage-1].Name)))
	}
	res.Tools = all
}

// cursorAfter is the name a list cursor says the page before ended with
// (mcp-go's encoding): "" for none; false for one that is not a cursor.
func cursorAfter(c mcp.Cursor) (string, bool) {
	if c == "" {
		return "", true
	}
	b, err := base64.StdEncoding.DecodeString(string(c))
	return string(b), err == nil
}

// instanceToolDef is t as an MCP tool: the operation's own schemas (an
// async operation, whose call answers with a run to follow, declares no
// output schema), its kind as annotations, the instance's names in its
// description.
func instanceToolDef(t core.InstanceTool, wire string) mcp.Tool {
	read := t.Op.Kind == "read"
	def := mcp.Tool{
		Name:  wire,
		Title: fmt.Sprintf("%s: %s", t.DisplayName, t.Op.Name),
		Description: fmt.Sprintf("%s On connector instance %q (%s, handle %s, owner %s). Same as connector.op.invoke with "+
			"instance_id %s and operation %s: policy, audit and limits apply; task context in _meta[%q].",
			t.Op.Description, t.DisplayName, t.Type, t.Handle, t.OwnerName, t.InstanceID, t.Op.Name, callctx.MetaKey),
		RawInputSchema: t.Op.Input,
		Annotations: mcp.ToolAnnotation{Title: fmt.Sprintf("%s: %s", t.DisplayName, t.Op.Name), ReadOnlyHint: &read,
			DestructiveHint: ptr(!read), OpenWorldHint: ptr(true)},
	}
	switch {
	case t.Op.ToolResult:
		def.RawOutputSchema = t.Op.ResultSchema // the tool's own, if it has one
	case !t.Op.Async:
		def.RawOutputSchema = t.Op.Output
	}
	return def
}

func ptr[T any](v T) *T { return &v }

// translateCall turns a tools/call of one of the caller's instance tools
// (body, a JSON-RPC request) into connector.op.invoke on its instance and
// operation, and returns the context the call then runs in (it names the
// tool, for the audit row and the answer's shape), the name it was called
// by and the tool it now calls. ok is false for any other message, which
// goes on unchanged.
func (s *Server) translateCall(ctx context.Context, body []byte) (_ []byte, _ context.Context, called, target string, ok bool) {
	m, name, ok := s.requestOf(body, mcp.MethodToolsCall, "name")
	if !ok {
		return nil, nil, "", "", false
	}
	if _, ok := s.tools[name]; ok {
		return nil, nil, "", "", false // a management tool
	}
	t, found, err := s.instanceToolByWire(ctx, name)
	if err != nil || !found {
		// Unknown to this caller (or not decidable now): mcp-go answers
		// "tool not found", and the refusal is audited as for any name.
		return nil, nil, "", "", false
	}
	args := m.Params["arguments"]
	if len(args) == 0 {
		args = json.RawMessage(`{}`)
	}
	var meta map[string]json.RawMessage
	_ = json.Unmarshal(m.Params["_meta"], &meta)
	entry, input := t.Call(args, meta[core.IdempotencyMetaKey])
	target = s.names.wireName(entry)
	m.Params["name"], _ = json.Marshal(target)
	m.Params["arguments"] = input
	out, err := json.Marshal(m)
	if err != nil {
		return nil, nil, "", "", false
	}
	return out, core.AsInstanceTool(ctx, t), name, target, true
}

// rpcRequest is a JSON-RPC request as a transport translates it.
type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  map[string]json.RawMessage
}

// requestOf reads body as a request of method whose params name a string
// under key (a tool's or prompt's name, a resource's URI): what the
// translations start from, where instance tools are served.
func (s *Server) requestOf(body []byte, method mcp.MCPMethod, key string) (m rpcRequest, value string, ok bool) {
	if !s.sets.instances() || !bytes.Contains(body, []byte(`"`+string(method)+`"`)) || json.Unmarshal(body, &m) != nil ||
		m.Method != string(method) {
		return m, "", false
	}
	if json.Unmarshal(m.Params[key], &value) != nil || value == "" {
		return m, "", false
	}
	return m, value, true
}

// instanceToolByWire finds the caller's instance tool served as wire.
func (s *Server) instanceToolByWire(ctx context.Context, wire string) (core.InstanceTool, bool, error) {
	if s.names == DottedNames {
		return s.svc.InstanceToolNamed(ctx, wire)
	}
	tools, err := s.svc.InstanceToolsWithHandles(ctx, core.HandlesIn(wire, "_"))
	if err != nil {
		return core.InstanceTool{}, false, err
	}
	for _, t := range tools {
		if s.names.wireName(t.Name) == wire {
			return t, true, nil
		}
	}
	return core.InstanceTool{}, false, nil
}

// instanceResult is the answer to a call of an instance tool: the
// operation's output as the structured content (valid against the tool's
// output schema) and as text, the run in _meta. An async operation's
// answer is the run to follow (connector.run.get), as from invoke.
func instanceResult(v any, err error, t core.InstanceTool) *mcp.CallToolResult {
	r, ok := v.(core.InvokeResult)
	if err != nil || !ok || t.Op.Async || len(r.Output) == 0 {
		return encode(v, err)
	}
	res := mcp.NewToolResultStructured(r.Output, string(r.Output))
	if t.Op.ToolResult {
		if tr, ok := toolResult(r.Output); ok {
			res = tr // the tool's own answer, as it gave it
		}
	}
	res.Meta = mcp.NewMetaFromMap(map[string]any{runMetaKey: map[string]any{"run_id": r.RunID, "status": r.Status,
		"duration_ms": r.DurationMS, "truncated": r.Truncated, "replayed": r.Replayed}})
	return res
}

// toolResult rebuilds an MCP tool's result from an operation's output of
// the ToolResult shape.
func toolResult(out json.RawMessage) (*mcp.CallToolResult, bool) {
	var o struct {
		Content       json.RawMessage   `json:"content"`
		Structured    json.RawMessage   `json:"structured_content"`
		IsError       bool              `json:"is_error"`
		InputRequests mcp.InputRequests `json:"input_requests"`
		RequestState  string            `json:"request_state"`
	}
	if json.Unmarshal(out, &o) != nil {
		return nil, false
	}
	if len(o.InputRequests) > 0 || o.RequestState != "" {
		// The tool needs its user's input first: its questions, as the
		// server asked them (the state is sealed by the caller of this).
		return &mcp.CallToolResult{Result: mcp.Result{ResultType: mcp.ResultTypeInputRequired},
			MultiRoundTripResult: mcp.MultiRoundTripResult{InputRequests: o.InputRequests, RequestState: o.RequestState}}, true
	}
	raw := map[string]any{"content": o.Content, "isError": o.IsError}
	if len(o.Structured) > 0 && string(o.Structured) != "null" {
		raw["structuredContent"] = o.Structured
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, false
	}
	msg := json.RawMessage(b)
	res, err := mcp.ParseCallToolResult(&msg)
	if err != nil {
		return nil, false
	}
	return res, true
}

// runMetaKey names the run of an instance tool's call in its result's _meta.
const runMetaKey = "connec.dev/run"
