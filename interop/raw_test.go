package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// The raw protocol: JSON-RPC written by hand, no SDK, to count what the
// server itself says it serves.

type rpcMessage struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// rawConn sends one JSON-RPC request and returns its response.
type rawConn interface {
	request(ctx context.Context, id int, method string, params any) (rpcMessage, error)
	notify(ctx context.Context, method string) error
	close()
}

// rawToolNames initializes at 2025-11-25 over transport as token's subject
// (HTTP: at the server at base) and lists every tool, following cursors.
func rawToolNames(ctx context.Context, f *fixture, transport, base, token string) ([]string, error) {
	var c rawConn
	var err error
	switch transport {
	case transportStdio:
		c, err = rawStdio(f, token)
	case transportSSE:
		c, err = rawSSE(ctx, base, token)
	case transportStreamable:
		c = &rawStreamable{url: base + "/mcp", token: token}
	default:
		err = fmt.Errorf("unknown transport %s", transport)
	}
	if err != nil {
		return nil, err
	}
	defer c.close()
	init := map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "connec-interop-raw", "version": "1"}}
	if _, err := c.request(ctx, 1, "initialize", init); err != nil {
		return nil, err
	}
	if err := c.notify(ctx, "notifications/initialized"); err != nil {
		return nil, err
	}
	var names []string
	cursor := ""
	for id := 2; ; id++ {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		m, err := c.request(ctx, id, "tools/list", params)
		if err != nil {
			return nil, err
		}
		var page struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
			NextCursor string `json:"nextCursor"`
		}
		if err := json.Unmarshal(m.Result, &page); err != nil {
			return nil, fmt.Errorf("tools/list result %s: %w", m.Result, err)
		}
		for _, tl := range page.Tools {
			names = append(names, tl.Name)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	sort.Strings(names)
	return names, nil
}

func frame(id int, method string, params any) []byte {
	m := map[string]any{"jsonrpc": "2.0", "method": method}
	if id != 0 {
		m["id"] = id
	}
	if params != nil {
		m["params"] = params
	}
	b, _ := json.Marshal(m)
	return b
}

func checkReply(m rpcMessage, method string) (rpcMessage, error) {
	if m.Error != nil {
		return m, fmt.Errorf("%s: error %d %s", method, m.Error.Code, m.Error.Message)
	}
	return m, nil
}

// --- streamable HTTP ----------------------------------------------------

type rawStreamable struct {
	url, token, session string
}

func (c *rawStreamable) post(ctx context.Context, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	return http.DefaultClient.Do(req)
}

func (c *rawStreamable) request(ctx context.Context, id int, method string, params any) (rpcMessage, error) {
	resp, err := c.post(ctx, frame(id, method, params))
	if err != nil {
		return rpcMessage{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return rpcMessage{}, fmt.Errorf("%s: HTTP %d: %s", method, resp.StatusCode, b)
	}
	if s := resp.Header.Get("Mcp-Session-Id"); s != "" {
		c.session = s
	}
	// The answer is either one JSON body or an event stream carrying it.
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		ev := newEvents(resp.Body)
		for {
			_, data, err := ev.next()
			if err != nil {
				return rpcMessage{}, fmt.Errorf("%s: %w", method, err)
			}
			var m rpcMessage
			if json.Unmarshal([]byte(data), &m) == nil && string(m.ID) == fmt.Sprint(id) {
				return checkReply(m, method)
			}
		}
	}
	var m rpcMessage
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return rpcMessage{}, fmt.Errorf("%s: %w", method, err)
	}
	return checkReply(m, method)
}

func (c *rawStreamable) notify(ctx context.Context, method string) error {
	resp, err := c.post(ctx, frame(0, method, nil))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", method, resp.StatusCode)
	}
	return nil
}

func (c *rawStreamable) close() {}

// --- SSE ----------------------------------------------------------------

type rawSSEConn struct {
	endpoint, token string
	cancel          context.CancelFunc
	msgs            chan rpcMessage
}

