package pgnotify_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connec/connec/internal/platform/pgnotify"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// slowConn delays each write while slow is set: a database (or network)
// that is busy, not gone.
type slowConn struct {
	net.Conn
	slow *atomic.Bool
}

func (c *slowConn) Write(b []byte) (int, error) {
	if c.slow.Load() {
		time.Sleep(60 * time.Millisecond)
	}
	return c.Conn.Write(b)
}

// A ping slower than the ping interval is a busy database, not a lost
// connection: the hub keeps listening (it used to give up on a ping that
// took longer than the interval, and lost the notifications sent while it
// listened anew: a flake of every test with short pings on a busy machine).
func TestSlowPingsKeepListening(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := pgtest.Pool(t)
	cfg := pool.Config().ConnConfig.Copy()
	var slow atomic.Bool
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &slowConn{Conn: c, slow: &slow}, nil
	}
	hub := pgnotify.New(cfg, pgnotify.WithPingEvery(20*time.Millisecond), pgnotify.WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	var resets atomic.Int64
	if err := hub.OnReset(func() { resets.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := hub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-hub.Done() }()
	started := resets.Load()
	slow.Store(true)
	time.Sleep(time.Second) // dozens of ping intervals, each ping three times slower
	slow.Store(false)
	if n := resets.Load() - started; n != 0 || !hub.Live() {
		t.Fatalf("the hub gave up its connection %d times over slow pings (live %v)", n/2, hub.Live())
	}
}
