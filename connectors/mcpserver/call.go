package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
)

// maxInputRounds bounds a tool that keeps asking for input within one call.
const maxInputRounds = 10

// cancelNotice bounds telling the server a call was cancelled.
const cancelNotice = 5 * time.Second

// callTool calls tool on c for inv. Over 2026-07-28 a tool that needs its
// user's input answers input_required (SEP-2322) instead of asking within
// the call: connec hands the questions back, under the server's own ids and
// state, to a caller that takes them (inv.Input.Passthrough); otherwise it
// asks them through inv.Elicit and calls again with the answers.
func callTool(ctx context.Context, c *client.Client, tool *ToolRecord, inv connectors.Invocation, token string) (json.RawMessage, error) {
	return inputRounds(ctx, inv, "tool", func(round mcp.MultiRoundTripParams) (json.RawMessage, *mcp.MultiRoundTripResult, error) {
		res, err := callOnce(ctx, c, tool, inv, token, round)
		if err != nil {
			return nil, nil, err
		}
		if res.NeedsInput() {
			return nil, &res.MultiRoundTripResult, nil
		}
		out, err := resultJSON(res)
		return out, nil, err
	}, func(q mcp.MultiRoundTripResult) map[string]any {
		return map[string]any{"content": []any{}, "is_error": false}
	})
}

// inputRounds runs a request that may answer input_required (SEP-2322,
// over 2026-07-28): once sends it with a round's answers and state and
// returns its result as the operation's output, or its questions. connec
// hands the questions back, under the server's own ids and state, to a
// caller that takes them (inv.Input.Passthrough), as the output shape's
// fields plus input_requests and request_state; otherwise it asks them
// through inv.Elicit and sends the request again with the answers.
func inputRounds(ctx context.Context, inv connectors.Invocation, what string,
	once func(round mcp.MultiRoundTripParams) (json.RawMessage, *mcp.MultiRoundTripResult, error),
	shape func(mcp.MultiRoundTripResult) map[string]any) (json.RawMessage, error) {
	var round mcp.MultiRoundTripParams
	if in := inv.Input; in != nil {
		round.RequestState = in.State // the server may have sent none
		if len(in.Responses) > 0 && string(in.Responses) != "null" {
			if err := json.Unmarshal(in.Responses, &round.InputResponses); err != nil {
				return nil, fault.Invalid("inputResponses", "inputResponses must be an object of answers by request id")
			}
		}
	}
	for n := 0; n < maxInputRounds; n++ {
		out, q, err := once(round)
		if err != nil || q == nil {
			return out, err
		}
		for _, r := range q.InputRequests {
			if r.Method == mcp.MethodSamplingCreateMessage {
				return nil, fault.New(fault.Permanent, "the %s asks to sample the caller's model, which connec does not pass on", what).
					WithDetails(map[string]any{"reason": "sampling_refused"})
			}
		}
		if inv.Input != nil && inv.Input.Passthrough {
			m := shape(*q)
			m["input_requests"], m["request_state"] = q.InputRequests, q.RequestState
			b, err := json.Marshal(m)
			if err != nil {
				return nil, fault.Wrap(fault.Permanent, err, "the MCP server's questions cannot be encoded")
			}
			return b, nil
		}
		answers, err := answerInCall(ctx, inv, q.InputRequests)
		if err != nil {
			return nil, err
		}
		round = mcp.MultiRoundTripParams{InputResponses: answers, RequestState: q.RequestState}
	}
	return nil, fault.New(fault.Permanent, "the %s kept asking for input (%d rounds)", what, maxInputRounds)
}

// answerInCall asks the caller what the tool asks, within the call.
func answerInCall(ctx context.Context, inv connectors.Invocation, requests mcp.InputRequests) (mcp.InputResponses, error) {
	answers := mcp.InputResponses{}
	for id, r := range requests {
		var raw json.RawMessage
		switch r.Method {
		case mcp.MethodElicitationCreate:
			if inv.Elicit == nil || r.Elicitation == nil {
				return nil, fault.New(fault.Permanent, "the tool needs its user's input, and the caller's client cannot be asked").
					WithDetails(map[string]any{"reason": "input_unavailable"})
			}
			params, err := json.Marshal(r.Elicitation)
			if err != nil {
				return nil, fault.Wrap(fault.Permanent, err, "the tool's question cannot be read")
			}
			if raw, err = inv.Elicit(ctx, params); err != nil {
				return nil, err
			}
		case mcp.MethodListRoots:
			// The server runs elsewhere: the caller's roots are not its.
			raw = json.RawMessage(`{"roots":[]}`)
		default:
			return nil, fault.New(fault.Permanent, "the tool asks for %s, which connec does not pass on", r.Method)
		}
		var ans mcp.InputResponse
		if err := json.Unmarshal(raw, &ans); err != nil {
			return nil, fault.Wrap(fault.Permanent, err, "the answer cannot be read")
		}
		answers[id] = ans
	}
	return answers, nil
}

