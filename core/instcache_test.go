package core_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/commit"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/echo"
	"github.com/connec/connec/core"
	"github.com/connec/connec/executor"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
	"github.com/connec/connec/internal/platform/pgnotify"
	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// readCounter counts the invocation hot path's instance reads
// (getInstanceForInvoke) on the pool it traces.
type readCounter struct{ n atomic.Int64 }

func (r *readCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "FROM connector_instances i LEFT JOIN LATERAL") {
		r.n.Add(1)
	}
	return ctx
}

func (r *readCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// countingRunner counts the operations that reached the executor.
type countingRunner struct {
	connectors.Runner
	n atomic.Int64
}

func (r *countingRunner) Execute(ctx context.Context, req connectors.ExecRequest) (connectors.ExecResult, error) {
	r.n.Add(1)
	return r.Runner.Execute(ctx, req)
}

type hubMode int

const (
	noHub   hubMode = iota
	liveHub         // listening on the service's database
	// deafHub is live but listens on another database: the cache is used
	// and never hears of changes made by anyone but the service itself, as
	// if every notification were still on its way.
	deafHub
)

// fixture is one service on a fresh database, acting as an owner of echo
// instances.
type fixture struct {
	t       *testing.T
	svc     *core.Service
	pool    *pgxpool.Pool // the service's, traced by reads
	reads   *readCounter
	other   *pgxpool.Pool // another server's connection to the database
	runner  *countingRunner
	reg     *connectors.Registry
	az      *authz.Authorizer
	aw      *commit.Writer
	hub     *pgnotify.Hub
	stopHub context.CancelFunc
	ctx     context.Context
	// marks counts settle's markers; seen is the last one the hub handled.
	marks atomic.Int64
	seen  atomic.Int64
}

func newFixture(t *testing.T, mode hubMode) *fixture {
	t.Helper()
	ctx := context.Background()
	url := pgtest.URL(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, reads: &readCounter{}}
	cfg.ConnConfig.Tracer = f.reads
	if f.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.pool.Close)
	if f.other, err = pgxpool.New(ctx, url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.other.Close)

	reg, err := connectors.NewRegistry(echo.New())
	if err != nil {
		t.Fatal(err)
	}
	if err := core.SyncCatalog(ctx, f.pool, reg); err != nil {
		t.Fatal(err)
	}
	az, err := authz.New(ctx, f.pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close)
	aw := commit.NewWriter(f.pool)
	t.Cleanup(aw.Close)
	key := filepath.Join(t.TempDir(), "connec.key")
	if _, err := vault.GenerateKeyFile(key, false); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ex, err := executor.New(executor.WithKeyFile(key), executor.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	recipient, _ := ex.Recipient()
	sealer, err := vault.NewSealer(recipient)
	if err != nil {
		t.Fatal(err)
	}
	f.runner = &countingRunner{Runner: ex}
	opts := []core.Option{core.WithSealer(sealer), core.WithLogger(quiet)}
	switch mode {
	case liveHub:
		f.hub = pgnotify.New(f.pool.Config().ConnConfig, pgnotify.WithLogger(quiet))
	case deafHub:
		elsewhere, err := pgx.ParseConfig(pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		f.hub = pgnotify.New(elsewhere, pgnotify.WithLogger(quiet))
	}
	if f.hub != nil {
		opts = append(opts, core.WithNotify(f.hub))
	}
	f.reg, f.az, f.aw = reg, az, aw
	f.svc = core.NewService(f.pool, reg, az, aw, f.runner, opts...)
	t.Cleanup(f.svc.Wait)
	if mode == liveHub {
		// Registered after the service's handler, so it runs after it on
		// each notification.
		if err := f.hub.Handle(core.InstanceChannel, func(p string) {
			var n int64
			if _, err := fmt.Sscanf(p, "settle-%d", &n); err == nil {
				f.seen.Store(n)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	if f.hub != nil {
		hctx, cancel := context.WithCancel(ctx)
		f.stopHub = func() { cancel(); <-f.hub.Done() }
		t.Cleanup(f.stopHub)
		if err := f.hub.Start(hctx); err != nil {
			t.Fatal(err)
		}
	}

	u, err := identity.CreateUser(ctx, f.pool, "owner")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := az.AddRule(ctx, f.pool, authz.Rule{Subject: string(u.Subject()), Resource: "connectors/" + string(u.Subject()) + "/**", Action: "*", Effect: "allow"}); err != nil {
		t.Fatal(err)
	}
	if err := az.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := identity.PrincipalFor(ctx, f.pool, u.Subject())
	if err != nil {
		t.Fatal(err)
	}
	p.Transport = "test"
	f.ctx = callctx.WithPrincipal(ctx, p)
	return f
}

// instance installs an enabled echo instance with a bearer credential
// (expiring at expires, if set).
func (f *fixture) instance(expires *time.Time) (string, core.Credential) {
	f.t.Helper()
	inst, err := f.svc.Install(f.ctx, core.InstallInput{Type: "echo", DisplayName: "e", Enable: true})
	if err != nil {
		f.t.Fatal(err)
	}
	cred, err := f.svc.CreateCredential(f.ctx, core.CredentialInput{InstanceID: string(inst.ID), Kind: "bearer",
		Secret: map[string]string{"token": "t0k3n-" + f.t.Name()}, ExpiresAt: expires})
	if err != nil {
		f.t.Fatal(err)
	}
	return string(inst.ID), cred
}

func (f *fixture) invoke(id, op, key string) (core.InvokeResult, error) {
	return f.svc.Invoke(f.ctx, core.InvokeInput{InstanceID: id, Operation: op, Arguments: []byte(`{"message":"x"}`), IdempotencyKey: key})
}

func (f *fixture) mustInvoke(id, op string) {
	f.t.Helper()
	if _, err := f.invoke(id, op, ""); err != nil {
		f.t.Fatalf("%s on %s: %v", op, id, err)
	}
}

// settle waits until the hub has handled every notification committed so
// far (they arrive in commit order): changes this service made announce
// themselves after it has already dropped its entry, and a late
// announcement would drop an entry a test has just filled.
func (f *fixture) settle() {
	f.t.Helper()
	n := f.marks.Add(1)
	f.exec(`SELECT pg_notify($1, $2)`, core.InstanceChannel, fmt.Sprintf("settle-%d", n))
	deadline := time.Now().Add(10 * time.Second)
	for f.seen.Load() < n {
		if time.Now().After(deadline) {
			f.t.Fatal("notifications not delivered")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// exec runs sql on another connection, as another server would.
func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.other.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) count(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.other.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// refused checks err is a refusal of type want.
func refused(t *testing.T, what string, err error, want fault.Type) {
	t.Helper()
	if err == nil || fault.As(err).Type != want {
		t.Fatalf("%s: got %v, want %s", what, err, want)
	}
}

// An instance read once is served from memory: later invocations, read and
// send, make no instance query. Without a hub every call reads it.
func TestInvokeServesCachedInstanceWithoutRoundTrip(t *testing.T) {
	f := newFixture(t, liveHub)
	id, _ := f.instance(nil)
	f.settle()
	f.mustInvoke(id, "echo.read")
	before := f.reads.n.Load()
	for range 3 {
		f.mustInvoke(id, "echo.read")
	}
	f.mustInvoke(id, "echo.send")
	if n := f.reads.n.Load() - before; n != 0 {
		t.Fatalf("cached invocations read the instance %d times", n)
	}
	if n := core.CachedInstances(f.svc); n != 1 {
		t.Fatalf("cache holds %d entries, want 1", n)
	}
	// A missing instance is not cached (and, to this caller, is policy_denied).
	for range 2 {
		if _, err := f.invoke("00000000-0000-4000-8000-000000000000", "echo.read", ""); !errors.Is(err, fault.ErrPolicyDenied) {
			t.Fatalf("missing instance: %v", err)
		}
	}
	if n := f.reads.n.Load() - before; n != 2 {
		t.Fatalf("missing instance read %d times in 2 calls", n)
	}

	plain := newFixture(t, noHub)
	id, _ = plain.instance(nil)
	for range 3 {
		plain.mustInvoke(id, "echo.read")
	}
	if n := plain.reads.n.Load(); n != 3 {
		t.Fatalf("without a hub 3 invocations read the instance %d times", n)
	}
}

// Every change this server makes is seen by its very next call, refused
// before anything runs — with notifications that never arrive, so it is the
// service's own invalidation that does it.
func TestOwnChangesSeenAtNextCall(t *testing.T) {
	f := newFixture(t, deafHub)
	if !f.hub.Live() {
		t.Fatal("hub not live")
	}
	id, cred := f.instance(nil)
	f.mustInvoke(id, "echo.read")
	reads := f.reads.n.Load()
	f.mustInvoke(id, "echo.read")
	if f.reads.n.Load() != reads {
		t.Fatal("the cache is not in use")
	}
	calls, executed := 2, 2
	// next invokes read and send and checks both are refused with want
	// before reaching the executor (or, want "", both run).
	next := func(what string, want fault.Type) {
		t.Helper()
		ran := f.runner.n.Load()
		for _, op := range []string{"echo.read", "echo.send"} {
			calls++
			_, err := f.invoke(id, op, "")
			if want == "" {
				if err != nil {
					t.Fatalf("after %s, %s: %v", what, op, err)
				}
				executed++
				continue
			}
			refused(t, "after "+what+", "+op, err, want)
		}
		if n := f.runner.n.Load() - ran; want != "" && n != 0 {
			t.Fatalf("after %s: %d refused calls reached the executor", what, n)
		}
	}
	svc, ctx := f.svc, f.ctx
	steps := []struct {
		what   string
		change func() error
		want   fault.Type
	}{
		{"disable", func() error { _, err := svc.Disable(ctx, id); return err }, fault.PolicyDenied},
		{"enable", func() error { _, err := svc.Enable(ctx, id); return err }, ""},
		{"credential disable", func() error { _, err := svc.DisableCredential(ctx, cred.ID); return err }, fault.CredentialDisabled},
		{"credential enable", func() error { _, err := svc.EnableCredential(ctx, cred.ID); return err }, ""},
		// A stale version would be refused by the guard (transient).
		{"credential rotate", func() error {
			_, err := svc.RotateCredential(ctx, core.RotateInput{CredentialID: cred.ID, Secret: map[string]string{"token": "r0tated"}})
			return err
		}, ""},
		{"credential revoke", func() error { _, err := svc.RevokeCredential(ctx, cred.ID); return err }, fault.CredentialRevoked},
		{"credential create", func() error {
			_, err := svc.CreateCredential(ctx, core.CredentialInput{InstanceID: id, Kind: "bearer", Secret: map[string]string{"token": "n3w"}})
			return err
		}, ""},
		{"uninstall", func() error { _, err := svc.Uninstall(ctx, id); return err }, fault.PolicyDenied},
	}
	for _, s := range steps {
		if err := s.change(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		next(s.what, s.want)
	}
	// One row per call, and a call that ran (read or send) has its
	// dispatch row too.
	if n := f.count(`SELECT count(*) FROM audit_events WHERE tool = 'connector.op.invoke' AND instance_id = $1`, id); n != calls+executed {
		t.Fatalf("%d invocations (%d ran), %d audit rows", calls, executed, n)
	}
}

// A revocation committed by another server reaches this one's cache when its
// notification arrives, and no call in the meantime gets a result.
func TestRevocationElsewhereSeenWhenNotified(t *testing.T) {
	f := newFixture(t, liveHub)
	var lags []time.Duration
	for range 10 {
		id, cred := f.instance(nil)
		f.settle()
		before := core.CachedInstances(f.svc)
		f.mustInvoke(id, "echo.read")
		if core.CachedInstances(f.svc) != before+1 {
			t.Fatal("not cached")
		}
		f.exec(`UPDATE connector_credentials SET state = 'revoked', revoked_at = now(), updated_at = now() WHERE id = $1`, cred.ID)
		start := time.Now()
		for core.CachedInstances(f.svc) != before {
			if time.Since(start) > 5*time.Second {
				t.Fatal("the revocation's notification never dropped the entry")
			}
			time.Sleep(50 * time.Microsecond)
		}
		lags = append(lags, time.Since(start))
		ran := f.runner.n.Load()
		_, err := f.invoke(id, "echo.read", "")
		refused(t, "read after the notification", err, fault.CredentialRevoked)
		if f.runner.n.Load() != ran {
			t.Fatal("after the notification a revoked credential still reached the executor")
		}
	}
	slices.Sort(lags)
	t.Logf("revocation on another connection → cache entry dropped: median %s, max %s (10 runs)", lags[len(lags)/2], lags[len(lags)-1])

	// Calls made right after the commit, before or after the notification:
	// every one is refused, whether the cache had heard or the guard caught it.
	id, cred := f.instance(nil)
	f.settle()
	f.mustInvoke(id, "echo.read")
	f.exec(`UPDATE connector_credentials SET state = 'revoked', revoked_at = now(), updated_at = now() WHERE id = $1`, cred.ID)
	start, ran := time.Now(), f.runner.n.Load()
	for i := 0; ; i++ {
		before := f.runner.n.Load()
		res, err := f.invoke(id, "echo.read", "")
		refused(t, fmt.Sprintf("call %d after the revoke", i), err, fault.CredentialRevoked)
		if len(res.Output) != 0 {
			t.Fatal("a result was returned on a revoked credential")
		}
		if f.runner.n.Load() == before {
			t.Logf("refused before execution %s after the revoke committed (%d call(s) before that ran and had their result withheld)", time.Since(start), f.runner.n.Load()-ran)
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the revoke's notification never arrived")
		}
	}
}

// While this server has not heard of a change made elsewhere, the commit
// that would let the call act refuses it: no operation starts, read or send,
// and the call has exactly one audit row and no run row.
func TestStaleCacheRefusedAtCommit(t *testing.T) {
	f := newFixture(t, deafHub)
	changes := []struct {
		name string
		sql  string // $1 instance, $2 credential
		want fault.Type
	}{
		{"credential revoked", `UPDATE connector_credentials SET state = 'revoked', revoked_at = now() WHERE id = $2 AND instance_id = $1`, fault.CredentialRevoked},
		{"credential disabled", `UPDATE connector_credentials SET state = 'disabled' WHERE id = $2 AND instance_id = $1`, fault.CredentialDisabled},
		{"credential expired", `UPDATE connector_credentials SET expires_at = now() - interval '1 second' WHERE id = $2 AND instance_id = $1`, fault.CredentialExpired},
		{"credential rotated", `UPDATE connector_credentials SET version = version + 1 WHERE id = $2 AND instance_id = $1`, fault.Transient},
		{"instance disabled", `UPDATE connector_instances SET state = 'disabled' WHERE id = $1 AND $2::uuid IS NOT NULL`, fault.PolicyDenied},
		{"instance uninstalled", `WITH r AS (UPDATE connector_credentials SET state = 'revoked' WHERE id = $2)
UPDATE connector_instances SET state = 'uninstalled' WHERE id = $1`, fault.PolicyDenied},
	}
	calls := []struct {
		name, op, key string
		executes      bool // the operation runs before the commit that checks
	}{
		{"send", "echo.send", "", false},
		{"idempotent send", "echo.send", "k1", false},
		{"async", "echo.later", "", false},
		{"read", "echo.read", "", false},
	}
	for _, ch := range changes {
		for _, c := range calls {
			t.Run(ch.name+"/"+c.name, func(t *testing.T) {
				id, cred := f.instance(nil)
				f.mustInvoke(id, "echo.read")
				reads := f.reads.n.Load()
				f.exec(ch.sql, id, cred.ID)
				ran := f.runner.n.Load()
				res, err := f.invoke(id, c.op, c.key)
				f.svc.Wait()
				refused(t, c.name, err, ch.want)
				if f.reads.n.Load() != reads {
					t.Fatal("the instance was read from the database: the cache was not stale")
				}
				if len(res.Output) != 0 || res.RunID != "" {
					t.Fatalf("a refused call returned %+v", res)
				}
				if n := f.runner.n.Load() - ran; (n == 1) != c.executes {
					t.Fatalf("executions: %d", n)
				}
				if n := f.count(`SELECT count(*) FROM connector_runs WHERE instance_id = $1`, id); n != 1 {
					t.Fatalf("%d run rows, want only the first read's", n)
				}
				var rows []string
				r, err := f.other.Query(context.Background(), `SELECT decision||' '||COALESCE(error_type,'') FROM audit_events
WHERE tool = 'connector.op.invoke' AND instance_id = $1 ORDER BY seq`, id)
				if err != nil {
					t.Fatal(err)
				}
				rows, err = pgx.CollectRows(r, pgx.RowTo[string])
				if err != nil {
					t.Fatal(err)
				}
				decision := "allow"
				if ch.want == fault.PolicyDenied {
					decision = "deny"
				}
				// The first read's decision and outcome rows, then the refusal.
				if want := []string{"allow ", "allow ", decision + " " + string(ch.want)}; !slices.Equal(rows, want) {
					t.Fatalf("audit rows %q, want %q", rows, want)
				}
				// The refusal dropped the stale entry: the next call reads
				// the database and is refused before anything runs.
				ran = f.runner.n.Load()
				_, err = f.invoke(id, "echo.read", "")
				if ch.want == fault.Transient {
					// A rotation is no refusal: fresh, the call goes on (and
					// fails to open this test's fake new version).
					if f.reads.n.Load() == reads {
						t.Fatal("the stale entry was kept")
					}
					return
				}
				refused(t, "next call", err, ch.want)
				if f.runner.n.Load() != ran {
					t.Fatal("the next call reached the executor")
				}
			})
		}
	}
}

// A credential that expires while cached is refused at once, by the clock:
// no notification is involved. (The refusal is confirmed by one read of
// the instance, as every refusal is: the expiry may have been moved
// elsewhere.)
func TestExpiryWhileCachedRefusedAtOnce(t *testing.T) {
	f := newFixture(t, deafHub)
	expires := time.Now().Add(1500 * time.Millisecond)
	id, _ := f.instance(&expires)
	f.mustInvoke(id, "echo.read")
	reads, ran := f.reads.n.Load(), f.runner.n.Load()
	time.Sleep(time.Until(expires) + time.Millisecond)
	for _, op := range []string{"echo.read", "echo.send"} {
		_, err := f.invoke(id, op, "")
		refused(t, op+" after expiry", err, fault.CredentialExpired)
	}
	if f.reads.n.Load() != reads+2 || f.runner.n.Load() != ran {
		t.Fatalf("instance reads %d, executions %d after expiry; want 2 (one per refusal), 0", f.reads.n.Load()-reads, f.runner.n.Load()-ran)
	}
}

// While the hub is down the cache is bypassed, and once it listens again it
// starts empty: notifications it may have missed cannot leave a stale entry.
func TestHubDownBypassesCache(t *testing.T) {
	f := newFixture(t, liveHub)
	id, cred := f.instance(nil)
	f.settle()
	f.mustInvoke(id, "echo.read")
	f.mustInvoke(id, "echo.read")
	if n := f.reads.n.Load(); n != 1 {
		t.Fatalf("reads %d, want 1", n)
	}
	// The hub's connection is killed: the cache is emptied.
	if _, err := f.other.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1`, pgnotify.ApplicationName); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	wait("hub down", func() bool { return !f.hub.Live() })
	if n := core.CachedInstances(f.svc); n != 0 {
		t.Fatalf("cache kept %d entries when notifications were lost", n)
	}
	wait("hub live again", f.hub.Live)
	f.mustInvoke(id, "echo.read")
	f.mustInvoke(id, "echo.read")
	if n := f.reads.n.Load(); n != 2 {
		t.Fatalf("after reconnecting: reads %d, want 2", n)
	}
	// The hub stopped: every call reads the database, so a revocation no
	// notification announces is refused before anything runs.
	f.stopHub()
	f.mustInvoke(id, "echo.read")
	f.mustInvoke(id, "echo.read")
	if n := f.reads.n.Load(); n != 4 {
		t.Fatalf("hub stopped: reads %d, want 4", n)
	}
	f.exec(`UPDATE connector_credentials SET state = 'revoked' WHERE id = $1`, cred.ID)
	ran := f.runner.n.Load()
	_, err := f.invoke(id, "echo.read", "")
	refused(t, "read with the hub down", err, fault.CredentialRevoked)
	if f.runner.n.Load() != ran {
		t.Fatal("reached the executor")
	}
}

// A refusal is never made on memory alone: an instance or credential that
// this server holds as disabled, but that was enabled again elsewhere (the
// announcement not here yet: the hub is deaf), is read again and the call
// goes through.
func TestCachedRefusalConfirmedInDatabase(t *testing.T) {
	f := newFixture(t, deafHub)
	id, cred := f.instance(nil)
	f.mustInvoke(id, "echo.read")

	if _, err := f.svc.DisableCredential(f.ctx, cred.ID); err != nil {
		t.Fatal(err)
	}
	_, err := f.invoke(id, "echo.read", "")
	refused(t, "disabled credential", err, fault.CredentialDisabled)
	f.exec(`UPDATE connector_credentials SET state = 'active' WHERE id = $1`, cred.ID) // elsewhere
	f.mustInvoke(id, "echo.read")

	if _, err := f.svc.Disable(f.ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = f.invoke(id, "echo.read", "")
	refused(t, "disabled instance", err, fault.PolicyDenied)
	f.exec(`UPDATE connector_instances SET state = 'enabled' WHERE id = $1`, id) // elsewhere
	f.mustInvoke(id, "echo.read")

	// A refusal the database confirms stands.
	f.exec(`UPDATE connector_credentials SET state = 'revoked' WHERE id = $1`, cred.ID)
	for range 2 {
		_, err = f.invoke(id, "echo.read", "")
		refused(t, "revoked elsewhere", err, fault.CredentialRevoked)
	}
}
