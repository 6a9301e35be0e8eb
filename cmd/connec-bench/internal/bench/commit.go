package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/core"
	"github.com/connec/connec/internal/platform/pgcluster"
)

// CommitResult is the database's own cost per governed call, counted in
// PostgreSQL while the server under test serves calls, against the same
// counts per commit of the one-row floor run with pgbench.
//
// Why counted and not replayed: the statements a call commits carry
// conditions on the database's state (the chain head moves only from the
// head it read, run rows are updated only while pending, guards test the
// live instance, credential, token and policy version, ids are fresh
// uuids), so the captured statements cannot be re-run by pgbench on their
// own; what each call costs the database is counted instead, from
// counters that any connec binary's commit moves alike.
type CommitResult struct {
	// Floor is pgbench running the floor's one-row INSERT (autocommit) at
	// each client count.
	Floor []PgbenchRow `json:"floor"`
	// Calls are each binary's governed calls at each concurrency.
	Calls []CommitRow `json:"calls"`
	// Tracked says pg_stat_statements was loaded, so statements were
	// counted (Statements, DBCost.Statements, DBCost.Exec).
	Tracked bool `json:"statements_tracked"`
	// Statements are the SQL statements each binary's calls ran at the
	// first concurrency, per call, as pg_stat_statements recorded them.
	Statements map[string][]Statement `json:"statements,omitempty"`
}

// DBCost is what PostgreSQL did per operation (a governed call, or one
// floor commit).
type DBCost struct {
	// WALBytes is write-ahead log inserted (pg_current_wal_insert_lsn).
	WALBytes float64 `json:"wal_bytes"`
	// Xacts is transactions that wrote (transaction ids assigned): the
	// durable commits, each flushing the WAL unless one flush covered
	// several.
	Xacts float64 `json:"write_xacts"`
	// CPU is every PostgreSQL process's CPU time.
	CPU time.Duration `json:"cpu_ns"`
	// Statements and Exec are the statements run and their execution time
	// (pg_stat_statements; 0 when not tracked; COMMIT's WAL flush is not in
	// Exec).
	Statements float64       `json:"statements"`
	Exec       time.Duration `json:"exec_ns"`
}

// PgbenchRow is one pgbench run of the floor.
type PgbenchRow struct {
	Clients int `json:"clients"`
	// Latency is every transaction's latency from pgbench's log; PerSec is
	// transactions per second.
	Latency Summary `json:"latency"`
	Cost    DBCost  `json:"cost"`
	// ClientCPU is pgbench's CPU per transaction.
	ClientCPU time.Duration `json:"client_cpu_ns"`
}

// CommitRow is one binary's governed calls at one concurrency.
type CommitRow struct {
	Binary      string     `json:"binary"`
	Concurrency int        `json:"concurrency"`
	Calls       Summary    `json:"calls"`
	CPU         CPUPerCall `json:"cpu"`
	Cost        DBCost     `json:"cost"`
	FirstErr    string     `json:"first_error,omitempty"`
}

// Statement is one normalised statement and how often a call ran it.
type Statement struct {
	PerCall float64       `json:"per_call"`
	Mean    time.Duration `json:"mean_exec_ns"`
	Query   string        `json:"query"`
}

// StatementSettings are the server settings the commit section needs to
// count statements: pg_stat_statements loaded (Run turns its tracking off
// until the section turns it on, so no other measurement pays for it; it
// is done with ALTER SYSTEM, as settings given on the server's command
// line could not be changed later). nil when the server's installation has
// no pg_stat_statements; the section then counts everything but
// statements.
func StatementSettings() map[string]string {
	dir, err := pgcluster.FindBinaries()
	if err != nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "lib", "pg_stat_statements.so")); err != nil {
		return nil
	}
	return map[string]string{"shared_preload_libraries": "pg_stat_statements"}
}

// statementsLoaded reports whether the bench's own cluster has
// pg_stat_statements loaded (see StatementSettings).
func statementsLoaded(ctx context.Context, d *DB, conn *pgx.Conn) bool {
	var lib string
	_ = conn.QueryRow(ctx, "SELECT current_setting('shared_preload_libraries')").Scan(&lib)
	return d.cluster != nil && strings.Contains(lib, "pg_stat_statements")
}

