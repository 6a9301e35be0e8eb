-- +goose Up
-- The added MCP servers, as the servers of a deployment share them: each
-- server keeps a copy of every record (and its npm package) in its own data
-- directory and brings it in line with this table at start and whenever a
-- change is announced (connec_mcp_server). A removed server keeps its row,
-- without a record, so that a server which was down meanwhile drops its
-- stale copy instead of adding it back.
CREATE TABLE mcp_servers (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,27}$'),
    -- json, not jsonb: the record as connec wrote it, byte for byte (its
    -- schemas are compared and served as reviewed).
    record     json CHECK (record IS NULL OR (json_typeof(record) = 'object' AND record->>'name' = name)),
    changed_at timestamptz NOT NULL DEFAULT now()
);

-- The deployment's identity: a data directory records which deployment its
-- copies are of, so that records found there are taken into the database
-- only once, by the deployment they came from (a data directory used with
-- another database first is not one to import from).
CREATE TABLE connec_deployment (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    id  uuid NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO connec_deployment DEFAULT VALUES;

-- +goose Down
DROP TABLE connec_deployment;
DROP TABLE mcp_servers;
