package identity

import (
	"fmt"
	"slices"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/platform/pgnotify"
)

// NotifyChannel is the notification channel the database announces identity
// changes on: any update or removal of api_tokens, users or groups, and any
// change of group_members, by anyone (see migrations: connec_identity_changed;
// a creation changes no principal anyone holds and is not announced).
const NotifyChannel = "connec_identity"

// maxCachedTokens bounds the authentication cache; when full it starts over.
// Only tokens that authenticated are kept, so a spray of bad tokens never
// fills it.
const maxCachedTokens = 10_000

// Follow makes Authenticate answer from memory, kept true by hub: a token
// that authenticated is remembered by its SHA-256 hash with its principal and
// expiry, and every server forgets every remembered token as soon as the
// database announces any identity change (revocation, user or membership
// change), and whenever hub may have missed an announcement. While hub is not
// listening, Authenticate reads the database every time. Call once, before
// hub.Start and before the Store is used.
func (s *Store) Follow(hub *pgnotify.Hub) error {
	c, err := pgnotify.NewCache[tokenKey, tokenEntry](hub, maxCachedTokens)
	if err != nil {
		return fmt.Errorf("identity: follow changes: %w", err)
	}
	subjects, err := pgnotify.NewCache[callctx.Subject, callctx.Principal](hub, maxCachedTokens)
	if err != nil {
		return fmt.Errorf("identity: follow changes: %w", err)
	}
	if err := hub.Handle(NotifyChannel, func(string) { c.InvalidateAll(); subjects.InvalidateAll(); s.changed() }); err != nil {
		return fmt.Errorf("identity: follow changes: %w", err)
	}
	if err := hub.OnReset(s.changed); err != nil {
		return fmt.Errorf("identity: follow changes: %w", err)
	}
	s.cache.Store(c)
	s.subjects.Store(subjects)
	return nil
}

// OnChange registers fn to be called after any change of users, groups,
// memberships or tokens: made through this Store (at once) or, after
// Follow, by any server (when the database announces it, and whenever an
// announcement may have been missed). fn must not block.
func (s *Store) OnChange(fn func()) {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	s.onChange = append(s.onChange, fn)
}

func (s *Store) changed() {
	s.changeMu.Lock()
	fns := slices.Clone(s.onChange)
	s.changeMu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// forget drops every remembered token. Store methods that write call it once
// their change is committed, so this process is right at once rather than
// when its own announcement comes back.
func (s *Store) forget() {
	if c := s.cache.Load(); c != nil {
		c.InvalidateAll()
	}
	if c := s.subjects.Load(); c != nil {
		c.InvalidateAll()
	}
	s.changed()
}
