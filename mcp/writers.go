package mcp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// recorder holds a whole response so it can be replaced before it is sent.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(status int)      { r.status = status }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) Flush()                      {}

// cancelable is the response to one legacy streamable HTTP request: once
// the client has canceled the request, nothing more of its answer is sent.
// A JSON answer not yet begun becomes an empty event stream (the request
// then ends with no response, as the spec asks of a canceled request).
type cancelable struct {
	http.ResponseWriter
	canceled func() bool
	started  bool
	dropping bool
}

func (c *cancelable) WriteHeader(status int) {
	if c.started {
		return
	}
	c.started = true
	if status == http.StatusOK && c.canceled() {
		c.dropping = true
		h := c.Header()
		h.Del("Content-Length")
		h.Set("Content-Type", "text/event-stream")
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *cancelable) Write(b []byte) (int, error) {
	if !c.started {
		c.WriteHeader(http.StatusOK)
	}
	if !c.dropping && strings.HasPrefix(c.Header().Get("Content-Type"), "text/event-stream") && c.canceled() {
		c.dropping = true
	}
	if c.dropping {
		return len(b), nil
	}
	return c.ResponseWriter.Write(b)
}

func (c *cancelable) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *cancelable) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// sseFilter is a legacy SSE stream that leaves out the answers to requests
// the client canceled. mcp-go writes one whole event per Write.
type sseFilter struct {
	http.ResponseWriter
	drop func(id string) bool
	// answer is the slot of the request id answers, if it has one.
	answer func(id string) *answerSlot
}

func (s *sseFilter) Write(b []byte) (int, error) {
	id, ok := responseID(b)
	var slot *answerSlot
	if ok {
		slot = s.answer(id) // (forgotten also when the answer is dropped)
	}
	if ok && s.drop(id) {
		return len(b), nil
	}
	if slot != nil {
		if out, ok := slot.rewriteEvent(b, json.RawMessage(id)); ok {
			if _, err := s.ResponseWriter.Write(out); err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	return s.ResponseWriter.Write(b)
}

func (s *sseFilter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *sseFilter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// responseID returns the id of the JSON-RPC response an SSE event carries.
func responseID(event []byte) (string, bool) {
	for _, line := range bytes.Split(event, []byte("\n")) {
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		var m wireMessage
		if json.Unmarshal(bytes.TrimSpace(data), &m) != nil || m.Method != "" || len(m.ID) == 0 {
			return "", false
		}
		return string(m.ID), true
	}
	return "", false
}
