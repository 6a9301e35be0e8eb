package core

import (
	"context"
	"slices"

	"github.com/connec/connec/internal/platform/pgnotify"
)

// InstanceChannel is the channel the database announces every change to an
// instance or credential row on, with the instance id as payload ("*" after
// a TRUNCATE: all of them); see migrations/00004_instance_notify.sql.
const InstanceChannel = "connec_instance"

// instanceCacheMax bounds the invocation cache (it empties itself when full).
const instanceCacheMax = 10_000

// WithNotify lets invocations read their instance and its credential row
// from memory instead of the database, kept true by hub: an entry is dropped
// when the database announces a change to that instance or its credentials,
// everything is dropped whenever announcements may have been missed, and
// nothing is answered from memory while hub is not live. Changes this
// service makes itself are seen by its very next call; changes made
// elsewhere when their announcement arrives, except that a call is never
// refused on memory alone (what would refuse it is read again first, so an
// enable elsewhere holds at once). Whatever the cache holds, the
// commit that lets a send (or async run) start, or a cached read's result
// out, checks the instance and credential in the database (see Invoke).
// The service registers with hub in NewService, which must come before
// hub.Start.
func WithNotify(hub *pgnotify.Hub) Option { return func(s *Service) { s.hub = hub } }

// invokeEntry is what an invocation reads about its instance. Cached entries
// are shared by every call they serve: read-only.
type invokeEntry struct {
	inst Instance
	cred credRow
}

// follow sets up the invocation cache on s.hub. If the hub will not take the
// registration (it has already started) the service reads the database on
// every call, as without WithNotify, and says so in the log.
func (s *Service) follow() {
	if s.hub == nil {
		return
	}
	cache, err := pgnotify.NewCache[InstanceID, invokeEntry](s.hub, instanceCacheMax)
	var lists *pgnotify.Cache[string, toolList]
	if err == nil {
		lists, err = pgnotify.NewCache[string, toolList](s.hub, toolListsMax)
	}
	if err == nil {
		err = s.hub.Handle(InstanceChannel, func(payload string) {
			defer s.instanceChanged()
			lists.InvalidateAll() // any instance may be any caller's tool
			if payload == "*" {
				cache.InvalidateAll()
				return
			}
			cache.Invalidate(InstanceID(payload))
		})
	}
	if err != nil {
		s.log.Error("instance cache disabled: every invocation reads the database", "err", err)
		return
	}
	s.instances, s.toolLists = cache, lists
}

// instanceForInvoke returns an instance and its credential row for an
// invocation, from memory when it can. cached reports that nothing was read
// from the database in this call.
func (s *Service) instanceForInvoke(ctx context.Context, id InstanceID) (in Instance, cr *credRow, cached bool, err error) {
	if s.instances == nil {
		in, cr, err = getInstanceForInvoke(ctx, s.pool, id)
		return in, cr, false, err
	}
	cached = true
	e, err := s.instances.Load(ctx, id, func(ctx context.Context) (invokeEntry, error) {
		cached = false
		in, cr, err := getInstanceForInvoke(ctx, s.pool, id)
		if err != nil {
			return invokeEntry{}, err // not found is not cached
		}
		return invokeEntry{inst: in, cred: *cr}, nil
	})
	if err != nil {
		return Instance{}, nil, false, err
	}
	row := e.cred
	return e.inst, &row, cached, nil
}

// wouldRefuse reports whether an invocation of inst with credential row cr
// is refused for the instance's or the credential's state (disabled,
// uninstalled, no usable credential where the type needs one).
func (s *Service) wouldRefuse(inst Instance, cr *credRow) bool {
	if inst.State != StateEnabled {
		return true
	}
	if cr == nil || cr.id == nil {
		ct, ok := s.reg.Type(inst.Type)
		return ok && ct.Spec.CredentialRequired
	}
	return cr.refusal(s.now()) != nil
}

// forget drops what this server holds for an instance it has just changed,
// so its very next call reads the change without waiting for the database's
// announcement. Call it after the change committed (or failed to).
func (s *Service) forget(id InstanceID) {
	if s.instances != nil && id != "" {
		s.instances.Invalidate(id)
		s.toolLists.InvalidateAll()
	}
	if id != "" {
		s.instanceChanged()
	}
}

// OnInstanceChange registers fn to be called after any change to an
// instance or its credentials that could change which instance tools a
// subject sees: made by this server (at once) or, with WithNotify, by any
// server (when the database announces it). fn must not block.
func (s *Service) OnInstanceChange(fn func()) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	s.watchers = append(s.watchers, fn)
}

func (s *Service) instanceChanged() {
	s.watchMu.Lock()
	fns := slices.Clone(s.watchers)
	s.watchMu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
