package pgnotify_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connec/connec/internal/platform/pgnotify"
	"github.com/connec/connec/internal/testkit/pgtest"
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
	// (The hub marks itself down before it empties the caches, so that no
	// load stores in between: the emptying follows at once.)
	waitFor(t, "the cache emptied after notifications were lost", func() bool { return cache.Len() == 0 })
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

// DownSince and PID say whether, since when, and on which backend the hub
// listens: down from New until Start, down from the moment its connection
// is lost until it listens anew.
func TestDownSinceAndPID(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := pgtest.Pool(t)
	created := time.Now()
	hub := pgnotify.New(pool.Config().ConnConfig, pgnotify.WithApplicationName("pgnotify-test-hub"),
		pgnotify.WithBackoff(5*time.Millisecond, 20*time.Millisecond), pgnotify.WithPingEvery(50*time.Millisecond))
	if err := hub.Handle("pgnotify_test", func(string) {}); err != nil {
		t.Fatal(err)
	}
	// What the hub says of itself while it tells handlers to reset.
	var mu sync.Mutex
	var seen []time.Time
	if err := hub.OnReset(func() {
		mu.Lock()
		seen = append(seen, hub.DownSince())
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if d := hub.DownSince(); d.Before(created) || hub.PID() != 0 {
		t.Fatalf("before Start: down since %v (created %v), pid %d", d, created, hub.PID())
	}
	if err := hub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := hub.PID()
	if !hub.DownSince().IsZero() || pid == 0 {
		t.Fatalf("after Start: down since %v, pid %d", hub.DownSince(), pid)
	}
	var app string
	if err := pool.QueryRow(ctx, `SELECT application_name FROM pg_stat_activity WHERE pid = $1`, int32(pid)).Scan(&app); err != nil || app != "pgnotify-test-hub" {
		t.Fatalf("backend %d: application_name %q (%v)", pid, app, err)
	}
	killed := time.Now()
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(pid)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hub live on a new connection", func() bool { return hub.Live() && hub.PID() != 0 && hub.PID() != pid })
	if !hub.DownSince().IsZero() {
		t.Fatal("live again but still reported down")
	}
	// Resets: at Start (down since New), at the loss and at the resumption
	// (both down since the loss, which came after the kill).
	mu.Lock()
	got := slices.Clone(seen)
	mu.Unlock()
	if len(got) != 3 || got[0].Before(created) || got[0].After(killed) || got[1].Before(killed) || !got[2].Equal(got[1]) {
		t.Fatalf("DownSince seen by resets: %v (created %v, killed %v)", got, created, killed)
	}
	cancel()
	<-hub.Done()
	if hub.DownSince().IsZero() || hub.PID() != 0 {
		t.Fatalf("after stop: down since %v, pid %d", hub.DownSince(), hub.PID())
	}
}
