package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/core"
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

// importServerRecords puts in the table the records of the data directory
// written before the database kept them, the first time the directory is
// used with the database (a marker file then names the deployment): a
// name the table knows, even as removed, is left as the table has it. A
// directory whose marker names another deployment (the same directory used
// with another database) is not imported from: its copies are replaced.
func (sc *serverCatalog) importServerRecords(ctx context.Context) error {
	var id string
	if err := sc.a.Pool.QueryRow(ctx, `SELECT id::text FROM connec_deployment`).Scan(&id); err != nil {
		return fmt.Errorf("read the deployment's id: %w", db.Map(err))
	}
	marker := filepath.Join(sc.dir(), ".deployment")
	b, err := os.ReadFile(marker)
	switch {
	case err == nil && string(b) == id:
		return nil
	case err == nil:
		sc.a.Log.Warn("the data directory's MCP servers are another deployment's (it was used with another database): replaced by this one's",
			"dir", sc.dir())
	case errors.Is(err, os.ErrNotExist):
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
	default:
		return err
	}
	if err := os.MkdirAll(sc.dir(), 0o700); err != nil {
		return err
	}
	return os.WriteFile(marker, []byte(id), 0o600)
}

// syncServerRecords brings this server's copies (records and packages) of
// the servers named (every one when name is "") in line with the table. A
// server whose package this server lacks is left out until it is
// installed (in the background).
func (sc *serverCatalog) syncServerRecords(ctx context.Context, name string) error {
	rows, err := serverRows(ctx, sc.a.Pool, name)
	if err != nil {
		return fmt.Errorf("read the MCP servers: %w", db.Map(err))
	}
	dir := sc.dir()
	var errs []error
	for _, row := range rows {
		local, lerr := mcpserver.Read(dir, row.name)
		has := lerr == nil
		switch {
		case row.rec == nil && has:
			if err := mcpserver.Remove(dir, row.name); err != nil {
				errs = append(errs, err)
			}
		case row.rec == nil, has && sameRecord(local, *row.rec):
		case sc.needsInstall(*row.rec):
			// Not served here until its package is (installed in the
			// background), rather than served as it was.
			_ = os.Remove(filepath.Join(dir, row.name+".json"))
			sc.a.installs.start(sc, *row.rec)
		default:
			if err := mcpserver.Save(dir, *row.rec); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if name != "" && len(rows) == 0 {
		// Never added to the deployment: a copy of it is not one to serve.
		_ = os.Remove(filepath.Join(dir, name+".json"))
	}
	if name == "" {
		// A copy the deployment has no row for (another deployment's,
		// in a data directory used with another database) is not served.
		known := map[string]bool{}
		for _, row := range rows {
			known[row.name] = true
		}
		locals, _ := mcpserver.List(dir)
		for _, rec := range locals {
			if !known[rec.Name] {
				_ = os.Remove(filepath.Join(dir, rec.Name+".json"))
			}
		}
	}
	return errors.Join(errs...)
}

// sameRecord says a and b are the same record, as their JSON says (a copy
// in a file is indented, the database's is not).
func sameRecord(a, b mcpserver.Record) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && bytes.Equal(ja, jb)
}

// needsInstall says rec names an npm package this server's data directory
// does not hold as reviewed (none, or another version or build: npm's
// integrity hash differs), which it then takes out.
func (sc *serverCatalog) needsInstall(rec mcpserver.Record) bool {
	if rec.Stdio == nil || rec.Stdio.Package == "" {
		return false
	}
	pkgDir := mcpserver.PackageDir(sc.dir(), rec.Name)
	if _, err := os.Stat(pkgDir); err != nil {
		return true
	}
	if rec.Stdio.Integrity == "" {
		return false // nothing to check it against (npm gave no hash at review)
	}
	if integrity, _ := nodejs.LockInfo(pkgDir, rec.Stdio.Package); integrity != "" && integrity == rec.Stdio.Integrity {
		return false
	}
	_ = os.RemoveAll(pkgDir)
	return true
}

// packageInstalls installs, in the background, the packages of the
// deployment's servers this server lacks (a start or a change must not
// wait minutes for npm, nor hold up the other announcements), each once at
// a time; an installed one is announced on core.ServerChannel, which has
// every server load it (this one included). A failed install (the
// registry unreachable, say) is tried again after a growing wait, from
// the server's record as it then is. Close stops them.
type packageInstalls struct {
	mu      sync.Mutex
	running map[string]bool
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	// serving: installs run only in a process that serves (a command
	// line's process ends before npm would); until then they wait here.
	serving bool
	waiting map[string]func()
	// failures counts each server's failed installs in a row; retries
	// are the timers of the next attempts; firstRetry is the first wait.
	failures   map[string]int
	retries    map[string]*time.Timer
	firstRetry time.Duration
}

// Waits between a server's failed installs: from the first (30 s unless
// configured), doubling, to maxInstallRetry.
const (
	defaultInstallRetry = 30 * time.Second
	maxInstallRetry     = 30 * time.Minute
)

func newPackageInstalls(firstRetry time.Duration) *packageInstalls {
	if firstRetry <= 0 {
		firstRetry = defaultInstallRetry
	}
	ctx, stop := context.WithCancel(context.Background())
	return &packageInstalls{running: map[string]bool{}, waiting: map[string]func(){}, ctx: ctx, stop: stop,
		failures: map[string]int{}, retries: map[string]*time.Timer{}, firstRetry: firstRetry}
}

func (p *packageInstalls) start(sc *serverCatalog, rec mcpserver.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running[rec.Name] || p.ctx.Err() != nil {
		return
	}
	if !p.serving {
		p.waiting[rec.Name] = func() { p.start(sc, rec) }
		return
	}
	p.running[rec.Name] = true
	p.wg.Go(func() {
		defer func() {
			p.mu.Lock()
			delete(p.running, rec.Name)
			p.mu.Unlock()
		}()
		log := sc.a.Log.With("server", rec.Name, "package", rec.Stdio.Package+"@"+rec.Stdio.Version)
		log.Info("installing an MCP server's package as reviewed")
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Minute)
		defer cancel()
		if err := mcpserver.Reinstall(ctx, sc.dir(), rec, nodejs.NPM{}); err != nil {
			if p.ctx.Err() != nil {
				return // stopped, not failed
			}
			wait := p.retryLater(rec.Name, func() { sc.installAgain(p.ctx, rec.Name) })
			log.Error("the MCP server is not served here: its package cannot be installed as reviewed; trying again",
				"err", err, "retry_in", wait)
			return
		}
		p.mu.Lock()
		delete(p.failures, rec.Name)
		p.mu.Unlock()
		if _, err := sc.a.Pool.Exec(ctx, `SELECT pg_notify($1, $2)`, core.ServerChannel, "install|"+rec.Name); err != nil {
			log.Error("installed, but loaded only at the next start or change: the announcement failed", "err", db.Map(err))
		}
	})
}

