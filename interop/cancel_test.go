package interop_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// The official Go SDK cancels a call (its context ends) and keeps using the
// session: at 2026-07-28 over HTTP it closes the response stream and may post
// notifications/cancelled too (connec once answered that with 400, and the SDK
// dropped the whole session); at 2025-11-25 it sends notifications/cancelled.
// Either way the session goes on working and the run records the cancel.
func TestGoSDKCancelKeepsTheSession(t *testing.T) {
	f := shared.get(t)
	_, tok := f.user(t, "canceler", false)
	for _, tc := range []struct{ transport, pin string }{
		{transportStreamable, "2026-07-28"}, {transportStreamable, "2025-11-25"},
		{transportSSE, "2025-11-25"}, {transportStdio, "2026-07-28"}, {transportStdio, "2025-11-25"},
	} {
		t.Run(tc.transport+"/"+tc.pin, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d := dial{client: clientGo, transport: tc.transport, pin: tc.pin, token: tok, baseURL: f.dotted.url,
				command: f.bin, env: f.stdioEnv(tok, false)}
			c, err := dialGo(ctx, d, f.baseEnv(), io.Discard)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer c.Close()
			res, err := c.CallTool(ctx, "connector.instance.install", map[string]any{"type": "echo", "display_name": "cancel " + tc.transport + tc.pin, "enable": true}, nil)
			if err != nil || res.IsError {
				t.Fatalf("install: %v %s", err, res.Structured)
			}
			var inst struct {
				Result struct {
					ID string `json:"id"`
				} `json:"result"`
			}
			if err := json.Unmarshal(res.Structured, &inst); err != nil || inst.Result.ID == "" {
				t.Fatalf("install result %s: %v", res.Structured, err)
			}
			callCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				_, err := c.CallTool(callCtx, "connector.op.invoke", map[string]any{"instance_id": inst.Result.ID, "operation": "echo.send",
					"arguments": map[string]any{"message": "never", "delay_ms": 30000}}, nil)
				done <- err
			}()
			waitRun(t, f, inst.Result.ID, "running")
			stop()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("the canceled call returned %v", err)
			}
			waitRun(t, f, inst.Result.ID, "canceled")
			res, err = c.CallTool(ctx, "connector.instance.list", map[string]any{}, nil)
			if err != nil || res.IsError {
				t.Fatalf("the session after a cancel: %v %s", err, res.Structured)
			}
		})
	}
}

// waitRun waits until the instance's one run has status.
func waitRun(t *testing.T, f *fixture, instance, status string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		if err := f.app.Pool.QueryRow(context.Background(), `SELECT count(*) FROM connector_runs WHERE instance_id = $1 AND status = $2`, instance, status).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			var got []string
			rows, _ := f.app.Pool.Query(context.Background(), `SELECT status FROM connector_runs WHERE instance_id = $1`, instance)
			for rows.Next() {
				var s string
				_ = rows.Scan(&s)
				got = append(got, s)
			}
			t.Fatalf("%s", fmt.Sprintf("no run reached %s: %v", status, got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
