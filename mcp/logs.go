package mcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"regexp"
)

// sessionIDs matches the session ids this server issues.
var sessionIDs = regexp.MustCompile(`mcp-session-[0-9a-fA-F-]{36}`)

// quietSessions wraps the logger handed to mcp-go so that session ids (a
// session's handle, which its owner's requests carry) never reach the logs:
// each is replaced by a short fingerprint, which still correlates lines.
func quietSessions(l *slog.Logger) *slog.Logger {
	return slog.New(sessionRedactor{l.Handler()})
}

type sessionRedactor struct{ next slog.Handler }

func (h sessionRedactor) Enabled(ctx context.Context, lv slog.Level) bool {
	return h.next.Enabled(ctx, lv)
}

func (h sessionRedactor) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, redactSessions(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h sessionRedactor) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redactAttr(a)
	}
	return sessionRedactor{h.next.WithAttrs(red)}
}

func (h sessionRedactor) WithGroup(name string) slog.Handler {
	return sessionRedactor{h.next.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, redactSessions(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, x := range g {
			out[i] = redactAttr(x)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, redactSessions(err.Error()))
		}
	}
	return a
}

func redactSessions(s string) string {
	return sessionIDs.ReplaceAllStringFunc(s, func(id string) string {
		sum := sha256.Sum256([]byte(id))
		return "session#" + hex.EncodeToString(sum[:4])
	})
}
