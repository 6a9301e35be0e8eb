package migrations

// Statements that call into the schema's functions. They live beside the
// migrations that define those functions, so the two change together and
// this package's tests check them against each other.
const (
	// InvokeGuardSQL lets the transaction it runs in commit only if
	// instance $1 is enabled and credential $2 (NULL: the call used none)
	// is still that instance's, active, unexpired and at version $3. It
	// checks with two index lookups; only when one fails does it call
	// connec_invoke_guard, which raises the SQLSTATE naming the reason
	// (CNI01, CNI02, CNC01–CNC04; migration 00004).
	InvokeGuardSQL = `SELECT connec_invoke_guard($1, $2, $3)
WHERE NOT EXISTS (SELECT FROM connector_instances WHERE id = $1 AND state = 'enabled')
   OR ($2::uuid IS NOT NULL AND NOT EXISTS (SELECT FROM connector_credentials
        WHERE id = $2 AND instance_id = $1 AND state = 'active' AND version = $3
          AND (expires_at IS NULL OR expires_at > now())))`

	// DecisionGuardSQL lets the transaction it runs in commit only if the
	// policy is still at version $1 (the one the call was decided under),
	// API token $2 (NULL: the caller acts as a configured subject) is still
	// valid, and user $3 still exists and is not disabled. Three index
	// lookups; only when one fails does it call connec_decision_guard, which
	// raises the SQLSTATE naming the reason (CNP01, CNT01–CNT03, migration
	// 00008; CNT04, a disabled user, migration 00011).
	DecisionGuardSQL = `SELECT connec_decision_guard($1, $2, $3)
WHERE (SELECT version FROM policy_version) IS DISTINCT FROM $1::bigint
   OR ($2::uuid IS NOT NULL AND NOT EXISTS (SELECT FROM api_tokens
        WHERE id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())))
   OR ($3::uuid IS NOT NULL AND NOT EXISTS (SELECT FROM users WHERE id = $3 AND disabled_at IS NULL))`

	// AuditAdvanceSQL moves the audit chain head from ($1, $2) to ($3, $4),
	// taking the head row's lock (the chain lock) for the rest of the
	// transaction. If the head is not at ($1, $2) — another writer moved
	// it — it raises AuditHeadMovedCode and the transaction fails.
	AuditAdvanceSQL = `WITH moved AS (
    UPDATE audit_chain_head SET seq = $3, hash = $4 WHERE singleton AND seq = $1 AND hash = $2 RETURNING 1)
SELECT connec_audit_head_moved($1) WHERE NOT EXISTS (SELECT FROM moved)`

	// AuditHeadMovedCode is the SQLSTATE AuditAdvanceSQL raises when the
	// head moved.
	AuditHeadMovedCode = "CA001"
)
