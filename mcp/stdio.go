package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity/authlimit"
)

// StdioAuth says, before every request, who a stdio session acts as: the
// session's token or subject resolved again each time, so that a revoked or
// expired token, or a membership change, applies to the very next call.
type StdioAuth func(ctx context.Context) (callctx.Principal, error)

// RunStdio serves srv over in/out, each request as auth resolves it, until
// in closes or ctx ends. Only JSON-RPC frames are written to out; logs go
// elsewhere.
//
// connec reads the stream itself rather than through mcp-go's stdio server
// because the protocol asks for things that one does not do: a request in
// flight when the input ends is finished and answered (a host may write its
// requests and close stdin at once), a request the client cancels is not
// answered, and a request with a null id gets an Invalid Request error.
// Each message is then handled by the shared MCP server, exactly as over HTTP.
func RunStdio(ctx context.Context, srv *Server, auth StdioAuth, in io.Reader, out io.Writer, log *slog.Logger) error {
	s := &stdioConn{
		srv:      srv,
		auth:     auth,
		out:      out,
		log:      log,
		session:  &stdioSession{id: "stdio-" + uuid.NewString(), notes: make(chan mcp.JSONRPCNotification, 64), pending: map[string]chan wireMessage{}},
		inflight: map[string]*inflight{},
	}
	s.session.send = s.write
	// ctx ends the session at once (a signal): requests see it canceled.
	// The input ending does not: requests already read run to completion.
	base := context.WithoutCancel(ctx)
	serving, stop := context.WithCancel(base)
	defer stop()
	defer context.AfterFunc(ctx, stop)()
	if err := srv.RegisterSession(serving, s.session); err != nil {
		return fmt.Errorf("register stdio session: %w", err)
	}
	defer srv.UnregisterSession(base, s.session.id)
	defer srv.subs.endSession(s.session.id)
	serving = srv.WithContext(serving, s.session)

	notesDone := make(chan struct{})
	go s.forwardNotifications(serving, notesDone)

	err := s.read(serving, in)
	s.wg.Wait()
	stop()
	select {
	case <-notesDone:
	case <-time.After(notesGrace):
		// A notification is stuck writing to a client that no longer
		// reads: the session ends without it.
		s.log.Warn("stdio session ended with a notification unwritten: the client stopped reading")
	}
	if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, io.EOF)) {
		return nil
	}
	return err
}

// notesGrace bounds how long an ending session waits for its notification
// writer.
const notesGrace = 5 * time.Second

// maxLine caps one message on stdin, as MaxRequestBytes does over HTTP.
const maxLine = MaxRequestBytes

type stdioConn struct {
	srv     *Server
	auth    StdioAuth
	out     io.Writer
	log     *slog.Logger
	session *stdioSession
	writeMu sync.Mutex
	wg      sync.WaitGroup

	mu       sync.Mutex
	inflight map[string]*inflight
}

// inflight is a request being served; canceled means the client asked for
// it to stop, so its answer is dropped.
type inflight struct {
	cancel   context.CancelFunc
	canceled atomic.Bool
}

// envelope is what the loop needs to know of a message to route it.
type wireMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

func (s *stdioConn) read(ctx context.Context, in io.Reader) error {
	r := bufio.NewReaderSize(in, 64<<10)
	for {
		line, err := readLine(r)
		if len(bytes.TrimSpace(line)) > 0 {
			s.handle(ctx, line)
		}
		if errors.Is(err, errLineTooLong) {
			s.write(rpcError(nil, mcp.INVALID_REQUEST, fmt.Sprintf("message too large (limit %d bytes)", maxLine)))
			continue
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads one newline-terminated message, refusing (and skipping)
// one longer than maxLine instead of buffering it.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > maxLine {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return nil, err
			}
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, err
	}
}

