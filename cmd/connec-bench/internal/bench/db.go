package bench

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/pgcluster"
	"github.com/connec/connec/migrations"
)

// DB is the PostgreSQL server the measurements create their databases on.
type DB struct {
	// BaseURL points at a maintenance database (postgres).
	BaseURL string
	// DataDir is the cluster's data directory when it runs on this machine
	// (its processes' CPU time is then accounted); "" otherwise.
	DataDir string

	cluster *pgcluster.Cluster
	n       atomic.Int64
}

// StartCluster initialises and starts a private cluster in dir. durable
// keeps fsync and synchronous commit on (pgcluster.Options.Durable); the
// report requires it. settings are extra server settings. Close stops it.
func StartCluster(ctx context.Context, dir string, durable bool, log io.Writer, settings map[string]string) (*DB, error) {
	c, err := pgcluster.New(pgcluster.Options{Dir: filepath.Join(dir, "pg"), Durable: durable, Log: log, Settings: settings})
	if err != nil {
		return nil, err
	}
	if err := c.Init(ctx); err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return &DB{BaseURL: c.URL("postgres"), DataDir: c.Dir(), cluster: c}, nil
}

// ExternalDB uses an existing server; baseURL names a database from which
// others can be created.
func ExternalDB(baseURL string) *DB { return &DB{BaseURL: baseURL} }

// Close stops the cluster StartCluster started.
func (d *DB) Close() {
	if d.cluster != nil {
		_ = d.cluster.Stop()
	}
}

// Create makes a new empty database whose name starts with prefix and
// returns its URL.
func (d *DB) Create(ctx context.Context, prefix string) (string, error) {
	name := fmt.Sprintf("bench_%s_%d", prefix, d.n.Add(1))
	conn, err := pgx.Connect(ctx, d.BaseURL)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", d.BaseURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(d.BaseURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// CreateMigrated makes a new database with connec's schema and returns a
// pool on it configured like connec's (db.Open: synchronous_commit on).
func (d *DB) CreateMigrated(ctx context.Context, prefix string) (*pgxpool.Pool, string, error) {
	u, err := d.Create(ctx, prefix)
	if err != nil {
		return nil, "", err
	}
	pool, err := db.Open(ctx, u)
	if err != nil {
		return nil, "", err
	}
	if _, err := migrations.Up(ctx, pool); err != nil {
		pool.Close()
		return nil, "", fmt.Errorf("migrate: %w", err)
	}
	return pool, u, nil
}

// pid returns the PostgreSQL server's pid (0 when it is not local).
func (d *DB) pid() int {
	if d.DataDir == "" {
		return 0
	}
	return postmasterPID(d.DataDir)
}
