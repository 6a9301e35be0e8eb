// Package authlimit keeps failed authentications from flooding the audit
// trail or slowing real callers down. Every transport authenticates through
// one Guard (it is the core.Service's), which, per source — the remote
// address over HTTP, the session over stdio — and per transport:
//
//   - writes the first failed authentication of an interval at once, as
//     before, and only counts the rest;
//   - writes what it counted as one row per source and interval, whose
//     count says how many refusals it stands for (audit_events.count);
//   - past Limit refusals in an interval, refuses the source's requests as
//     quota_exceeded (HTTP 429, with the time left in the interval) before
//     any database work: no token lookup, no audit write. A token this
//     server already knows to be valid from memory still gets in, so that a
//     real user behind the same address (a NAT, a proxy) keeps working.
//
// Memory is bounded: at most MaxSources sources are tracked; refusals from
// any beyond are counted together as the source "overflow". A refusal is
// refused whatever happens to its row: if the row cannot be written (the
// database is down), the count is kept and written once it can be, and the
// request is answered 503 if it was the one to be written at once.
package authlimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/metrics"
)

// Defaults for a Config's zero fields.
const (
	DefaultInterval   = 10 * time.Second
	DefaultLimit      = 20
	DefaultMaxSources = 10000
)

// Config configures a Guard.
type Config struct {
	// Interval is how long a source's refusals are counted before they are
	// written as one row, and the window Limit applies to.
	Interval time.Duration
	// Limit is how many failed authentications a source may have in one
	// interval before its requests are refused unchecked (429).
	Limit int
	// MaxSources bounds the sources tracked at once.
	MaxSources int
	// Proxies are the peers whose X-Forwarded-For is believed (see
	// Guard.Source); none by default.
	Proxies Proxies
	// Log receives what could not be written.
	Log *slog.Logger
}

// Source names where failed authentications come from: "ip:<address>" (an
// IPv6 address by its /64), "session:<fingerprint>", or "overflow".
type Source string

// Overflow is the source that stands for every source beyond MaxSources.
const Overflow Source = "overflow"

// Session is the source of a session (stdio) with this id: a fingerprint of
// it, since session ids are not for the audit trail.
func Session(id string) Source {
	sum := sha256.Sum256([]byte(id))
	return Source("session:" + hex.EncodeToString(sum[:6]))
}

// Attempt is one authentication.
type Attempt struct {
	Source    Source
	Transport string // as audit rows record it
	Tool      string // as audit rows record it
	Token     string // the bearer token presented, "" if none; never stored
}

// Refusal is what one audit row records: Count failed authentications from
// Source over Transport, between First and Last, Limited of them refused
// unchecked (429). Counted says they were counted after the first of an
// interval; a refusal written at once has Count 1 and its request's id on
// the context.
type Refusal struct {
	Source      Source
	Transport   string
	Tool        string
	Count       int64
	Limited     int64
	First, Last time.Time
	Counted     bool
}

// Record writes the audit row for r and returns once it is durable, or an
// unavailable fault.
type Record func(ctx context.Context, r Refusal) error

// Authenticator resolves a bearer token (identity.Store).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (callctx.Principal, error)
}

// Rememberer is an Authenticator that can vouch for a token from memory
// alone, with no database work (identity.Store).
type Rememberer interface {
	Remembered(token string) (callctx.Principal, bool)
}

// writeTimeout bounds the writing of one aggregate row.
const writeTimeout = 10 * time.Second

// writers bounds the aggregate rows written at once (the audit writer
// commits concurrent rows together).
const writers = 32

// Guard counts and limits failed authentications; see the package doc.
type Guard struct {
	cfg Config
	rec Record
	log *slog.Logger
	now func() time.Time

	flushMu sync.Mutex // one flush at a time

	mu      sync.Mutex
	sources map[key]*entry
	running bool // the sweeper runs
	closed  bool
	stop    chan struct{}
	stopped chan struct{}
}

type key struct {
	src       Source
	transport string
}

// entry is one source's state on one transport.
type entry struct {
	start time.Time // the current interval's start
	seen  int       // refusals in the current interval, written or counted
	// Refusals counted and not yet written (over one or more intervals, if
	// writing failed): n of them, limited of those unchecked.
	n, limited  int64
	first, last time.Time
	tool        string
}