func (s *stdioConn) handle(ctx context.Context, line []byte) {
	var m wireMessage
	if err := json.Unmarshal(line, &m); err != nil {
		s.write(rpcError(nil, mcp.PARSE_ERROR, "parse error: the message is not valid JSON"))
		return
	}
	if m.Method == "" {
		// A response to a request connec sent (elicitation/create).
		s.session.answered(m)
		return
	}
	if reply := checkRequest(m); reply != nil {
		s.write(reply)
		return
	}
	if !s.session.modern.Load() && modernParams(m.Params) {
		s.session.modern.Store(true)
	}
	if len(m.ID) == 0 {
		if m.Method == string(mcp.MethodNotificationCancelled) {
			s.cancel(m.Params)
			return
		}
		if resp := s.srv.HandleMessage(ctx, line); resp != nil {
			s.write(resp)
		}
		return
	}
	p, err := s.auth(ctx)
	if err != nil {
		s.write(s.refuse(ctx, m, err))
		return
	}
	p.Transport = TransportStdio
	key := string(m.ID)
	rctx, cancel := context.WithCancel(callctx.WithPrincipal(ctx, p))
	req := &inflight{cancel: cancel}
	s.mu.Lock()
	s.inflight[key] = req
	s.mu.Unlock()
	s.wg.Go(func() {
		defer cancel()
		hctx := withSubscribeParams(withListCheck(rctx), m)
		if body, ictx, _, _, ok := s.srv.translateCall(hctx, line); ok {
			line, hctx = body, ictx
		} else if body, ictx, _, ok := s.srv.translatePrompt(hctx, line); ok {
			line, hctx = body, ictx
		} else if body, ictx, _, ok := s.srv.translateResource(hctx, line); ok {
			line, hctx = body, ictx
		}
		hctx, slot := withAnswerSlotFor(hctx, m.Method)
		if checkedLate[m.Method] {
			slot.late = func() *rpcAnswer { return paramsProblem(m) }
		}
		resp := s.srv.HandleMessage(hctx, line)
		if e, ok := resp.(mcp.JSONRPCError); ok {
			if a, set := slot.final(e.Error.Code); set {
				e.Error.Code, e.Error.Message, e.Error.Data = a.Code, a.Message, a.Data
				resp = e
			}
		} else if a, set := slot.answer(); set && slot.results && resp != nil {
			// A refusal of a request mcp-go answers as done.
			resp = answerMessage(m.ID, a)
		}
		s.mu.Lock()
		if s.inflight[key] == req {
			delete(s.inflight, key)
		}
		s.mu.Unlock()
		if req.canceled.Load() {
			return
		}
		if resp != nil {
			s.write(listFailure(rctx, m, resp))
		}
	})
}

// refuse answers a request made when the session could not be
// authenticated: unauthenticated (audited, as over HTTP) when its token or
// subject is no longer valid, unavailable when that could not be checked.
func (s *stdioConn) refuse(ctx context.Context, m wireMessage, err error) any {
	if errors.Is(err, fault.ErrUnavailable) {
		if m.Method == string(mcp.MethodToolsCall) {
			// As any tool call that cannot be served now: a tool error the
			// agent can read and retry.
			var id any
			_ = json.Unmarshal(m.ID, &id)
			return mcp.NewJSONRPCResultResponse(mcp.NewRequestId(id),
				encode(nil, fault.New(fault.Unavailable, "service unavailable: could not check the session's credentials; try again")))
		}
		return rpcError(m.ID, mcp.INTERNAL_ERROR, "service unavailable: could not check the session's credentials; try again")
	}
	// Limited and audited per session, as over HTTP per address (authlimit).
	if aerr := s.srv.svc.AuthGuard().Refuse(ctx, authlimit.Attempt{Source: authlimit.Session(s.session.id),
		Transport: TransportStdio, Tool: "stdio:" + truncate(m.Method, 64)}); errors.Is(aerr, fault.ErrUnavailable) {
		return rpcError(m.ID, mcp.INTERNAL_ERROR, "service unavailable: the refusal could not be audited; try again")
	}
	return rpcError(m.ID, errUnauthenticated, "unauthenticated: this session's token is revoked, expired or unknown, or its user is gone; start a new session with valid credentials")
}

// errUnauthenticated is the JSON-RPC error code of a request whose session
// credentials are no longer valid (a server-defined code).
const errUnauthenticated = -32001

// cancel stops the request a notifications/cancelled names; its answer is
// dropped. Unknown or finished requests are ignored, as the spec allows.
func (s *stdioConn) cancel(params json.RawMessage) {
	var p struct {
		RequestID json.RawMessage `json:"requestId"`
	}
	if json.Unmarshal(params, &p) != nil || len(p.RequestID) == 0 {
		return
	}
	s.mu.Lock()
	req := s.inflight[string(p.RequestID)]
	s.mu.Unlock()
	if req != nil {
		req.canceled.Store(true)
		req.cancel()
	}
}

func (s *stdioConn) write(msg any) {
	b, err := json.Marshal(msg)
	if err != nil {
		s.log.Error("could not encode an MCP message", "err", err)
		return
	}
	b = append(b, '\n')
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.out.Write(b); err != nil {
		s.log.Debug("stdio client gone", "err", err)
	}
}

func (s *stdioConn) forwardNotifications(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case n := <-s.session.notes:
			s.write(s.session.tagged(n))
		case <-ctx.Done():
			return
		}
	}
}

// stdioSession is the one client of a stdio stream, as mcp-go sees it.
type stdioSession struct {
	id          string
	notes       chan mcp.JSONRPCNotification
	initialized atomic.Bool
	mu          sync.Mutex
	info        mcp.Implementation
	caps        mcp.ClientCapabilities
	filter      mcp.SubscriptionFilter
	listening   bool
	// modern is set once the client speaks 2026-07-28, where every
	// notification is opt-in (subscriptions/listen).
	modern atomic.Bool
	// level is the log level the client set (logging/setLevel).
	level atomic.Value
	// listenID is the id of the subscriptions/listen request the session
	// serves as its stream, while it does (nil otherwise).
	listenID atomic.Pointer[any]

	// send writes a message to the client; pending are the requests sent
	// to it (by id) that await its answer.
	send    func(msg any)
	nextID  atomic.Int64
	pmu     sync.Mutex
	pending map[string]chan wireMessage
}

