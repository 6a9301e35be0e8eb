package executor

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// CredentialChannel is the notification channel the database announces
// credential row changes on (see migrations: connec_credential_changed).
const CredentialChannel = "connec_credential"

// WatchCredentials drops cached data keys as soon as the database announces
// that a credential changed (rotate, revoke, disable, key rotation), on
// every server sharing the database. It runs until ctx ends; after a lost
// connection it forgets everything, since notifications may have been
// missed. It returns when it is listening, so callers know later changes
// are seen.
func (e *Executor) WatchCredentials(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+CredentialChannel); err != nil {
		conn.Release()
		return err
	}
	go e.watch(ctx, pool, conn)
	return nil
}

func (e *Executor) watch(ctx context.Context, pool *pgxpool.Pool, conn *pgxpool.Conn) {
	backoff := 100 * time.Millisecond
	for {
		for {
			n, err := conn.Conn().WaitForNotification(ctx)
			if err != nil {
				break
			}
			e.Forget(n.Payload)
			backoff = 100 * time.Millisecond
		}
		// Connection lost or ctx done: a fresh connection unusable for the
		// pool is destroyed, not returned.
		_ = conn.Conn().Close(context.Background())
		conn.Release()
		if ctx.Err() != nil {
			return
		}
		e.ForgetAll()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			if backoff < 5*time.Second {
				backoff *= 2
			}
			c, err := pool.Acquire(ctx)
			if err != nil {
				continue
			}
			if _, err := c.Exec(ctx, "LISTEN "+CredentialChannel); err != nil {
				c.Release()
				continue
			}
			conn = c
			e.ForgetAll()
			e.log.Info("credential notifications resumed")
			break
		}
	}
}
