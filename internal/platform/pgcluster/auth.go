package pgcluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// AppRole is the role connec's embedded default runs as: it owns connec's
// database and everything in it (migrations and the monthly audit
// partitions need the owner) but is no superuser, so it cannot run
// programs (COPY … TO PROGRAM), read the server's files (pg_read_file),
// change the server's configuration or reach other databases.
const AppRole = "connec_app"

// Nobody connects without a password: the cluster's pg_hba.conf allows
// SCRAM-SHA-256 only. The passwords, generated when the cluster is made (or
// its trust authentication is replaced), live in a pgpass file beside the
// data directory (0600, connec's), which connection strings name
// (passfile=…) instead of carrying a password.
var hbaScram = []byte(`# Written by connec: every connection needs a password (SCRAM-SHA-256).
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
`)

// PassFile returns the pgpass file of the cluster in dir.
func PassFile(dir string) string { return filepath.Clean(dir) + ".pgpass" }

// secrets are the cluster's passwords.
type secrets map[string]string // role → password

// loadSecrets reads the pgpass file, making it with fresh passwords for
// SuperUser and AppRole if it does not exist. Several processes may race
// to make it: the first link wins and the others read it.
func loadSecrets(path string) (secrets, error) {
	if s, err := readSecrets(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	s := secrets{}
	var b bytes.Buffer
	for _, role := range []string{SuperUser, AppRole} {
		pw, err := randomPassword()
		if err != nil {
			return nil, err
		}
		s[role] = pw
		fmt.Fprintf(&b, "*:*:*:%s:%s\n", role, pw)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pgpass-")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: password file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return readSecrets(path)
		}
		return nil, fmt.Errorf("pgcluster: password file: %w", err)
	}
	return s, nil
}

func readSecrets(path string) (secrets, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := secrets{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 5)
		if len(f) == 5 && f[4] != "" {
			s[f[3]] = f[4]
		}
	}
	if s[SuperUser] == "" || s[AppRole] == "" {
		return nil, fmt.Errorf("pgcluster: password file %s lacks the %s or %s password", path, SuperUser, AppRole)
	}
	return s, nil
}

func randomPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// scramVerifier is what PostgreSQL stores for password with SCRAM-SHA-256:
// sent instead of the password, so the password itself never reaches the
// server (nor its logs).
func scramVerifier(password string) (string, error) {
	const iterations = 4096
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, 32)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	server := mac(salted, "Server Key")
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, enc(salt), enc(stored[:]), enc(server)), nil
}

// hbaWeak reports whether pg_hba.conf allows anything but SCRAM-SHA-256
// (earlier versions of connec made clusters with trust).
func (c *Cluster) hbaWeak() (bool, error) {
	b, err := os.ReadFile(filepath.Join(c.opts.Dir, "pg_hba.conf"))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.SplitN(line, "#", 2)[0])
		if len(f) >= 4 {
			if f[len(f)-1] != "scram-sha-256" {
				return true, nil
			}
		}
	}
	return false, nil
}

// secure replaces trust authentication, which clusters made by earlier
// versions of connec used, on a running server: the superuser gets its
// password (as a SCRAM verifier), pg_hba.conf is rewritten to SCRAM only
// and the server reloads it. Nothing happens when the cluster already
// needs passwords.
func (c *Cluster) secure(ctx context.Context) error {
	weak, err := c.hbaWeak()
	if err != nil || !weak {
		return err
	}
	s, err := loadSecrets(PassFile(c.opts.Dir))
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: connect to replace trust authentication: %w", err)
	}
	defer conn.Close(ctx)
	v, err := scramVerifier(s[SuperUser])
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "ALTER ROLE "+pgx.Identifier{SuperUser}.Sanitize()+" PASSWORD "+quote(v)); err != nil {
		return fmt.Errorf("pgcluster: set the superuser's password: %w", err)
	}
	if err := c.writeHBA(); err != nil {
		return err
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_reload_conf()").Scan(&ok); err != nil || !ok {
		return fmt.Errorf("pgcluster: reload pg_hba.conf: %v", err)
	}
	return nil
}

