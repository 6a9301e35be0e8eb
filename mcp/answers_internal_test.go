package mcp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAnsweringRewritesOnlyItsOwnError checks the response writer that puts
// a handler's own JSON-RPC error in place of mcp-go's: only the error
// answer to its request is changed, in a JSON body or an SSE event (a
// response upgraded to a stream by notifications sent during the call),
// and over 2026-07-28 a JSON answer's status follows its code.
func TestAnsweringRewritesOnlyItsOwnError(t *testing.T) {
	const internal = `{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"boom"}}`
	own := rpcAnswer{Code: -32021, Message: "declare sampling", Data: map[string]any{"requiredCapabilities": map[string]any{}}}
	for _, tc := range []struct {
		name        string
		set         bool
		results     bool
		modern      bool
		contentType string
		status      int
		writes      []string
		wantStatus  int
		wantBody    string
	}{
		{name: "own error, 2026-07-28", set: true, modern: true, contentType: "application/json", status: 200, writes: []string{internal + "\n"},
			wantStatus: 400, wantBody: `{"jsonrpc":"2.0","id":7,"error":{"code":-32021,"message":"declare sampling","data":{"requiredCapabilities":{}}}}`},
		{name: "own error, 2025-11-25", set: true, contentType: "application/json", status: 200, writes: []string{internal + "\n"},
			wantStatus: 200, wantBody: `{"jsonrpc":"2.0","id":7,"error":{"code":-32021,"message":"declare sampling","data":{"requiredCapabilities":{}}}}`},
		{name: "no answer left", modern: true, contentType: "application/json", status: 200, writes: []string{internal + "\n"},
			wantStatus: 200, wantBody: internal + "\n"},
		{name: "another request's error", set: true, modern: true, contentType: "application/json", status: 200,
			writes:     []string{`{"jsonrpc":"2.0","id":8,"error":{"code":-32603,"message":"boom"}}`},
			wantStatus: 200, wantBody: `{"jsonrpc":"2.0","id":8,"error":{"code":-32603,"message":"boom"}}`},
		{name: "a result", set: true, modern: true, contentType: "application/json", status: 200,
			writes:     []string{`{"jsonrpc":"2.0","id":7,"result":{}}`},
			wantStatus: 200, wantBody: `{"jsonrpc":"2.0","id":7,"result":{}}`},
		{name: "a result a refusal replaces (resources/subscribe)", set: true, results: true, contentType: "application/json", status: 200,
			writes:     []string{`{"jsonrpc":"2.0","id":7,"result":{}}`},
			wantStatus: 200, wantBody: `{"jsonrpc":"2.0","id":7,"error":{"code":-32021,"message":"declare sampling","data":{"requiredCapabilities":{}}}}`},
		{name: "upgraded to SSE", set: true, modern: true, contentType: "text/event-stream", status: 200,
			writes: []string{"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
				"event: message\ndata: " + internal + "\n\n"},
			wantStatus: 200, wantBody: "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n" +
				`event: message` + "\n" + `data: {"jsonrpc":"2.0","id":7,"error":{"code":-32021,"message":"declare sampling","data":{"requiredCapabilities":{}}}}` + "\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, slot := withAnswerSlot(context.Background())
			slot.results = tc.results
			if tc.set {
				if err := answerWith(ctx, own); err == nil || err.Error() != own.Message {
					t.Fatalf("answerWith: %v", err)
				}
			}
			rec := httptest.NewRecorder()
			w := &answering{ResponseWriter: rec, slot: slot, id: json.RawMessage("7"), modern: tc.modern}
			w.Header().Set("Content-Type", tc.contentType)
			w.WriteHeader(tc.status)
			for _, b := range tc.writes {
				if n, err := w.Write([]byte(b)); err != nil || n != len(b) {
					t.Fatalf("write: %d %v", n, err)
				}
			}
			w.finish()
			if rec.Code != tc.wantStatus || strings.TrimSpace(rec.Body.String()) != strings.TrimSpace(tc.wantBody) {
				t.Fatalf("got %d %q\nwant %d %q", rec.Code, rec.Body.String(), tc.wantStatus, tc.wantBody)
			}
		})
	}
	// A response without a body still gets its status.
	_, slot := withAnswerSlot(context.Background())
	rec := httptest.NewRecorder()
	w := &answering{ResponseWriter: rec, slot: slot, id: json.RawMessage("1")}
	w.WriteHeader(http.StatusAccepted)
	w.finish()
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status %d", rec.Code)
	}
}
