// Package pgtest gives every test a fresh, migrated PostgreSQL database.
//
// With CONNEC_TEST_DATABASE_URL set it uses that server; otherwise it starts
// one throwaway cluster per test process from the machine's PostgreSQL
// binaries. Either way a template database is migrated once per process and
// each test gets its own database created from it (CREATE DATABASE …
// TEMPLATE …), dropped when the test ends.
//
// Packages that use it call pgtest.Main from TestMain so the throwaway
// cluster is stopped when the tests finish.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/internal/platform/pgcluster"
	"github.com/connec/connec/migrations"
)

var (
	once     sync.Once
	setupErr error
	baseURL  string // URL of the server's maintenance database
	template string
	cluster  *pgcluster.Cluster
	tmpDir   string
	counter  atomic.Int64
)

// Main runs the package's tests and then stops the throwaway cluster, if one
// was started. Use it as: func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	Shutdown()
	os.Exit(code)
}

// Shutdown stops the throwaway cluster and removes its files.
func Shutdown() {
	if cluster != nil {
		_ = cluster.Stop()
		cluster = nil
	}
	if tmpDir != "" {
		_ = os.RemoveAll(tmpDir)
		tmpDir = ""
	}
}

func setup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	baseURL = os.Getenv("CONNEC_TEST_DATABASE_URL")
	if baseURL == "" {
		dir, err := os.MkdirTemp("", "connec-pgtest-")
		if err != nil {
			setupErr = err
			return
		}
		tmpDir = dir
		c, err := pgcluster.New(pgcluster.Options{Dir: filepath.Join(dir, "pg"), Durable: os.Getenv("CONNEC_TEST_DURABLE") == "1"})
		if err != nil {
			setupErr = err
			return
		}
		if err := c.Init(ctx); err != nil {
			setupErr = err
			return
		}
		if err := c.Start(ctx); err != nil {
			setupErr = err
			return
		}
		cluster = c
		baseURL = c.URL("postgres")
	}
	template = fmt.Sprintf("connec_tpl_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		setupErr = fmt.Errorf("connect to test server: %w", err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+template); err != nil {
		setupErr = fmt.Errorf("create template: %w", err)
		return
	}
	pool, err := pgxpool.New(ctx, withDB(baseURL, template))
	if err != nil {
		setupErr = err
		return
	}
	_, err = migrations.Up(ctx, pool)
	pool.Close()
	if err != nil {
		setupErr = err
		return
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+template+" WITH is_template = true ALLOW_CONNECTIONS = false"); err != nil {
		setupErr = err
	}
}

func withDB(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + db
	return u.String()
}

// URL creates a fresh migrated database for t and returns its connection
// string. The database is dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	u, drop, err := Database(context.Background())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(drop)
	return u
}

// Database creates a fresh migrated database outside any one test (for a
// fixture a package's tests share) and returns its connection string and a
// function that drops it.
func Database(ctx context.Context) (string, func(), error) {
	once.Do(setup)
	if setupErr != nil {
		return "", nil, setupErr
	}
	name := fmt.Sprintf("%s_t%d", template, counter.Add(1))
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return "", nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+template); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, baseURL)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	return withDB(baseURL, name), drop, nil
}

// Pool returns a pool on a fresh migrated database, closed when t ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := URL(t)
	pool, err := pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Cluster returns the throwaway cluster, or nil when an external server is
// used (fault tests that stop the server need their own cluster).
func Cluster() *pgcluster.Cluster { return cluster }

// IsExternal reports whether tests run against CONNEC_TEST_DATABASE_URL.
func IsExternal() bool { return strings.TrimSpace(os.Getenv("CONNEC_TEST_DATABASE_URL")) != "" }
