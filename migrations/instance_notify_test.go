package migrations_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Every migration rolls back and applies again cleanly.
func TestMigrationsRollBackAndReapply(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS(), goose.WithTableName("connec_schema_migrations"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_proc WHERE proname LIKE 'connec\_%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("functions left after rolling back: %d (%v)", n, err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_proc WHERE proname = 'connec_audit_chain_moved'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("connec_audit_chain_moved after reapplying: %d (%v)", n, err)
	}
}

func seedInstance(t *testing.T, pool *pgxpool.Pool, state string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO connector_types (name, version, description, spec) VALUES ('echo', '1', 'e', '{}') ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := pool.QueryRow(ctx, `INSERT INTO connector_instances (type, handle, display_name, owner, state, created_by)
VALUES ('echo', 'h' || replace(gen_random_uuid()::text, '-', ''), 'e', 'user:00000000-0000-0000-0000-000000000001', $1, 'test')
RETURNING id::text`, state).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func seedCredential(t *testing.T, pool *pgxpool.Pool, inst string) string {
	t.Helper()
	var id string
	if err := pool.QueryRow(context.Background(), `INSERT INTO connector_credentials (instance_id, kind, ciphertext, wrapped_dek, key_id, created_by)
VALUES ($1, 'bearer', '\x00', '\x00', 'kek-test', 'test') RETURNING id::text`, inst).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// Every change to an instance or credential row is announced on
// connec_instance with the instance id, a TRUNCATE with "*"; credential
// changes are still announced on connec_credential too.
func TestInstanceChangesAnnounced(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, ch := range []string{"connec_instance", "connec_credential"} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			t.Fatal(err)
		}
	}
	// expect checks the notifications that arrive next are want, in any
	// order, and no more.
	expect := func(what string, want ...string) {
		t.Helper()
		var got []string
		for range want {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			n, err := conn.WaitForNotification(wctx)
			cancel()
			if err != nil {
				t.Fatalf("%s: got %q, waiting for %q: %v", what, got, want, err)
			}
			got = append(got, n.Channel+" "+n.Payload)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: got %q, want %q", what, got, want)
		}
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if n, err := conn.WaitForNotification(wctx); err == nil {
			t.Fatalf("%s: unexpected %s %s", what, n.Channel, n.Payload)
		}
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	inst := seedInstance(t, pool, "enabled")
	expect("install", "connec_instance "+inst)
	exec(`UPDATE connector_instances SET state = 'disabled' WHERE id = $1`, inst)
	expect("disable", "connec_instance "+inst)
	cred := seedCredential(t, pool, inst)
	expect("credential create", "connec_instance "+inst)
	exec(`UPDATE connector_credentials SET state = 'revoked' WHERE id = $1`, cred)
	expect("credential revoke", "connec_instance "+inst, "connec_credential "+cred)
	other := seedInstance(t, pool, "enabled")
	expect("second install", "connec_instance "+other)
	exec(`UPDATE connector_credentials SET instance_id = $2 WHERE id = $1`, cred, other)
	expect("credential moved", "connec_instance "+inst, "connec_instance "+other, "connec_credential "+cred)
	exec(`DELETE FROM connector_credentials WHERE id = $1`, cred)
	expect("credential delete", "connec_instance "+other, "connec_credential "+cred)
	exec(`TRUNCATE connector_credentials`)
	expect("truncate", "connec_instance *")
}

// An audit chain's head only moves forward — renewing or handing over its
// hold leaves it where it is — and a chain is never removed: what Verify
// compares each chain's rows with cannot be wound back by an ordinary
// UPDATE or DELETE.
func TestAuditChainsOnlyMoveForward(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	next := bytes.Repeat([]byte{7}, 32)
	code := func(err error) string {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code
		}
		return fmt.Sprint(err)
	}
	for _, tc := range []struct {
		name, sql string
		args      []any
		want      string
	}{
		{"forward", `UPDATE audit_chains SET head_seq = head_seq + 1, head_hash = $1 WHERE id = 1`, []any{next}, ""},
		{"hold taken and renewed", `UPDATE audit_chains SET holder = gen_random_uuid(), held_until = now() + interval '1 minute' WHERE id = 1`, nil, ""},
		{"backwards", `UPDATE audit_chains SET head_seq = head_seq - 1 WHERE id = 1`, nil, "42501"},
		{"same place, other hash", `UPDATE audit_chains SET head_hash = $1 WHERE id = 1`, []any{bytes.Repeat([]byte{8}, 32)}, "42501"},
		{"renumbered", `UPDATE audit_chains SET id = 2 WHERE id = 1`, nil, "42501"},
		{"deleted", `DELETE FROM audit_chains`, nil, "42501"},
		{"truncated", `TRUNCATE audit_chains`, nil, "42501"},
	} {
		_, err := pool.Exec(ctx, tc.sql, tc.args...)
		if got := code(err); err == nil && tc.want != "" || err != nil && got != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	var seq int64
	var hash []byte
	if err := pool.QueryRow(ctx, `SELECT head_seq, head_hash FROM audit_chains WHERE id = 1`).Scan(&seq, &hash); err != nil {
		t.Fatal(err)
	}
	if seq != 1 || !bytes.Equal(hash, next) {
		t.Fatalf("chain 1's head at %d %x, want 1 %x", seq, hash, next)
	}
}

// Instances are never deleted (uninstalling is a state), which is what lets
// connector_runs refer to them without a foreign key.
func TestInstancesAreKept(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	inst := seedInstance(t, pool, "uninstalled")
	for _, sql := range []string{
		`DELETE FROM connector_instances WHERE id = '` + inst + `'`,
		`DELETE FROM connector_instances WHERE false`,
		`TRUNCATE connector_instances CASCADE`,
	} {
		_, err := pool.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s: err = %v, want insufficient_privilege", sql, err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM connector_instances WHERE id = $1`, inst).Scan(&n); err != nil || n != 1 {
		t.Fatalf("instance rows: %d (%v)", n, err)
	}
}
