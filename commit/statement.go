package commit

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/connec/connec/audit"
)

// The statement. A group commit is one SQL statement — so one round trip
// and, in autocommit, one transaction — built from these parts for the
// units it carries:
//
//	verdict   each guard's refusal, or NULL (guardSQL): plain index lookups
//	pass      true when no guard refused
//	started   the run records dispatched           (if pass)
//	finished  the outcomes of runs                 (if pass)
//	head      the writer's chain head moved        (if pass, after the runs)
//	appended  the audit rows, linked after the head (if pass and the head
//	          moved; if pass and it did not, connec_audit_chain_moved raises,
//	          undoing the whole statement)
//
// and answers with the refusals. Each part's rows travel as arrays, one
// parameter per column, unnested in the statement: its text depends only on
// which parts are present and whether there is one unit or more (whose
// parameters are then plain values, a one-row VALUES list), not on how
// many units there are, so PostgreSQL parses and plans it once per
// connection. So either every unit's rows commit, or —
// a guard refused — none does and the statement says which units and why,
// or — the chain was not where the writer left it — the statement fails
// and nothing is written. The guard reads committed state as of the
// statement's start; a change committed after that is the next call's.
//
// The head is moved after the run records are written (its condition reads
// their counts), so a run row the statement must wait for — a concurrent
// transaction holds it — is waited for before the chain's row is locked:
// such a transaction may append to the same chain (Writer.Write) without
// either waiting on the other.

// guardSQL is the verdict on each row of g(k, inst, cred, ver, pol, tok,
// usr): the first of the checks that fails, in the order of the Refusal
// constants, or NULL. It is what migrations 00004, 00008 and 00011's
// guard functions checked, read back instead of raised.
//
// Each lookup is a LATERAL subquery with LIMIT 1, which PostgreSQL does not
// flatten into a join: it stays one index lookup per guard. As a join, the
// statement's cached generic plan (made once per connection, for an
// unknown number of guards) hashes the whole table instead, and a plan made
// while the table was small keeps scanning it as it grows.
const guardSQL = `SELECT g.k, CASE
    WHEN g.inst IS NOT NULL AND i.state = 'disabled' THEN 'instance_disabled'
    WHEN g.inst IS NOT NULL AND i.state IS DISTINCT FROM 'enabled' THEN 'instance_uninstalled'
    WHEN g.cred IS NOT NULL AND (c.state IS NULL OR c.state = 'revoked') THEN 'credential_revoked'
    WHEN g.cred IS NOT NULL AND c.state = 'disabled' THEN 'credential_disabled'
    WHEN g.cred IS NOT NULL AND c.expires_at <= now() THEN 'credential_expired'
    WHEN g.cred IS NOT NULL AND c.version IS DISTINCT FROM g.ver THEN 'credential_rotated'
    WHEN g.pol IS NOT NULL AND g.pol IS DISTINCT FROM (SELECT version FROM policy_version) THEN 'policy_moved'
    WHEN g.tok IS NOT NULL AND (t.id IS NULL OR t.revoked_at IS NOT NULL) THEN 'token_revoked'
    WHEN g.tok IS NOT NULL AND t.expires_at <= now() THEN 'token_expired'
    WHEN g.usr IS NOT NULL AND u.id IS NULL THEN 'user_gone'
    WHEN g.usr IS NOT NULL AND u.disabled_at IS NOT NULL THEN 'user_disabled'
  END AS refusal
FROM g
  LEFT JOIN LATERAL (SELECT state FROM connector_instances WHERE id = g.inst LIMIT 1) i ON true
  LEFT JOIN LATERAL (SELECT state, expires_at, version FROM connector_credentials WHERE id = g.cred AND instance_id = g.inst LIMIT 1) c ON true
  LEFT JOIN LATERAL (SELECT id, revoked_at, expires_at FROM api_tokens WHERE id = g.tok LIMIT 1) t ON true
  LEFT JOIN LATERAL (SELECT id, disabled_at FROM users WHERE id = g.usr LIMIT 1) u ON true`

// col is a column of a part: its array parameter's element type and, when
// the column's type differs, what it is cast to.
type col struct{ name, param, cast string }

