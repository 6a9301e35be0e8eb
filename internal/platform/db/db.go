// Package db opens connec's PostgreSQL pool, runs transactions, and maps
// PostgreSQL errors to connec's fault types once, at the storage boundary.
package db

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/fault"
)

// Querier is what both a pool and a transaction offer; store functions take
// it so callers decide the transaction boundary.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Open connects a pool to url and checks the server answers.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	// Durability is never traded for speed: audit rows must be on disk before
	// a result leaves, whatever the server default is.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	cfg.ConnConfig.RuntimeParams["application_name"] = "connec"
	// pgxpool's default (max(4, NumCPU)) is too small for connec: the
	// audit writer needs one for every group commit and requests hold one
	// while they read, so on a small host requests would queue. (Change
	// notifications have connections of their own, outside the pool.) An
	// explicit pool_max_conns in the URL still wins.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, int32(4*runtime.GOMAXPROCS(0)), 16)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("reach database: %w", err)
	}
	return pool, nil
}

// InTx runs fn in a transaction, committing if fn returns nil. Any error
// rolls back, so nothing half-written is left behind.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return Map(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return Map(err)
	}
	return nil
}

// ErrNoTransaction: a Querier is neither a transaction nor able to begin
// one.
var ErrNoTransaction = errors.New("the querier cannot run a transaction")

type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// InQueriersTx runs fn in q if q is a transaction (so fn's work commits
// with the caller's), else in a transaction q begins.
func InQueriersTx(ctx context.Context, q Querier, fn func(tx pgx.Tx) error) error {
	if tx, ok := q.(pgx.Tx); ok {
		return fn(tx)
	}
	b, ok := q.(beginner)
	if !ok {
		return fmt.Errorf("%w: %T", ErrNoTransaction, q)
	}
	return pgx.BeginFunc(ctx, b, fn)
}

// Map turns a pgx/PostgreSQL error into a fault.Error. The original error is
// kept as the cause for logs; the caller sees only the type and a generic
// message. Errors that already are faults pass through unchanged.
func Map(err error) error {
	if err == nil {
		return nil
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fault.Wrap(fault.NotFound, err, "not found")
	}
	if errors.Is(err, context.Canceled) {
		return fault.Wrap(fault.Unavailable, err, "request canceled")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fault.Wrap(fault.Timeout, err, "database did not answer in time")
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505": // unique_violation
			return fault.Wrap(fault.Conflict, err, "already exists")
		case pe.Code == "23503": // foreign_key_violation
			return fault.Wrap(fault.NotFound, err, "referenced object not found")
		case pe.Code == "23514" || pe.Code == "22P02" || pe.Code == "23502": // check, invalid text, not null
			return fault.Wrap(fault.InvalidArgument, err, "value rejected by the database")
		case pe.Code == "22021" || pe.Code == "22P05": // NUL or a character the encoding cannot hold
			return fault.Wrap(fault.InvalidArgument, err, "text must not contain NUL characters")
		case pe.Code == "40001" || pe.Code == "40P01": // serialization, deadlock
			return fault.Wrap(fault.Unavailable, err, "concurrent update, try again")
		case pe.Code[:2] == "08" || pe.Code[:2] == "57" || pe.Code[:2] == "53": // connection, operator intervention, resources
			return fault.Wrap(fault.Unavailable, err, "database unavailable")
		}
		return fault.Wrap(fault.Internal, err, "internal error")
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return fault.Wrap(fault.Unavailable, err, "database unavailable")
	}
	return fault.Wrap(fault.Unavailable, err, "database unavailable")
}
