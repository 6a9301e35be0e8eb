package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// rpcErrorMessage is a JSON-RPC error response. The id is kept raw so that a
// request whose id could not be used is answered with id null.
type rpcErrorMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcErrorBody    `json:"error"`
}

type rpcErrorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func rpcError(id json.RawMessage, code int, message string) rpcErrorMessage {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	return rpcErrorMessage{JSONRPC: mcp.JSONRPC_VERSION, ID: id, Error: rpcErrorBody{Code: code, Message: message}}
}

// checkRequest answers, in place of the MCP server, a message the protocol
// says is invalid and the server would otherwise mishandle: nil means pass
// it on.
func checkRequest(m wireMessage) any {
	if len(m.ID) > 0 {
		switch c := bytes.TrimSpace(m.ID)[0]; {
		case c == '"', c == '-' || (c >= '0' && c <= '9'):
		default:
			// mcp-go takes "id": null for a notification and answers nothing.
			return rpcError(nil, mcp.INVALID_REQUEST, "invalid request: id must be a string or a number (null is not allowed)")
		}
	}
	if len(m.ID) == 0 {
		return nil
	}
	if !checkedLate[m.Method] {
		if a := paramsProblem(m); a != nil {
			return rpcError(m.ID, a.Code, a.Message)
		}
	}
	switch m.Method {
	case string(mcp.MethodToolsList), string(mcp.MethodPromptsList), string(mcp.MethodResourcesList), string(mcp.MethodResourcesTemplatesList):
		var p struct {
			Cursor *string `json:"cursor"`
		}
		if json.Unmarshal(m.Params, &p) == nil && p.Cursor != nil {
			// A cursor is what the page before returned (base64, as mcp-go
			// and connec encode them); anything else gets an answer in the
			// caller's terms, not a decoder's.
			if b, err := base64.StdEncoding.DecodeString(*p.Cursor); err != nil || len(b) == 0 || len(b) > 2*maxToolName {
				return rpcError(m.ID, mcp.INVALID_PARAMS, "invalid cursor: pass the nextCursor of the page before, as "+m.Method+" returned it")
			}
		}
	}
	return nil
}

// paramsProblem is the answer to m if its params are not of its method's
// shape (mcp-go's own answer to params it cannot decode names Go types),
// or nil.
func paramsProblem(m wireMessage) *rpcAnswer {
	params, ok := paramsOf[m.Method]
	if !ok || len(m.Params) == 0 || string(m.Params) == "null" {
		return nil
	}
	p := params()
	if err := json.Unmarshal(m.Params, p); err != nil {
		return &rpcAnswer{Code: mcp.INVALID_PARAMS, Message: "invalid params: " + shapeError(err, reflect.TypeOf(p))}
	}
	return nil
}

// checkedLate are the methods whose params are checked only once mcp-go
// refused them (invalid params), in place of its answer (see answerSlot):
// tools/call is every call's path, and mcp-go decodes its params into the
// same type, so it refuses exactly what the check would, and a valid call
// is decoded once less.
var checkedLate = map[string]bool{string(mcp.MethodToolsCall): true}

// paramsOf are the params of the methods whose params mcp-go decodes into
// types, as it decodes them.
var paramsOf = map[string]func() any{
	string(mcp.MethodToolsCall):              func() any { return &mcp.CallToolParams{} },
	string(mcp.MethodPromptsGet):             func() any { return &mcp.GetPromptParams{} },
	string(mcp.MethodResourcesRead):          func() any { return &mcp.ReadResourceParams{} },
	string(mcp.MethodResourcesSubscribe):     func() any { return &mcp.SubscribeParams{} },
	string(mcp.MethodResourcesUnsubscribe):   func() any { return &mcp.UnsubscribeParams{} },
	string(mcp.MethodCompletionComplete):     func() any { return &mcp.CompleteParams{} },
	string(mcp.MethodSetLogLevel):            func() any { return &mcp.SetLevelParams{} },
	string(mcp.MethodToolsList):              func() any { return &mcp.PaginatedParams{} },
	string(mcp.MethodPromptsList):            func() any { return &mcp.PaginatedParams{} },
	string(mcp.MethodResourcesList):          func() any { return &mcp.PaginatedParams{} },
	string(mcp.MethodResourcesTemplatesList): func() any { return &mcp.PaginatedParams{} },
}

// shapeError says, in JSON's terms, what is wrong with params (of Go type
// root) that did not decode.
func shapeError(err error, root reflect.Type) string {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || te.Field == "" {
		return "params must be an object of the method's parameters"
	}
	field := te.Field
	if t := fieldType(root, field); t != nil && t.Kind() == reflect.Map && t.Elem() == te.Type {
		field = "each value of " + field // the decoder names the map, not the key
	}
	want := "of another type"
	switch te.Type.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Map, reflect.Struct:
		want = "an object"
	case reflect.Slice, reflect.Array:
		want = "an array"
	case reflect.Bool:
		want = "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16,
		reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		want = "a number"
	}
	return field + " must be " + want
}

// fieldType is the Go type of the field at a decoder's dotted path of JSON
// names in t (nil when it cannot tell).
func fieldType(t reflect.Type, path string) reflect.Type {
	for _, name := range strings.Split(path, ".") {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := jsonField(t, name)
		if !ok {
			return nil
		}
		t = f.Type
	}
	return t
}

// jsonField finds the field JSON calls name in struct t, embedded ones too.
func jsonField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name || tag == "" && f.Name == name {
			return f, true
		}
		if f.Anonymous && tag == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if g, ok := jsonField(ft, name); ok {
					return g, true
				}
			}
		}
	}
	return reflect.StructField{}, false
}

// visibility carries, through one tools/list, whether every visibility
// check could be made: a tool hidden because a check failed is not a tool
// the caller may not use, and the list is then refused as unavailable
// rather than answered short.
type visibility struct{ failed bool }

type visibilityKey struct{}

func withListCheck(ctx context.Context) context.Context {
	return context.WithValue(ctx, visibilityKey{}, &visibility{})
}

func visibilityFailed(ctx context.Context) {
	if v, ok := ctx.Value(visibilityKey{}).(*visibility); ok {
		v.failed = true
	}
}

// listFailure replaces a tools/list answer built while a visibility check
// failed with an error.
func listFailure(ctx context.Context, m wireMessage, resp any) any {
	v, ok := ctx.Value(visibilityKey{}).(*visibility)
	if !ok || !v.failed || m.Method != string(mcp.MethodToolsList) {
		return resp
	}
	return rpcError(m.ID, mcp.INTERNAL_ERROR, "service unavailable: could not decide which tools you may use; try again")
}