var (
	guardCols = []col{{"k", "int", ""}, {"inst", "text", "uuid"}, {"cred", "text", "uuid"}, {"ver", "int", ""},
		{"pol", "bigint", ""}, {"tok", "text", "uuid"}, {"usr", "text", "uuid"}}
	startCols = []col{{"id", "text", "uuid"}, {"inst", "text", "uuid"}, {"typ", "text", ""}, {"op", "text", ""},
		{"kind", "text", ""}, {"sub", "text", ""}, {"req", "text", ""}, {"task", "text", "uuid"}, {"project", "text", "uuid"},
		{"run", "text", "uuid"}, {"job", "text", "uuid"}, {"agent", "text", ""}, {"status", "text", ""}, {"async", "bool", ""},
		{"key", "text", ""}, {"expires", "timestamptz", ""}, {"bytes_in", "int", ""}, {"server", "text", "uuid"},
		{"args", "bytea", ""}}
	finishCols = []col{{"id", "text", "uuid"}, {"status", "text", ""}, {"etype", "text", ""}, {"emsg", "text", ""},
		{"attempts", "int", ""}, {"bytes_out", "int", ""}, {"truncated", "bool", ""}, {"redacted", "bool", ""},
		{"result", "text", "jsonb"}, {"started", "timestamptz", ""}}
)

// headParams are the statement's first parameters: $1 chain, $2 holder,
// $3 and $4 the head it is at, $5 and $6 the head it moves to, $7 the
// holder's lease. Then come the audit rows' arrays, then each present
// part's.
const headParams = 7

// shape is which parts a statement carries besides its audit rows, and
// whether it carries one unit. Several units' rows travel as arrays (one
// parameter per column), so there are sixteen statements in all, each
// prepared once per connection, whatever the number of units.
type shape struct {
	guards, starts, finishes bool
	// single: one unit, whose parameters are values, not arrays (a
	// one-row VALUES list costs the database less than unnest).
	single bool
}

var statements sync.Map // shape → SQL

// statement returns the SQL for s (built once per shape).
func statement(s shape) string {
	if sql, ok := statements.Load(s); ok {
		return sql.(string)
	}
	sql := build(s)
	statements.Store(s, sql)
	return sql
}

// unnest writes a SELECT of cols from their array parameters, numbered
// from *next on, each cast to its column's type.
//
// Each array is read through a subquery, which hides its length from the
// planner: every plan then assumes a few rows. Otherwise a plan made for
// the actual parameters (one unit: one row) looks cheaper than the
// statement's generic plan, and PostgreSQL plans the statement anew at
// every execution instead of reusing its cached plan.
func unnest(b *strings.Builder, cols []col, next *int, single bool) {
	b.WriteString("SELECT ")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("u." + c.name)
		if c.cast != "" {
			b.WriteString("::" + c.cast)
		}
		b.WriteString(" AS " + c.name)
	}
	if single {
		b.WriteString(" FROM (VALUES (")
	} else {
		b.WriteString(" FROM unnest(")
	}
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		if single {
			b.WriteString("$" + strconv.Itoa(*next) + "::" + c.param)
		} else {
			b.WriteString("(SELECT $" + strconv.Itoa(*next) + "::" + c.param + "[])")
		}
		*next++
	}
	if single {
		b.WriteString(")")
	}
	b.WriteString(") AS u(")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.name)
	}
	b.WriteString(")")
}

