package identity_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
	"github.com/connec/connec/internal/platform/pgnotify"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// lookupCounter counts the token lookups that reach PostgreSQL through the
// Store's pool.
type lookupCounter struct{ n atomic.Int64 }

func (c *lookupCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "FROM api_tokens t JOIN users u") {
		c.n.Add(1)
	}
	return ctx
}

func (c *lookupCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// followed is a Store following a live hub, with the means to watch and
// steer it.
type followed struct {
	s       *identity.Store
	pool    *pgxpool.Pool // the Store's pool, traced
	url     string
	hub     *pgnotify.Hub
	lookups *lookupCounter

	// down, while set, makes the hub's reconnection attempts fail.
	down atomic.Bool
	// hold, while locked, stops the hub's goroutine before it hands an
	// identity notification to the Store, so a test can tell the Store's
	// own invalidation from the one its notification brings.
	hold sync.Mutex
	// synced is the last payload seen on the test's sync channel.
	synced atomic.Int64
	next   int64
}

const syncChannel = "identity_test_sync"

// newFollowed returns a Store on a fresh database, following a started hub
// that is stopped when tb ends.
func newFollowed(tb testing.TB) *followed {
	tb.Helper()
	ctx := context.Background()
	f := &followed{url: pgtest.URL(tb), lookups: &lookupCounter{}}
	cfg, err := pgxpool.ParseConfig(f.url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.Tracer = f.lookups
	if f.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.pool.Close)

	hubCfg, err := pgx.ParseConfig(f.url)
	if err != nil {
		tb.Fatal(err)
	}
	dial := hubCfg.DialFunc
	hubCfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if f.down.Load() {
			return nil, errors.New("test: the hub is held down")
		}
		return dial(ctx, network, addr)
	}
	f.hub = pgnotify.New(hubCfg, pgnotify.WithPingEvery(50*time.Millisecond))
	// Holding f.hold stalls the hub before it hands on an identity
	// notification: the handler only waits for the gate.
	//lint:ignore SA2001 the empty critical section is the gate
	if err := f.hub.Handle(identity.NotifyChannel, func(string) { f.hold.Lock(); f.hold.Unlock() }); err != nil {
		tb.Fatal(err)
	}
	if err := f.hub.Handle(syncChannel, func(p string) {
		var n int64
		fmt.Sscan(p, &n)
		f.synced.Store(n)
	}); err != nil {
		tb.Fatal(err)
	}
	f.s = identity.New(f.pool)
	if err := f.s.Follow(f.hub); err != nil {
		tb.Fatal(err)
	}
	hctx, stop := context.WithCancel(ctx)
	if err := f.hub.Start(hctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stop(); <-f.hub.Done() })
	return f
}

// settle returns once the hub has handled every notification committed
// before it was called (notifications arrive in commit order).
func (f *followed) settle(tb testing.TB) {
	tb.Helper()
	f.next++
	n := f.next
	if _, err := f.pool.Exec(context.Background(), `SELECT pg_notify($1, $2)`, syncChannel, fmt.Sprint(n)); err != nil {
		tb.Fatal(err)
	}
	waitFor(tb, "notifications to settle", func() bool { return f.synced.Load() >= n })
}