// trackingOff turns statement tracking off on the bench's own cluster when
// pg_stat_statements is loaded there.
func (s *suite) trackingOff(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.cfg.DB.BaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if !statementsLoaded(ctx, s.cfg.DB, conn) {
		return nil
	}
	return (&dbCounter{conn: conn}).track(ctx, false)
}

// counters is one reading of the cluster's counters.
type counters struct {
	wal   float64
	xmax  int64
	pg    time.Duration       // PostgreSQL's CPU time (treeCPU of the postmaster)
	stmts map[int64]stmtCount // by queryid, of one database
}

type stmtCount struct {
	calls int64
	exec  float64 // ms
	query string
}

// dbCounter reads counters through one maintenance connection.
type dbCounter struct {
	conn    *pgx.Conn
	tracked bool
}

func (s *suite) openCounter(ctx context.Context) (*dbCounter, error) {
	conn, err := pgx.Connect(ctx, s.cfg.DB.BaseURL)
	if err != nil {
		return nil, err
	}
	c := &dbCounter{conn: conn}
	if statementsLoaded(ctx, s.cfg.DB, conn) {
		if err := c.track(ctx, true); err != nil {
			conn.Close(ctx)
			return nil, err
		}
		c.tracked = true
	}
	return c, nil
}

// track turns statement tracking on or off for the whole cluster (only
// on the bench's own cluster) and waits until a new session sees it.
func (c *dbCounter) track(ctx context.Context, on bool) error {
	want := "none"
	stmts := []string{"ALTER SYSTEM SET pg_stat_statements.track = 'none'", "ALTER SYSTEM SET compute_query_id = 'off'"}
	if on {
		want = "top"
		stmts = []string{"CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
			"ALTER SYSTEM SET pg_stat_statements.track = 'top'", "ALTER SYSTEM SET compute_query_id = 'on'"}
	}
	for _, q := range append(stmts, "SELECT pg_reload_conf()") {
		if _, err := c.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("statement tracking: %s: %w", q, err)
		}
	}
	cfg := c.conn.Config()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		var got string
		err = conn.QueryRow(ctx, "SELECT current_setting('pg_stat_statements.track')").Scan(&got)
		conn.Close(ctx)
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("statement tracking: still %q after reload, want %q", got, want)
		}
		sleep(ctx, 5*time.Millisecond)
	}
}

func (c *dbCounter) close(ctx context.Context) {
	if c.tracked {
		_ = c.track(ctx, false)
	}
	c.conn.Close(ctx)
}

// read takes the counters; db names the database whose statements count.
func (c *dbCounter) read(ctx context.Context, db string) (counters, error) {
	var r counters
	if err := c.conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::float8,
	pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&r.wal, &r.xmax); err != nil {
		return r, err
	}
	if !c.tracked {
		return r, nil
	}
	rows, err := c.conn.Query(ctx, `SELECT queryid, calls, total_exec_time, query FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) AND queryid IS NOT NULL`, db)
	if err != nil {
		return r, err
	}
	r.stmts = map[int64]stmtCount{}
	for rows.Next() {
		var id int64
		var sc stmtCount
		if err := rows.Scan(&id, &sc.calls, &sc.exec, &sc.query); err != nil {
			return r, err
		}
		r.stmts[id] = sc
	}
	return r, rows.Err()
}

// delta accumulates what happened between two readings.
type delta struct {
	wal   float64
	xacts int64
	pg    time.Duration
	stmts map[int64]stmtCount
}

func (d *delta) add(a, b counters) {
	d.wal += b.wal - a.wal
	d.xacts += b.xmax - a.xmax
	d.pg += b.pg - a.pg
	if d.stmts == nil {
		d.stmts = map[int64]stmtCount{}
	}
	for id, y := range b.stmts {
		x := a.stmts[id]
		if y.calls > x.calls {
			acc := d.stmts[id]
			acc.calls += y.calls - x.calls
			acc.exec += y.exec - x.exec
			acc.query = y.query
			d.stmts[id] = acc
		}
	}
}

// cost divides a delta by n operations.
func (d delta) cost(n int) DBCost {
	if n == 0 {
		return DBCost{}
	}
	c := DBCost{WALBytes: d.wal / float64(n), Xacts: float64(d.xacts) / float64(n), CPU: d.pg / time.Duration(n)}
	var calls int64
	var exec float64
	for _, st := range d.stmts {
		calls += st.calls
		exec += st.exec
	}
	c.Statements = float64(calls) / float64(n)
	c.Exec = time.Duration(exec * float64(time.Millisecond) / float64(n))
	return c
}

