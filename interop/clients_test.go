package interop_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Client names in the table.
const (
	clientTSv1 = "ts-v1" // @modelcontextprotocol/sdk
	clientTSv2 = "ts-v2" // @modelcontextprotocol/client
	clientGo   = "go-sdk"
)

// Transport names, as connec records them in audit rows.
const (
	transportStdio      = "stdio"
	transportSSE        = "sse"
	transportStreamable = "streamable-http"
)

// mcpClient is one client session of an SDK under test, reduced to what the
// story needs, so that one story (and one set of assertions) holds every
// client to the same standard.
type mcpClient interface {
	// Negotiated is the protocol revision the session runs.
	Negotiated() string
	ListTools(ctx context.Context) ([]toolInfo, error)
	CallTool(ctx context.Context, name string, args, meta map[string]any) (toolResult, error)
	Close() error
}

type toolInfo struct {
	Name         string          `json:"name"`
	InputSchema  json.RawMessage `json:"inputSchema"`
	OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
}

// toolResult is a CallToolResult as the client handed it over.
type toolResult struct {
	IsError    bool
	Structured json.RawMessage // structuredContent (null if absent)
	Texts      []string        // the text content blocks
	Types      []string        // every content block's type, in order
}

// dial describes one session to open.
type dial struct {
	client    string
	transport string
	pin       string // "" for the client's default revision
	token     string
	baseURL   string            // http://host:port of a connec serve --http
	command   string            // stdio: the connec binary
	env       map[string]string // stdio: what the host config sets
}

// --- the official Go SDK ---------------------------------------------------

type goClient struct {
	cs *mcp.ClientSession
}

func dialGo(ctx context.Context, d dial, baseEnv []string, stderr io.Writer) (mcpClient, error) {
	var tr mcp.Transport
	switch d.transport {
	case transportStdio:
		cmd := exec.Command(d.command, "serve", "--stdio")
		cmd.Env = baseEnv
		for k, v := range d.env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Stderr = stderr
		tr = &mcp.CommandTransport{Command: cmd}
	case transportSSE:
		tr = &mcp.SSEClientTransport{Endpoint: d.baseURL + "/sse", HTTPClient: bearer(d.token)}
	case transportStreamable:
		tr = &mcp.StreamableClientTransport{Endpoint: d.baseURL + "/mcp", HTTPClient: bearer(d.token)}
	default:
		return nil, fmt.Errorf("unknown transport %s", d.transport)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "connec-interop-go-sdk", Version: "1.0.0"}, nil)
	cs, err := c.Connect(ctx, tr, &mcp.ClientSessionOptions{ProtocolVersion: d.pin})
	if err != nil {
		return nil, err
	}
	return &goClient{cs: cs}, nil
}

func (g *goClient) Negotiated() string { return g.cs.InitializeResult().ProtocolVersion }

func (g *goClient) ListTools(ctx context.Context) ([]toolInfo, error) {
	var out []toolInfo
	for tl, err := range g.cs.Tools(ctx, nil) {
		if err != nil {
			return nil, err
		}
		raw, err := json.Marshal(tl)
		if err != nil {
			return nil, err
		}
		var ti toolInfo
		if err := json.Unmarshal(raw, &ti); err != nil {
			return nil, err
		}
		out = append(out, ti)
	}
	return out, nil
}

func (g *goClient) CallTool(ctx context.Context, name string, args, meta map[string]any) (toolResult, error) {
	p := &mcp.CallToolParams{Name: name, Arguments: args}
	if meta != nil {
		p.Meta = mcp.Meta(meta)
	}
	res, err := g.cs.CallTool(ctx, p)
	if err != nil {
		return toolResult{}, err
	}
	out := toolResult{IsError: res.IsError}
	if out.Structured, err = json.Marshal(res.StructuredContent); err != nil {
		return toolResult{}, err
	}
	for _, c := range res.Content {
		var head struct{ Type string }
		if b, err := c.MarshalJSON(); err == nil && json.Unmarshal(b, &head) == nil {
			out.Types = append(out.Types, head.Type)
		}
		if tc, ok := c.(*mcp.TextContent); ok {
			out.Texts = append(out.Texts, tc.Text)
		}
	}
	return out, nil
}

