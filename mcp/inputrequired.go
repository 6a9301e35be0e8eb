package mcp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// On 2026-07-28 a server does not send requests to the client: a call that
// needs the user's input answers input_required with the questions and an
// opaque request state, and the client calls again with the answers and the
// state (multi round-trip requests, SEP-2322). An upstream MCP server asks
// within its call instead (elicitation/create, 2025-11-25), and must get its
// answer in that call. connec bridges the two: the call runs on in the
// background while the client is asked; the client's next call with the
// state delivers the answer to the upstream that waits for it, and answers
// with the call's result, or with its next question.

// Bounds of a call waiting on its client.
const (
	// answerWait is how long an operation's question waits for the
	// client's next call; after it the operation is told the client did
	// not answer.
	answerWait = 5 * time.Minute
	// resultWait is how long a call answered in the background stays to
	// be collected.
	resultWait = time.Minute
)

// pendingCalls are the calls of 2026-07-28 clients waiting on their user,
// by request state.
type pendingCalls struct {
	mu    sync.Mutex
	calls map[string]*pendingCall
	// keys seal upstreams' request states (seal with the first; unseal
	// with any).
	keys [][]byte
	// relay passes a round whose call waits on another server of the
	// deployment there (nil: none does).
	relay func(ctx context.Context, r core.Round) (json.RawMessage, error)
	// tag names these pendingCalls in the states they issue.
	tag string
}

// newPendingCalls seals with keys, the keys every server of the deployment
// derives alike (2026-07-28 is stateless: a round may reach any of them),
// or, given none, with a key of this process's own.
func newPendingCalls(keys [][]byte) *pendingCalls {
	if len(keys) == 0 {
		own := make([]byte, 32)
		_, _ = rand.Read(own)
		keys = [][]byte{own}
	}
	var tag [6]byte
	_, _ = rand.Read(tag[:])
	return &pendingCalls{calls: map[string]*pendingCall{}, keys: keys, tag: base64.RawURLEncoding.EncodeToString(tag[:])}
}

// pendingCall is one call running in the background.
type pendingCall struct {
	state string
	owner callctx.Subject // only the caller may resume it
	tool  string          // and only as the same tool
	asks  chan question
	done  chan *mcp.CallToolResult // buffered: the call's result
	// asked is the question the client was sent, awaiting its answer.
	mu    sync.Mutex
	asked *question
	n     int
	timer *time.Timer
}

// question is an operation's elicitation request and where its answer goes.
type question struct {
	id     string
	params json.RawMessage
	answer chan json.RawMessage // buffered
}

// errNoAnswer tells the operation its question got no answer.
var errNoAnswer = fault.New(fault.Unavailable, "the client did not answer in time")

// start runs call in the background for a 2026-07-28 client that can be
// asked, and answers the first of its result or its first question.
func (pc *pendingCalls) start(ctx context.Context, tool string, call func(ctx context.Context) *mcp.CallToolResult) *mcp.CallToolResult {
	p := &pendingCall{state: pc.newState(), tool: tool, asks: make(chan question), done: make(chan *mcp.CallToolResult, 1)}
	if pr, ok := callctx.PrincipalFrom(ctx); ok {
		p.owner = pr.Subject
	}
	bctx := core.WithElicit(context.WithoutCancel(ctx), func(rctx context.Context, request json.RawMessage) (json.RawMessage, error) {
		q := question{params: request, answer: make(chan json.RawMessage, 1)}
		select {
		case p.asks <- q:
		case <-rctx.Done():
			return nil, rctx.Err()
		}
		t := time.NewTimer(answerWait)
		defer t.Stop()
		select {
		case a := <-q.answer:
			return a, nil
		case <-t.C:
			return nil, errNoAnswer
		case <-rctx.Done():
			return nil, rctx.Err()
		}
	})
	go func() { p.done <- call(bctx) }()
	return pc.wait(ctx, p)
}

