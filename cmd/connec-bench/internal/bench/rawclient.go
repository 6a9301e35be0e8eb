package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// rawClient is the load generator used to compare MCP engines (sdk.go):
// JSON-RPC written and read directly, so that both servers receive
// byte-for-byte the same requests and the client's own work per call is
// the same whichever server answers (a library client would favour its own
// server's framing). It speaks one protocol revision: 2026-07-28 (no
// handshake; each request carries its revision and client in _meta and,
// over HTTP, the standard Mcp-Method/Mcp-Name headers) or an older one
// (initialize, then a session).
type rawClient interface {
	call(ctx context.Context) error
	close()
}

// Protocol revisions the raw client speaks.
const (
	revModern = "2026-07-28"
	revLegacy = "2025-11-25"
)

// rawRequest renders JSON-RPC request id of method with params (a JSON
// object without _meta); on the modern revision _meta is added.
func rawRequest(rev string, id int64, method string, params string) []byte {
	if rev == revModern {
		meta := `"_meta":{"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"connec-bench","version":"1"},` +
			`"io.modelcontextprotocol/protocolVersion":"` + revModern + `"}`
		if params == "{}" {
			params = "{" + meta + "}"
		} else {
			params = "{" + meta + "," + params[1:]
		}
	}
	return []byte(`{"jsonrpc":"2.0","id":` + strconv.FormatInt(id, 10) + `,"method":"` + method + `","params":` + params + `}`)
}

// callParams is the tools/call params both servers get.
func callParams(tool string, args map[string]any) (string, error) {
	b, err := json.Marshal(map[string]any{"name": tool, "arguments": args})
	return string(b), err
}

