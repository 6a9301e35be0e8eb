-- +goose Up
-- A pending or running run (an async run, a send in flight) lives in the
-- server that started it. If that server stops without finishing it
-- (killed, crashed, cut off from the database), nobody else would, and the
-- run would report "running" for ever. Each server holds a lease here that
-- it renews, marks the runs it starts with its id, and fails the open runs
-- of any server whose lease ran out (connectors.Service.StartLease).
CREATE TABLE connec_servers (
    id          uuid PRIMARY KEY,
    host        text NOT NULL,
    pid         integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
-- Runs are looked up by server only while open: connector_runs_active (00002),
-- which holds just the open runs, serves those lookups.
ALTER TABLE connector_runs ADD COLUMN server_id uuid;

-- +goose Down
ALTER TABLE connector_runs DROP COLUMN server_id;
DROP TABLE connec_servers;
