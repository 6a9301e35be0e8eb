-- +goose Up
-- Run history: one row per invocation that passed policy and validation,
-- whatever its outcome. Results are kept only where they must be: for
-- idempotent send-kind operations (a repeat returns the first result) and
-- async runs (connector.run.get returns it). They are redacted like every
-- result; secrets never reach this table.
CREATE TABLE connector_runs (
    id              uuid PRIMARY KEY,
    instance_id     uuid NOT NULL REFERENCES connector_instances (id),
    connector_type  text NOT NULL,
    operation       text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('read', 'send', 'admin')),
    subject         text NOT NULL,
    request_id      text NOT NULL,
    task_id         uuid,
    project_id      uuid,
    run_id          uuid,
    job_id          uuid,
    agent_id        text,
    status          text NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled')),
    async           boolean NOT NULL DEFAULT false,
    error_type      text,
    error_message   text,
    provider_status integer,
    attempts        integer NOT NULL DEFAULT 0,
    bytes_in        integer NOT NULL DEFAULT 0,
    bytes_out       integer NOT NULL DEFAULT 0,
    truncated       boolean NOT NULL DEFAULT false,
    redacted        boolean NOT NULL DEFAULT false,
    idempotency_key text,
    idempotency_expires_at timestamptz,
    result          jsonb,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at      timestamptz,
    finished_at     timestamptz,
    duration_us     bigint
);
CREATE INDEX connector_runs_instance ON connector_runs (instance_id, created_at DESC);
CREATE INDEX connector_runs_subject ON connector_runs (subject, created_at DESC);
CREATE INDEX connector_runs_task ON connector_runs (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX connector_runs_active ON connector_runs (status) WHERE status IN ('pending', 'running');
-- At most one live run per (instance, idempotency key): the database, not a
-- race between servers, decides which call executes.
CREATE UNIQUE INDEX connector_runs_idempotency ON connector_runs (instance_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Invocations read an instance's newest credential row (live first).
CREATE INDEX connector_credentials_instance ON connector_credentials (instance_id, updated_at DESC);

-- Per-instance limits set at install (and changeable by admins): rate limits
-- per subject and per instance, shared by every server.
ALTER TABLE connector_instances ADD COLUMN limits jsonb NOT NULL DEFAULT '{}';

-- Fixed-window counters for rate limits, shared by every server.
CREATE TABLE connector_rate_windows (
    key          text NOT NULL,
    window_start timestamptz NOT NULL,
    count        integer NOT NULL,
    PRIMARY KEY (key, window_start)
);

-- Async runs waiting for a worker, announced so any server can pick them up.
-- +goose StatementBegin
CREATE FUNCTION connec_run_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'canceled' THEN
        PERFORM pg_notify('connec_run_cancel', NEW.id::text);
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER connector_runs_cancel AFTER UPDATE OF status ON connector_runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION connec_run_changed();

-- +goose Down
DROP INDEX connector_credentials_instance;
DROP TABLE connector_rate_windows;
ALTER TABLE connector_instances DROP COLUMN limits;
DROP TABLE connector_runs;
DROP FUNCTION connec_run_changed;
