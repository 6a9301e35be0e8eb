package mcpserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/fault"
)

// A local server's subscriptions share the instance's process: the first
// watch of a URI subscribes it, the last to end unsubscribes it, every
// watch hears of the updates of its resource and of the resource's parts,
// a watch ends with an empty result when stopped, and with unavailable
// when the process exits; the subscribe operation runs only as a watch.
func TestLocalServerWatchesShareTheProcess(t *testing.T) {
	ctx := context.Background()
	h := localHarness(t, "local", mcpserver.StdioSpec{Command: buildStdioServer(t), CredentialEnv: "TOKEN"})
	inv := func(op string, args map[string]any, w *connectors.Watch) connectors.Invocation {
		return connectors.Invocation{InstanceID: "i1", Operation: op, Args: drivertest.JSON(t, args), Watch: w,
			Egress: h.Guard(nil), Findings: &connectors.Findings{}, CredentialKind: "bearer", Credential: drivertest.Fields("token", "tok-watch-7777")}
	}
	text := func(op string, args map[string]any) string {
		t.Helper()
		out, err := h.Driver.Invoke(ctx, inv(op, args, nil))
		var r struct{ Content []struct{ Text string } }
		if err != nil || json.Unmarshal(out, &r) != nil || len(r.Content) != 1 {
			t.Fatalf("%s: %s %v", op, out, err)
		}
		return r.Content[0].Text
	}
	type watch struct {
		stop    chan struct{}
		ready   chan struct{}
		updates chan string
		done    chan error
	}
	start := func() *watch {
		w := &watch{stop: make(chan struct{}), ready: make(chan struct{}), updates: make(chan string, 8), done: make(chan error, 1)}
		cw := &connectors.Watch{Ready: func() { close(w.ready) }, Updated: func(uri string) { w.updates <- uri }, Stop: w.stop}
		go func() {
			out, err := h.Driver.Invoke(ctx, inv("local.resources.subscribe", map[string]any{"uri": "test://notes/readme"}, cw))
			if err == nil && string(out) != "{}" {
				err = errors.New("a stopped watch answered " + string(out))
			}
			w.done <- err
		}()
		select {
		case <-w.ready:
		case err := <-w.done:
			t.Fatalf("the watch ended before it watched: %v", err)
		case <-time.After(time.Minute):
			t.Fatal("the watch did not start")
		}
		return w
	}
	heard := func(w *watch, want string) {
		t.Helper()
		select {
		case got := <-w.updates:
			if got != want {
				t.Fatalf("update of %q, want %q", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no update of %s", want)
		}
	}

	a, b := start(), start()
	if got := text("local.subscriptions", nil); got != "1/0" {
		t.Fatalf("two watches of one URI: subscribed/unsubscribed %s, want 1/0", got)
	}
	text("local.touch", map[string]any{"uri": "test://notes/readme"})
	heard(a, "test://notes/readme")
	heard(b, "test://notes/readme")
	text("local.touch", map[string]any{"uri": "test://notes/readme/part"})
	heard(a, "test://notes/readme/part")
	heard(b, "test://notes/readme/part")

	close(a.stop)
	if err := <-a.done; err != nil {
		t.Fatal(err)
	}
	if got := text("local.subscriptions", nil); got != "1/0" {
		t.Fatalf("one of two watches ended: %s, want 1/0", got)
	}
	close(b.stop)
	if err := <-b.done; err != nil {
		t.Fatal(err)
	}
	if got := text("local.subscriptions", nil); got != "1/1" {
		t.Fatalf("both watches ended: %s, want 1/1", got)
	}

	// The process exits: its watches end, the server gone.
	c := start()
	_, _ = h.Driver.Invoke(ctx, inv("local.crash", nil, nil))
	select {
	case err := <-c.done:
		if fault.As(err).Type != fault.Unavailable {
			t.Fatalf("the process exited under a watch: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the watch outlived its process")
	}

	// Only a watch runs the subscribe operation.
	_, err := h.Driver.Invoke(ctx, inv("local.resources.subscribe", map[string]any{"uri": "test://notes/readme"}, nil))
	if fault.As(err).Type != fault.InvalidArgument {
		t.Fatalf("the subscribe operation without a watch: %v", err)
	}
}
