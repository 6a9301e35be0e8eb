// Package mcp is connec's MCP surface: the tool inventory (names, typed input
// and output schemas, which policy action each needs) and the translation of
// tool calls to core.Service methods and back. The inventory knows
// nothing of transports; transport.go and stdio.go serve the same server
// over stdio, SSE and streamable HTTP.
package mcp

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// Tool is one entry of the inventory.
type Tool struct {
	Def mcp.Tool
	// Actions lists the policy actions any of which may make the tool usable;
	// a subject holding none of them does not see the tool.
	Actions []string
	// Resource, when the tool acts on one fixed resource (catalog, policy),
	// narrows visibility to rules that reach it.
	Resource string
	// Handle decodes raw arguments and calls the service.
	Handle func(ctx context.Context, svc *core.Service, raw json.RawMessage) (any, error)
}

// about describes a tool for its definition.
type about struct {
	name, description string
	annotations       mcp.ToolAnnotation
	// actions decide visibility (any of them); refuseAs is the action a
	// refused call (bad arguments) is audited under.
	actions  []string
	refuseAs string
	resource string
}

// tool declares a tool whose arguments are In and whose result is Out: both
// schemas are generated from those types, the arguments are decoded strictly
// into In (a call whose arguments do not decode is refused, and audited,
// before it reaches the service), and the result is what fn returns.
func tool[In, Out any](a about, fn func(ctx context.Context, svc *core.Service, in In) (Out, error)) Tool {
	def := mcp.Tool{
		Name:            a.name,
		Description:     a.description,
		RawInputSchema:  mustInputSchema[In](),
		RawOutputSchema: mustSchema[envelope[Out]](),
		Annotations:     a.annotations,
	}
	args := compileArguments(def.RawInputSchema)
	return Tool{
		Def:      def,
		Actions:  a.actions,
		Resource: a.resource,
		Handle: func(ctx context.Context, svc *core.Service, raw json.RawMessage) (any, error) {
			var in In
			if err := args.decode(raw, &in); err != nil {
				return nil, svc.Refuse(ctx, a.name, a.refuseAs, err)
			}
			return fn(ctx, svc, in)
		},
	}
}

// envelope is the structured content of every tool result: status ok with
// the result, or status error with the error. Only its schema uses Out; the
// value sent carries the result as returned.
type envelope[Out any] struct {
	Status string        `json:"status" schema:"enum=ok|error"`
	Result Out           `json:"result,omitzero" jsonschema:"The tool's result (status ok)."`
	Error  *fault.Public `json:"error,omitempty" jsonschema:"What went wrong (status error): a stable type, a message, details."`
}

// Result is the structured content of every tool result.
type Result struct {
	Status string        `json:"status"`
	Result any           `json:"result,omitempty"`
	Error  *fault.Public `json:"error,omitempty"`
}

func readOnly(title string) mcp.ToolAnnotation {
	return mcp.ToolAnnotation{Title: title, ReadOnlyHint: mcp.ToBoolPtr(true), OpenWorldHint: mcp.ToBoolPtr(false)}
}

func mutating(title string, destructive, idempotent bool) mcp.ToolAnnotation {
	return mcp.ToolAnnotation{Title: title, ReadOnlyHint: mcp.ToBoolPtr(false), DestructiveHint: mcp.ToBoolPtr(destructive),
		IdempotentHint: mcp.ToBoolPtr(idempotent), OpenWorldHint: mcp.ToBoolPtr(false)}
}

// encode builds the tool result: the structured envelope, and the same JSON
// once as text for clients that read only text content.
func encode(v any, err error) *mcp.CallToolResult {
	r := Result{Status: "ok", Result: v}
	if err != nil {
		pub := fault.PublicOf(err)
		r = Result{Status: "error", Error: &pub}
	}
	text, _ := json.Marshal(r)
	res := mcp.NewToolResultStructured(json.RawMessage(text), string(text))
	res.IsError = err != nil
	return res
}

// taskContext reads the task context from the request's _meta and the
// task_id argument; both may be given if they agree.
func taskContext(req mcp.CallToolRequest, raw json.RawMessage) (callctx.TaskContext, error) {
	var fromMeta callctx.TaskContext
	if req.Params.Meta != nil && req.Params.Meta.AdditionalFields != nil {
		if v, ok := req.Params.Meta.AdditionalFields[callctx.MetaKey]; ok {
			m, ok := v.(map[string]any)
			if !ok {
				return callctx.TaskContext{}, fault.Invalid("_meta", "_meta[%q] must be an object", callctx.MetaKey)
			}
			t, err := callctx.FromMap(m, false)
			if err != nil {
				return callctx.TaskContext{}, fault.Invalid("_meta."+fieldOf(err), "task context: %v", err)
			}
			fromMeta = t
		}
	}
	var a struct {
		TaskID any `json:"task_id"`
	}
	_ = json.Unmarshal(raw, &a)
	var fromArgs callctx.TaskContext
	if a.TaskID != nil {
		s, ok := a.TaskID.(string)
		if !ok {
			return callctx.TaskContext{}, fault.Invalid("task_id", "task_id must be a uuid string")
		}
		t, err := (callctx.TaskContext{TaskID: s}).Validate()
		if err != nil {
			return callctx.TaskContext{}, fault.Invalid("task_id", "task_id must be a uuid")
		}
		fromArgs = t
	}
	t, err := callctx.Merge(fromMeta, fromArgs)
	if err != nil {
		return callctx.TaskContext{}, fault.Invalid(fieldOf(err), "task context: %v", err)
	}
	return t, nil
}

func fieldOf(err error) string {
	var fe *callctx.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// handler turns an inventory entry into an mcp-go handler. Bad input is a
// tool error result (IsError); Go errors are reserved for failures of the
// protocol itself and never carry internal detail.
func handler(svc *core.Service, t Tool) server.ToolHandlerFunc {
	refuseAs := t.Actions[0]
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ctx = callctx.WithRequestID(ctx, callctx.NewRequestID())
		raw := req.Params.RawArguments
		if len(raw) == 0 && req.Params.Arguments != nil {
			b, err := json.Marshal(req.Params.Arguments)
			if err != nil {
				return encode(nil, svc.Refuse(ctx, t.Def.Name, refuseAs, fault.Invalid("", "arguments must be a JSON object"))), nil
			}
			raw = b
		}
		task, err := taskContext(req, raw)
		if err != nil {
			return encode(nil, svc.Refuse(ctx, t.Def.Name, refuseAs, err)), nil
		}
		ctx = callctx.WithTask(ctx, task)
		v, err := t.Handle(ctx, svc, raw)
		return encode(v, err), nil
	}
}
