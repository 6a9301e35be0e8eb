package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connec/connec/internal/platform/sandbox"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Real npm MCP servers run locally behind connec, pinned.
const (
	serverMemory     = "@modelcontextprotocol/server-memory@2026.8.31"
	serverEverything = "@modelcontextprotocol/server-everything@2026.8.31"
)

// TestLocalNPMServersThroughConnec is the user story of governing local
// MCP servers: an operator adds two npm servers (connec mcp add, pinned,
// scripts off, reviewed in their sandbox), a user installs an instance of
// each (the everything server's with a bearer credential it receives in a
// variable), and the official TypeScript and Go SDK clients see each
// instance's tools as typed tools of their own and use them: memory
// remembers between calls, content blocks arrive whole, and the credential
// the server reports back is redacted before it reaches the agent.
func TestLocalNPMServersThroughConnec(t *testing.T) {
	if _, err := sandbox.Available(); err != nil {
		if os.Getenv("CONNEC_INTEROP_NPM") == "1" {
			t.Fatalf("no sandbox here, and make test needs it: %v", err)
		}
		t.Skipf("no sandbox here: %v", err)
	}
	npm(t)
	f := shared.get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dataDir := filepath.Join(f.dir, "data-local")
	for _, add := range [][]string{
		{"memory", serverMemory, "--env", "MEMORY_FILE_PATH=/state/memory.jsonl"},
		{"everything", serverEverything, "--credential-env", "API_TOKEN"},
	} {
		cmd := exec.CommandContext(ctx, f.bin, append([]string{"mcp", "add"}, append(add, "--yes")...)...)
		cmd.Env = f.connecEnv("CONNEC_DATA_DIR=" + dataDir)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "added "+add[0]) || !strings.Contains(string(out), "Integrity       sha512-") {
			t.Fatalf("connec mcp add %s: %v\n%s", add[1], err, out)
		}
	}
	_, tok := f.admin(t, "local")
	srv, err := startServer(ctx, f, "local")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
	rest := func(path string, body any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.url+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s: %s %v", path, resp.Status, out)
		}
		return out
	}
	mem := rest("/v1/connector-instances", map[string]any{"type": "mcp-memory", "display_name": "Memory", "handle": "mem", "enable": true})
	ev := rest("/v1/connector-instances", map[string]any{"type": "mcp-everything", "display_name": "Everything", "handle": "ev", "enable": true})
	t.Cleanup(func() {
		// The servers are the shared database's, so every later connec of
		// this package would install them too: taken out again.
		for _, id := range []any{mem["id"], ev["id"]} {
			req, _ := http.NewRequest(http.MethodDelete, srv.url+"/v1/connector-instances/"+id.(string), nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		for _, name := range []string{"memory", "everything"} {
			cmd := exec.Command(f.bin, "mcp", "remove", name)
			cmd.Env = f.connecEnv("CONNEC_DATA_DIR=" + dataDir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("connec mcp remove %s: %v\n%s", name, err, out)
			}
		}
	})
	const secret = "ev-bearer-93be1f7a"
	rest("/v1/connector-instances/"+ev["id"].(string)+"/credentials", map[string]any{"kind": "bearer", "secret": map[string]any{"token": secret}})

	for _, client := range []string{clientTSv1, clientGo} {
		t.Run(client, func(t *testing.T) {
			dl := dial{client: client, transport: transportStreamable, token: tok, baseURL: srv.url}
			var c mcpClient
			var err error
			if client == clientGo {
				c, err = dialGo(ctx, dl, f.baseEnv(), os.Stderr)
			} else {
				c, err = dialTS(ctx, f.driver(t), dl)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			tools, err := c.ListTools(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tl := range tools {
				names = append(names, tl.Name)
			}
			for _, want := range []string{"mem.memory.create_entities", "mem.memory.read_graph", "ev.everything.echo", "ev.everything.get-env", "ev.everything.get-tiny-image"} {
				if !slices.Contains(names, want) {
					t.Fatalf("%s is not listed: %v", want, names)
				}
			}
			call := func(name string, args map[string]any) toolResult {
				t.Helper()
				res, err := c.CallTool(ctx, name, args, nil)
				if err != nil || res.IsError {
					t.Fatalf("%s: %+v %v", name, res, err)
				}
				return res
			}
			person := "Ada-" + client
			call("mem.memory.create_entities", map[string]any{"entities": []any{
				map[string]any{"name": person, "entityType": "person", "observations": []any{"writes programs"}}}})
			if res := call("mem.memory.read_graph", map[string]any{}); !strings.Contains(strings.Join(res.Texts, " "), person) {
				t.Fatalf("memory forgot %s: %v", person, res.Texts)
			}
			if res := call("ev.everything.echo", map[string]any{"message": "hello"}); !strings.Contains(strings.Join(res.Texts, " "), "hello") {
				t.Fatalf("echo: %v", res.Texts)
			}
			if res := call("ev.everything.get-tiny-image", map[string]any{}); !slices.Contains(res.Types, "image") {
				t.Fatalf("image: %v", res.Types)
			}
			res := call("ev.everything.get-env", map[string]any{})
			all := strings.Join(res.Texts, " ") + string(res.Structured)
			if strings.Contains(all, secret) || !strings.Contains(all, "API_TOKEN") || !strings.Contains(all, "[REDACTED]") {
				t.Fatalf("get-env: the credential is not redacted: %.400s", all)
			}
			if ts, ok := c.(*tsClient); ok {
				// A subscription to one of its resources hears of its
				// updates (the server's simulated ones, started and
				// stopped by its toggle tool, through connec too).
				uris, err := ts.ResourceURIs(ctx)
				if err != nil || len(uris) == 0 {
					t.Fatalf("resources/list: %v %v", uris, err)
				}
				if err := ts.Subscribe(ctx, uris[0]); err != nil {
					t.Fatalf("subscribe to %s: %v", uris[0], err)
				}
				call("ev.everything.toggle-subscriber-updates", map[string]any{})
				got, err := ts.NextUpdate(ctx)
				call("ev.everything.toggle-subscriber-updates", map[string]any{})
				if err != nil || got != uris[0] {
					t.Fatalf("the update: %q %v, want %s", got, err, uris[0])
				}
				if err := ts.Unsubscribe(ctx, uris[0]); err != nil {
					t.Fatalf("unsubscribe: %v", err)
				}
			}
		})
	}
	// A tool that asks the user: over a 2025-11-25 streamable HTTP session
	// the question reaches the client and its answer the tool.
	text, asked, err := elicitThroughConnec(ctx, t, srv.url, tok, "2025-11-25")
	if err != nil || asked == "" || !strings.Contains(text, "declined") {
		t.Fatalf("elicitation over HTTP 2025-11-25: asked %q, tool said %q, %v", asked, text, err)
	}
	// On 2026-07-28 the same question goes as an input_required round
	// trip, and the answer reaches the upstream within its call.
	text, asked, err = elicitThroughConnec(ctx, t, srv.url, tok, "2026-07-28")
	if err != nil || asked == "" || !strings.Contains(text, "declined") {
		t.Fatalf("elicitation over HTTP 2026-07-28: asked %q, tool said %q, %v", asked, text, err)
	}

	// The server's prompts, resources and completions are connec's own, as
	// the official Go SDK client sees them on both revisions.
	for _, pin := range []string{"2025-11-25", "2026-07-28"} {
		if err := primitivesThroughConnec(ctx, srv.url, tok, pin); err != nil {
			t.Fatalf("prompts and resources over %s: %v", pin, err)
		}
	}
	// A subscription to one of its resources hears of its updates.
	if err := subscribeThroughConnec(ctx, srv.url, tok); err != nil {
		t.Fatalf("resource subscription: %v", err)
	}
	// On 2026-07-28 the official TypeScript client (v2) subscribes on a
	// listen stream: acknowledged for the resource connec serves only,
	// and the updates come on it.
	listenThroughConnec(ctx, t, f.driver(t), srv.url, tok)

	// A server of the deployment on another machine (a data directory of
	// its own, the same database) installs the packages as reviewed, in
	// the background, and serves them once they are.
	other, err := startServer(ctx, f, "local-other")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.stop)
	c, err := dialGo(ctx, dial{client: clientGo, transport: transportStreamable, token: tok, baseURL: other.url}, f.baseEnv(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(4 * time.Minute)
	for {
		tools, err := c.ListTools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, tl := range tools {
			if tl.Name == "mem.memory.read_graph" || tl.Name == "ev.everything.echo" {
				n++
			}
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other machine's server does not serve the added servers; its log:\n%s", other.log.String())
		}
		time.Sleep(time.Second)
	}
	if res, err := c.CallTool(ctx, "mem.memory.read_graph", map[string]any{}, nil); err != nil || res.IsError {
		t.Fatalf("memory on the other machine: %+v %v", res, err)
	}
	if !strings.Contains(other.log.String(), "installing an MCP server's package as reviewed") {
		t.Fatalf("the other machine's server did not say it installed the packages:\n%s", other.log.String())
	}
	// Behind a load balancer that alternates between the two servers, the
	// official Go SDK client's 2026-07-28 rounds of one call land on both:
	// the answer reaches the tool that asked, on the server where it waits.
	lb := newAlternating(t, srv.url, other.url)
	text, asked, err = elicitThroughConnec(ctx, t, lb.url, tok, "2026-07-28")
	if err != nil || asked == "" || !strings.Contains(text, "declined") {
		t.Fatalf("elicitation over 2026-07-28 through both servers: asked %q, tool said %q, %v", asked, text, err)
	}
	if calls := lb.toolCalls(); calls[0] == 0 || calls[1] == 0 {
		t.Fatalf("the call's rounds did not reach both servers: %v", calls)
	}
	// The official TypeScript client (v2) drives the same rounds its own
	// way, through the same load balancer.
	lb = newAlternating(t, srv.url, other.url)
	text, asked, err = elicitTSv2(ctx, f.driver(t), lb.url, tok)
	if err != nil || asked == "" || !strings.Contains(text, "declined") {
		t.Fatalf("TypeScript v2 elicitation over 2026-07-28 through both servers: asked %q, tool said %q, %v", asked, text, err)
	}
	if calls := lb.toolCalls(); calls[0] == 0 || calls[1] == 0 {
		t.Fatalf("the TypeScript client's rounds did not reach both servers: %v", calls)
	}

	// The secret is nowhere in connec's log either.
	if strings.Contains(srv.log.String(), secret) || strings.Contains(other.log.String(), secret) {
		t.Fatal("the credential is in connec's log")
	}
}

// elicitThroughConnec calls the everything server's elicitation tool
// through connec over streamable HTTP with the official Go SDK client,
// which answers the question, and returns the tool's text and the
// question's message as the client saw it.
func elicitThroughConnec(ctx context.Context, t *testing.T, baseURL, token, pin string) (string, string, error) {
	t.Helper()
	var asked string
	c := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "connec-interop-elicit", Version: "1.0.0"}, &mcpsdk.ClientOptions{
		ElicitationHandler: func(ctx context.Context, req *mcpsdk.ElicitRequest) (*mcpsdk.ElicitResult, error) {
			asked = req.Params.Message
			return &mcpsdk.ElicitResult{Action: "decline"}, nil
		},
	})
	cs, err := c.Connect(ctx, &mcpsdk.StreamableClientTransport{Endpoint: baseURL + "/mcp", HTTPClient: bearer(token)}, &mcpsdk.ClientSessionOptions{ProtocolVersion: pin})
	if err != nil {
		return "", "", err
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: "ev.everything.trigger-elicitation-request", Arguments: map[string]any{}})
	if err != nil {
		return "", asked, err
	}
	var text []string
	for _, ct := range res.Content {
		if tc, ok := ct.(*mcpsdk.TextContent); ok {
			text = append(text, tc.Text)
		}
	}
	return strings.Join(text, " "), asked, nil
}

// primitivesThroughConnec uses server-everything's prompts, resources,
// resource templates and completions through connec with the official Go
// SDK client: named as the instance's tools are (its resources' URIs
// qualified by the instance, connec://ev.everything/<encoded URI>).
func primitivesThroughConnec(ctx context.Context, baseURL, token, pin string) error {
	c := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "connec-interop-primitives", Version: "1.0.0"}, nil)
	cs, err := c.Connect(ctx, &mcpsdk.StreamableClientTransport{Endpoint: baseURL + "/mcp", HTTPClient: bearer(token)}, &mcpsdk.ClientSessionOptions{ProtocolVersion: pin})
	if err != nil {
		return err
	}
	defer cs.Close()
	prompts, err := cs.ListPrompts(ctx, &mcpsdk.ListPromptsParams{})
	if err != nil {
		return fmt.Errorf("prompts/list: %w", err)
	}
	var names []string
	for _, p := range prompts.Prompts {
		names = append(names, p.Name)
	}
	for _, want := range []string{"ev.everything.simple-prompt", "ev.everything.args-prompt", "ev.everything.completable-prompt"} {
		if !slices.Contains(names, want) {
			return fmt.Errorf("prompt %s is not listed: %v", want, names)
		}
	}
	got, err := cs.GetPrompt(ctx, &mcpsdk.GetPromptParams{Name: "ev.everything.args-prompt", Arguments: map[string]string{"city": "Paris"}})
	if err != nil {
		return fmt.Errorf("prompts/get: %w", err)
	}
	if len(got.Messages) != 1 || !strings.Contains(fmt.Sprint(got.Messages[0].Content), "Paris") {
		return fmt.Errorf("args-prompt: %+v", got.Messages)
	}
	done, err := cs.Complete(ctx, &mcpsdk.CompleteParams{Ref: &mcpsdk.CompleteReference{Type: "ref/prompt", Name: "ev.everything.completable-prompt"},
		Argument: mcpsdk.CompleteParamsArgument{Name: "department", Value: "S"}})
	if err != nil || strings.Join(done.Completion.Values, ",") != "Sales,Support" {
		return fmt.Errorf("completion: %+v %v", done, err)
	}

	resources, err := cs.ListResources(ctx, &mcpsdk.ListResourcesParams{})
	if err != nil || len(resources.Resources) == 0 {
		return fmt.Errorf("resources/list: %+v %w", resources, err)
	}
	first := resources.Resources[0]
	if !strings.HasPrefix(first.URI, "connec://ev.everything/demo:%2F%2F") {
		return fmt.Errorf("a resource's URI is not its instance's: %s", first.URI)
	}
	read, err := cs.ReadResource(ctx, &mcpsdk.ReadResourceParams{URI: first.URI})
	if err != nil || len(read.Contents) == 0 || read.Contents[0].URI != first.URI {
		return fmt.Errorf("resources/read %s: %+v %v", first.URI, read, err)
	}
	templates, err := cs.ListResourceTemplates(ctx, &mcpsdk.ListResourceTemplatesParams{})
	if err != nil {
		return fmt.Errorf("resources/templates/list: %w", err)
	}
	const text = "connec://ev.everything/demo:%2F%2Fresource%2Fdynamic%2Ftext%2F{resourceId}"
	found := false
	for _, tm := range templates.ResourceTemplates {
		found = found || tm.URITemplate == text
	}
	if !found {
		return fmt.Errorf("the text template is not listed as %s: %+v", text, templates.ResourceTemplates)
	}
	uri := strings.Replace(text, "{resourceId}", "7", 1)
	read, err = cs.ReadResource(ctx, &mcpsdk.ReadResourceParams{URI: uri})
	if err != nil || len(read.Contents) != 1 || read.Contents[0].URI != uri || !strings.Contains(read.Contents[0].Text, "7") {
		return fmt.Errorf("resources/read %s: %+v %v", uri, read, err)
	}
	return nil
}

