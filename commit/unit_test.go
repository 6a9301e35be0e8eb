package commit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// runFixture is a user with a token and an enabled instance with an active
// credential: what a governed call's guard checks.
type runFixture struct {
	t                 testing.TB
	pool              *pgxpool.Pool
	user, token, inst string
	cred              string
	version           int64
}

func newRunFixture(t testing.TB, pool *pgxpool.Pool) *runFixture {
	t.Helper()
	f := &runFixture{t: t, pool: pool}
	f.exec(`INSERT INTO connector_types (name, version, description, spec) VALUES ('echo', '1', 'e', '{}') ON CONFLICT DO NOTHING`)
	f.row(`INSERT INTO users (name) VALUES ($1) RETURNING id::text`, []any{"u" + uuid.NewString()[:8]}, &f.user)
	f.row(`INSERT INTO api_tokens (user_id, token_hash) VALUES ($1, $2) RETURNING id::text`, []any{f.user, []byte(uuid.NewString())}, &f.token)
	f.row(`INSERT INTO connector_instances (type, handle, display_name, owner, state, created_by)
VALUES ('echo', 'e', 'e', 'user:' || $1, 'enabled', 'test') RETURNING id::text`, []any{f.user}, &f.inst)
	f.row(`INSERT INTO connector_credentials (instance_id, kind, ciphertext, wrapped_dek, key_id, created_by)
VALUES ($1, 'bearer', '\x00', '\x00', 'kek-test', 'test') RETURNING id::text`, []any{f.inst}, &f.cred)
	f.row(`SELECT version FROM policy_version`, nil, &f.version)
	return f
}

func (f *runFixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.pool.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatal(err)
	}
}