// other opens another session, as another server or the CLI would write
// through.
func (f *followed) other(tb testing.TB) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(context.Background(), f.url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// warm authenticates bearer twice and checks the second answer came from
// memory.
func (f *followed) warm(tb testing.TB, bearer string) callctx.Principal {
	tb.Helper()
	ctx := context.Background()
	if _, err := f.s.Authenticate(ctx, bearer); err != nil {
		tb.Fatal(err)
	}
	before := f.lookups.n.Load()
	p, err := f.s.Authenticate(ctx, bearer)
	if err != nil {
		tb.Fatal(err)
	}
	if got := f.lookups.n.Load() - before; got != 0 {
		tb.Fatalf("a remembered token was looked up %d times, want 0", got)
	}
	return p
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// wantCause checks err is the unauthenticated fault with cause.
func wantCause(err, cause error) error {
	if err == nil {
		return fmt.Errorf("authenticated, want %v", cause)
	}
	if fault.As(err).Type != fault.Unauthenticated || !errors.Is(err, cause) {
		return fmt.Errorf("err = %v, want unauthenticated with cause %v", err, cause)
	}
	return nil
}

// wantPrincipal checks the authentication succeeded with name and groups.
func wantPrincipal(p callctx.Principal, err error, name string, groups ...callctx.Subject) error {
	if err != nil {
		return fmt.Errorf("err = %v, want principal %s", err, name)
	}
	slices.Sort(groups)
	if p.Name != name || !slices.Equal(p.Groups, groups) {
		return fmt.Errorf("principal = %s %v, want %s %v", p.Name, p.Groups, name, groups)
	}
	return nil
}

// TestAuthenticateCacheFollowsChanges checks a remembered token follows
// every identity change: made through this Store it shows at once (before
// the Store's own notification is handled); made elsewhere (another server,
// the CLI, plain SQL) it shows once the notification arrives.
func TestAuthenticateCacheFollowsChanges(t *testing.T) {
	type env struct {
		alice    identity.User
		eng, ops identity.Group
		tokID    uuid.UUID
	}
	exec := func(sql string, arg func(e env) any) func(context.Context, *testing.T, *followed, *pgx.Conn, env) {
		return func(ctx context.Context, t *testing.T, _ *followed, other *pgx.Conn, e env) {
			if _, err := other.Exec(ctx, sql, arg(e)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		// elsewhere: made through another session (observed within a
		// bounded wait); otherwise through the Store (observed at once).
		elsewhere bool
		change    func(ctx context.Context, t *testing.T, f *followed, other *pgx.Conn, e env)
		want      func(p callctx.Principal, err error, e env) error
	}{
		{
			name: "revoked through the Store",
			change: func(ctx context.Context, t *testing.T, f *followed, _ *pgx.Conn, e env) {
				if _, err := f.s.RevokeToken(ctx, e.tokID); err != nil {
					t.Fatal(err)
				}
			},
			want: func(_ callctx.Principal, err error, _ env) error { return wantCause(err, identity.ErrTokenRevoked) },
		},
		{
			name: "revoked by SQL elsewhere", elsewhere: true,
			change: exec(`UPDATE api_tokens SET revoked_at = now() WHERE id = $1`, func(e env) any { return e.tokID }),
			want:   func(_ callctx.Principal, err error, _ env) error { return wantCause(err, identity.ErrTokenRevoked) },
		},
		{
			name: "revoked in a transaction elsewhere (as the CLI does)", elsewhere: true,
			change: func(ctx context.Context, t *testing.T, _ *followed, other *pgx.Conn, e env) {
				tx, err := other.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := identity.RevokeToken(ctx, tx, e.tokID); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			},
			want: func(_ callctx.Principal, err error, _ env) error { return wantCause(err, identity.ErrTokenRevoked) },
		},
		{
			name: "expiry moved into the past elsewhere", elsewhere: true,
			change: exec(`UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, func(e env) any { return e.tokID }),
			want:   func(_ callctx.Principal, err error, _ env) error { return wantCause(err, identity.ErrTokenExpired) },
		},
		{
			name: "tokens truncated elsewhere", elsewhere: true,
			change: func(ctx context.Context, t *testing.T, _ *followed, other *pgx.Conn, _ env) {
				if _, err := other.Exec(ctx, `TRUNCATE api_tokens`); err != nil {
					t.Fatal(err)
				}
			},
			want: func(_ callctx.Principal, err error, _ env) error { return wantCause(err, identity.ErrTokenUnknown) },
		},
		{
			name: "member added through the Store",
			change: func(ctx context.Context, t *testing.T, f *followed, _ *pgx.Conn, e env) {
				if _, err := f.s.AddMember(ctx, e.ops.ID, e.alice.ID); err != nil {
					t.Fatal(err)
				}
			},
			want: func(p callctx.Principal, err error, e env) error {
				return wantPrincipal(p, err, "alice", e.eng.Subject(), e.ops.Subject())
			},
		},
		{
			name: "member added elsewhere", elsewhere: true,
			change: func(ctx context.Context, t *testing.T, _ *followed, other *pgx.Conn, e env) {
				tx, err := other.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := identity.AddMember(ctx, tx, e.ops.ID, e.alice.ID); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			},
			want: func(p callctx.Principal, err error, e env) error {
				return wantPrincipal(p, err, "alice", e.eng.Subject(), e.ops.Subject())
			},
		},
		{
			name: "member removed through the Store",
			change: func(ctx context.Context, t *testing.T, f *followed, _ *pgx.Conn, e env) {
				if err := f.s.RemoveMember(ctx, e.eng.ID, e.alice.ID); err != nil {
					t.Fatal(err)
				}
			},
			want: func(p callctx.Principal, err error, _ env) error { return wantPrincipal(p, err, "alice") },
		},
		{
			name: "member removed by SQL elsewhere", elsewhere: true,
			change: exec(`DELETE FROM group_members WHERE user_id = $1`, func(e env) any { return e.alice.ID }),
			want:   func(p callctx.Principal, err error, _ env) error { return wantPrincipal(p, err, "alice") },
		},
		{
			name: "group deleted elsewhere", elsewhere: true,
			change: exec(`DELETE FROM groups WHERE id = $1`, func(e env) any { return e.eng.ID }),
			want:   func(p callctx.Principal, err error, _ env) error { return wantPrincipal(p, err, "alice") },
		},
		{
			name: "user renamed elsewhere", elsewhere: true,
			change: exec(`UPDATE users SET name = 'alice2' WHERE id = $1`, func(e env) any { return e.alice.ID }),
			want: func(p callctx.Principal, err error, e env) error {
				return wantPrincipal(p, err, "alice2", e.eng.Subject())
			},
		},
		{
			name: "user deleted elsewhere", elsewhere: true,
			change: exec(`DELETE FROM users WHERE id = $1`, func(e env) any { return e.alice.ID }),
			want:   func(_ callctx.Principal, err error, _ env) error { return wantCause(err, identity.ErrTokenUnknown) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFollowed(t)
			other := f.other(t)
			var e env
			var err error
			if e.alice, err = f.s.CreateUser(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if e.eng, err = f.s.CreateGroup(ctx, "eng"); err != nil {
				t.Fatal(err)
			}
			if e.ops, err = f.s.CreateGroup(ctx, "ops"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.s.AddMember(ctx, e.eng.ID, e.alice.ID); err != nil {
				t.Fatal(err)
			}
			bearer, tok, err := f.s.CreateToken(ctx, e.alice.Subject(), "", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			e.tokID = tok.ID
			f.settle(t)
			if err := wantPrincipal(f.warm(t, bearer), nil, "alice", e.eng.Subject()); err != nil {
				t.Fatal(err)
			}

			if !tt.elsewhere {
				// The Store's own notification cannot reach the cache
				// while hold is locked: what follows is the Store's
				// own invalidation at work.
				f.hold.Lock()
				tt.change(ctx, t, f, other, e)
				p, err := f.s.Authenticate(ctx, bearer)
				f.hold.Unlock()
				if err := tt.want(p, err, e); err != nil {
					t.Fatalf("right after the change: %v", err)
				}
				return
			}
			tt.change(ctx, t, f, other, e)
			start := time.Now()
			for {
				p, err := f.s.Authenticate(ctx, bearer)
				if tt.want(p, err, e) == nil {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("5s after the change: %v", tt.want(p, err, e))
				}
				time.Sleep(100 * time.Microsecond)
			}
			t.Logf("seen %v after the change committed elsewhere", time.Since(start))
		})
	}
}

// TestAuthenticateCacheExpiry checks a remembered token is refused the
// moment it expires, from memory.
func TestAuthenticateCacheExpiry(t *testing.T) {
	ctx := context.Background()
	f := newFollowed(t)
	alice, err := f.s.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	bearer, tok, err := f.s.CreateToken(ctx, alice.Subject(), "", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	f.warm(t, bearer)
	time.Sleep(time.Until(tok.ExpiresAt))
	before := f.lookups.n.Load()
	_, err = f.s.Authenticate(ctx, bearer)
	if err := wantCause(err, identity.ErrTokenExpired); err != nil {
		t.Fatal(err)
	}
	if got := f.lookups.n.Load() - before; got != 0 {
		t.Fatalf("expired while remembered: looked up %d times, want 0 (refused from memory)", got)
	}
	// And every time after: the entry may stay until the next change, but
	// it is never honoured again.
	_, err = f.s.Authenticate(ctx, bearer)
	if err := wantCause(err, identity.ErrTokenExpired); err != nil {
		t.Fatal(err)
	}
}

// TestAuthenticateCacheKeepsOnlySuccess checks failed authentications are
// never remembered: each one goes to the database again (or not at all, for
// a malformed token), and the cache stays empty.
func TestAuthenticateCacheKeepsOnlySuccess(t *testing.T) {
	ctx := context.Background()
	f := newFollowed(t)
	alice, _ := f.s.CreateUser(ctx, "alice")
	mint := func(ttl time.Duration) (string, identity.Token) {
		t.Helper()
		plain, tok, err := f.s.CreateToken(ctx, alice.Subject(), "", ttl)
		if err != nil {
			t.Fatal(err)
		}
		return plain, tok
	}
	revoked, revokedTok := mint(0)
	if _, err := f.s.RevokeToken(ctx, revokedTok.ID); err != nil {
		t.Fatal(err)
	}
	expired, expiredTok := mint(time.Hour)
	if _, err := f.pool.Exec(ctx, `UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, expiredTok.ID); err != nil {
		t.Fatal(err)
	}
	unknown := identity.TokenPrefix + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	cold, _ := mint(0)
	f.settle(t)

	tests := []struct {
		name        string
		ctx         func() context.Context
		bearer      string
		wantType    fault.Type
		cause       error
		wantLookups int64 // per attempt; -1: not checked
	}{
		{"unknown", ctx0, unknown, fault.Unauthenticated, identity.ErrTokenUnknown, 1},
		{"revoked", ctx0, revoked, fault.Unauthenticated, identity.ErrTokenRevoked, 1},
		{"expired", ctx0, expired, fault.Unauthenticated, identity.ErrTokenExpired, 1},
		{"malformed", ctx0, "cnc_nope", fault.Unauthenticated, identity.ErrTokenMalformed, 0},
		// The pool may refuse before the query starts.
		{"database failure", canceled, cold, fault.Unavailable, nil, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 3 {
				before := f.lookups.n.Load()
				_, err := f.s.Authenticate(tt.ctx(), tt.bearer)
				if err == nil {
					t.Fatal("authenticated")
				}
				if fe := fault.As(err); fe.Type != tt.wantType || (tt.cause != nil && !errors.Is(err, tt.cause)) {
					t.Fatalf("err = %v (type %s), want %s with cause %v", err, fe.Type, tt.wantType, tt.cause)
				}
				if got := f.lookups.n.Load() - before; tt.wantLookups >= 0 && got != tt.wantLookups {
					t.Fatalf("looked up %d times, want %d", got, tt.wantLookups)
				}
				if n := identity.CachedTokens(f.s); n != 0 {
					t.Fatalf("%d tokens remembered", n)
				}
			}
		})
	}
	t.Run("spray of unknown tokens", func(t *testing.T) {
		var raw [32]byte
		for range 200 {
			rand.Read(raw[:])
			bearer := identity.TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
			_, err := f.s.Authenticate(ctx, bearer)
			if err := wantCause(err, identity.ErrTokenUnknown); err != nil {
				t.Fatal(err)
			}
		}
		if n := identity.CachedTokens(f.s); n != 0 {
			t.Fatalf("%d tokens remembered after a spray", n)
		}
	})
	t.Run("the cold token still works and is then remembered", func(t *testing.T) {
		f.warm(t, cold)
		if n := identity.CachedTokens(f.s); n != 1 {
			t.Fatalf("%d tokens remembered, want 1", n)
		}
	})
}

func ctx0() context.Context { return context.Background() }

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestAuthenticateCacheOutage checks that while the hub cannot listen the
// cache is empty and bypassed (so a revocation made meanwhile is refused at
// once), and that it is used again once the hub listens anew.
func TestAuthenticateCacheOutage(t *testing.T) {
	ctx := context.Background()
	f := newFollowed(t)
	other := f.other(t)
	alice, _ := f.s.CreateUser(ctx, "alice")
	keep, _, err := f.s.CreateToken(ctx, alice.Subject(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	lose, loseTok, err := f.s.CreateToken(ctx, alice.Subject(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	f.warm(t, keep)
	f.warm(t, lose)
	if n := identity.CachedTokens(f.s); n != 2 {
		t.Fatalf("%d tokens remembered, want 2", n)
	}

	f.down.Store(true)
	if _, err := other.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, pgnotify.ApplicationName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hub to go down", func() bool { return !f.hub.Live() })
	if n := identity.CachedTokens(f.s); n != 0 {
		t.Fatalf("%d tokens remembered after notifications were lost", n)
	}
	// Bypassed: every authentication reads the database, nothing is kept.
	for range 2 {
		before := f.lookups.n.Load()
		if _, err := f.s.Authenticate(ctx, keep); err != nil {
			t.Fatal(err)
		}
		if got := f.lookups.n.Load() - before; got != 1 {
			t.Fatalf("during the outage: looked up %d times, want 1", got)
		}
	}
	if _, err := other.Exec(ctx, `UPDATE api_tokens SET revoked_at = now() WHERE id = $1`, loseTok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.s.Authenticate(ctx, lose)
	if err := wantCause(err, identity.ErrTokenRevoked); err != nil {
		t.Fatalf("revoked during the outage: %v", err)
	}
	if n := identity.CachedTokens(f.s); n != 0 {
		t.Fatalf("%d tokens remembered during the outage", n)
	}

	f.down.Store(false)
	waitFor(t, "the hub to listen again", f.hub.Live)
	f.warm(t, keep)
	_, err = f.s.Authenticate(ctx, lose)
	if err := wantCause(err, identity.ErrTokenRevoked); err != nil {
		t.Fatalf("after reconnecting: %v", err)
	}
}

// BenchmarkAuthenticate compares authenticating one token through the
// database every time with answering it from the followed cache.
func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	var dbNs float64
	run := func(b *testing.B, f *followed, s *identity.Store) {
		alice, err := s.CreateUser(ctx, "alice")
		if err != nil {
			b.Fatal(err)
		}
		g, _ := s.CreateGroup(ctx, "eng")
		if _, err := s.AddMember(ctx, g.ID, alice.ID); err != nil {
			b.Fatal(err)
		}
		bearer, _, err := s.CreateToken(ctx, alice.Subject(), "", time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		if f != nil {
			f.settle(b)
		}
		if _, err := s.Authenticate(ctx, bearer); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := s.Authenticate(ctx, bearer); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("database", func(b *testing.B) {
		s := identity.New(pgtest.Pool(b))
		run(b, nil, s)
		dbNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("cached", func(b *testing.B) {
		f := newFollowed(b)
		before := f.lookups.n.Load()
		run(b, f, f.s)
		b.ReportMetric(float64(f.lookups.n.Load()-before-1)/float64(b.N), "lookups/op")
		if ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N); dbNs > 0 && ns > 0 {
			b.ReportMetric(dbNs/ns, "x-faster-than-database")
		}
	})
}

// Remembered vouches, from memory alone, only for a token that
// authenticated since the last identity change and has not expired: it
// never reads the database, and forgets a token once it is revoked
// anywhere.
func TestRememberedIsMemoryOnly(t *testing.T) {
	f := newFollowed(t)
	ctx := context.Background()
	alice, err := f.s.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	tok, meta, err := f.s.CreateToken(ctx, alice.Subject(), "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	before := f.lookups.n.Load()
	for _, bearer := range []string{tok, "cnc_malformed", ""} {
		if _, ok := f.s.Remembered(bearer); ok {
			t.Fatalf("Remembered(%q) before any authentication", bearer)
		}
	}
	if n := f.lookups.n.Load() - before; n != 0 {
		t.Fatalf("Remembered read the database %d times", n)
	}
	f.warm(t, tok)
	if p, ok := f.s.Remembered(tok); !ok || p.Subject != alice.Subject() {
		t.Fatalf("Remembered after authentication = %v %v", p, ok)
	}
	if _, err := f.other(t).Exec(ctx, `UPDATE api_tokens SET revoked_at = now() WHERE id = $1`, meta.ID); err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	if _, ok := f.s.Remembered(tok); ok {
		t.Fatal("a token revoked elsewhere is still remembered")
	}
	tok2, meta2, err := f.s.CreateToken(ctx, alice.Subject(), "t2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.settle(t) // the token's own notification
	f.warm(t, tok2)
	if _, err := f.other(t).Exec(ctx, `UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, meta2.ID); err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	if _, ok := f.s.Remembered(tok2); ok {
		t.Fatal("an expired token is still remembered")
	}
}

// Creating a token, a user or a group changes no principal anyone holds:
// through the Store or elsewhere, it leaves every remembered token
// remembered and tells no one of a change (an orchestrator that mints a
// token per task must not make every server forget every token).
func TestCreationsKeepTheCache(t *testing.T) {
	ctx := context.Background()
	f := newFollowed(t)
	alice, err := f.s.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := f.s.CreateToken(ctx, alice.Subject(), "laptop", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.warm(t, tok)
	var changes atomic.Int64
	f.s.OnChange(func() { changes.Add(1) })
	if _, _, err := f.s.CreateToken(ctx, alice.Subject(), "task", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.s.CreateBoundToken(ctx, alice.Subject(), "bound", time.Hour, callctx.TaskContext{TaskID: uuid.NewString()}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.CreateUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.CreateGroup(ctx, "eng"); err != nil {
		t.Fatal(err)
	}
	other := f.other(t)
	if _, _, err := identity.CreateToken(ctx, other, alice.Subject(), "elsewhere", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.CreateUser(ctx, other, "carol"); err != nil {
		t.Fatal(err)
	}
	f.settle(t)
	if _, ok := f.s.Remembered(tok); !ok {
		t.Fatal("a creation made the Store forget a remembered token")
	}
	if n := changes.Load(); n != 0 {
		t.Fatalf("creations announced %d identity changes", n)
	}
	// A change still is one.
	if _, err := other.Exec(ctx, `UPDATE users SET name = 'bobby' WHERE name = 'bob'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rename to be announced", func() bool { return changes.Load() > 0 })
	if _, ok := f.s.Remembered(tok); ok {
		t.Fatal("a remembered token outlived an identity change")
	}
}
