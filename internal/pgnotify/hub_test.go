package pgnotify_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connec/connec/internal/pgnotify"
	"github.com/connec/connec/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCacheFollowsNotifications(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := pgtest.Pool(t)
	hub := pgnotify.New(pool.Config().ConnConfig, pgnotify.WithPingEvery(50*time.Millisecond))
	cache, err := pgnotify.NewCache[string, int](hub, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := hub.Handle("pgnotify_test", cache.Invalidate); err != nil {
		t.Fatal(err)
	}
	var loads atomic.Int32
	load := func(v int) func(context.Context) (int, error) {
		return func(context.Context) (int, error) { loads.Add(1); return v, nil }
	}

	// Not live before Start: every Load reads.
	for range 2 {
		if v, _ := cache.Load(ctx, "a", load(1)); v != 1 {
			t.Fatalf("got %d", v)
		}
	}
	if loads.Load() != 2 || cache.Len() != 0 {
		t.Fatalf("before Start: loads %d, len %d; want 2, 0", loads.Load(), cache.Len())
	}
	if err := hub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := hub.Handle("late", func(string) {}); !errors.Is(err, pgnotify.ErrStarted) {
		t.Fatalf("Handle after Start: %v", err)
	}

	// Live: the second Load is answered from memory.
	cache.Load(ctx, "a", load(1))
	if v, _ := cache.Load(ctx, "a", load(2)); v != 1 {
		t.Fatalf("cached value: got %d, want 1", v)
	}

	// A notification from another connection drops the entry.
	if _, err := pool.Exec(ctx, `SELECT pg_notify('pgnotify_test', 'a')`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "invalidation", func() bool { return cache.Len() == 0 })
	if v, _ := cache.Load(ctx, "a", load(3)); v != 3 {
		t.Fatalf("after notification: got %d, want 3", v)
	}

	// A load racing with an invalidation is not stored.
	cache.Invalidate("a")
	cache.Load(ctx, "b", func(context.Context) (int, error) { cache.Invalidate("x"); return 7, nil })
	if cache.Len() != 0 {
		t.Fatalf("a load that raced with an invalidation was stored")
	}

	// The listening connection killed: the cache is emptied, bypassed while
	// the hub is down, and used again once it listens anew.
	cache.Load(ctx, "a", load(4))
	if cache.Len() != 1 {
		t.Fatal("not stored")
	}
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1`, pgnotify.ApplicationName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hub down", func() bool { return !hub.Live() })
	if cache.Len() != 0 {
		t.Fatal("cache kept entries after notifications were lost")
	}
	waitFor(t, "hub live again", hub.Live)
	cache.Load(ctx, "a", load(5))
	if v, _ := cache.Load(ctx, "a", load(6)); v != 5 {
		t.Fatalf("after reconnect: got %d, want 5", v)
	}
	cancel()
	<-hub.Done()
	if hub.Live() {
		t.Fatal("live after stop")
	}
}