func rawSSE(ctx context.Context, base, token string) (*rawSSEConn, error) {
	life, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(life, "GET", base+"/sse", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET /sse: HTTP %d", resp.StatusCode)
	}
	c := &rawSSEConn{token: token, cancel: cancel, msgs: make(chan rpcMessage, 16)}
	ev := newEvents(resp.Body)
	name, data, err := ev.next()
	if err != nil || name != "endpoint" {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET /sse: want an endpoint event first, got %q %q (%v)", name, data, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		cancel()
		return nil, err
	}
	ep, err := u.Parse(data)
	if err != nil {
		cancel()
		return nil, err
	}
	c.endpoint = ep.String()
	go func() {
		defer resp.Body.Close()
		defer close(c.msgs)
		for {
			_, data, err := ev.next()
			if err != nil {
				return
			}
			var m rpcMessage
			if json.Unmarshal([]byte(data), &m) == nil {
				c.msgs <- m
			}
		}
	}()
	return c, nil
}

func (c *rawSSEConn) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", c.endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: HTTP %d", c.endpoint, resp.StatusCode)
	}
	return nil
}

func (c *rawSSEConn) request(ctx context.Context, id int, method string, params any) (rpcMessage, error) {
	if err := c.post(ctx, frame(id, method, params)); err != nil {
		return rpcMessage{}, err
	}
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return rpcMessage{}, fmt.Errorf("%s: the SSE stream ended", method)
			}
			if string(m.ID) == fmt.Sprint(id) {
				return checkReply(m, method)
			}
		case <-ctx.Done():
			return rpcMessage{}, fmt.Errorf("%s: %w", method, ctx.Err())
		}
	}
}

func (c *rawSSEConn) notify(ctx context.Context, method string) error {
	return c.post(ctx, frame(0, method, nil))
}

func (c *rawSSEConn) close() { c.cancel() }

// events reads a text/event-stream.
type events struct{ r *bufio.Reader }

func newEvents(r io.Reader) *events { return &events{r: bufio.NewReader(r)} }

func (e *events) next() (name, data string, err error) {
	var lines []string
	for {
		line, err := e.r.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if len(lines) > 0 || name != "" {
				return name, strings.Join(lines, "\n"), nil
			}
		case strings.HasPrefix(line, "event:"):
			name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			lines = append(lines, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

// --- stdio --------------------------------------------------------------

type rawStdioConn struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	log   *tail
}

func rawStdio(f *fixture, token string) (*rawStdioConn, error) {
	cmd := exec.Command(f.bin, "serve", "--stdio")
	cmd.Env = f.baseEnv()
	for k, v := range f.stdioEnv(token, false) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &rawStdioConn{cmd: cmd, log: newTail(16 << 10)}
	cmd.Stderr = c.log
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.out = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *rawStdioConn) request(ctx context.Context, id int, method string, params any) (rpcMessage, error) {
	if _, err := c.stdin.Write(append(frame(id, method, params), '\n')); err != nil {
		return rpcMessage{}, err
	}
	// Reads block; the process is killed by close (and ctx's deadline is
	// the test's) so a silent server fails the test rather than hanging it.
	stop := context.AfterFunc(ctx, func() { _ = c.cmd.Process.Kill() })
	defer stop()
	for {
		line, err := c.out.ReadBytes('\n')
		if err != nil {
			return rpcMessage{}, fmt.Errorf("%s: %w\n%s", method, err, c.log)
		}
		var m rpcMessage
		if json.Unmarshal(line, &m) == nil && string(m.ID) == fmt.Sprint(id) {
			return checkReply(m, method)
		}
	}
}

func (c *rawStdioConn) notify(_ context.Context, method string) error {
	_, err := c.stdin.Write(append(frame(0, method, nil), '\n'))
	return err
}

func (c *rawStdioConn) close() {
	_ = c.stdin.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}
