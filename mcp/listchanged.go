package mcp

import (
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// listTTL is how long a client may keep a tools/list answer (ttlMs). The
// list depends on policy, which changes at any time; changes are also
// announced, so the TTL only bounds how stale a client that missed the
// announcement can be.
const listTTL = time.Minute

// toolsListTTL is how long a client may keep a tools/list answer: listTTL,
// or nothing when instance tools are served.
func toolsListTTL(sets Toolsets) time.Duration {
	if sets.instances() {
		return 0
	}
	return listTTL
}

// listSettle is how long a burst of policy changes (a script adding rules)
// is gathered into one announcement.
const listSettle = 50 * time.Millisecond

// WithChanges makes the server tell clients to list their tools again
// whenever what a subject may see could have changed. subscribe registers a
// function to be called on each change (e.g. authz.Authorizer.OnChange,
// which fires once the new policy is in force on this server, whichever
// server or command made the change).
func WithChanges(subscribe func(fn func(version int64))) Option {
	return func(o *options) { o.changes = subscribe }
}

// settled returns a function that runs fn once a burst of calls to it has
// settled (listSettle after the first; calls meanwhile are gathered in).
func settled(fn func()) func() {
	var pending atomic.Bool
	return func() {
		if pending.Swap(true) {
			return
		}
		time.AfterFunc(listSettle, func() {
			pending.Store(false)
			fn()
		})
	}
}

// announce sends notifications/tools/list_changed to every session that
// may receive it (legacy sessions with a stream, and 2026-07-28
// subscriptions/listen streams that asked for toolsListChanged), and has
// every resource subscription decided again under what is now in force.
func (s *Server) announce() {
	s.subs.changed()
	s.SendNotificationToAllClients(string(mcp.MethodNotificationToolsListChanged), nil)
	if s.sets.instances() {
		// Instance prompts come and go with instance tools.
		s.SendNotificationToAllClients(string(mcp.MethodNotificationPromptsListChanged), nil)
		s.SendNotificationToAllClients(string(mcp.MethodNotificationResourcesListChanged), nil)
	}
}
