-- +goose Up
-- Canceling a run is a request to the server that executes it, not a verdict:
-- that server stops the operation and records what happened (canceled if it
-- stopped, its real outcome if it had already finished). Before, cancel set
-- the status itself, so a run could read "canceled" while its operation went
-- on to succeed. Only async runs can be canceled (connectors.Service.CancelRun).
ALTER TABLE connector_runs ADD COLUMN cancel_requested_at timestamptz, ADD COLUMN cancel_requested_by text;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION connec_run_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('connec_run_cancel', NEW.id::text);
    RETURN NULL;
END $$;
-- +goose StatementEnd
DROP TRIGGER connector_runs_cancel ON connector_runs;
CREATE TRIGGER connector_runs_cancel AFTER UPDATE OF cancel_requested_at ON connector_runs
    FOR EACH ROW WHEN (OLD.cancel_requested_at IS NULL AND NEW.cancel_requested_at IS NOT NULL)
    EXECUTE FUNCTION connec_run_changed();

-- +goose Down
DROP TRIGGER connector_runs_cancel ON connector_runs;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION connec_run_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'canceled' THEN
        PERFORM pg_notify('connec_run_cancel', NEW.id::text);
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER connector_runs_cancel AFTER UPDATE OF status ON connector_runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION connec_run_changed();
ALTER TABLE connector_runs DROP COLUMN cancel_requested_by, DROP COLUMN cancel_requested_at;
