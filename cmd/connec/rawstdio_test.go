package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rawStdio drives a stdio MCP server with raw JSON-RPC lines, as a client
// that trusts nothing does: every byte the server writes to stdout must be
// part of a JSON-RPC message, or the test fails.
type rawStdio struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte // stdout, one message per line; closed at EOF
	stderr *lockedBuffer
	exited chan struct{}
	waitMu sync.Mutex
	err    error
	nextID int
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRaw starts command with env added to the test's.
func startRaw(t *testing.T, label string, env []string, command string, args ...string) *rawStdio {
	t.Helper()
	return startRawIn(t, label, "", env, command, args...)
}

// startRawIn is startRaw in working directory dir.
func startRawIn(t *testing.T, label, dir string, env []string, command string, args ...string) *rawStdio {
	t.Helper()
	cmd := exec.Command(command, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &rawStdio{t: t, name: label, cmd: cmd, stdin: stdin, lines: make(chan []byte, 64),
		stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", label, err)
	}
	go func() {
		defer close(s.lines)
		r := bufio.NewReaderSize(stdout, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				s.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		s.waitMu.Lock()
		s.err = err
		s.waitMu.Unlock()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = s.stdin.Close()
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	return s
}

// startConnec runs `connec serve --stdio` on the embedded default in dataDir.
func startConnec(t *testing.T, label, dataDir string) *rawStdio {
	t.Helper()
	return startRaw(t, label, []string{"CONNEC_DATA_DIR=" + dataDir, "CONNEC_LOG_FORMAT=json", "DATABASE_URL=",
		"CONNEC_SUBJECT=", "CONNEC_TOKEN=", "CONNEC_KEY_FILE="}, binary(t), "serve", "--stdio")
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *rpcError) Error() string { return fmt.Sprintf("JSON-RPC error %d: %s", e.Code, e.Message) }

// message is every JSON-RPC 2.0 message's shape.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

// checkLine fails the test unless line is exactly one JSON-RPC message.
func checkLine(t *testing.T, who string, line []byte) message {
	t.Helper()
	var m message
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&m); err != nil || m.JSONRPC != "2.0" || (m.Method == "" && len(m.ID) == 0) {
		t.Fatalf("%s wrote a line that is not a JSON-RPC message to stdout (%v): %q", who, err, line)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("%s wrote more than one JSON value on a line: %q", who, line)
	}
	return m
}

func (s *rawStdio) send(v any) {
	s.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.stdin.Write(append(b, '\n')); err != nil {
		s.t.Fatalf("%s: write: %v\nstderr:\n%s", s.name, err, s.stderr)
	}
}

// request sends a request and returns its result, skipping notifications.
func (s *rawStdio) request(ctx context.Context, method string, params any) (json.RawMessage, error) {
	s.t.Helper()
	s.nextID++
	id := strconv.Itoa(s.nextID)
	s.send(map[string]any{"jsonrpc": "2.0", "id": s.nextID, "method": method, "params": params})
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("%s: stdout closed while waiting for %s\nstderr:\n%s", s.name, method, s.stderr)
			}
			m := checkLine(s.t, s.name, line)
			if string(m.ID) != id {
				continue
			}
			if m.Error != nil {
				return nil, m.Error
			}
			return m.Result, nil
		case <-ctx.Done():
			s.t.Fatalf("%s: no answer to %s: %v\nstderr:\n%s", s.name, method, ctx.Err(), s.stderr)
		}
	}
}

func (s *rawStdio) initialize(ctx context.Context) {
	s.t.Helper()
	if _, err := s.request(ctx, "initialize", map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "raw-" + s.name, "version": "1"}}); err != nil {
		s.t.Fatalf("%s: initialize: %v\nstderr:\n%s", s.name, err, s.stderr)
	}
	s.send(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
}

// toolResult is the part of a tools/call result the tests look at.
type toolResult struct {
	IsError    bool `json:"isError"`
	Structured struct {
		Status string `json:"status"`
		Error  *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"structuredContent"`
}

// callTool calls a tool; a protocol error or an error result is returned
// as an error whose text starts with the error type.
func (s *rawStdio) callTool(ctx context.Context, name string, args map[string]any) (string, error) {
	s.t.Helper()
	raw, err := s.request(ctx, "tools/call", map[string]any{"name": name, "arguments": args})
	if err != nil {
		return "", err
	}
	var r toolResult
	if err := json.Unmarshal(raw, &r); err != nil {
		s.t.Fatalf("%s: tools/call result: %v: %s", s.name, err, raw)
	}
	if r.IsError {
		if r.Structured.Error == nil {
			s.t.Fatalf("%s: error result without an error: %s", s.name, raw)
		}
		return "", fmt.Errorf("%s: %s", r.Structured.Error.Type, r.Structured.Error.Message)
	}
	return string(raw), nil
}

// stop closes stdin (the client going away) and waits for the process to
// end; any stdout it writes meanwhile must still be protocol.
func (s *rawStdio) stop(deadline time.Duration) {
	s.t.Helper()
	_ = s.stdin.Close()
	timeout := time.After(deadline)
	for {
		select {
		case line, ok := <-s.lines:
			if ok {
				checkLine(s.t, s.name, line)
				continue
			}
			select {
			case <-s.exited:
			case <-timeout:
				s.t.Fatalf("%s did not exit after stdin closed\nstderr:\n%s", s.name, s.stderr)
			}
			s.waitMu.Lock()
			err := s.err
			s.waitMu.Unlock()
			if err != nil {
				s.t.Fatalf("%s exited with %v\nstderr:\n%s", s.name, err, s.stderr)
			}
			return
		case <-timeout:
			s.t.Fatalf("%s did not exit after stdin closed\nstderr:\n%s", s.name, s.stderr)
		}
	}
}

// postmasterPID reads the embedded cluster's postmaster.pid (0 if none).
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(dataDir + "/postgres/postmaster.pid")
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

// processAlive reports whether pid is a live process (not a zombie).
func processAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	rest := b[bytes.LastIndexByte(b, ')')+1:]
	f := strings.Fields(string(rest))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// reapCluster makes sure no embedded PostgreSQL outlives the test in
// dataDir even when the test fails before its processes stopped it (call it
// before starting them: cleanups run last to first).
func reapCluster(t *testing.T, dataDir string) {
	t.Cleanup(func() {
		if pid := postmasterPID(dataDir); processAlive(pid) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		}
	})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
