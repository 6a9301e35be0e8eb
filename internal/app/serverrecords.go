package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/nodejs"
)

// The added MCP servers' records live in PostgreSQL (mcp_servers), as the
// servers of a deployment share them; each server keeps a copy of every
// record, and the npm package it names, in its own data directory, where
// the driver runs it from, and brings the copy in line with the table at
// start and on every announced change. A removed server's row stays,
// without a record, so that a copy outliving its removal is dropped.

// putServerRecord writes rec in tx (the transaction of its change's audit
// row).
func putServerRecord(ctx context.Context, tx pgx.Tx, rec mcpserver.Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO mcp_servers (name, record) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, changed_at = now()`, rec.Name, b)
	return err
}

// dropServerRecord marks the server name removed in tx.
func dropServerRecord(ctx context.Context, tx pgx.Tx, name string) error {
	_, err := tx.Exec(ctx, `UPDATE mcp_servers SET record = NULL, changed_at = now() WHERE name = $1`, name)
	return err
}

// serverRow is one row of mcp_servers: rec is nil for a removed server.
type serverRow struct {
	name string
	rec  *mcpserver.Record
}

// serverRows reads the rows of mcp_servers (all, or the one named).
func serverRows(ctx context.Context, q db.Querier, name string) ([]serverRow, error) {
	rows, err := q.Query(ctx, `SELECT name, record FROM mcp_servers WHERE $1 = '' OR name = $1 ORDER BY name`, name)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (serverRow, error) {
		var row serverRow
		var b []byte
		if err := r.Scan(&row.name, &b); err != nil {
			return row, err
		}
		if b != nil {
			var rec mcpserver.Record
			if err := json.Unmarshal(b, &rec); err != nil || rec.Name != row.name {
				return row, fmt.Errorf("the record of MCP server %s in the database is damaged", row.name)
			}
			row.rec = &rec
		}
		return row, nil
	})
}

// importServerRecords puts in the table every record of the data directory
// it has never held (records written before the table existed): a name
// the table knows, even as removed, is left as the table has it.
func (sc *serverCatalog) importServerRecords(ctx context.Context) error {
	recs, err := mcpserver.List(sc.dir())
	if err != nil {
		sc.a.Log.Warn("some MCP server records cannot be read", "err", err)
	}
	for _, rec := range recs {
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if _, err := sc.a.Pool.Exec(ctx, `INSERT INTO mcp_servers (name, record) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			rec.Name, b); err != nil {
			return fmt.Errorf("keep MCP server %s in the database: %w", rec.Name, db.Map(err))
		}
	}
	return nil
}

// syncServerRecords brings this server's copies (records and packages) of
// the servers named (every one when name is "") in line with the table;
// it returns the names whose copy changed. A server it cannot bring in
// (its package cannot be installed, or installs other than reviewed) is
// reported and left out.
func (sc *serverCatalog) syncServerRecords(ctx context.Context, name string) ([]string, error) {
	rows, err := serverRows(ctx, sc.a.Pool, name)
	if err != nil {
		return nil, fmt.Errorf("read the MCP servers: %w", db.Map(err))
	}
	dir := sc.dir()
	var changed []string
	var errs []error
	for _, row := range rows {
		local, lerr := mcpserver.Read(dir, row.name)
		has := lerr == nil
		switch {
		case row.rec == nil && has:
			if err := mcpserver.Remove(dir, row.name); err != nil {
				errs = append(errs, err)
				continue
			}
		case row.rec == nil:
			continue
		case has && reflect.DeepEqual(local, *row.rec):
			continue
		default:
			if has && local.Stdio != nil && (row.rec.Stdio == nil || local.Stdio.Package != row.rec.Stdio.Package ||
				local.Stdio.Version != row.rec.Stdio.Version || local.Stdio.Integrity != row.rec.Stdio.Integrity) {
				_ = os.RemoveAll(mcpserver.PackageDir(dir, row.name)) // another package now
			}
			if err := sc.installFor(ctx, *row.rec); err != nil {
				// Not served here rather than served as it was.
				_ = os.Remove(filepath.Join(dir, row.name+".json"))
				errs = append(errs, fmt.Errorf("MCP server %s: %w", row.name, err))
				continue
			}
			if err := mcpserver.Save(dir, *row.rec); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		changed = append(changed, row.name)
	}
	return changed, errors.Join(errs...)
}

// installFor installs the npm package rec names into this server's data
// directory if it is not there, as reviewed (mcpserver.Reinstall).
func (sc *serverCatalog) installFor(ctx context.Context, rec mcpserver.Record) error {
	if rec.Stdio == nil || rec.Stdio.Package == "" {
		return nil
	}
	if _, err := os.Stat(mcpserver.PackageDir(sc.dir(), rec.Name)); err == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return mcpserver.Reinstall(ctx, sc.dir(), rec, nodejs.NPM{})
}