// resume delivers the answers of a client's next call to the call its
// request state names, and answers as start does. A call waiting on
// another server of the deployment gets them there (core.RelayRound).
func (pc *pendingCalls) resume(ctx context.Context, tool string, params mcp.MultiRoundTripParams) (*mcp.CallToolResult, error) {
	var owner callctx.Subject
	if pr, ok := callctx.PrincipalFrom(ctx); ok {
		owner = pr.Subject
	}
	if p := pc.take(params.RequestState, owner, tool); p != nil {
		return pc.answer(ctx, p, params), nil
	}
	if pc.relay == nil || pc.issued(params.RequestState) {
		return nil, errBadState
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, errBadState
	}
	out, err := pc.relay(ctx, core.Round{Owner: owner, Tool: tool, Params: raw})
	switch {
	case errors.Is(err, core.ErrRoundNotHeld):
		return nil, errBadState
	case err != nil:
		return encode(nil, err), nil
	}
	var res mcp.CallToolResult
	if err := json.Unmarshal(out, &res); err != nil {
		return encode(nil, fault.New(fault.Unavailable, "the server the call waits on answered with no result")), nil
	}
	return &res, nil
}

// hold takes a round another server relays when its call waits here
// (core.RoundHolder); a state issued here whose call is not (used,
// expired, another caller's) is refused.
func (pc *pendingCalls) hold(r core.Round) (func(context.Context) json.RawMessage, core.RoundVerdict) {
	var params mcp.MultiRoundTripParams
	if json.Unmarshal(r.Params, &params) != nil || !pc.issued(params.RequestState) {
		return nil, core.RoundNotMine
	}
	p := pc.take(params.RequestState, r.Owner, r.Tool)
	if p == nil {
		return nil, core.RoundRefused
	}
	return func(ctx context.Context) json.RawMessage {
		b, err := json.Marshal(pc.answer(ctx, p, params))
		if err != nil {
			b, _ = json.Marshal(encode(nil, fault.New(fault.Internal, "the call's answer cannot be encoded")))
		}
		return b
	}, core.RoundHeld
}

// take removes the call state names from those waiting here, if it is
// owner's, as tool: a state resumes its call once.
func (pc *pendingCalls) take(state string, owner callctx.Subject, tool string) *pendingCall {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	p := pc.calls[state]
	if p == nil || p.owner != owner || p.tool != tool {
		return nil
	}
	delete(pc.calls, p.state)
	return p
}

// answer delivers params' answer to the question p asked, and answers as
// start does.
func (pc *pendingCalls) answer(ctx context.Context, p *pendingCall, params mcp.MultiRoundTripParams) *mcp.CallToolResult {
	p.mu.Lock()
	q := p.asked
	p.asked = nil
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
	if q != nil {
		answer := json.RawMessage(`{"action":"cancel"}`) // no answer given: the user did not answer
		if r, ok := params.InputResponses[q.id]; ok {
			if b, err := r.MarshalJSON(); err == nil && len(b) > 0 && string(b) != "null" {
				answer = b
			}
		}
		q.answer <- answer
	}
	return pc.wait(ctx, p)
}

// errBadState refuses a request state connec did not issue to this caller
// for this tool, or issued and already used: a protocol error (JSON-RPC),
// as the spec asks of state that fails verification.
var errBadState = errors.New("invalid requestState: unknown, expired, altered, used already or another call's; call again without it")

// wait answers the call's result when it ends first, or its next question
// (input_required) when it asks first; then the call stays, under its
// request state, for the client's next call.
func (pc *pendingCalls) wait(ctx context.Context, p *pendingCall) *mcp.CallToolResult {
	select {
	case res := <-p.done:
		return res
	case q := <-p.asks:
		p.mu.Lock()
		p.n++
		q.id = "elicitation-" + strconv.Itoa(p.n)
		p.asked = &q
		p.mu.Unlock()
		var params mcp.ElicitationParams
		if err := json.Unmarshal(q.params, &params); err != nil {
			q.answer <- json.RawMessage(`{"action":"decline"}`)
			return pc.wait(ctx, p)
		}
		// Each round its own state: a state answers one question once.
		p.state = pc.newState()
		pc.park(p)
		return server.NewInputRequestBuilder(p.state).Elicit(q.id, params).ToolResult()
	case <-ctx.Done():
		// The client went away: the call runs to its end (its run and
		// audit rows are written) and its question goes unanswered.
		pc.park(p)
		return encode(nil, fault.New(fault.Unavailable, "the call was abandoned by its client"))
	}
}

// park keeps p for the client's next call, until its question expires.
func (pc *pendingCalls) park(p *pendingCall) {
	state := p.state
	pc.mu.Lock()
	pc.calls[state] = p
	pc.mu.Unlock()
	p.mu.Lock()
	p.timer = time.AfterFunc(answerWait+resultWait, func() {
		pc.mu.Lock()
		if pc.calls[state] == p {
			delete(pc.calls, state)
		}
		pc.mu.Unlock()
	})
	p.mu.Unlock()
}