// callOnce sends one tools/call as the session's revision frames it and
// returns the result as sent (input_required included, which mcp-go's own
// loop would answer without the server's ids).
func callOnce(ctx context.Context, c *client.Client, tool *ToolRecord, inv connectors.Invocation, token string, round mcp.MultiRoundTripParams) (*mcp.CallToolResult, error) {
	// The arguments go as the caller wrote them: decoded into Go values,
	// an integer past 2^53 would lose digits.
	args := bytes.TrimSpace(inv.Args)
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage(`{}`)
	} else if !json.Valid(args) || args[0] != '{' {
		return nil, pinned{fault.Invalid("arguments", "arguments must be a JSON object")}
	}
	params := map[string]json.RawMessage{"arguments": args}
	params["name"], _ = json.Marshal(tool.Tool)
	meta := map[string]any{}
	if inv.Progress != nil {
		meta["progressToken"] = token
	}
	if inv.Log != nil && mcp.IsModernProtocol(c.ProtocolVersion()) {
		meta[mcp.MetaKeyLogLevel] = mcp.LoggingLevelDebug // the caller's level filters
	}
	if len(meta) > 0 {
		params["_meta"], _ = json.Marshal(meta)
	}
	if len(round.InputResponses) > 0 {
		b, err := json.Marshal(round.InputResponses)
		if err != nil {
			return nil, pinned{fault.Invalid("inputResponses", "the answers cannot be encoded")}
		}
		params["inputResponses"] = b
	}
	if round.RequestState != "" {
		params["requestState"], _ = json.Marshal(round.RequestState)
	}
	rpc, err := frame(c, mcp.MethodToolsCall, params)
	if err != nil {
		return nil, pinned{fault.Wrap(fault.Permanent, err, "the call cannot be encoded")}
	}
	modern := mcp.IsModernProtocol(c.ProtocolVersion())
	id := rpc.ID
	resp, err := c.GetTransport().SendRequest(ctx, rpc)
	if err != nil {
		if ctx.Err() != nil && !modern {
			// Over 2025-11-25 a request is cancelled by saying so (over
			// 2026-07-28, ending its stream is the cancellation).
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelNotice)
			_ = c.GetTransport().SendNotification(cctx, mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION,
				Notification: mcp.Notification{Method: string(mcp.MethodNotificationCancelled),
					Params: mcp.NotificationParams{AdditionalFields: map[string]any{"requestId": id, "reason": "the caller cancelled"}}}})
			cancel()
		}
		return nil, wrapTerminated(err)
	}
	if resp.Error != nil {
		return nil, refusal(fault.New(fault.Permanent, "the MCP server refused the call: %s", resp.Error.Message), resp.Error.Code, resp.Error.Data)
	}
	var res mcp.CallToolResult
	if err := json.Unmarshal(resp.Result, &res); err != nil {
		return nil, fault.Wrap(fault.Permanent, err, "the MCP server's result is not a tool result")
	}
	return &res, nil
}

// refusal is e, a server's refusal of a request with code and data,
// carrying the code where the MCP spec makes it the caller's own answer:
// the server requires a client capability connec did not declare, and
// connec declares what it can serve for this caller (elicitation when the
// caller takes questions, never sampling). The capabilities required go
// with it as the spec's error data has them (requiredCapabilities, an
// object; from mcp-go's {"capability": name} if that is what came).
func refusal(e *fault.Error, code int, data any) *fault.Error {
	if code != mcp.MISSING_REQUIRED_CLIENT_CAPABILITY {
		return e
	}
	required := map[string]any{}
	if d, ok := data.(map[string]any); ok {
		if r, ok := d["requiredCapabilities"].(map[string]any); ok {
			required = r
		} else if name, ok := d["capability"].(string); ok && name != "" {
			required[name] = map[string]any{}
		}
	}
	return e.WithDetails(map[string]any{fault.DetailMCPCode: code, fault.DetailRequiredCapabilities: required})
}

// requestIDs numbers the requests connec sends itself: ids of their own,
// never reused (mcp-go's client numbers its requests from 1).
var requestIDs atomic.Int64

func init() { requestIDs.Store(1 << 40) }

// frame is a request connec sends itself, framed as the session's revision
// asks: over 2026-07-28 every request says who asks and what it can do
// (_meta) and carries the standard headers. params stay raw JSON, so
// numbers keep every digit.
func frame(c *client.Client, method mcp.MCPMethod, params map[string]json.RawMessage) (transport.JSONRPCRequest, error) {
	req := transport.JSONRPCRequest{JSONRPC: mcp.JSONRPC_VERSION, ID: mcp.NewRequestId(requestIDs.Add(1)), Method: string(method)}
	v := c.ProtocolVersion()
	modern := mcp.IsModernProtocol(v)
	if modern {
		meta := map[string]json.RawMessage{}
		if raw, ok := params["_meta"]; ok {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return req, err
			}
		}
		for k, val := range map[string]any{mcp.MetaKeyProtocolVersion: v, mcp.MetaKeyClientInfo: clientInfo,
			mcp.MetaKeyClientCapabilities: c.GetClientCapabilities()} {
			b, err := json.Marshal(val)
			if err != nil {
				return req, err
			}
			meta[k] = b
		}
		b, err := json.Marshal(meta)
		if err != nil {
			return req, err
		}
		params["_meta"] = b
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return req, err
	}
	req.Params = json.RawMessage(raw)
	if modern {
		req.Header = http.Header{}
		for k, val := range mcp.StandardHeaders(v, method, raw) {
			req.Header.Set(k, val)
		}
	}
	return req, nil
}