func build(s shape) string {
	var b strings.Builder
	next := headParams + 1
	from, sel := audit.InsertFromArrays(&next, s.single)
	// pass is the condition every write is under: no guard refused. A
	// statement without guards has none to check.
	pass := "true"
	b.WriteString("WITH ")
	if s.guards {
		b.WriteString("g AS (")
		unnest(&b, guardCols, &next, s.single)
		b.WriteString("),\nverdict AS (" + guardSQL + "),\n")
		b.WriteString("pass AS (SELECT NOT EXISTS (SELECT FROM verdict WHERE refusal IS NOT NULL) AS ok),\n")
		pass = "(SELECT ok FROM pass)"
	}
	written := []string{}
	if s.starts {
		b.WriteString(`started AS (
  INSERT INTO connector_runs (id, instance_id, connector_type, operation, kind, subject, request_id, task_id, project_id, run_id,
    job_id, agent_id, status, async, idempotency_key, idempotency_expires_at, bytes_in, started_at, server_id, idempotency_args)
  SELECT s.id, s.inst, s.typ, s.op, s.kind, s.sub, s.req, s.task, s.project, s.run, s.job, s.agent, s.status, s.async, s.key,
    s.expires, s.bytes_in, CASE WHEN s.status = 'running' THEN clock_timestamp() END, s.server, s.args
  FROM (`)
		unnest(&b, startCols, &next, s.single)
		b.WriteString(") s\n  WHERE " + pass + " RETURNING 1),\n")
		written = append(written, "(SELECT count(*) FROM started)")
	}
	if s.finishes {
		b.WriteString(`finished AS (
  UPDATE connector_runs r SET status = f.status, error_type = f.etype, error_message = f.emsg, attempts = f.attempts,
    bytes_out = f.bytes_out, truncated = f.truncated, redacted = f.redacted, result = f.result, finished_at = clock_timestamp(),
    started_at = COALESCE(r.started_at, f.started),
    duration_us = (extract(epoch FROM clock_timestamp() - COALESCE(r.started_at, f.started)) * 1e6)::bigint
  FROM (`)
		ids := next
		unnest(&b, finishCols, &next, s.single)
		// r.id = ANY(ids) keeps the runs' primary key in the plan (see
		// guardSQL): a join alone is planned as a scan of the whole table.
		idCond := "r.id = ANY($" + strconv.Itoa(ids) + "::text[]::uuid[])"
		if s.single {
			idCond = "r.id = $" + strconv.Itoa(ids) + "::text::uuid"
		}
		b.WriteString(") f\n  WHERE " + idCond + " AND r.id = f.id AND r.status IN ('pending', 'running') AND " + pass + " RETURNING 1),\n")
		written = append(written, "(SELECT count(*) FROM finished)")
	}
	b.WriteString(`head AS (
  UPDATE audit_chains SET head_seq = $5, head_hash = $6, held_until = now() + $7::interval
  WHERE id = $1 AND holder = $2 AND head_seq = $3 AND head_hash = $4 AND ` + pass)
	if len(written) > 0 {
		b.WriteString(" AND " + strings.Join(written, " + ") + " >= 0")
	}
	b.WriteString(" RETURNING 1),\nappended AS (\n  INSERT INTO audit_events (seq, " + audit.InsertColumns + ")\n  SELECT nextval('audit_events_seq'), $1::bigint, " +
		sel + "\n  FROM " + from)
	b.WriteString("\n  WHERE CASE WHEN NOT " + pass + ` THEN false WHEN EXISTS (SELECT FROM head) THEN true
    ELSE connec_audit_chain_moved($1) END
  RETURNING 1)
`)
	if s.guards {
		b.WriteString("SELECT k, refusal FROM verdict WHERE refusal IS NOT NULL")
	} else {
		b.WriteString("SELECT NULL::int AS k, NULL::text AS refusal WHERE false")
	}
	return b.String()
}

// guardOnly is the verdict on guards alone, for a commit in a transaction
// of the writer's (Writer.Reserve).
var guardOnly = func() string {
	var b strings.Builder
	next := 1
	b.WriteString("WITH g AS (")
	unnest(&b, guardCols, &next, true)
	b.WriteString(")\n" + guardSQL)
	return b.String()
}()

