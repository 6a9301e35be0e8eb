package commit

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/internal/platform/db"
)

// The pipeline. A group commit is a few plain statements sent together and
// ended by one Sync — so one round trip and one implicit transaction, one
// durable commit — each prepared once per connection:
//
//	guards    one per distinct guard: raises its refusal, if any
//	          (connec_commit_refused)
//	starts    the run records dispatched (one statement)
//	finishes  one per run outcome
//	head      the writer's chain head moved from where it left it, or a
//	          raise (connec_audit_chain_moved)
//	audit     the audit rows, linked after the head (one statement)
//
// A statement that raises ends the transaction: nothing of the batch is
// written, and the writer learns which unit a guard refused (or that its
// chain moved) and commits the others again without it. Each statement
// reads committed state as of its own start, the guards first; a change
// committed after that is the next call's.
//
// Plain statements, because they cost PostgreSQL least (measured with
// pg_stat_statements under the bench's load): one statement of
// data-modifying CTEs for the whole batch cost 30-40 µs more per commit at
// concurrency 1, and parts whose rows were unnested from arrays (one text
// whatever the batch size) cost 60 µs more per call at 32. Inserts carry
// all their rows in one VALUES list (a statement per row cost as much
// more), so their texts depend on the number of rows: each is prepared
// once per connection per batch size met.
//
// The head is moved after the run records are written, so a run row a
// concurrent transaction holds is waited for before the chain's row is
// locked: such a transaction may append to the same chain (Writer.Write)
// without either waiting on the other.

// guardSQL raises the first of the checks that fails for the guard
// ($2..$7) of unit $1, in the order of the Refusal constants, or returns
// no row. It is what migrations 00004, 00008 and 00011's guard functions
// checked. Each lookup is a LATERAL subquery with LIMIT 1: one index
// lookup per guard, whatever the plan.
const guardSQL = `SELECT connec_commit_refused(v.k, v.refusal) FROM (` + verdictSQL + `) v WHERE v.refusal IS NOT NULL`

const verdictSQL = `SELECT g.k, CASE
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
FROM (VALUES ($1::int, $2::uuid, $3::uuid, $4::int, $5::bigint, $6::uuid, $7::uuid)) AS g(k, inst, cred, ver, pol, tok, usr)
  LEFT JOIN LATERAL (SELECT state FROM connector_instances WHERE id = g.inst LIMIT 1) i ON true
  LEFT JOIN LATERAL (SELECT state, expires_at, version FROM connector_credentials WHERE id = g.cred AND instance_id = g.inst LIMIT 1) c ON true
  LEFT JOIN LATERAL (SELECT id, revoked_at, expires_at FROM api_tokens WHERE id = g.tok LIMIT 1) t ON true
  LEFT JOIN LATERAL (SELECT id, disabled_at FROM users WHERE id = g.usr LIMIT 1) u ON true`

// refusedCode is the SQLSTATE connec_commit_refused raises (migration
// 00014): its message is the refusal, its detail the unit's index.
const refusedCode = "CA003"

// startSQL returns the statement that inserts n run records, each with
// startArgs' startCols arguments, one after the other: a multi-row VALUES list,
// like the audit rows' (auditSQL).
func startSQL(n int) string {
	if sql, ok := starts.Load(n); ok {
		return sql.(string)
	}
	sql := `INSERT INTO connector_runs (id, instance_id, connector_type, operation, kind, subject, request_id, task_id,
  project_id, run_id, job_id, agent_id, status, async, idempotency_key, idempotency_expires_at, bytes_in, server_id,
  idempotency_args, started_at)
VALUES ` + db.Values(n, startCols, "", func(p int) []string {
		// A running run starts now; a pending one when it is picked up.
		return []string{"CASE WHEN $" + strconv.Itoa(p+12) + "::text = 'running' THEN clock_timestamp() END"}
	})
	starts.Store(n, sql)
	return sql
}

var starts sync.Map // n → startSQL(n)

// startCols is how many arguments startArgs gives a run record.
const startCols = 19

// auditSQL returns the statement that inserts n linked audit rows
// (audit.Link), each with its seq drawn from audit_events_seq and then
// audit.InsertColumns from Row.InsertArgs, the rows' arguments one after
// the other.
func auditSQL(n int) string {
	if sql, ok := audits.Load(n); ok {
		return sql.(string)
	}
	sql := "INSERT INTO audit_events (seq, " + audit.InsertColumns + ")\nVALUES " +
		db.Values(n, auditCols, "nextval('audit_events_seq')", nil)
	audits.Store(n, sql)
	return sql
}

var (
	audits    sync.Map // n → auditSQL(n)
	auditCols = strings.Count(audit.InsertColumns, ",") + 1
)

// finishSQL records a run's outcome ($1..$10: finishArgs) while it is
// still pending or running.
const finishSQL = `UPDATE connector_runs SET status = $2, error_type = $3, error_message = $4, attempts = $5, bytes_out = $6,
  truncated = $7, redacted = $8, result = $9, finished_at = clock_timestamp(), started_at = COALESCE(started_at, $10),
  duration_us = (extract(epoch FROM clock_timestamp() - COALESCE(started_at, $10)) * 1e6)::bigint
WHERE id = $1 AND status IN ('pending', 'running')`

// headSQL moves chain $1's head from ($3, $4) to ($5, $6) while $2 holds
// it, or raises: the chain moved, or is no longer the writer's. (The hold
// is renewed by the writer's upkeep, not here: a commit stays one small
// update.)
const headSQL = `WITH moved AS (
  UPDATE audit_chains SET head_seq = $5, head_hash = $6
  WHERE id = $1 AND holder = $2 AND head_seq = $3 AND head_hash = $4 RETURNING 1)
SELECT connec_audit_chain_moved($1) WHERE NOT EXISTS (SELECT FROM moved)`

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

// guardArgs returns the arguments of guardSQL for each distinct guard of
// units (k: the index in the batch of the first unit with it; concurrent
// calls of one caller on one instance share one), and which other units
// share each.
func guardArgs(units []*Unit) ([][]any, map[int][]int) {
	var out [][]any
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
		out = append(out, oneGuard(i, g))
	}
	return out, same
}

// oneGuard is guardSQL's arguments for g as unit k's.
func oneGuard(k int, g *Guard) []any {
	var cred *string
	var ver *int32
	if g.Credential != nil {
		id, n := g.Credential.ID, int32(g.Credential.Version)
		cred, ver = &id, &n
	}
	var pol *int64
	if g.PolicyVersion != 0 {
		pv := g.PolicyVersion
		pol = &pv
	}
	return []any{int32(k), null(g.Instance), cred, ver, pol, null(g.Token), null(g.User)}
}

// startArgs appends startSQL's arguments for s to args.
func startArgs(args []any, s *RunStart) []any {
	t := s.Task
	return append(args, s.ID, s.InstanceID, s.ConnectorType, s.Operation, s.Kind, string(s.Subject), s.RequestID, null(t.TaskID),
		null(t.ProjectID), null(t.RunID), null(t.JobID), null(t.AgentID), s.Status, s.Async, null(s.IdempotencyKey),
		s.IdempotencyExpires, int32(s.BytesIn), null(s.ServerID), s.ArgsHash)
}

// finishArgs are finishSQL's arguments for f.
func finishArgs(f *RunFinish) []any {
	var res []byte
	if f.Result != nil {
		res = f.Result
	}
	return []any{f.ID, f.Status, null(f.ErrorType), null(f.ErrorMessage), int32(f.Attempts), int32(f.BytesOut), f.Truncated,
		f.Redacted, res, f.StartedAt}
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
