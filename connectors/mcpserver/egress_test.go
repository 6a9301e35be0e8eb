package mcpserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/internal/platform/nodejs"
)

// egressUpstreams are two loopback servers: one a local server declares,
// one it does not.
func egressUpstreams(t *testing.T) (declared, other *httptest.Server) {
	t.Helper()
	serve := func(body string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(body + " " + r.URL.Path))
		}))
		t.Cleanup(s.Close)
		return s
	}
	return serve("declared"), serve("other")
}

// result is a call's text and whether the tool said it failed.
func egressCall(t *testing.T, h *drivertest.Harness, config, op string, args map[string]any) (string, bool) {
	t.Helper()
	cfg := json.RawMessage(config)
	out, err := h.Driver.Invoke(context.Background(), connectors.Invocation{InstanceID: "i", Config: cfg, Operation: op,
		Args: drivertest.JSON(t, args), Egress: h.Guard(cfg), Findings: &connectors.Findings{}})
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	var r struct {
		Content []struct{ Text string }
		IsError bool `json:"is_error"`
	}
	if json.Unmarshal(out, &r) != nil || len(r.Content) != 1 {
		t.Fatalf("%s: result %s", op, out)
	}
	return r.Content[0].Text, r.IsError
}

// A local npm server with declared egress hosts reaches them, and only
// them, through connec's egress proxy: fetch and http.get both go through
// it, a direct socket is refused, a host it did not declare is refused, a
// private address only where the instance allows it, and nothing gets out
// between calls.
func TestLocalServerEgressNode(t *testing.T) {
	needSandbox(t)
	if _, err := nodejs.Find(""); err != nil {
		unless(t, "no node on this machine: "+err.Error())
	}
	declared, other := egressUpstreams(t)
	dir := t.TempDir()
	pkg := filepath.Join(mcpserver.PackageDir(dir, "net"), "node_modules", "connec-fetch-test")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"server.mjs", "package.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "fetchserver", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkg, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodejs.ReadableByAll(mcpserver.PackageDir(dir, "net")); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(declared.URL, "http://")
	spec := mcpserver.StdioSpec{Package: "connec-fetch-test", Version: "1.0.0", Bin: "server.mjs", EgressHosts: []string{host}}
	h := localHarnessIn(t, dir, "net", spec)
	if got := h.Type.Spec.EgressHosts; len(got) != 1 || got[0] != host {
		t.Fatalf("type egress = %v", got)
	}
	const private = `{"allow_private_network": true}`

	for _, via := range []string{"fetch", "http"} {
		if got, isErr := egressCall(t, h, private, "net.fetch", map[string]any{"url": declared.URL + "/a", "via": via}); isErr || got != "declared /a" {
			t.Errorf("%s to the declared host: %q (error %v)", via, got, isErr)
		}
		if got, isErr := egressCall(t, h, private, "net.fetch", map[string]any{"url": other.URL + "/b", "via": via}); !isErr || !strings.Contains(got, "connec egress refused") {
			t.Errorf("%s to another host: %q (error %v)", via, got, isErr)
		}
	}
	if got, isErr := egressCall(t, h, private, "net.fetch", map[string]any{"url": declared.URL, "via": "socket"}); !isErr || !strings.Contains(got, "a direct socket connection is not available to local MCP servers") {
		t.Errorf("direct socket: %q (error %v)", got, isErr)
	}
	// Loopback is private: refused unless the instance allows it.
	if got, isErr := egressCall(t, h, `{}`, "net.fetch", map[string]any{"url": declared.URL + "/c"}); !isErr || !strings.Contains(got, "connec egress refused") {
		t.Errorf("private address without allow_private_network: %q (error %v)", got, isErr)
	}
	// An instance narrows the declared hosts; it cannot widen them.
	narrowed := `{"allow_private_network": true, "egress_hosts": ["` + strings.TrimPrefix(other.URL, "http://") + `"]}`
	if got, isErr := egressCall(t, h, narrowed, "net.fetch", map[string]any{"url": other.URL + "/d"}); !isErr || !strings.Contains(got, "connec egress refused") {
		t.Errorf("an instance widening the declared hosts: %q (error %v)", got, isErr)
	}
	// Between calls nothing gets out.
	if got, _ := egressCall(t, h, private, "net.later", map[string]any{"url": declared.URL + "/later"}); got != "scheduled" {
		t.Fatalf("later: %q", got)
	}
	// (The fetch starts 300 ms after the call; the first look comes well
	// after, so no call is in progress when it connects.)
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(1500 * time.Millisecond)
		got, _ := egressCall(t, h, private, "net.report", nil)
		if got != "nothing yet" {
			t.Logf("a fetch between calls: %s", got)
			if !strings.Contains(got, "no call is in progress") {
				t.Errorf("a fetch between calls: %q", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the later fetch never ended")
		}
	}
}

// A local program given as a command reaches its declared hosts through
// the proxy's socket, named in CONNEC_EGRESS_SOCKET; directly it reaches
// nothing (the kernel refuses).
func TestLocalServerEgressCommand(t *testing.T) {
	declared, other := egressUpstreams(t)
	host := strings.TrimPrefix(declared.URL, "http://")
	h := localHarness(t, "prog", mcpserver.StdioSpec{Command: buildStdioServer(t), EgressHosts: []string{host}})
	const private = `{"allow_private_network": true}`
	if got, isErr := egressCall(t, h, private, "prog.fetch", map[string]any{"url": declared.URL + "/a"}); isErr || got != "declared /a" {
		t.Errorf("the declared host: %q (error %v)", got, isErr)
	}
	if got, isErr := egressCall(t, h, private, "prog.fetch", map[string]any{"url": other.URL + "/b"}); !isErr || !strings.Contains(got, "403") || !strings.Contains(got, "allowlist") {
		t.Errorf("another host: %q (error %v)", got, isErr)
	}
	if got, isErr := egressCall(t, h, private, "prog.fetch", map[string]any{"url": declared.URL + "/c", "direct": true}); !isErr {
		t.Errorf("directly: %q", got)
	}
}