// retryLater has again run after a wait that grows with name's failures
// in a row, and returns the wait.
func (p *packageInstalls) retryLater(name string, again func()) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures[name]++
	wait := p.firstRetry
	for i := 1; i < p.failures[name] && wait < maxInstallRetry; i++ {
		wait *= 2
	}
	wait = min(wait, maxInstallRetry)
	if t := p.retries[name]; t != nil {
		t.Stop()
	}
	p.retries[name] = time.AfterFunc(wait, func() {
		p.mu.Lock()
		delete(p.retries, name)
		stopped := p.ctx.Err() != nil
		p.mu.Unlock()
		if !stopped {
			again()
		}
	})
	return wait
}

// serve lets installs run, the waiting ones first.
func (p *packageInstalls) serve() {
	p.mu.Lock()
	p.serving = true
	waiting := p.waiting
	p.waiting = map[string]func(){}
	p.mu.Unlock()
	for _, start := range waiting {
		start()
	}
}

// Close stops the installs in progress (nothing of them stays) and waits.
func (p *packageInstalls) Close() error {
	p.mu.Lock() // (start checks p.ctx and adds to p.wg under it)
	p.stop()
	for _, t := range p.retries {
		t.Stop()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// installAgain brings the copy of server name in line with its record as
// the deployment now has it, which installs its package if it still lacks
// it (a removed or changed server is not installed as it was).
func (sc *serverCatalog) installAgain(ctx context.Context, name string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err := sc.syncServerRecords(ctx, name); err != nil {
		sc.a.Log.Warn("an MCP server's package could not be tried again", "server", name, "err", err)
	}
}