// New returns a guard writing rows with rec. Close it to write what it
// counted.
func New(cfg Config, rec Record) *Guard {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Limit <= 0 {
		cfg.Limit = DefaultLimit
	}
	if cfg.MaxSources <= 0 {
		cfg.MaxSources = DefaultMaxSources
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Guard{cfg: cfg, rec: rec, log: cfg.Log, now: time.Now, sources: map[key]*entry{}}
}

// Authenticate authenticates a.Token with auth unless a.Source is over its
// limit. It returns the principal, or: quota_exceeded (with
// details.retry_after_ms) for a source over its limit, refused without
// checking the token; unavailable if the token could not be checked (auth
// failed otherwise than unauthenticated), or the refusal not written;
// unauthenticated for a missing or bad token.
func (g *Guard) Authenticate(ctx context.Context, a Attempt, auth Authenticator) (callctx.Principal, error) {
	if retry, over := g.over(a, g.now()); over {
		if r, ok := auth.(Rememberer); ok && a.Token != "" {
			if p, ok := r.Remembered(a.Token); ok {
				return p, nil
			}
		}
		g.count(a, g.now(), true)
		metrics.ObserveAuthFailure(a.Transport, metrics.AuthLimited)
		return callctx.Principal{}, fault.New(fault.QuotaExceeded, "too many failed authentications from this address; try again later").
			WithDetails(map[string]any{"retry_after_ms": max(retry.Milliseconds(), 1)})
	}
	if a.Token != "" {
		p, err := auth.Authenticate(ctx, a.Token)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fault.ErrUnauthenticated) {
			// Not an answer about the token (the database is unreachable,
			// or failed otherwise): refused, but not as a bad token.
			return callctx.Principal{}, fault.Wrap(fault.Unavailable, err, "tokens cannot be checked right now")
		}
	}
	return callctx.Principal{}, g.Refuse(ctx, a)
}

// Refuse records one failed authentication: written at once if it is the
// first of its source's interval, counted otherwise. It returns the
// unauthenticated fault, or unavailable if the row to be written at once
// could not be (its refusal is then counted, to be written later).
func (g *Guard) Refuse(ctx context.Context, a Attempt) error {
	refused := fault.New(fault.Unauthenticated, "missing or invalid credentials")
	now := g.now()
	if !g.count(a, now, false) {
		metrics.ObserveAuthFailure(a.Transport, metrics.AuthCounted)
		return refused
	}
	metrics.ObserveAuthFailure(a.Transport, metrics.AuthAudited)
	if callctx.RequestID(ctx) == "" {
		ctx = callctx.WithRequestID(ctx, callctx.NewRequestID())
	}
	err := g.rec(ctx, Refusal{Source: a.Source, Transport: a.Transport, Tool: a.Tool, Count: 1, First: now, Last: now})
	if err != nil {
		g.mu.Lock()
		g.add(key{a.Source, a.Transport}, now, a.Tool, 1, 0, now, now)
		g.mu.Unlock()
		return fault.Wrap(fault.Unavailable, err, "the refusal could not be audited")
	}
	return refused
}

// over reports whether a's source has used up its refusals for the
// current interval, and how long until the interval ends.
func (g *Guard) over(a Attempt, now time.Time) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := key{a.Source, a.Transport}
	e := g.sources[k]
	if e == nil && len(g.sources) >= g.cfg.MaxSources {
		e = g.sources[key{Overflow, a.Transport}]
	}
	if e == nil || g.closed || now.Sub(e.start) >= g.cfg.Interval || e.seen < g.cfg.Limit {
		return 0, false
	}
	return e.start.Add(g.cfg.Interval).Sub(now), true
}

// count counts one refusal and reports whether it is to be written at once
// (the first of its source's interval) rather than counted.
func (g *Guard) count(a Attempt, now time.Time, limited bool) (writeNow bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return true
	}
	k, e := g.entry(key{a.Source, a.Transport}, now)
	e.seen++
	if e.seen == 1 && !limited {
		return true
	}
	var l int64
	if limited {
		l = 1
	}
	g.add(k, now, a.Tool, 1, l, now, now)
	return false
}

// entry returns k's entry (the overflow's if k is new and the table full),
// its interval rolled over if it ended. Call with g.mu held.
func (g *Guard) entry(k key, now time.Time) (key, *entry) {
	e := g.sources[k]
	if e == nil && len(g.sources) >= g.cfg.MaxSources {
		k = key{Overflow, k.transport}
		e = g.sources[k]
	}
	if e == nil {
		e = &entry{start: now}
		g.sources[k] = e
		g.startSweeper()
	}
	if now.Sub(e.start) >= g.cfg.Interval {
		e.start, e.seen = now, 0
	}
	return k, e
}

// add adds n counted refusals (limited of them unchecked) to k's unwritten
// count. Call with g.mu held.
func (g *Guard) add(k key, now time.Time, tool string, n, limited int64, first, last time.Time) {
	e := g.sources[k]
	if e == nil {
		_, e = g.entry(k, now)
	}
	switch {
	case e.n == 0:
		e.tool, e.first, e.last = tool, first, last
	case e.tool != tool:
		e.tool = mixedTool(e.tool, tool)
	}
	if first.Before(e.first) {
		e.first = first
	}
	if last.After(e.last) {
		e.last = last
	}
	e.n += n
	e.limited += limited
}

// mixedTool names the tools of refusals counted together that differ
// (stdio refusals name the method called): "stdio:*".
func mixedTool(a, b string) string {
	pa, _, okA := strings.Cut(a, ":")
	pb, _, okB := strings.Cut(b, ":")
	if okA && okB && pa == pb {
		return pa + ":*"
	}
	return "*"
}
