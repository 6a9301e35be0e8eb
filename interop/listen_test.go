package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Under 2026-07-28, notifications/subscriptions/acknowledged is the first
// message on a subscriptions/listen stream (SEP-2575; the conformance
// suite's server-stateless scenario checks it once per run). The order must
// not depend on timing, so the same request is made many times, a few at a
// time: one stream that opens with anything else fails the test.
func TestSubscriptionsListenAcknowledgesFirst(t *testing.T) {
	f := shared.get(t)
	_, tok := f.user(t, "listener", false)
	const tries, workers = 2000, 4
	ids := make(chan int, tries)
	for i := 1; i <= tries; i++ {
		ids <- i
	}
	close(ids)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range ids {
				if !listenAcks(t, f.dotted.url+"/mcp", tok, i, tries) {
					return
				}
			}
		})
	}
	wg.Wait()
}

// listenAcks checks one subscriptions/listen stream.
func listenAcks(t *testing.T, url, tok string, i, tries int) bool {
	first, err := firstListenFrame(t, url, tok, i)
	if err != nil {
		t.Errorf("try %d: %v", i, err)
		return false
	}
	{
		var m struct {
			Method string `json:"method"`
			Params struct {
				Meta map[string]any `json:"_meta"`
			} `json:"params"`
		}
		if err := json.Unmarshal([]byte(first), &m); err != nil || m.Method != "notifications/subscriptions/acknowledged" {
			t.Errorf("try %d of %d: the stream opened with %s, want notifications/subscriptions/acknowledged first", i, tries, first)
			return false
		}
		if id, ok := m.Params.Meta["io.modelcontextprotocol/subscriptionId"]; !ok || fmt.Sprint(id) != fmt.Sprint(i) {
			t.Errorf("try %d: the acknowledgement is not tagged with the subscription (request) id: %s", i, first)
			return false
		}
	}
	return true
}

// firstListenFrame opens subscriptions/listen (asking for tool list
// changes, as the suite does) and returns the stream's first JSON-RPC
// message.
func firstListenFrame(t *testing.T, url, token string, id int) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen", "params": map[string]any{
		"_meta": map[string]any{
			"io.modelcontextprotocol/protocolVersion":    "2026-07-28",
			"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "connec-interop-raw", "version": "1"},
			"io.modelcontextprotocol/clientCapabilities": map[string]any{},
		},
		"notifications": map[string]any{"toolsListChanged": true},
	}})
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "subscriptions/listen")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	// Closing the body ends the stream, as a client that is done does.
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	for ev := newEvents(resp.Body); ; {
		_, data, err := ev.next()
		if err != nil {
			return "", fmt.Errorf("the stream ended before any message: %w", err)
		}
		if strings.TrimSpace(data) != "" {
			return data, nil
		}
	}
}