// subscribeThroughConnec subscribes, with the official Go SDK client over a
// 2025-11-25 streamable HTTP session, to a resource of server-everything
// through connec, has the server start its simulated updates (its
// toggle-subscriber-updates tool, through connec too), and waits for an
// update naming the resource as the client subscribed to it.
func subscribeThroughConnec(ctx context.Context, baseURL, token string) error {
	updates := make(chan string, 16)
	c := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "connec-interop-subscriber", Version: "1.0.0"}, &mcpsdk.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, req *mcpsdk.ResourceUpdatedNotificationRequest) {
			select {
			case updates <- req.Params.URI:
			default:
			}
		}})
	cs, err := c.Connect(ctx, &mcpsdk.StreamableClientTransport{Endpoint: baseURL + "/mcp", HTTPClient: bearer(token)},
		&mcpsdk.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		return err
	}
	defer cs.Close()
	if caps := cs.InitializeResult().Capabilities; caps.Resources == nil || !caps.Resources.Subscribe {
		return fmt.Errorf("connec does not declare resource subscriptions: %+v", caps.Resources)
	}
	resources, err := cs.ListResources(ctx, &mcpsdk.ListResourcesParams{})
	if err != nil || len(resources.Resources) == 0 {
		return fmt.Errorf("resources/list: %+v %w", resources, err)
	}
	uri := resources.Resources[0].URI
	if err := cs.Subscribe(ctx, &mcpsdk.SubscribeParams{URI: uri}); err != nil {
		return fmt.Errorf("subscribe to %s: %w", uri, err)
	}
	toggle := func() error {
		res, err := cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: "ev.everything.toggle-subscriber-updates", Arguments: map[string]any{}})
		if err == nil && res.IsError {
			err = fmt.Errorf("the tool failed: %+v", res.Content)
		}
		return err
	}
	if err := toggle(); err != nil {
		return fmt.Errorf("start the updates: %w", err)
	}
	defer func() { _ = toggle() }() // (the server's updates are per process)
	select {
	case got := <-updates:
		if got != uri {
			return fmt.Errorf("the update names %q, want %q", got, uri)
		}
	case <-time.After(30 * time.Second):
		return fmt.Errorf("no update of %s reached the client", uri)
	}
	return cs.Unsubscribe(ctx, &mcpsdk.UnsubscribeParams{URI: uri})
}

