-- +goose Up
-- An audit row may stand for several calls: failed authentications from one
-- source are written one at once and then counted, one row per source and
-- interval carrying how many it stands for (identity/authlimit), so that
-- unauthenticated traffic cannot flood the trail. Every other row counts one
-- call. Rows hashed with version 2 cover the count; a version 1 row (written
-- before this column) counts one, which verification checks.
ALTER TABLE audit_events ADD COLUMN count bigint NOT NULL DEFAULT 1 CHECK (count >= 1);
-- Which task context fields came from the caller's credentials (a task-bound
-- token) rather than from the call itself (version 2 rows hash them too).
ALTER TABLE audit_events ADD COLUMN task_bound text[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE audit_events DROP COLUMN task_bound;
ALTER TABLE audit_events DROP COLUMN count;
