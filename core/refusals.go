package core

import (
	"context"
	"fmt"
	"time"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity/authlimit"
)

// ActionAuthenticate is the action audit rows of failed authentications
// record.
const ActionAuthenticate = "authenticate"

// WithAuthLimits configures how failed authentications are counted,
// limited and audited (authlimit.Config; zero fields take its defaults).
func WithAuthLimits(cfg authlimit.Config) Option {
	return func(s *Service) { s.authCfg = cfg }
}

// AuthGuard is the guard every transport authenticates through, so that
// failed authentications from one source are limited and audited as one
// row per interval (see authlimit).
func (s *Service) AuthGuard() *authlimit.Guard { return s.guard }

// RecordRefusal writes the audit row of r (it is the guard's
// authlimit.Record): one failed authentication, its request id on ctx, or
// the count of those from one source over an interval.
func (s *Service) RecordRefusal(ctx context.Context, r authlimit.Refusal) error {
	ev := audit.Event{
		Transport: r.Transport,
		Subject:   callctx.Anonymous,
		Action:    ActionAuthenticate,
		Tool:      r.Tool,
		Decision:  audit.Deny,
		Status:    audit.StatusError,
		ErrorType: string(fault.Unauthenticated),
		Count:     r.Count,
	}
	if !r.Counted {
		ev.RequestID = callctx.RequestID(ctx)
		ev.Reason = fmt.Sprintf("unauthenticated: missing or invalid credentials from %s", r.Source)
	} else {
		ev.Duration = r.Last.Sub(r.First)
		ev.Reason = fmt.Sprintf("unauthenticated: %d failed authentications from %s between %s and %s, counted after the first of the interval",
			r.Count, r.Source, r.First.UTC().Format(time.RFC3339Nano), r.Last.UTC().Format(time.RFC3339Nano))
		if r.Limited > 0 {
			ev.Reason += fmt.Sprintf("; %d of them refused unchecked (429) as over the limit", r.Limited)
		}
	}
	if err := s.audit.Record(ctx, ev); err != nil {
		s.log.ErrorContext(ctx, "audit write failed", "tool", ev.Tool, "err", err)
		return fault.Wrap(fault.Unavailable, err, "audit trail unavailable")
	}
	return nil
}
