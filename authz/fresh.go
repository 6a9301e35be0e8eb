package authz

import (
	"fmt"
	"strconv"
	"time"
)

// Freshness: the Authorizer decides on a policy only while it can vouch that
// the policy is current, give or take the allowed staleness (see
// WithMaxStaleness). It knows it is behind when a newer version has been
// announced but not loaded; it cannot rule that out while the watcher is
// not listening, unless it has confirmed its version with the database
// since (the refresh loop polls then).

// fresh fails when the loaded version may be out of date for longer than
// allowed.
func (a *Authorizer) fresh(loaded int64) error {
	limit := int64(a.cfg.maxStale)
	if limit <= 0 {
		return nil
	}
	now := time.Now().UnixNano()
	if since := a.behindSince.Load(); since != 0 && now-since > limit {
		if v := a.announced.Load(); v > loaded {
			return fmt.Errorf("%w: version %d was announced %s ago, %d is loaded", ErrStalePolicy, v, time.Duration(now-since).Round(time.Millisecond), loaded)
		}
	}
	if a.downSince != nil {
		if t := a.downSince(); !t.IsZero() {
			down := t.UnixNano()
			if now-down > limit && now-a.lastConfirmed.Load() > limit {
				return fmt.Errorf("%w: not listening for policy changes for %s", ErrStalePolicy, time.Duration(now-down).Round(time.Millisecond))
			}
		}
	}
	return nil
}

// confirmed records that version was current at start.
func (a *Authorizer) confirmed(version int64, start time.Time) {
	a.lastConfirmed.Store(start.UnixNano())
	if a.announced.Load() <= version {
		a.behindSince.Store(0)
		// A newer announcement may have landed between the check and the
		// store; if so, start its clock again.
		if a.announced.Load() > version {
			a.behindSince.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
}

// onNotify is the watcher callback: payload is a version or
// pgstore.ResyncMessage. It must not block.
func (a *Authorizer) onNotify(payload string) {
	if v, err := strconv.ParseInt(payload, 10, 64); err == nil {
		if v <= a.snap.Load().Version() {
			return
		}
		for {
			cur := a.announced.Load()
			if v <= cur || a.announced.CompareAndSwap(cur, v) {
				break
			}
		}
		a.behindSince.CompareAndSwap(0, time.Now().UnixNano())
	}
	select {
	case a.kick <- struct{}{}:
	default: // a refresh is already pending
	}
}
