// Package mcp is connec's MCP surface: it serves the core's operation
// catalog as MCP tools (definitions translated from the catalog's entries,
// calls translated to the entries' use cases and back) over stdio, SSE and
// streamable HTTP. It names no policy action and holds no rule of its own.
package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// Result is the structured content of every tool result.
type Result struct {
	Status string        `json:"status"`
	Result any           `json:"result,omitempty"`
	Error  *fault.Public `json:"error,omitempty"`
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
	fromMeta, err := metaTaskContext(req.Params.Meta)
	if err != nil {
		return callctx.TaskContext{}, err
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

// metaTaskContext is the task context a request carries in its _meta.
func metaTaskContext(meta *mcp.Meta) (callctx.TaskContext, error) {
	if meta == nil || meta.AdditionalFields == nil {
		return callctx.TaskContext{}, nil
	}
	v, ok := meta.AdditionalFields[callctx.MetaKey]
	if !ok {
		return callctx.TaskContext{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return callctx.TaskContext{}, fault.Invalid("_meta", "_meta[%q] must be an object", callctx.MetaKey)
	}
	t, err := callctx.FromMap(m, false)
	if err != nil {
		return callctx.TaskContext{}, fault.Invalid("_meta."+fieldOf(err), "task context: %v", err)
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
func handler(svc *core.Service, t Tool, pending *pendingCalls) server.ToolHandlerFunc {
	h := callHandler(svc, t, pending)
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, err := h(ctx, req)
		if a, ok := answerSlotOf(ctx).answer(); ok && err == nil {
			// The call's answer is a JSON-RPC error of its own (an
			// upstream server's refusal the spec makes the caller's).
			return nil, errors.New(a.Message)
		}
		return res, err
	}
}

// callHandler is handler before the call's answer is chosen.
func callHandler(svc *core.Service, t Tool, pending *pendingCalls) server.ToolHandlerFunc {
	e := t.Entry
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ctx = callctx.WithRequestID(ctx, callctx.NewRequestID())
		raw := req.Params.RawArguments
		if len(raw) == 0 && req.Params.Arguments != nil {
			b, err := json.Marshal(req.Params.Arguments)
			if err != nil {
				return encode(nil, e.Refuse(ctx, svc, fault.Invalid("", "arguments must be a JSON object"))), nil
			}
			raw = b
		}
		task, err := taskContext(req, raw)
		if err != nil {
			return encode(nil, e.Refuse(ctx, svc, err)), nil
		}
		ctx = callctx.WithTask(ctx, task)
		ctx = withProgress(ctx, req)
		ctx = withLog(ctx)
		call := func(ctx context.Context) *mcp.CallToolResult {
			defer awaitNotifications(ctx)
			v, err := e.Call(ctx, svc, withoutTaskID(raw))
			if code, details, ok := fault.MCPCode(err); ok && code == mcp.MISSING_REQUIRED_CLIENT_CAPABILITY {
				required, _ := details[fault.DetailRequiredCapabilities].(map[string]any)
				if required == nil {
					required = map[string]any{}
				}
				_ = answerWith(ctx, rpcAnswer{Code: code, Message: fault.PublicOf(err).Message,
					Data: map[string]any{"requiredCapabilities": required}})
			}
			if t, ok := core.InstanceToolOf(ctx); ok {
				return instanceResult(v, err, t)
			}
			return encode(v, err)
		}
		if e.MayAsk && server.IsModernRequest(ctx) {
			// 2026-07-28: the user is asked by input_required round trips.
			tool := e.Name
			if it, ok := core.InstanceToolOf(ctx); ok {
				tool = it.Name
			}
			var owner callctx.Subject
			if p, ok := callctx.PrincipalFrom(ctx); ok {
				owner = p.Subject
			}
			if isPendingState(req.Params.RequestState) {
				res, err := pending.resume(ctx, tool, req.Params.MultiRoundTripParams)
				return res, roundRefusal(ctx, err)
			}
			rctx, err := pending.upstreamRound(ctx, owner, tool, req.Params.MultiRoundTripParams)
			if err != nil {
				return nil, roundRefusal(ctx, err)
			}
			ctx := rctx
			sealed := func(ctx context.Context) *mcp.CallToolResult {
				r := call(ctx)
				if r.NeedsInput() {
					r.RequestState = pending.seal(owner, tool, r.RequestState)
				}
				return r
			}
			if canElicit(ctx) {
				return pending.start(ctx, tool, sealed), nil
			}
			return sealed(ctx), nil
		}
		if !e.MayAsk {
			return call(ctx), nil
		}
		return call(withElicit(ctx)), nil
	}
}

// withProgress passes the progress of the call's operation to the client
// as notifications/progress, when the call asked for it (a progressToken
// in _meta).
func withProgress(ctx context.Context, req mcp.CallToolRequest) context.Context {
	if req.Params.Meta == nil || req.Params.Meta.ProgressToken == nil {
		return ctx
	}
	token := req.Params.Meta.ProgressToken
	srv := server.ServerFromContext(ctx)
	if srv == nil {
		return ctx
	}
	return core.WithProgress(ctx, func(progress, total float64, message string) {
		params := map[string]any{"progressToken": token, "progress": progress}
		if total > 0 {
			params["total"] = total
		}
		if message != "" {
			params["message"] = message
		}
		_ = srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), params)
	})
}

// notificationDrain bounds how long a call's answer waits for the
// notifications it sent to leave.
const notificationDrain = 200 * time.Millisecond

// awaitNotifications waits, briefly, until the notifications the call sent
// (progress, log messages) have left the session's queue: mcp-go's HTTP
// transport drops those still queued when the answer is written, so a
// call's last messages would be lost whenever the machine is busy.
func awaitNotifications(ctx context.Context) {
	session := server.ClientSessionFromContext(ctx)
	if session == nil {
		return
	}
	ch := session.NotificationChannel()
	for deadline := time.Now().Add(notificationDrain); len(ch) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// withLog passes the log messages of the call's operation to the client as
// notifications/message, as far as the level it asked for admits (the
// session's, or over 2026-07-28 the request's own).
func withLog(ctx context.Context) context.Context {
	srv := server.ServerFromContext(ctx)
	if srv == nil || server.ClientSessionFromContext(ctx) == nil {
		return ctx
	}
	if info := server.RequestProtocolInfoFromContext(ctx); info != nil && info.Modern && info.LogLevel == "" {
		return ctx // the request asked for none
	}
	return core.WithLog(ctx, func(level, logger string, data json.RawMessage) {
		n := mcp.NewLoggingMessageNotification(mcp.LoggingLevel(level), logger, data)
		_ = srv.SendLogMessageToClient(ctx, n)
	})
}

// withElicit lets the call's operation ask the client's user
// (elicitation/create on this session); mcp-go refuses when the client
// declared no elicitation or the session cannot carry a request.
func withElicit(ctx context.Context) context.Context {
	srv := server.ServerFromContext(ctx)
	if srv == nil || server.ClientSessionFromContext(ctx) == nil {
		return ctx
	}
	return core.WithElicit(ctx, func(rctx context.Context, request json.RawMessage) (json.RawMessage, error) {
		var r mcp.ElicitationRequest
		if err := json.Unmarshal(request, &r.Params); err != nil {
			return nil, fault.Invalid("", "the elicitation request is not one")
		}
		res, err := srv.RequestElicitation(ctx, r)
		if err != nil {
			return nil, fault.Wrap(fault.Unavailable, err, "the client cannot be asked")
		}
		return json.Marshal(res)
	})
}

// withoutTaskID removes the task_id argument, which is the call's task
// context (read by taskContext), not an input of the operation.
func withoutTaskID(raw json.RawMessage) json.RawMessage {
	if !bytes.Contains(raw, []byte(`"task_id"`)) {
		return raw
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw // not an object: the operation's decoder says so
	}
	delete(m, "task_id")
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}