// null is s, or NULL when empty.
func null(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// guardKey is what a guard checks: units with equal keys share one check.
type guardKey struct {
	inst, cred string
	ver        int
	hasCred    bool
	pol        int64
	tok, usr   string
}

// guardArrays appends the guards of units as guardCols' arrays, each
// distinct guard once (k: the index in the batch of the first unit with
// it; concurrent calls of one caller on one instance share one), and
// returns which other units share each.
func guardArrays(args []any, units []*Unit) ([]any, map[int][]int) {
	var k, ver []*int32
	var pol []*int64
	var inst, cred, tok, usr []*string
	first := map[guardKey]int{}
	var same map[int][]int
	for i, u := range units {
		g := u.Guard
		if g == nil {
			continue
		}
		key := guardKey{inst: g.Instance, pol: g.PolicyVersion, tok: g.Token, usr: g.User}
		if g.Credential != nil {
			key.cred, key.ver, key.hasCred = g.Credential.ID, g.Credential.Version, true
		}
		if f, ok := first[key]; ok {
			if same == nil {
				same = map[int][]int{}
			}
			same[f] = append(same[f], i)
			continue
		}
		first[key] = i
		ki := int32(i)
		var c *string
		var v *int32
		if key.hasCred {
			id, n := key.cred, int32(key.ver)
			c, v = &id, &n
		}
		var p *int64
		if g.PolicyVersion != 0 {
			pv := g.PolicyVersion
			p = &pv
		}
		k, inst, cred, ver, pol, tok, usr = append(k, &ki), append(inst, null(g.Instance)), append(cred, c), append(ver, v),
			append(pol, p), append(tok, null(g.Token)), append(usr, null(g.User))
	}
	return append(args, k, inst, cred, ver, pol, tok, usr), same
}

// startArrays appends the run starts of units as startCols' arrays.
func startArrays(args []any, units []*Unit) []any {
	var id, inst, typ, op, kind, sub, req, status []string
	var task, project, run, job, agent, key, server []*string
	var async []bool
	var expires []*time.Time
	var bytesIn []int32
	var argsHash [][]byte
	for _, u := range units {
		s := u.Start
		if s == nil {
			continue
		}
		t := s.Task
		id, inst, typ, op, kind = append(id, s.ID), append(inst, s.InstanceID), append(typ, s.ConnectorType), append(op, s.Operation), append(kind, s.Kind)
		sub, req, status = append(sub, string(s.Subject)), append(req, s.RequestID), append(status, s.Status)
		task, project, run, job, agent = append(task, null(t.TaskID)), append(project, null(t.ProjectID)), append(run, null(t.RunID)),
			append(job, null(t.JobID)), append(agent, null(t.AgentID))
		async, key, expires = append(async, s.Async), append(key, null(s.IdempotencyKey)), append(expires, s.IdempotencyExpires)
		bytesIn, server, argsHash = append(bytesIn, int32(s.BytesIn)), append(server, null(s.ServerID)), append(argsHash, s.ArgsHash)
	}
	return append(args, id, inst, typ, op, kind, sub, req, task, project, run, job, agent, status, async, key, expires, bytesIn,
		server, argsHash)
}

// finishArrays appends the run outcomes of units as finishCols' arrays.
func finishArrays(args []any, units []*Unit) []any {
	var id, status []string
	var etype, emsg, result []*string
	var attempts, bytesOut []int32
	var truncated, redacted []bool
	var started []time.Time
	for _, u := range units {
		f := u.Finish
		if f == nil {
			continue
		}
		var res *string
		if f.Result != nil {
			r := string(f.Result)
			res = &r
		}
		id, status, etype, emsg = append(id, f.ID), append(status, f.Status), append(etype, null(f.ErrorType)), append(emsg, null(f.ErrorMessage))
		attempts, bytesOut, truncated, redacted = append(attempts, int32(f.Attempts)), append(bytesOut, int32(f.BytesOut)),
			append(truncated, f.Truncated), append(redacted, f.Redacted)
		result, started = append(result, res), append(started, f.StartedAt)
	}
	return append(args, id, status, etype, emsg, attempts, bytesOut, truncated, redacted, result, started)
}

// parseRefusal maps the statement's answer to a Refusal.
func parseRefusal(s string) (Refusal, error) {
	switch r := Refusal(s); r {
	case InstanceDisabled, InstanceUninstalled, CredentialRevoked, CredentialDisabled, CredentialExpired, CredentialRotated,
		PolicyMoved, TokenRevoked, TokenExpired, UserGone, UserDisabled:
		return r, nil
	}
	return "", fmt.Errorf("commit: the guard answered %q", s)
}
