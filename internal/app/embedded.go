package app

import (
	"context"
	"time"
)

// superviseEvery is how often a connec on the embedded default checks that
// its PostgreSQL still runs (a cheap look at postmaster.pid, no connection).
const superviseEvery = 500 * time.Millisecond

// superviseEmbedded starts the embedded cluster again when it is gone
// (killed, crashed) and no other connec process sharing it did so first.
// Everything else recovers by itself once it is back: the pool opens new
// connections, the notification hub reconnects with backoff and tells the
// caches to resync, and the authorizer's fail-closed staleness clears once
// it has re-read the policy.
func (a *App) superviseEmbedded(ctx context.Context) {
	defer close(a.superviseDone)
	wait := superviseEvery
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.shared.Running() {
			wait = superviseEvery
			t.Reset(wait)
			continue
		}
		dir := a.shared.Cluster().Dir()
		a.Log.Warn("embedded PostgreSQL is not running; starting it again", "dir", dir)
		start := time.Now()
		started, err := a.shared.Ensure(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			wait = min(wait*2, 10*time.Second)
			a.Log.Error("could not start the embedded PostgreSQL again; retrying", "dir", dir, "err", err, "retry_in", wait)
		case started:
			wait = superviseEvery
			a.Log.Info("embedded PostgreSQL started again", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
		default:
			wait = superviseEvery
			a.Log.Info("embedded PostgreSQL is back (another connec process started it)", "dir", dir)
		}
		t.Reset(wait)
	}
}
