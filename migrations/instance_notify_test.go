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
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_proc WHERE proname = 'connec_invoke_guard'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("guard after reapplying: %d (%v)", n, err)
	}
}

func seedInstance(t *testing.T, pool *pgxpool.Pool, state string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO connector_types (name, version, description, spec) VALUES ('echo', '1', 'e', '{}') ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := pool.QueryRow(ctx, `INSERT INTO connector_instances (type, display_name, owner, state, created_by)
VALUES ('echo', 'e', 'user:00000000-0000-0000-0000-000000000001', $1, 'test') RETURNING id::text`, state).Scan(&id); err != nil {
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

// connec_invoke_guard, and migrations.InvokeGuardSQL that connec runs (its
// fast path calls the function only to name a refusal), pass only for an
// enabled instance whose credential (if one is named) is active, unexpired
// and at the named version, and say why they refuse with the same SQLSTATE.
func TestInvokeGuard(t *testing.T) {
	for name, sql := range map[string]string{
		"function":       `SELECT connec_invoke_guard($1, $2, $3)`,
		"InvokeGuardSQL": migrations.InvokeGuardSQL,
	} {
		t.Run(name, func(t *testing.T) { testInvokeGuard(t, sql) })
	}
}

func testInvokeGuard(t *testing.T, sql string) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	inst := seedInstance(t, pool, "enabled")
	cred := seedCredential(t, pool, inst)
	guard := func(inst, cred any, version any) string {
		t.Helper()
		_, err := pool.Exec(ctx, sql, inst, cred, version)
		if err == nil {
			return ""
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			t.Fatalf("guard: %v", err)
		}
		return pe.Code
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, setup string
		cred        any
		version     any
		want        string
	}{
		{"active", ``, cred, 1, ""},
		{"no credential used", ``, nil, nil, ""},
		{"rotated", ``, cred, 0, "CNC04"},
		{"other credential", ``, "00000000-0000-0000-0000-000000000009", 1, "CNC01"},
		{"expires later", `UPDATE connector_credentials SET expires_at = now() + interval '1 hour'`, cred, 1, ""},
		{"expired", `UPDATE connector_credentials SET expires_at = now() - interval '1 second'`, cred, 1, "CNC03"},
		{"expires now", `UPDATE connector_credentials SET expires_at = now()`, cred, 1, "CNC03"},
		{"disabled", `UPDATE connector_credentials SET state = 'disabled', expires_at = NULL`, cred, 1, "CNC02"},
		{"revoked", `UPDATE connector_credentials SET state = 'revoked'`, cred, 1, "CNC01"},
		{"instance disabled", `UPDATE connector_instances SET state = 'disabled'`, nil, nil, "CNI01"},
		{"instance uninstalled", `UPDATE connector_instances SET state = 'uninstalled'`, cred, 1, "CNI02"},
	} {
		if tc.setup != "" {
			exec(tc.setup)
		}
		if got := guard(inst, tc.cred, tc.version); got != tc.want {
			t.Errorf("%s: SQLSTATE %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := guard("00000000-0000-0000-0000-000000000008", nil, nil); got != "CNI02" {
		t.Errorf("missing instance: SQLSTATE %q, want CNI02", got)
	}
}

// migrations.AuditAdvanceSQL moves the chain head only from where the
// caller says it is, and otherwise raises AuditHeadMovedCode and changes
// nothing; the head still only moves forward.
func TestAuditAdvance(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	var seq int64
	var hash []byte
	if err := pool.QueryRow(ctx, `SELECT seq, hash FROM audit_chain_head`).Scan(&seq, &hash); err != nil {
		t.Fatal(err)
	}
	next := bytes.Repeat([]byte{7}, 32)
	code := func(err error) string {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code
		}
		return fmt.Sprint(err)
	}
	for _, tc := range []struct {
		name           string
		fromSeq, toSeq int64
		fromHash       []byte
		want           string
	}{
		{"wrong seq", seq + 1, seq + 2, hash, migrations.AuditHeadMovedCode},
		{"wrong hash", seq, seq + 1, next, migrations.AuditHeadMovedCode},
		{"backwards", seq, seq, hash, "42501"},
		{"forward", seq, seq + 1, hash, ""},
		{"from the old head", seq, seq + 2, hash, migrations.AuditHeadMovedCode},
	} {
		_, err := pool.Exec(ctx, migrations.AuditAdvanceSQL, tc.fromSeq, tc.fromHash, tc.toSeq, next)
		if got := code(err); err == nil && tc.want != "" || err != nil && got != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	var gotSeq int64
	var gotHash []byte
	if err := pool.QueryRow(ctx, `SELECT seq, hash FROM audit_chain_head`).Scan(&gotSeq, &gotHash); err != nil {
		t.Fatal(err)
	}
	if gotSeq != seq+1 || !bytes.Equal(gotHash, next) {
		t.Fatalf("head at %d %x, want %d %x", gotSeq, gotHash, seq+1, next)
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