// listenThroughConnec opens, with the official TypeScript client (v2) over
// a 2026-07-28 streamable HTTP session, a subscriptions/listen stream for a
// resource of server-everything through connec and one connec does not
// serve, checks that only the first is acknowledged, and waits for an
// update of it (the server's simulated ones, started by its toggle tool).
func listenThroughConnec(ctx context.Context, t *testing.T, d *nodeDriver, baseURL, token string) {
	t.Helper()
	c, err := dialTS(ctx, d, dial{client: clientTSv2, transport: transportStreamable, pin: "2026-07-28", token: token, baseURL: baseURL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ts := c.(*tsClient)
	uris, err := ts.ResourceURIs(ctx)
	if err != nil || len(uris) == 0 {
		t.Fatalf("resources/list over 2026-07-28: %v %v", uris, err)
	}
	const missing = "connec://nobody.everything/demo%3A%2F%2Fnothing"
	id, honored, err := ts.Listen(ctx, []string{uris[0], missing})
	if err != nil || len(honored) != 1 || honored[0] != uris[0] {
		t.Fatalf("subscriptions/listen: acknowledged %v (%v), want only %s", honored, err, uris[0])
	}
	toggle := func() {
		t.Helper()
		if res, err := c.CallTool(ctx, "ev.everything.toggle-subscriber-updates", map[string]any{}, nil); err != nil || res.IsError {
			t.Fatalf("toggle-subscriber-updates: %+v %v", res, err)
		}
	}
	toggle()
	got, err := ts.NextUpdate(ctx)
	toggle()
	if err != nil || got != uris[0] {
		t.Fatalf("the update on the listen stream: %q %v, want %s", got, err, uris[0])
	}
	if err := ts.CloseListen(ctx, id); err != nil {
		t.Fatalf("closing the listen stream: %v", err)
	}
}

// alternating is a load balancer that sends each request to the next of
// two servers in turn (no stickiness of any kind).
type alternating struct {
	url   string
	mu    sync.Mutex
	next  int
	calls [2]int // tools/call requests each server got
}

func newAlternating(t *testing.T, a, b string) *alternating {
	t.Helper()
	lb := &alternating{}
	var proxies [2]*httputil.ReverseProxy
	for i, raw := range []string{a, b} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		proxies[i] = httputil.NewSingleHostReverseProxy(u)
		proxies[i].FlushInterval = -1 // (event streams pass as they come)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		lb.mu.Lock()
		i := lb.next
		lb.next = 1 - i
		if bytes.Contains(body, []byte(`"method":"tools/call"`)) {
			lb.calls[i]++
		}
		lb.mu.Unlock()
		proxies[i].ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	lb.url = hs.URL
	return lb
}

func (lb *alternating) toolCalls() [2]int {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.calls
}

// elicitTSv2 calls server-everything's elicitation tool through connec with
// the official TypeScript client (v2) on 2026-07-28, whose user declines,
// and returns the tool's text and the question's message.
func elicitTSv2(ctx context.Context, d *nodeDriver, baseURL, token string) (string, string, error) {
	var conn struct{ Session string }
	if err := d.call(ctx, map[string]any{"op": "connect", "sdk": clientTSv2, "transport": transportStreamable, "pin": "2026-07-28",
		"url": baseURL + "/mcp", "headers": map[string]string{"Authorization": "Bearer " + token}, "elicit": "decline"}, &conn); err != nil {
		return "", "", err
	}
	defer func() {
		_ = d.call(context.WithoutCancel(ctx), map[string]any{"op": "close", "session": conn.Session}, nil)
	}()
	var res struct {
		Content []struct{ Type, Text string }
	}
	if err := d.call(ctx, map[string]any{"op": "callTool", "session": conn.Session, "name": "ev.everything.trigger-elicitation-request",
		"arguments": map[string]any{}}, &res); err != nil {
		return "", "", err
	}
	var asked struct{ Messages []string }
	if err := d.call(ctx, map[string]any{"op": "asked", "session": conn.Session}, &asked); err != nil {
		return "", "", err
	}
	var text []string
	for _, c := range res.Content {
		text = append(text, c.Text)
	}
	return strings.Join(text, " "), strings.Join(asked.Messages, " "), nil
}
