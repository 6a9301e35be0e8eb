package pgcluster

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// withoutPassword is u with no password source: what anything else on the
// machine that reaches the socket would try.
func withoutPassword(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("passfile")
	u.RawQuery = q.Encode()
	return u.String()
}

// mustRefuse fails t unless connecting to raw is refused for want of a
// password.
func mustRefuse(t *testing.T, raw string) {
	t.Helper()
	t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "none"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, raw)
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("%s connected without a password", raw)
	}
	if !strings.Contains(err.Error(), "password") {
		t.Fatalf("refused, but not for a password: %v", err)
	}
}

// A new cluster lets nobody in without a password (SCRAM-SHA-256), and the
// passwords are in a file only connec can read.
func TestNewClusterNeedsAPassword(t *testing.T) {
	needBinaries(t)
	ctx := context.Background()
	c, err := New(Options{Dir: filepath.Join(t.TempDir(), "pg")})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	hba, err := os.ReadFile(filepath.Join(c.Dir(), "pg_hba.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if weak, _ := c.hbaWeak(); weak {
		t.Errorf("pg_hba.conf allows more than SCRAM:\n%s", hba)
	}
	fi, err := os.Stat(PassFile(c.Dir()))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("password file: %v %v", fi, err)
	}
	mustRefuse(t, withoutPassword(t, c.URL("postgres")))
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("the superuser with its password: %v", err)
	}
	conn.Close(ctx)
}

// A cluster an earlier connec made with trust authentication is secured
// when connec starts on it: passwords set, pg_hba.conf rewritten, and its
// database handed over to a role that is no superuser.
func TestTrustClusterIsSecuredOnStart(t *testing.T) {
	needBinaries(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "postgres")
	// The data directory as connec made it before: initdb --auth=trust,
	// a database "connec" owned by the superuser, with tables, a function
	// and a sequence of its migrations.
	old, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := old.chown(); err != nil {
		t.Fatal(err)
	}
	if out, err := old.command(ctx, "initdb", "-D", dir, "-U", SuperUser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-instructions").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}
	trustURL := "postgres://" + SuperUser + "@/postgres?host=" + dir + "&sslmode=disable"
	sh, _, err := Join(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = sh.Leave(context.Background()) })
	c := sh.Cluster()
	mustRefuse(t, trustURL)
	if weak, _ := c.hbaWeak(); weak {
		t.Error("pg_hba.conf still allows more than SCRAM")
	}

	// The old database, made as the superuser.
	admin, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE connec"); err != nil {
		t.Fatal(err)
	}
	db, err := pgx.Connect(ctx, c.URL("connec"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"CREATE TABLE t (id bigserial PRIMARY KEY, v text)",
		"CREATE TABLE p (at date NOT NULL) PARTITION BY RANGE (at)",
		"CREATE TABLE p_default PARTITION OF p DEFAULT",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
	} {
		if _, err := db.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	db.Close(ctx)

	appURL, err := sh.EnsureAppDatabase(ctx, "connec")
	if err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, withoutPassword(t, appURL))
	app, err := pgx.Connect(ctx, appURL)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	var user string
	var super bool
	if err := app.QueryRow(ctx, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&user, &super); err != nil {
		t.Fatal(err)
	}
	if user != AppRole || super {
		t.Fatalf("connec runs as %s (superuser %v)", user, super)
	}
	// It owns what it needs: rows, DDL on its tables (monthly partitions),
	// its sequences and functions.
	for _, s := range []string{
		"INSERT INTO t (v) VALUES ('x')", "SELECT f()",
		"CREATE TABLE p_2030 PARTITION OF p FOR VALUES FROM ('2030-01-01') TO ('2030-02-01')",
		"ALTER TABLE t ADD COLUMN w int",
	} {
		if _, err := app.Exec(ctx, s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	// And nothing of a superuser's.
	marker := filepath.Join(t.TempDir(), "ran")
	for _, s := range []string{
		"COPY (SELECT 1) TO PROGRAM 'touch " + marker + "'",
		"SELECT pg_read_file('pg_hba.conf')",
		"ALTER SYSTEM SET log_statement = 'all'",
		"CREATE ROLE intruder SUPERUSER",
	} {
		if _, err := app.Exec(ctx, s); err == nil || !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "must be superuser") &&
			!strings.Contains(err.Error(), "privilege") {
			t.Errorf("%s as %s: %v", s, AppRole, err)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the application role ran a program")
	}

	// A second connec joining later changes nothing and gets the same.
	again, err := sh.EnsureAppDatabase(ctx, "connec")
	if err != nil || again != appURL {
		t.Fatalf("again: %q %v", again, err)
	}
}