// pendingPrefix marks the request states of calls waiting here.
const pendingPrefix = "connec-"

func isPendingState(s string) bool { return strings.HasPrefix(s, pendingPrefix) }

// issued says state names these pendingCalls.
func (pc *pendingCalls) issued(state string) bool {
	return strings.HasPrefix(state, pendingPrefix+pc.tag+".")
}

// newState is an unguessable request state, which names the pendingCalls
// that issued it (so that another server relaying it hears at once when
// the call is gone).
func (pc *pendingCalls) newState() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return pendingPrefix + pc.tag + "." + base64.RawURLEncoding.EncodeToString(b[:])
}

// sealPrefix marks an upstream's own request state, sealed.
const sealPrefix = "connec.s1."

// seal wraps an upstream's request state so that only the same caller, as
// the same tool, can send it back, unaltered: an HMAC under the
// deployment's key over all three (the upstream's state is not secret from
// the caller, who would see it from the upstream directly).
func (pc *pendingCalls) seal(owner callctx.Subject, tool, state string) string {
	return sealPrefix + base64.RawURLEncoding.EncodeToString([]byte(state)) + "." + mac(pc.keys[0], owner, tool, state)
}

// unseal returns the upstream's state sealed in s for owner and tool.
func (pc *pendingCalls) unseal(owner callctx.Subject, tool, s string) (string, bool) {
	body, ok := strings.CutPrefix(s, sealPrefix)
	if !ok {
		return "", false
	}
	enc, sum, ok := strings.Cut(body, ".")
	if !ok {
		return "", false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(enc) // one spelling per state
	if err != nil {
		return "", false
	}
	for _, key := range pc.keys { // (sealed before a key rotation: an older key)
		if hmac.Equal([]byte(sum), []byte(mac(key, owner, tool, string(raw)))) {
			return string(raw), true
		}
	}
	return "", false
}

func mac(key []byte, owner callctx.Subject, tool, state string) string {
	m := hmac.New(sha256.New, key)
	for _, part := range []string{string(owner), tool, state} {
		m.Write([]byte(strconv.Itoa(len(part))))
		m.Write([]byte{':'})
		m.Write([]byte(part))
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// upstreamRound makes ctx's call a round of an upstream's own exchange
// (2026-07-28): the caller's answers, which the upstream judges, and its
// state, sealed to this caller and tool (a bad seal is errBadState).
func (pc *pendingCalls) upstreamRound(ctx context.Context, owner callctx.Subject, tool string, p mcp.MultiRoundTripParams) (context.Context, error) {
	state := ""
	if p.RequestState != "" {
		up, ok := pc.unseal(owner, tool, p.RequestState)
		if !ok {
			return nil, errBadState
		}
		state = up
	}
	var answers json.RawMessage
	if len(p.InputResponses) > 0 {
		var err error
		if answers, err = checkAnswers(p.InputResponses); err != nil {
			return nil, err
		}
	}
	return core.WithInputRound(ctx, answers, state, canElicit(ctx)), nil
}

// canElicit reports whether a 2026-07-28 request's client declared it can
// be asked (elicitation in the request's capabilities).
func canElicit(ctx context.Context) bool {
	info := server.RequestProtocolInfoFromContext(ctx)
	return info != nil && info.ClientCapabilities != nil && info.ClientCapabilities.Elicitation != nil
}

// roundRefusal answers err, when it refuses the request's round (a bad
// requestState or inputResponses), as invalid params (-32602), as SDKs
// answer state that fails verification (mcp-go would say internal error);
// any other err as it is.
func roundRefusal(ctx context.Context, err error) error {
	if errors.Is(err, errBadState) || errors.Is(err, errBadAnswers) {
		return answerWith(ctx, rpcAnswer{Code: mcp.INVALID_PARAMS, Message: err.Error()})
	}
	return err
}

// errBadAnswers refuses inputResponses that are not answers.
var errBadAnswers = errors.New("invalid inputResponses: each answer must be a JSON object (the result of the request it answers)")

// checkAnswers encodes a call's answers, each of which must be an object.
func checkAnswers(answers mcp.InputResponses) (json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(answers))
	for id, a := range answers {
		b, err := a.MarshalJSON()
		if err != nil || len(b) == 0 || b[0] != '{' {
			return nil, errBadAnswers
		}
		out[id] = b
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, errBadAnswers
	}
	return b, nil
}
