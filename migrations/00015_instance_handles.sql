-- +goose Up
-- Every connector instance gets a handle: a short stable name, unique among
-- its owner's live instances, chosen at install (or derived from the display
-- name), made to name the instance's tools (<handle>.<operation>): it does not
-- change when the display name does. An uninstalled instance frees its
-- handle; its rows keep their id.
ALTER TABLE connector_instances ADD COLUMN handle text;

-- Existing instances: the display name lowered, every run of other
-- characters one hyphen, cut to 28 characters, "i-" in front if it does not
-- start with a letter; a second instance of one owner with the same result
-- gets the first eight hex digits of its id appended.
WITH slugs AS (
    SELECT id, owner, created_at,
           trim(BOTH '-' FROM left(trim(BOTH '-' FROM regexp_replace(lower(display_name), '[^a-z0-9]+', '-', 'g')), 28)) AS s
    FROM connector_instances
), bases AS (
    SELECT id, owner, created_at, CASE WHEN s ~ '^[a-z]' THEN s WHEN s = '' THEN 'instance' ELSE 'i-' || s END AS base
    FROM slugs
), numbered AS (
    SELECT id, base, row_number() OVER (PARTITION BY owner, base ORDER BY created_at, id) AS n FROM bases
)
UPDATE connector_instances i
SET handle = CASE WHEN n.n = 1 THEN n.base ELSE n.base || '-' || left(replace(i.id::text, '-', ''), 8) END
FROM numbered n WHERE i.id = n.id;

ALTER TABLE connector_instances ALTER COLUMN handle SET NOT NULL,
    ADD CONSTRAINT connector_instances_handle_check
        CHECK (length(handle) <= 40 AND handle ~ '^[a-z][a-z0-9]*(-[a-z0-9]+)*$');
CREATE UNIQUE INDEX connector_instances_owner_handle ON connector_instances (owner, handle) WHERE state <> 'uninstalled';

-- +goose Down
DROP INDEX connector_instances_owner_handle;
ALTER TABLE connector_instances DROP COLUMN handle;
