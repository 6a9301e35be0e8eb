package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
)

// mcp-go v1.2.1 answers every error a handler returns as -32603 (internal
// error), but some answers the spec defines carry a code of their own: a
// resource not found (-32002, or -32602 from 2026-07-28, with data.uri),
// a client capability the server requires (-32021). A handler that must
// answer so leaves the answer in its request's slot (answerWith); the
// transport that carried the request puts it in place of mcp-go's.

// answersOwnError are the methods whose handlers may answer with an error
// of their own.
var answersOwnError = map[string]bool{
	string(mcp.MethodToolsCall):     true,
	string(mcp.MethodResourcesRead): true,
	string(mcp.MethodPromptsGet):    true,
	// (mcp-go answers it with an empty result, which a refusal replaces.)
	string(mcp.MethodResourcesSubscribe): true,
}

// rpcAnswer is the JSON-RPC error a request is answered with.
type rpcAnswer struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// answerSlot is where a request's handler leaves its answer. late, if
// set, is the answer to give in place of mcp-go's own invalid-params
// answer (a check made only then, see checkedLate).
type answerSlot struct {
	v    atomic.Pointer[rpcAnswer]
	late func() *rpcAnswer
	// results says the answer replaces a result too: the request is one
	// mcp-go answers as done whatever its hook found (resources/subscribe).
	results bool
}

// withAnswerSlotFor is withAnswerSlot for a request of method.
func withAnswerSlotFor(ctx context.Context, method string) (context.Context, *answerSlot) {
	ctx, s := withAnswerSlot(ctx)
	s.results = method == string(mcp.MethodResourcesSubscribe)
	return ctx, s
}

type answerKey struct{}

// withAnswerSlot is ctx with a new slot, for one request.
func withAnswerSlot(ctx context.Context) (context.Context, *answerSlot) {
	s := &answerSlot{}
	return context.WithValue(ctx, answerKey{}, s), s
}

// answerSlotOf is ctx's slot, if its transport gave it one.
func answerSlotOf(ctx context.Context) *answerSlot {
	s, _ := ctx.Value(answerKey{}).(*answerSlot)
	return s
}

// answerWith leaves a in ctx's slot and returns the error the handler
// returns to mcp-go (whose answer carries the same message, for a
// transport without a slot).
func answerWith(ctx context.Context, a rpcAnswer) error {
	if s := answerSlotOf(ctx); s != nil {
		s.v.Store(&a)
	}
	return errors.New(a.Message)
}

// answer is the slot's answer, if the handler left one.
func (s *answerSlot) answer() (*rpcAnswer, bool) {
	if s == nil {
		return nil, false
	}
	a := s.v.Load()
	return a, a != nil
}

// final is the answer in place of mcp-go's error answer with code: the
// handler's, or else the late check's when mcp-go refused the request as
// unparsable (invalid request or params) or, over 2026-07-28, found its
// headers disagree with params it could not read (the name not a string).
func (s *answerSlot) final(code int) (*rpcAnswer, bool) {
	if a, ok := s.answer(); ok {
		return a, true
	}
	if s == nil || s.late == nil || (code != mcp.INVALID_PARAMS && code != mcp.INVALID_REQUEST && code != mcp.HEADER_MISMATCH) {
		return nil, false
	}
	a := s.late()
	if a == nil {
		return nil, false
	}
	s.v.Store(a) // (the answer from now on)
	return a, true
}

// rewrite returns msg, one JSON-RPC message, with the slot's answer in
// place of its error or result if msg is the answer to the request id; ok
// says whether it was.
func (s *answerSlot) rewrite(msg []byte, id json.RawMessage) (_ []byte, ok bool) {
	// The common case, a result, is passed without decoding it (an error
	// answer is encoded as {"jsonrpc":…,"id":…,"error":{"code":…}}).
	if _, set := s.answer(); !set && (s == nil || s.late == nil || !bytes.Contains(msg, []byte(`"error":{"code":`))) {
		return msg, false
	}
	var m struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
		Error   *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(msg, &m) != nil || !bytes.Equal(bytes.TrimSpace(m.ID), bytes.TrimSpace(id)) {
		return msg, false
	}
	var a *rpcAnswer
	set := false
	switch {
	case m.Error != nil:
		a, set = s.final(m.Error.Code)
	case len(m.Result) > 0 && s != nil && s.results:
		a, set = s.answer()
	}
	if !set {
		return msg, false
	}
	out, err := json.Marshal(answerMessage(m.ID, a))
	if err != nil {
		return msg, false
	}
	return out, true
}

// rewriteEvent is rewrite for an SSE event carrying one message.
func (s *answerSlot) rewriteEvent(event []byte, id json.RawMessage) ([]byte, bool) {
	lines := bytes.Split(event, []byte("\n"))
	for i, line := range lines {
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		msg, ok := s.rewrite(bytes.TrimSpace(data), id)
		if !ok {
			return event, false
		}
		lines[i] = append([]byte("data: "), msg...)
		return bytes.Join(lines, []byte("\n")), true
	}
	return event, false
}

// answering is a streamable HTTP response carrying the answer to one
// request, id, whose handler may leave an answer in slot. Over 2026-07-28
// the HTTP status follows the answer's code, as mcp-go's own errors do.
type answering struct {
	http.ResponseWriter
	slot   *answerSlot
	id     json.RawMessage
	modern bool
	status int // held until the body shows whether it is the answer
}

func (a *answering) WriteHeader(status int) {
	if a.status == 0 {
		a.status = status
	}
}

func (a *answering) Write(b []byte) (int, error) {
	n := len(b)
	if strings.HasPrefix(a.Header().Get("Content-Type"), "text/event-stream") {
		b, _ = a.slot.rewriteEvent(b, a.id)
	} else if out, ok := a.slot.rewrite(b, a.id); ok && a.status >= 0 {
		b = out
		a.Header().Del("Content-Length")
		if c, _ := a.slot.answer(); a.modern {
			a.status = statusFor(c.Code)
		}
	}
	a.finish()
	if _, err := a.ResponseWriter.Write(b); err != nil {
		return 0, err
	}
	return n, nil
}

// finish sends a status held back for a response without a body.
func (a *answering) finish() {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	if a.status > 0 {
		a.ResponseWriter.WriteHeader(a.status)
		a.status = -1
	}
}

func (a *answering) Flush() {
	a.finish()
	if f, ok := a.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (a *answering) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// statusFor is the HTTP status of a 2026-07-28 answer with code, as mcp-go
// maps its own.
func statusFor(code int) int {
	switch code {
	case mcp.METHOD_NOT_FOUND:
		return http.StatusNotFound
	case mcp.HEADER_MISMATCH, mcp.MISSING_REQUIRED_CLIENT_CAPABILITY, mcp.UNSUPPORTED_PROTOCOL_VERSION,
		mcp.INVALID_REQUEST, mcp.INVALID_PARAMS, mcp.PARSE_ERROR:
		return http.StatusBadRequest
	}
	return http.StatusOK
}

// answerMessage is the JSON-RPC error answer a to request id.
func answerMessage(id json.RawMessage, a *rpcAnswer) any {
	return struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   *rpcAnswer      `json:"error"`
	}{mcp.JSONRPC_VERSION, id, a}
}
