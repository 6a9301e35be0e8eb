-- +goose Up
-- An idempotency key belongs to the subject that used it: another subject's
-- call with the same key on the same instance runs on its own, and never
-- receives the first caller's stored result. The key also pins the arguments
-- (a SHA-256 of their canonical JSON): a reuse with other arguments is
-- refused as conflict rather than answered with another call's outcome.
ALTER TABLE connector_runs ADD COLUMN idempotency_args bytea;
DROP INDEX connector_runs_idempotency;
CREATE UNIQUE INDEX connector_runs_idempotency ON connector_runs (instance_id, subject, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- +goose Down
DROP INDEX connector_runs_idempotency;
CREATE UNIQUE INDEX connector_runs_idempotency ON connector_runs (instance_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
ALTER TABLE connector_runs DROP COLUMN idempotency_args;