func (g *goClient) Close() error { return g.cs.Close() }

// --- the TypeScript SDKs, through driver.mjs --------------------------------

// nodeDriver is the one node process (driver.mjs) hosting every TypeScript
// SDK session of the test run; requests and replies are JSON lines.
type nodeDriver struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tail
	wmu    sync.Mutex
	next   atomic.Int64

	mu      sync.Mutex
	pending map[int64]chan driverReply
	dead    error
	done    chan struct{}
}

type driverReply struct {
	ID     int64           `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string          `json:"message"`
		Code    any             `json:"code"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

func startNodeDriver(node string, env []string) (*nodeDriver, error) {
	cmd := exec.Command(node, "driver.mjs")
	cmd.Env = env
	d := &nodeDriver{cmd: cmd, stderr: newTail(64 << 10), pending: map[int64]chan driverReply{}, done: make(chan struct{})}
	cmd.Stderr = d.stderr
	var err error
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go d.read(stdout)
	return d, nil
}

func (d *nodeDriver) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r driverReply
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.ID == 0 {
			// Something an SDK printed: keep it with the diagnostics.
			d.stderr.Write(append(append([]byte("stdout: "), sc.Bytes()...), '\n'))
			continue
		}
		d.mu.Lock()
		ch := d.pending[r.ID]
		delete(d.pending, r.ID)
		d.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	err := d.cmd.Wait()
	d.mu.Lock()
	d.dead = fmt.Errorf("node driver exited (%v); stderr:\n%s", err, d.stderr)
	for id, ch := range d.pending {
		close(ch)
		delete(d.pending, id)
	}
	d.mu.Unlock()
	close(d.done)
}

// call sends one request and decodes its result into out.
func (d *nodeDriver) call(ctx context.Context, req map[string]any, out any) error {
	id := d.next.Add(1)
	req["id"] = id
	line, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ch := make(chan driverReply, 1)
	d.mu.Lock()
	if d.dead != nil {
		d.mu.Unlock()
		return d.dead
	}
	d.pending[id] = ch
	d.mu.Unlock()
	d.wmu.Lock()
	_, err = d.stdin.Write(append(line, '\n'))
	d.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("write to node driver: %w", err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.dead
		}
		if r.Error != nil {
			return &sdkError{Message: r.Error.Message, Code: r.Error.Code}
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(r.Result, out)
	case <-ctx.Done():
		d.mu.Lock()
		delete(d.pending, id)
		d.mu.Unlock()
		return fmt.Errorf("%s: no reply from the node driver: %w", req["op"], ctx.Err())
	}
}