func (d delta) statements(n int) []Statement {
	var out []Statement
	for _, st := range d.stmts {
		out = append(out, Statement{PerCall: float64(st.calls) / float64(max(n, 1)),
			Mean: time.Duration(st.exec * float64(time.Millisecond) / float64(max(st.calls, 1))), Query: strings.Join(strings.Fields(st.query), " ")})
	}
	slices.SortFunc(out, func(a, b Statement) int { return strings.Compare(a.Query, b.Query) })
	return out
}

// measureCommit counts the database's work per governed call for each
// binary (streamable HTTP, turns alternating between binaries) at each of
// Config.CommitConcurrency, and the same per commit of the floor run with
// pgbench at as many clients.
func (s *suite) measureCommit(ctx context.Context) error {
	cnt, err := s.openCounter(ctx)
	if err != nil {
		return err
	}
	defer cnt.close(ctx)
	res := &CommitResult{Tracked: cnt.tracked, Statements: map[string][]Statement{}}
	s.report.Commit = res

	bins := s.measured()
	var loads []*load
	var dbs []string
	for _, b := range bins {
		f := s.fixtures[b.name]
		srv, _, err := startHTTPServer(ctx, b.name, b.cmd, f.env, filepath.Join(s.cfg.WorkDir, b.name+"-commit.log"), "serve", "--http", "{addr}")
		if err != nil {
			return err
		}
		defer srv.stop()
		loads = append(loads, &load{t: &target{name: b.name, url: srv.url, pid: srv.pid(), tool: core.ToolOpInvoke, args: f.invokeArgs(),
			headers: map[string]string{"Authorization": "Bearer " + f.token}}, pid: srv.pid(), dbPID: s.cfg.DB.pid()})
		dbs = append(dbs, dbName(f.cfg.DatabaseURL))
	}
	for i, conc := range s.cfg.CommitConcurrency {
		for _, l := range loads {
			c, err := s.connectHTTP(ctx, l.t, Streamable, conc)
			if err != nil {
				return err
			}
			l.clients, l.close = c.clients, c.close
		}
		deltas := make([]delta, len(loads))
		var start counters
		var rerr error
		mark := func(k int, end bool) {
			// PostgreSQL's CPU is read inside the counters' reading, so the
			// reading's own queries fall outside the window.
			var pg time.Duration
			if end {
				pg = treeCPU(s.cfg.DB.pid())
			}
			c, err := cnt.read(ctx, dbs[k])
			if err != nil {
				rerr = err
				return
			}
			if !end {
				pg = treeCPU(s.cfg.DB.pid())
			}
			c.pg = pg
			if end {
				deltas[k].add(start, c)
			} else {
				start = c
			}
		}
		out, err := s.turns(ctx, loads, conc, s.cfg.CommitDuration, mark)
		closeLoads(loads)
		if err != nil {
			return fmt.Errorf("at %d: %w", conc, err)
		}
		if rerr != nil {
			return fmt.Errorf("read counters: %w", rerr)
		}
		for k, l := range loads {
			row := CommitRow{Binary: l.t.name, Concurrency: conc, Calls: out[k].Summary, CPU: out[k].CPU,
				Cost: deltas[k].cost(out[k].Ended), FirstErr: out[k].FirstErr}
			res.Calls = append(res.Calls, row)
			if i == 0 && cnt.tracked {
				res.Statements[l.t.name] = deltas[k].statements(out[k].Ended)
			}
			s.log.Info("commit cost", "binary", row.Binary, "concurrency", conc, "per_s", int(row.Calls.PerSec),
				"wal_bytes", int(row.Cost.WALBytes), "xacts", row.Cost.Xacts, "statements", row.Cost.Statements, "pg_cpu", row.Cost.CPU)
		}
	}
	for _, clients := range s.cfg.CommitConcurrency {
		row, err := s.pgbenchFloor(ctx, cnt, clients)
		if err != nil {
			return err
		}
		res.Floor = append(res.Floor, row)
		s.log.Info("pgbench floor", "clients", clients, "tps", int(row.Latency.PerSec), "p50", row.Latency.P50,
			"wal_bytes", int(row.Cost.WALBytes), "pg_cpu", row.Cost.CPU)
	}
	return nil
}

// dbName is the database a connection URL names.
func dbName(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return ""
	}
	return cfg.Database
}
