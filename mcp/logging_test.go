package mcp_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	cmcp "github.com/connec/connec/mcp"
)

// What an added MCP server logs during a call (notifications/message)
// reaches the caller, on every transport and revision, as far as the level
// the caller set admits (on 2025-11-25 error and above until it sets one;
// on 2026-07-28 nothing for a request that asks for none), its data
// redacted of the instance's credential.
func TestUpstreamLogsReachTheCaller(t *testing.T) {
	const secret = "logging-bearer-6e1d9b3a7f"
	up := server.NewMCPServer("upstream", "1", server.WithLogging(), server.WithToolCapabilities(false))
	up.AddTool(mcp.NewTool("work", mcp.WithDescription("Works, and logs as it goes."), mcp.WithReadOnlyHintAnnotation(true)),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			srv := server.ServerFromContext(ctx)
			for _, l := range []struct {
				level mcp.LoggingLevel
				data  any
			}{
				{mcp.LoggingLevelDebug, "a detail"},
				{mcp.LoggingLevelWarning, map[string]any{"msg": "using the key", "key": secret}},
				{mcp.LoggingLevelError, "failed once with Bearer " + secret},
			} {
				_ = srv.SendLogMessageToClient(ctx, mcp.NewLoggingMessageNotification(l.level, "worker", l.data))
			}
			// mcp-go drops what is still queued when the answer goes: a
			// server that wants its messages read waits for them to leave
			// (connec does the same for its callers).
			// (The forwarder takes a message off the queue before it
			// writes it: a moment more lets the last one be written, on
			// a machine busy with the whole package's tests.)
			ch := server.ClientSessionFromContext(ctx).NotificationChannel()
			for deadline := time.Now().Add(10 * time.Second); len(ch) > 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			return mcp.NewToolResultText("done"), nil
		})
	e, tok := governedUpstream(t, up, secret, "up")

	for _, tr := range []string{cmcp.TransportStreamable, cmcp.TransportStdio} {
		for _, run := range []struct {
			rev   string
			level mcp.LoggingLevel
			want  int
		}{
			{mcp.LATEST_LEGACY_PROTOCOL_VERSION, "", 1}, {mcp.LATEST_LEGACY_PROTOCOL_VERSION, mcp.LoggingLevelWarning, 2},
			{mcp.LATEST_PROTOCOL_VERSION, "", 0}, {mcp.LATEST_PROTOCOL_VERSION, mcp.LoggingLevelWarning, 2},
		} {
			level, want := run.level, run.want
			c := e.clientAt(tr, tok, run.rev)
			var mu sync.Mutex
			var got []string
			c.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method == "notifications/message" {
					mu.Lock()
					got = append(got, mustJSON(t, n.Params.AdditionalFields))
					mu.Unlock()
				}
			})
			if level != "" {
				//lint:ignore SA1019 2025-11-25 clients still set a level
				if err := c.SetLevel(context.Background(), mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: level}}); err != nil {
					t.Fatalf("%s: setLevel: %v", tr, err)
				}
			}
			if res := callTool(t, c, "up.up.work", map[string]any{}, nil); res.IsError {
				t.Fatalf("%s: work: %s", tr, mustJSON(t, res))
			}
			if want > 0 {
				waitFor(t, fmt.Sprintf("the log messages (%s %s, level %q)", tr, run.rev, level), func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= want })
			} else {
				time.Sleep(300 * time.Millisecond) // none must come
			}
			mu.Lock()
			all := strings.Join(got, "\n")
			if len(got) != want || strings.Contains(all, secret) || want > 0 && (!strings.Contains(all, "[REDACTED]") ||
				strings.Contains(all, "a detail") || !strings.Contains(all, `"logger":"worker"`)) {
				t.Errorf("%s %s at level %q: the caller got:\n%s", tr, run.rev, level, all)
			}
			mu.Unlock()
		}
	}
}