// writeHBA replaces pg_hba.conf (atomically, owned by the server's user).
func (c *Cluster) writeHBA() error {
	path := filepath.Join(c.opts.Dir, "pg_hba.conf")
	tmp := path + ".connec-new"
	if err := os.WriteFile(tmp, hbaScram, 0o600); err != nil {
		return fmt.Errorf("pgcluster: write pg_hba.conf: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(tmp, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pgcluster: write pg_hba.conf: %w", err)
	}
	return nil
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// RoleURL returns a connection string for role on database db (its
// password read from the pgpass file).
func (c *Cluster) RoleURL(role, db string) string {
	q := url.Values{"host": {c.SocketDir()}, "sslmode": {"disable"}, "passfile": {PassFile(c.opts.Dir)}}
	return (&url.URL{Scheme: "postgres", User: url.User(role), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// EnsureAppDatabase makes database db owned by AppRole, a login role that
// is no superuser, and returns the connection string to use it with:
// the role is created (or given its password again), the database created
// for it, and a database an earlier connec made as the superuser's (with
// everything in it) handed over to it.
func (c *Cluster) EnsureAppDatabase(ctx context.Context, db string) (string, error) {
	s, err := loadSecrets(PassFile(c.opts.Dir))
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	v, err := scramVerifier(s[AppRole])
	if err != nil {
		return "", err
	}
	role := pgx.Identifier{AppRole}.Sanitize()
	attrs := " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD " + quote(v)
	if _, err := conn.Exec(ctx, "CREATE ROLE "+role+attrs); err != nil {
		if !isCode(err, "42710") { // duplicate_object: it exists (made by us, or by another process now)
			return "", fmt.Errorf("pgcluster: create role %s: %w", AppRole, err)
		}
		if _, err := conn.Exec(ctx, "ALTER ROLE "+role+attrs); err != nil {
			return "", fmt.Errorf("pgcluster: role %s: %w", AppRole, err)
		}
	}
	var owner string
	err = conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", db).Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()+" OWNER "+role)
		if err != nil && !isCode(err, "42P04", "23505") { // made meanwhile by another process
			return "", fmt.Errorf("pgcluster: create database %s: %w", db, err)
		}
	case err != nil:
		return "", err
	case owner != AppRole:
		if err := c.handOver(ctx, db); err != nil {
			return "", err
		}
	}
	return c.RoleURL(AppRole, db), nil
}

// handOver gives database db and every object of the superuser's in it to
// AppRole (REASSIGN OWNED refuses the bootstrap superuser: object by
// object).
func (c *Cluster) handOver(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, c.URL(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
		       format('%I.%I', n.nspname, c.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f') AND pg_get_userbyid(c.relowner) = $1
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		  -- a serial or identity column's sequence moves with its table
		  AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
		           AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
		UNION ALL
		SELECT 'FUNCTION', format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE pg_get_userbyid(p.proowner) = $1 AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		UNION ALL
		SELECT 'SCHEMA', format('%I', n.nspname) FROM pg_namespace n
		WHERE pg_get_userbyid(n.nspowner) = $1 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND n.nspname NOT LIKE 'pg\_%'`,
		SuperUser)
	if err != nil {
		return err
	}
	var stmts []string
	for rows.Next() {
		var kind, name string
		if err := rows.Scan(&kind, &name); err != nil {
			rows.Close()
			return err
		}
		stmts = append(stmts, "ALTER "+kind+" "+name+" OWNER TO "+pgx.Identifier{AppRole}.Sanitize())
	}
	if err := rows.Err(); err != nil {
		return err
	}
	stmts = append(stmts, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" OWNER TO "+pgx.Identifier{AppRole}.Sanitize())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("pgcluster: hand %s over to %s: %s: %w", db, AppRole, s, err)
		}
	}
	return tx.Commit(ctx)
}

func isCode(err error, codes ...string) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	for _, c := range codes {
		if pe.Code == c {
			return true
		}
	}
	return false
}