func (d *nodeDriver) close() {
	_ = d.stdin.Close()
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// sdkError is an error a TypeScript SDK threw (a protocol error, a
// validation failure, a transport failure).
type sdkError struct {
	Message string
	Code    any
}

func (e *sdkError) Error() string { return fmt.Sprintf("%v (code %v)", e.Message, e.Code) }

type tsClient struct {
	d          *nodeDriver
	session    string
	negotiated string
}

func dialTS(ctx context.Context, d *nodeDriver, dl dial) (mcpClient, error) {
	req := map[string]any{"op": "connect", "sdk": dl.client, "transport": dl.transport, "pin": dl.pin}
	switch dl.transport {
	case transportStdio:
		req["command"], req["args"], req["env"] = dl.command, []string{"serve", "--stdio"}, dl.env
	case transportSSE:
		req["url"], req["headers"] = dl.baseURL+"/sse", map[string]string{"Authorization": "Bearer " + dl.token}
	case transportStreamable:
		req["url"], req["headers"] = dl.baseURL+"/mcp", map[string]string{"Authorization": "Bearer " + dl.token}
	}
	var res struct {
		Session         string `json:"session"`
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := d.call(ctx, req, &res); err != nil {
		return nil, err
	}
	return &tsClient{d: d, session: res.Session, negotiated: res.ProtocolVersion}, nil
}

func (c *tsClient) Negotiated() string { return c.negotiated }

func (c *tsClient) ListTools(ctx context.Context) ([]toolInfo, error) {
	var res struct {
		Tools []toolInfo `json:"tools"`
	}
	err := c.d.call(ctx, map[string]any{"op": "listTools", "session": c.session}, &res)
	return res.Tools, err
}

func (c *tsClient) CallTool(ctx context.Context, name string, args, meta map[string]any) (toolResult, error) {
	req := map[string]any{"op": "callTool", "session": c.session, "name": name, "arguments": args}
	if meta != nil {
		req["meta"] = meta
	}
	var res struct {
		IsError           bool            `json:"isError"`
		StructuredContent json.RawMessage `json:"structuredContent"`
		Content           []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	}
	if err := c.d.call(ctx, req, &res); err != nil {
		return toolResult{}, err
	}
	out := toolResult{IsError: res.IsError, Structured: res.StructuredContent}
	if len(out.Structured) == 0 {
		out.Structured = json.RawMessage("null")
	}
	for _, ct := range res.Content {
		out.Types = append(out.Types, ct.Type)
		if ct.Type == "text" {
			out.Texts = append(out.Texts, ct.Text)
		}
	}
	return out, nil
}

// Subscribe subscribes the session to uri (resources/subscribe).
func (c *tsClient) Subscribe(ctx context.Context, uri string) error {
	return c.d.call(ctx, map[string]any{"op": "subscribe", "session": c.session, "uri": uri}, nil)
}

// Unsubscribe ends the session's subscription to uri.
func (c *tsClient) Unsubscribe(ctx context.Context, uri string) error {
	return c.d.call(ctx, map[string]any{"op": "unsubscribe", "session": c.session, "uri": uri}, nil)
}

// ResourceURIs lists the URIs of the first page of resources.
func (c *tsClient) ResourceURIs(ctx context.Context) ([]string, error) {
	var res struct {
		Resources []struct {
			URI string `json:"uri"`
		} `json:"resources"`
	}
	if err := c.d.call(ctx, map[string]any{"op": "listResources", "session": c.session}, &res); err != nil {
		return nil, err
	}
	var uris []string
	for _, r := range res.Resources {
		uris = append(uris, r.URI)
	}
	return uris, nil
}

// NextUpdate is the URI of the next resource update the session got
// (waiting up to 30 seconds for one).
func (c *tsClient) NextUpdate(ctx context.Context) (string, error) {
	var res struct {
		URI string `json:"uri"`
	}
	err := c.d.call(ctx, map[string]any{"op": "nextUpdate", "session": c.session, "timeoutMs": 30000}, &res)
	return res.URI, err
}

// Listen opens a 2026-07-28 subscriptions/listen stream for the updates of
// uris, and returns its id and the URIs the server acknowledged.
func (c *tsClient) Listen(ctx context.Context, uris []string) (string, []string, error) {
	var res struct {
		Subscription string `json:"subscription"`
		Honored      struct {
			ResourceSubscriptions []string `json:"resourceSubscriptions"`
		} `json:"honored"`
	}
	err := c.d.call(ctx, map[string]any{"op": "listen", "session": c.session, "filter": map[string]any{"resourceSubscriptions": uris}}, &res)
	return res.Subscription, res.Honored.ResourceSubscriptions, err
}

// CloseListen ends the listen stream id.
func (c *tsClient) CloseListen(ctx context.Context, id string) error {
	return c.d.call(ctx, map[string]any{"op": "closeListen", "session": c.session, "subscription": id}, nil)
}

func (c *tsClient) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.d.call(ctx, map[string]any{"op": "close", "session": c.session}, nil)
}