// rawResponse is what the client checks of an answer.
type rawResponse struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result *struct {
		IsError           bool `json:"isError"`
		StructuredContent *struct {
			Status string `json:"status"`
		} `json:"structuredContent"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (r *rawResponse) check(toolCall bool) error {
	switch {
	case r.Error != nil:
		return fmt.Errorf("JSON-RPC error %d: %s", r.Error.Code, r.Error.Message)
	case r.Result == nil:
		return errors.New("no result")
	case toolCall && (r.Result.IsError || r.Result.StructuredContent == nil || r.Result.StructuredContent.Status != "ok"):
		return errors.New("tool error")
	}
	return nil
}

// rawHTTP is one client over streamable HTTP.
type rawHTTP struct {
	hc      *http.Client
	url     string
	rev     string
	tool    string
	params  string
	session string
	next    atomic.Int64
}

func dialRawHTTP(ctx context.Context, hc *http.Client, url, rev, tool string, args map[string]any) (*rawHTTP, error) {
	params, err := callParams(tool, args)
	if err != nil {
		return nil, err
	}
	c := &rawHTTP{hc: hc, url: url, rev: rev, tool: tool, params: params}
	if rev == revModern {
		_, err := c.post(ctx, "server/discover", "", rawRequest(rev, c.next.Add(1), "server/discover", "{}"), false)
		return c, err
	}
	init := `{"protocolVersion":"` + rev + `","capabilities":{},"clientInfo":{"name":"connec-bench","version":"1"}}`
	resp, err := c.post(ctx, "initialize", "", rawRequest(rev, c.next.Add(1), "initialize", init), false)
	if err != nil {
		return nil, err
	}
	c.session = resp.Header.Get("Mcp-Session-Id")
	if _, err := c.post(ctx, "notifications/initialized", "", []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), false); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *rawHTTP) call(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := c.post(ctx, "tools/call", c.tool, rawRequest(c.rev, c.next.Add(1), "tools/call", c.params), true)
	return err
}

func (c *rawHTTP) close() {
	if c.session == "" {
		return
	}
	req, err := http.NewRequest(http.MethodDelete, c.url, nil)
	if err != nil {
		return
	}
	req.Header.Set("Mcp-Session-Id", c.session)
	req.Header.Set("MCP-Protocol-Version", c.rev)
	if resp, err := c.hc.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// post sends one message and reads its answer (JSON or an event stream),
// checking it when the message is a request.
func (c *rawHTTP) post(ctx context.Context, method, name string, body []byte, toolCall bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	h.Set("MCP-Protocol-Version", c.rev)
	if c.rev == revModern {
		h.Set("Mcp-Method", method)
		if name != "" {
			h.Set("Mcp-Name", name)
		}
	}
	if c.session != "" {
		h.Set("Mcp-Session-Id", c.session)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if strings.HasPrefix(method, "notifications/") {
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("%s: %s", method, resp.Status)
		}
		return resp, nil
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s: %s: %s", method, resp.Status, bytes.TrimSpace(b))
	}
	var m rawResponse
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		err = readEvent(resp.Body, &m)
	} else {
		err = json.NewDecoder(resp.Body).Decode(&m)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: read answer: %w", method, err)
	}
	return resp, m.check(toolCall)
}

// readEvent reads events until one carries a JSON-RPC response.
func readEvent(r io.Reader, m *rawResponse) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 16<<10), 4<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:"))
		if !ok {
			continue
		}
		*m = rawResponse{}
		if err := json.Unmarshal(bytes.TrimSpace(data), m); err != nil {
			return err
		}
		if m.Method == "" && len(m.ID) > 0 {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// rawStdio is one server process and its one client over stdin/stdout;
// concurrent calls share the pipe, answers are matched by id.
type rawStdio struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	logf    *os.File
	rev     string
	params  string
	next    atomic.Int64
	writeMu sync.Mutex
	mu      sync.Mutex
	waiting map[string]chan rawResponse
	done    chan struct{}
	err     error
}

func startRawStdio(ctx context.Context, c Command, env []string, logPath string, rev, tool string, args map[string]any, cmdArgs ...string) (*rawStdio, error) {
	params, err := callParams(tool, args)
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := c.command(context.WithoutCancel(ctx), env, cmdArgs...)
	cmd.Stderr = logf
	in, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &rawStdio{cmd: cmd, in: in, logf: logf, rev: rev, params: params, waiting: map[string]chan rawResponse{}, done: make(chan struct{})}
	go s.read(out)
	if rev != revModern {
		init := `{"protocolVersion":"` + rev + `","capabilities":{},"clientInfo":{"name":"connec-bench","version":"1"}}`
		if err := s.request(ctx, "initialize", init, false); err != nil {
			s.close()
			return nil, err
		}
		if err := s.write([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

func (s *rawStdio) read(out io.Reader) {
	defer close(s.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var m rawResponse
		if json.Unmarshal(sc.Bytes(), &m) != nil || m.Method != "" || len(m.ID) == 0 {
			continue
		}
		s.mu.Lock()
		ch := s.waiting[string(m.ID)]
		delete(s.waiting, string(m.ID))
		s.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
	s.err = sc.Err()
}

func (s *rawStdio) write(b []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, err := s.in.Write(append(b, '\n'))
	return err
}

func (s *rawStdio) request(ctx context.Context, method, params string, toolCall bool) error {
	id := s.next.Add(1)
	key := strconv.FormatInt(id, 10)
	ch := make(chan rawResponse, 1)
	s.mu.Lock()
	s.waiting[key] = ch
	s.mu.Unlock()
	if err := s.write(rawRequest(s.rev, id, method, params)); err != nil {
		return err
	}
	select {
	case m := <-ch:
		return m.check(toolCall)
	case <-s.done:
		return fmt.Errorf("server closed its output: %v", s.err)
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.waiting, key)
		s.mu.Unlock()
		return ctx.Err()
	}
}

func (s *rawStdio) call(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return s.request(ctx, "tools/call", s.params, true)
}

func (s *rawStdio) close() {
	_ = s.in.Close()
	<-s.done
	_ = s.cmd.Wait()
	s.logf.Close()
}
