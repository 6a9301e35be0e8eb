package commit

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

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
// and answers with the refusals. So either every unit's rows commit, or —
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
FROM g LEFT JOIN connector_instances i ON i.id = g.inst
  LEFT JOIN connector_credentials c ON c.id = g.cred AND c.instance_id = g.inst
  LEFT JOIN api_tokens t ON t.id = g.tok
  LEFT JOIN users u ON u.id = g.usr`

var (
	guardTypes  = []string{"int", "uuid", "uuid", "int", "bigint", "uuid", "uuid"}
	guardCols   = "k, inst, cred, ver, pol, tok, usr"
	startTypes  = []string{"uuid", "uuid", "text", "text", "text", "text", "text", "uuid", "uuid", "uuid", "uuid", "text", "text", "bool", "text", "timestamptz", "int", "uuid", "bytea"}
	startCols   = "id, inst, typ, op, kind, sub, req, task, project, run, job, agent, status, async, key, expires, bytes_in, server, args"
	finishTypes = []string{"uuid", "text", "text", "text", "int", "int", "bool", "bool", "jsonb", "timestamptz"}
	finishCols  = "id, status, etype, emsg, attempts, bytes_out, truncated, redacted, result, started"
)

// headParams are the statement's first parameters: $1 chain, $2 holder,
// $3 and $4 the head it is at, $5 and $6 the head it moves to, $7 the
// holder's lease.
const headParams = 7

// shape is what a statement carries: how many of each part.
type shape struct{ events, guards, starts, finishes int }

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

// values writes a VALUES list of n rows of len(types) parameters from
// *next on, each cast to its type.
func values(b *strings.Builder, n int, types []string, next *int) {
	b.WriteString("VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j, t := range types {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(*next))
			b.WriteString("::")
			b.WriteString(t)
			*next++
		}
		b.WriteByte(')')
	}
}

func build(s shape) string {
	var b strings.Builder
	next := headParams + 1
	b.WriteString("WITH ")
	if s.guards > 0 {
		b.WriteString("g(" + guardCols + ") AS (")
		values(&b, s.guards, guardTypes, &next)
		b.WriteString("),\nverdict AS (" + guardSQL + "),\n")
	} else {
		b.WriteString("verdict AS (SELECT NULL::int AS k, NULL::text AS refusal WHERE false),\n")
	}
	b.WriteString("pass AS (SELECT NOT EXISTS (SELECT FROM verdict WHERE refusal IS NOT NULL) AS ok),\n")
	written := []string{}
	if s.starts > 0 {
		b.WriteString(`started AS (
  INSERT INTO connector_runs (id, instance_id, connector_type, operation, kind, subject, request_id, task_id, project_id, run_id,
    job_id, agent_id, status, async, idempotency_key, idempotency_expires_at, bytes_in, started_at, server_id, idempotency_args)
  SELECT s.id, s.inst, s.typ, s.op, s.kind, s.sub, s.req, s.task, s.project, s.run, s.job, s.agent, s.status, s.async, s.key,
    s.expires, s.bytes_in, CASE WHEN s.status = 'running' THEN clock_timestamp() END, s.server, s.args
  FROM (`)
		values(&b, s.starts, startTypes, &next)
		b.WriteString(") s(" + startCols + ")\n  WHERE (SELECT ok FROM pass) RETURNING 1),\n")
		written = append(written, "(SELECT count(*) FROM started)")
	}
	if s.finishes > 0 {
		b.WriteString(`finished AS (
  UPDATE connector_runs r SET status = f.status, error_type = f.etype, error_message = f.emsg, attempts = f.attempts,
    bytes_out = f.bytes_out, truncated = f.truncated, redacted = f.redacted, result = f.result, finished_at = clock_timestamp(),
    started_at = COALESCE(r.started_at, f.started),
    duration_us = (extract(epoch FROM clock_timestamp() - COALESCE(r.started_at, f.started)) * 1e6)::bigint
  FROM (`)
		values(&b, s.finishes, finishTypes, &next)
		b.WriteString(") f(" + finishCols + ")\n  WHERE r.id = f.id AND r.status IN ('pending', 'running') AND (SELECT ok FROM pass) RETURNING 1),\n")
		written = append(written, "(SELECT count(*) FROM finished)")
	}
	b.WriteString(`head AS (
  UPDATE audit_chains SET head_seq = $5, head_hash = $6, held_until = now() + $7::interval
  WHERE id = $1 AND holder = $2 AND head_seq = $3 AND head_hash = $4 AND (SELECT ok FROM pass)`)
	if len(written) > 0 {
		b.WriteString(" AND " + strings.Join(written, " + ") + " >= 0")
	}
	b.WriteString(" RETURNING 1),\nappended AS (\n  INSERT INTO audit_events (seq, " + audit.InsertColumns + ")\n  SELECT nextval('audit_events_seq'), e.* FROM (")
	values(&b, s.events, audit.InsertTypes, &next)
	b.WriteString(`) e
  WHERE CASE WHEN NOT (SELECT ok FROM pass) THEN false WHEN EXISTS (SELECT FROM head) THEN true
    ELSE connec_audit_chain_moved($1) END
  RETURNING 1)
SELECT k, refusal FROM verdict WHERE refusal IS NOT NULL`)
	return b.String()
}

// guardOnly is the verdict on one guard, for a commit in a transaction of
// the caller's (Writer.Reserve).
var guardOnly = func() string {
	var b strings.Builder
	next := 1
	b.WriteString("WITH g(" + guardCols + ") AS (")
	values(&b, 1, guardTypes, &next)
	b.WriteString(")\n" + guardSQL)
	return b.String()
}()

// null is s, or NULL when empty.
func null(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (g *Guard) args(k int, args []any) []any {
	var cred, ver, pol any
	if g.Credential != nil {
		cred, ver = g.Credential.ID, g.Credential.Version
	}
	if g.PolicyVersion != 0 {
		pol = g.PolicyVersion
	}
	return append(args, k, null(g.Instance), cred, ver, pol, null(g.Token), null(g.User))
}

func (s *RunStart) args(args []any) []any {
	t := s.Task
	var expires, argsHash any
	if s.IdempotencyExpires != nil {
		expires = *s.IdempotencyExpires
	}
	if s.ArgsHash != nil {
		argsHash = s.ArgsHash
	}
	return append(args, s.ID, s.InstanceID, s.ConnectorType, s.Operation, s.Kind, string(s.Subject), s.RequestID,
		null(t.TaskID), null(t.ProjectID), null(t.RunID), null(t.JobID), null(t.AgentID), s.Status, s.Async,
		null(s.IdempotencyKey), expires, s.BytesIn, null(s.ServerID), argsHash)
}

func (f *RunFinish) args(args []any) []any {
	var result any
	if f.Result != nil {
		result = []byte(f.Result)
	}
	return append(args, f.ID, f.Status, null(f.ErrorType), null(f.ErrorMessage), f.Attempts, f.BytesOut, f.Truncated,
		f.Redacted, result, f.StartedAt)
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