// RequestElicitation asks the client's user (elicitation/create, a
// request to the client) and waits for the answer or ctx.
func (s *stdioSession) RequestElicitation(ctx context.Context, request mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	if s.GetClientCapabilities().Elicitation == nil {
		// It would not answer: refuse at once rather than wait.
		return nil, errors.New("the client declared no elicitation capability")
	}
	id := fmt.Sprintf(`"connec-%d"`, s.nextID.Add(1))
	ch := make(chan wireMessage, 1)
	s.pmu.Lock()
	s.pending[id] = ch
	s.pmu.Unlock()
	defer func() {
		s.pmu.Lock()
		delete(s.pending, id)
		s.pmu.Unlock()
	}()
	s.send(map[string]any{"jsonrpc": mcp.JSONRPC_VERSION, "id": json.RawMessage(id), "method": string(mcp.MethodElicitationCreate),
		"params": request.Params})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case m := <-ch:
		if len(m.Error) > 0 && string(m.Error) != "null" {
			var e struct {
				Message string `json:"message"`
			}
			_ = json.Unmarshal(m.Error, &e)
			return nil, fmt.Errorf("the client refused: %s", e.Message)
		}
		var res mcp.ElicitationResult
		if err := json.Unmarshal(m.Result, &res); err != nil {
			return nil, fmt.Errorf("the client's answer is not an elicitation result: %w", err)
		}
		return &res, nil
	}
}

// answered hands a response from the client to the request that awaits it
// (any other is dropped: connec sent no such request).
func (s *stdioSession) answered(m wireMessage) {
	s.pmu.Lock()
	ch, ok := s.pending[string(bytes.TrimSpace(m.ID))]
	s.pmu.Unlock()
	if ok {
		select {
		case ch <- m:
		default:
		}
	}
}

func (s *stdioSession) SessionID() string                  { return s.id }
func (s *stdioSession) SetLogLevel(level mcp.LoggingLevel) { s.level.Store(level) }

// GetLogLevel is the level the client set, error until it sets one (as
// mcp-go's own sessions).
func (s *stdioSession) GetLogLevel() mcp.LoggingLevel {
	if l, ok := s.level.Load().(mcp.LoggingLevel); ok {
		return l
	}
	return mcp.LoggingLevelError
}
func (s *stdioSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return s.notes }
func (s *stdioSession) Initialize()                                         { s.initialized.Store(true) }
func (s *stdioSession) Initialized() bool                                   { return s.initialized.Load() }

func (s *stdioSession) GetClientInfo() mcp.Implementation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

func (s *stdioSession) SetClientInfo(i mcp.Implementation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.info = i
}

func (s *stdioSession) GetClientCapabilities() mcp.ClientCapabilities {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.caps
}

func (s *stdioSession) SetClientCapabilities(c mcp.ClientCapabilities) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.caps = c
}

// SetSubscriptionFilter records what a 2026-07-28 client opted in to with
// subscriptions/listen; notifications outside it are not sent.
func (s *stdioSession) SetSubscriptionFilter(f mcp.SubscriptionFilter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filter, s.listening = f, !f.IsEmpty()
}

// SubscriptionFilter says what the client opted in to: a 2026-07-28 client
// that is not listening opted in to nothing; a legacy client gets every
// notification (active false).
func (s *stdioSession) SubscriptionFilter() (mcp.SubscriptionFilter, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.filter, s.listening || s.modern.Load()
}

// tagged is n as the session sends it: on a 2026-07-28 listen stream
// tagged with its subscription (the listen request's id), as mcp-go tags
// what it sends on its HTTP streams.
func (s *stdioSession) tagged(n mcp.JSONRPCNotification) mcp.JSONRPCNotification {
	id := s.listenID.Load()
	if id == nil {
		return n
	}
	if _, ok := n.Params.Meta[mcp.MetaKeySubscriptionID]; ok {
		return n
	}
	meta := make(map[string]any, len(n.Params.Meta)+1) // (a broadcast shares its map)
	maps.Copy(meta, n.Params.Meta)
	meta[mcp.MetaKeySubscriptionID] = *id
	n.Params.Meta = meta
	return n
}

// tagStdioListen makes a stdio session that serves a subscriptions/listen
// request tag what it sends with the request's id while the request lasts.
func tagStdioListen(ctx context.Context, id any, _ *mcp.SubscriptionsListenRequest) {
	ss, ok := server.ClientSessionFromContext(ctx).(*stdioSession)
	if !ok || id == nil {
		return
	}
	p := &id
	ss.listenID.Store(p)
	context.AfterFunc(ctx, func() { ss.listenID.CompareAndSwap(p, nil) })
}
