package mcp

import (
	"net/http"
	"sync"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
)

// sessions are the legacy (before 2026-07-28) HTTP sessions this server
// issued, each bound to the subject that opened it: a session id is usable
// only by that subject, only until it is terminated, and only on this
// server (legacy sessions live in one process: deploy with sticky sessions
// or use 2026-07-28, which has none).
type sessions struct {
	mu   sync.Mutex
	byID map[string]*sessionState
	// ended, if set, is told of each session that ends.
	ended func(id string)
}

type sessionState struct {
	subject callctx.Subject
	// canceled holds the ids of requests the client canceled whose answers
	// must not be sent.
	canceled map[string]bool
	// answers are the slots of requests in progress whose answers go on
	// the session's SSE stream (legacy SSE transport), by request id.
	answers map[string]*answerSlot
}

func newSessions() *sessions { return &sessions{byID: map[string]*sessionState{}} }

const sessionPrefix = "mcp-session-"

func (s *sessions) open(subject callctx.Subject) string {
	id := sessionPrefix + uuid.NewString()
	s.mu.Lock()
	s.byID[id] = &sessionState{subject: subject, canceled: map[string]bool{}, answers: map[string]*answerSlot{}}
	s.mu.Unlock()
	return id
}

// owned reports whether id is a live session of subject. A session of
// another subject is reported exactly as an unknown one.
func (s *sessions) owned(id string, subject callctx.Subject) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byID[id]
	return ok && st.subject == subject
}

func (s *sessions) close(id string) {
	s.mu.Lock()
	delete(s.byID, id)
	s.mu.Unlock()
	if s.ended != nil {
		s.ended(id)
	}
}

// cancel records that the client of session id canceled request reqID.
func (s *sessions) cancel(id, reqID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.byID[id]; ok && len(st.canceled) < 10000 {
		st.canceled[reqID] = true
	}
}

// wasCanceled reports (and forgets) whether request reqID of session id was
// canceled.
func (s *sessions) wasCanceled(id, reqID string, forget bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byID[id]
	if !ok || !st.canceled[reqID] {
		return false
	}
	if forget {
		delete(st.canceled, reqID)
	}
	return true
}

// expect records the slot of request reqID of session id, whose answer
// will go on the session's stream.
func (s *sessions) expect(id, reqID string, slot *answerSlot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.byID[id]; ok && len(st.answers) < 10000 {
		st.answers[reqID] = slot
	}
}

// answered returns (and forgets) the slot of request reqID of session id.
func (s *sessions) answered(id, reqID string) *answerSlot {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.byID[id]
	if !ok {
		return nil
	}
	slot := st.answers[reqID]
	delete(st.answers, reqID)
	return slot
}

// manager is the streamable HTTP session manager for one request: mcp-go
// asks it to mint, check and end session ids, and it answers for the
// request's subject.
type manager struct {
	s       *sessions
	subject callctx.Subject
}

func (s *sessions) resolver() server.SessionIdManagerResolver { return resolverFunc(s.managerFor) }

type resolverFunc func(r *http.Request) server.SessionIdManager

func (f resolverFunc) ResolveSessionIdManager(r *http.Request) server.SessionIdManager { return f(r) }

func (s *sessions) managerFor(r *http.Request) server.SessionIdManager {
	m := &manager{s: s}
	if r != nil {
		if p, ok := callctx.PrincipalFrom(r.Context()); ok {
			m.subject = p.Subject
		}
	}
	return m
}

func (m *manager) Generate() string { return m.s.open(m.subject) }

func (m *manager) Validate(id string) (bool, error) {
	if !m.s.owned(id, m.subject) {
		return false, errUnknownSession
	}
	return false, nil
}

func (m *manager) Terminate(id string) (bool, error) {
	m.s.close(id)
	return false, nil
}

type sessionError string

func (e sessionError) Error() string { return string(e) }

const errUnknownSession = sessionError("unknown or terminated session")