func (f *runFixture) row(sql string, args []any, dest ...any) {
	f.t.Helper()
	if err := f.pool.QueryRow(context.Background(), sql, args...).Scan(dest...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

func (f *runFixture) count(sql string, args ...any) int {
	f.t.Helper()
	var n int
	f.row(sql, args, &n)
	return n
}

func (f *runFixture) guard() *Guard {
	return &Guard{Instance: f.inst, Credential: &CredentialRef{ID: f.cred, Version: 1}, PolicyVersion: f.version,
		Token: f.token, User: f.user}
}

// dispatch is a call's decision unit: guard, running run, allow row.
func (f *runFixture) dispatch(i int) Unit {
	run := uuid.Must(uuid.NewV7()).String()
	sub := callctx.Subject("user:" + f.user)
	return Unit{
		Event: audit.Event{RequestID: fmt.Sprintf("req-%d", i), Transport: "http", Subject: sub, Action: "connector.read",
			Tool: "connector.op.invoke", ConnectorType: "echo", InstanceID: f.inst, Operation: "echo.read",
			Decision: audit.Allow, Reason: "rule (run " + run + ") dispatched", PolicyVersion: f.version},
		Guard: f.guard(),
		Start: &RunStart{ID: run, InstanceID: f.inst, ConnectorType: "echo", Operation: "echo.read", Kind: "read",
			Subject: sub, RequestID: fmt.Sprintf("req-%d", i), Status: "running", BytesIn: 2},
	}
}

// outcome is the unit that records d's outcome.
func outcome(d Unit, status string) Unit {
	ev := d.Event
	ev.Reason = "outcome"
	return Unit{Event: ev, Finish: &RunFinish{ID: d.Start.ID, Status: status, Attempts: 1, BytesOut: 5, StartedAt: time.Now()}}
}

// A unit's run record and audit row commit together, or neither does; a
// unit the database refuses fails only its own call.
func TestUnitsCommitWhole(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	f := newRunFixture(t, pool)
	w := newWriter(t, pool)
	d := f.dispatch(0)
	if err := w.Commit(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, outcome(d, "succeeded")); err != nil {
		t.Fatal(err)
	}
	var status string
	var finished *time.Time
	f.row(`SELECT status, finished_at FROM connector_runs WHERE id = $1`, []any{d.Start.ID}, &status, &finished)
	if status != "succeeded" || finished == nil {
		t.Fatalf("run %s, finished %v", status, finished)
	}
	// A second start of the same run is refused by the database: neither
	// its row nor anything else of it is written.
	if err := w.Commit(ctx, d); err == nil {
		t.Fatal("a duplicate run start committed")
	}
	mustVerify(t, pool, 2)

	// In one batch, only the unit that fails fails.
	hold := holdChain(t, pool, w)
	first := make(chan error, 1)
	go func() { first <- w.Record(ctx, event(1)) }()
	waitFor(t, func() bool { return lockWaiters(t, pool) == 1 })
	d2 := f.dispatch(2)
	units := []Unit{f.dispatch(1), d, d2, outcome(d2, "failed"), {Event: event(3)}}
	results := make([]chan error, len(units))
	for i, u := range units {
		results[i] = make(chan error, 1)
		go func() { results[i] <- w.Commit(ctx, u) }()
	}
	waitFor(t, func() bool { return w.queued() == len(units) })
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i := range units {
		if err := <-results[i]; (i == 1) != (err != nil) {
			t.Fatalf("unit %d: %v", i, err)
		}
	}
	if n := f.count(`SELECT count(*) FROM connector_runs`); n != 3 {
		t.Fatalf("%d runs, want 3", n)
	}
	mustVerify(t, pool, 7)
}

// The guard refuses what the database no longer allows — each reason named
// as migrations 00004, 00008 and 00011's guard functions named it — and a
// refused unit writes nothing: no run row, no audit row. Through a group
// commit and through Reserve alike.
func TestGuardRefusesWhatNoLongerHolds(t *testing.T) {
	type guardCase struct {
		name, setup string // setup: $1 instance, $2 credential, $3 user, $4 token (as literals)
		edit        func(f *runFixture, g *Guard)
		want        Refusal
	}
	cases := []guardCase{
		{name: "all current"},
		{name: "no credential used", edit: func(_ *runFixture, g *Guard) { g.Credential = nil }},
		{name: "configured subject", edit: func(_ *runFixture, g *Guard) { g.Token = "" }},
		{name: "credential rotated", edit: func(_ *runFixture, g *Guard) { g.Credential.Version = 0 }, want: CredentialRotated},
		{name: "other credential", edit: func(_ *runFixture, g *Guard) { g.Credential.ID = "00000000-0000-0000-0000-000000000009" }, want: CredentialRevoked},
		{name: "credential expires later", setup: `UPDATE connector_credentials SET expires_at = now() + interval '1 hour' WHERE id = $2`},
		{name: "credential expired", setup: `UPDATE connector_credentials SET expires_at = now() - interval '1 second' WHERE id = $2`, want: CredentialExpired},
		{name: "credential expires now", setup: `UPDATE connector_credentials SET expires_at = now() WHERE id = $2`, want: CredentialExpired},
		{name: "credential disabled", setup: `UPDATE connector_credentials SET state = 'disabled' WHERE id = $2`, want: CredentialDisabled},
		{name: "credential revoked", setup: `UPDATE connector_credentials SET state = 'revoked' WHERE id = $2`, want: CredentialRevoked},
		{name: "credential gone", setup: `DELETE FROM connector_credentials WHERE id = $2`, want: CredentialRevoked},
		{name: "instance disabled", setup: `UPDATE connector_instances SET state = 'disabled' WHERE id = $1`, want: InstanceDisabled},
		{name: "instance disabled, no credential", setup: `UPDATE connector_instances SET state = 'disabled' WHERE id = $1`,
			edit: func(_ *runFixture, g *Guard) { g.Credential = nil }, want: InstanceDisabled},
		{name: "instance uninstalled", setup: `UPDATE connector_instances SET state = 'uninstalled' WHERE id = $1`, want: InstanceUninstalled},
		{name: "instance missing", edit: func(_ *runFixture, g *Guard) { g.Instance, g.Credential = "00000000-0000-0000-0000-000000000008", nil }, want: InstanceUninstalled},
		{name: "policy moved", setup: `UPDATE policy_version SET version = version + 1`, want: PolicyMoved},
		{name: "token expires later", setup: `UPDATE api_tokens SET expires_at = now() + interval '1 hour' WHERE id = $4`},
		{name: "token expired", setup: `UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $4`, want: TokenExpired},
		{name: "token revoked", setup: `UPDATE api_tokens SET revoked_at = now() WHERE id = $4`, want: TokenRevoked},
		{name: "token deleted", setup: `DELETE FROM api_tokens WHERE id = $4`, want: TokenRevoked},
		{name: "user disabled, token valid", setup: `UPDATE users SET disabled_at = now() WHERE id = $3`, want: UserDisabled},
		{name: "user disabled", setup: `UPDATE users SET disabled_at = now() WHERE id = $3`,
			edit: func(_ *runFixture, g *Guard) { g.Token = "" }, want: UserDisabled},
		{name: "user deleted", setup: `DELETE FROM users WHERE id = $3`, edit: func(_ *runFixture, g *Guard) { g.Token = "" }, want: UserGone},
		// Checked in order: the instance first, then the credential, the
		// policy, the token, the user.
		{name: "instance disabled and policy moved", setup: `UPDATE connector_instances SET state = 'disabled' WHERE id = $1; UPDATE policy_version SET version = version + 1`,
			want: InstanceDisabled},
		{name: "credential revoked and token revoked", setup: `UPDATE connector_credentials SET state = 'revoked' WHERE id = $2;`,
			edit: func(f *runFixture, g *Guard) {
				f.exec(`UPDATE api_tokens SET revoked_at = now() WHERE id = $1`, f.token)
			}, want: CredentialRevoked},
		{name: "policy moved and user disabled", setup: `UPDATE users SET disabled_at = now() WHERE id = $3; UPDATE policy_version SET version = version + 1`,
			want: PolicyMoved},
	}
	for _, path := range []string{"commit", "reserve"} {
		t.Run(path, func(t *testing.T) {
			pool := pgtest.Pool(t)
			w := newWriter(t, pool)
			ctx := context.Background()
			for i, c := range cases {
				f := newRunFixture(t, pool)
				if c.setup != "" {
					f.exec(strings.NewReplacer("$1", quote(f.inst), "$2", quote(f.cred), "$3", quote(f.user), "$4", quote(f.token)).Replace(c.setup))
				}
				u := f.dispatch(i)
				if c.edit != nil {
					c.edit(f, u.Guard)
				}
				rows := rowCount(t, pool)
				var err error
				if path == "commit" {
					err = w.Commit(ctx, u)
				} else {
					u.Start.IdempotencyKey = "k"
					var prior *Prior
					prior, err = w.Reserve(ctx, u)
					if err == nil && prior != nil {
						t.Fatalf("%s: the key was taken: %+v", c.name, prior)
					}
				}
				var rf *Refused
				switch {
				case c.want == "" && err != nil:
					t.Errorf("%s: %v, want committed", c.name, err)
				case c.want != "" && (!errors.As(err, &rf) || rf.Reason != c.want):
					t.Errorf("%s: %v, want refused: %s", c.name, err, c.want)
				}
				runs, after := f.count(`SELECT count(*) FROM connector_runs WHERE id = $1`, u.Start.ID), rowCount(t, pool)
				if committed := c.want == ""; (runs == 1) != committed || (after == rows+1) != committed || (after != rows && !committed) {
					t.Errorf("%s: %d run rows and %d audit rows written", c.name, runs, after-rows)
				}
			}
			mustVerify(t, pool, rowCount(t, pool))
		})
	}
}

func quote(id string) string { return "'" + id + "'" }

// Units of one batch with the same guard share one check, and each of them
// hears its outcome: refused together, while a unit with another guard
// commits.
func TestUnitsSharingAGuardShareItsVerdict(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	w := newWriter(t, pool)
	record(t, w, 1)
	revoked, other := newRunFixture(t, pool), newRunFixture(t, pool)
	revoked.exec(`UPDATE connector_credentials SET state = 'revoked' WHERE id = $1`, revoked.cred)
	units := []Unit{revoked.dispatch(0), other.dispatch(1), revoked.dispatch(2), revoked.dispatch(3), other.dispatch(4)}
	hold := holdChain(t, pool, w)
	first := make(chan error, 1)
	go func() { first <- w.Record(ctx, event(0)) }()
	waitFor(t, func() bool { return lockWaiters(t, pool) == 1 })
	results := make([]chan error, len(units))
	for i, u := range units {
		results[i] = make(chan error, 1)
		go func() { results[i] <- w.Commit(ctx, u) }()
	}
	waitFor(t, func() bool { return w.queued() == len(units) })
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, u := range units {
		err := <-results[i]
		var rf *Refused
		if u.Guard.Instance == revoked.inst {
			if !errors.As(err, &rf) || rf.Reason != CredentialRevoked {
				t.Errorf("unit %d (revoked credential): %v, want refused: credential_revoked", i, err)
			}
		} else if err != nil {
			t.Errorf("unit %d: %v", i, err)
		}
	}
	if n := revoked.count(`SELECT count(*) FROM connector_runs`); n != 2 {
		t.Fatalf("%d runs, want the 2 of the other instance", n)
	}
	mustVerify(t, pool, 4)
}
