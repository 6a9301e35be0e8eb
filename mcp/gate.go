package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"

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
	if m.Method == string(mcp.MethodToolsList) && len(m.ID) > 0 {
		var p struct {
			Cursor *string `json:"cursor"`
		}
		if json.Unmarshal(m.Params, &p) == nil && p.Cursor != nil {
			// A cursor is the last tool name of the page before, as
			// mcp-go encodes it; anything else gets an answer in the
			// caller's terms, not a decoder's.
			if b, err := base64.StdEncoding.DecodeString(*p.Cursor); err != nil || len(b) == 0 || len(b) > 2*maxToolName {
				return rpcError(m.ID, mcp.INVALID_PARAMS, "invalid cursor: pass the nextCursor of the page before, as tools/list returned it")
			}
		}
	}
	return nil
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
