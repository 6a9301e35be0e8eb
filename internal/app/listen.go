package app

import (
	"context"
	"time"
)

// listen runs fn for every notification on channel until ctx ends,
// reconnecting with backoff when the connection drops.
func (a *App) listen(ctx context.Context, channel string, fn func(payload string)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := a.Pool.Acquire(ctx)
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+channel); err == nil {
				backoff = 100 * time.Millisecond
				for {
					n, werr := conn.Conn().WaitForNotification(ctx)
					if werr != nil {
						break
					}
					fn(n.Payload)
				}
			}
			// A connection that was listening is not handed back for reuse.
			_ = conn.Conn().Close(context.Background())
			conn.Release()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}
