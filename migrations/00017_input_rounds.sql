-- +goose Up
-- Rounds of bridged calls in flight between the servers of a deployment.
-- A 2026-07-28 caller whose call is bridged to an upstream that asks within
-- the call (2025-11-25 elicitation) answers in a later request, which may
-- reach another server than the one where the call waits: that server
-- leaves the round here and announces it (connec_input_round); the server
-- holding the call claims it, delivers the answers and leaves the call's
-- next answer (its result, or its next question) for the first to return.
-- A row lives for one round, seconds to minutes: the server that wrote it
-- deletes it, and any server deletes rows left past their time (a server
-- that stopped mid-round).
CREATE TABLE input_rounds (
    id         uuid PRIMARY KEY,
    owner      text NOT NULL,
    tool       text NOT NULL,
    -- The round's requestState and inputResponses, as the caller sent them
    -- (JSON, kept as bytes: jsonb refuses what JSON allows, a \u0000).
    params     bytea NOT NULL,
    claimed_by text,
    -- The lease (connec_servers) of the server that claimed it, when it
    -- holds one: a round whose server's lease has run out is given up.
    claim_lease uuid,
    -- The call's next answer (a tools/call result), once there is one.
    result     bytea,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX input_rounds_created_at ON input_rounds (created_at);

-- +goose Down
DROP TABLE input_rounds;
