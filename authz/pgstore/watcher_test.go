package pgstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/connec/connec/internal/platform/pgnotify"
	"github.com/connec/connec/internal/testkit/pgtest"
)

func TestWatcher(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	w, err := NewWatcher(ctx, pool.Config().ConnConfig, pgnotify.WithLogger(quiet), pgnotify.WithBackoff(10*time.Millisecond, 50*time.Millisecond), pgnotify.WithPingEvery(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got := make(chan string, 100)
	w.SetCallback(func(s string) { got <- s })
	next := func(t *testing.T) string {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no callback within 10s")
			return ""
		}
	}
	if s := next(t); s != ResyncMessage {
		t.Fatalf("first callback %q, want %q", s, ResyncMessage)
	}

	t.Run("payload is the new version", func(t *testing.T) {
		// Idle longer than the ping interval first: pings must not disturb
		// listening.
		time.Sleep(150 * time.Millisecond)
		if _, err := pool.Exec(ctx, `INSERT INTO casbin_rule (ptype, v0) VALUES ('p', 'x')`); err != nil {
			t.Fatal(err)
		}
		if s, want := next(t), fmt.Sprint(dbVersion(t, pool)); s != want {
			t.Errorf("payload %q, want %q", s, want)
		}
	})

	t.Run("a lost connection sends resync, and so does listening anew", func(t *testing.T) {
		pid := w.PID()
		if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(pid)); err != nil {
			t.Fatal(err)
		}
		for _, when := range []string{"losing the connection", "listening anew"} {
			if s := next(t); s != ResyncMessage {
				t.Fatalf("after %s got %q, want %q", when, s, ResyncMessage)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for w.PID() == pid || !w.DownSince().IsZero() {
			if time.Now().After(deadline) {
				t.Fatal("not listening on a new connection")
			}
			time.Sleep(time.Millisecond)
		}
		if _, err := pool.Exec(ctx, `DELETE FROM casbin_rule`); err != nil {
			t.Fatal(err)
		}
		if s, want := next(t), fmt.Sprint(dbVersion(t, pool)); s != want {
			t.Errorf("payload %q, want %q", s, want)
		}
	})

	t.Run("no callback after Close", func(t *testing.T) {
		w.Close()
		w.Close() // idempotent
		if _, err := pool.Exec(ctx, `INSERT INTO casbin_rule (ptype, v0) VALUES ('p', 'y')`); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			t.Errorf("callback %q after Close", s)
		case <-time.After(200 * time.Millisecond):
		}
	})
}
