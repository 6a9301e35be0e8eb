-- +goose Up
-- Every invocation commits a run row, an audit row and the chain head's move
-- (and, for a send or a cached read, the invoke guard) before its result
-- leaves; at one caller that commit is most of what connec adds to a call.
-- This migration makes it lighter without giving up anything it checks.

-- Instances are never deleted: uninstalling is a state, and the instance's
-- runs and audit rows keep referring to it. Say so in the schema, so the
-- foreign key from connector_runs, which took a KEY SHARE lock on (and so
-- dirtied and logged) the instance row in every invocation's commit, has
-- nothing left to guard.
-- +goose StatementBegin
CREATE FUNCTION connec_instances_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'connector instances are never deleted; uninstall them (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
-- +goose StatementEnd
CREATE TRIGGER connector_instances_kept BEFORE DELETE OR TRUNCATE ON connector_instances
    FOR EACH STATEMENT EXECUTE FUNCTION connec_instances_kept();
ALTER TABLE connector_runs DROP CONSTRAINT connector_runs_instance_id_fkey;

-- audit_events is appended in time order: a block range index answers time
-- ranges (export, listing since/until) at a fraction of a B-tree's upkeep.
DROP INDEX audit_events_at;
CREATE INDEX audit_events_at ON audit_events USING brin (at);

-- The head's forward-only rule is checked by the trigger's WHEN clause, so
-- the function runs only to refuse (a backward or sideways move, a delete).
DROP TRIGGER audit_chain_head_forward ON audit_chain_head;
CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head
    FOR EACH ROW WHEN (NEW.seq <= OLD.seq) EXECUTE FUNCTION connec_audit_head_forward();
CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION connec_audit_head_forward();

-- The writer moves the head with a plain UPDATE (migrations.AuditAdvanceSQL)
-- and calls this only when the head was not where it left it.
DROP FUNCTION connec_audit_advance;
-- +goose StatementBegin
CREATE FUNCTION connec_audit_head_moved(from_seq bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit chain head moved since seq %', from_seq USING ERRCODE = 'CA001';
END $$;
-- +goose StatementEnd
-- connec_invoke_guard (00004) stays: migrations.InvokeGuardSQL checks with
-- plain index lookups and calls it only to name a refusal.

-- +goose Down
DROP FUNCTION connec_audit_head_moved;
-- +goose StatementBegin
CREATE FUNCTION connec_audit_advance(from_seq bigint, from_hash bytea, to_seq bigint, to_hash bytea)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_chain_head SET seq = to_seq, hash = to_hash WHERE seq = from_seq AND hash = from_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit chain head moved since seq %', from_seq USING ERRCODE = 'CA001';
    END IF;
END $$;
-- +goose StatementEnd
DROP TRIGGER audit_chain_head_no_delete ON audit_chain_head;
DROP TRIGGER audit_chain_head_forward ON audit_chain_head;
CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE OR DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION connec_audit_head_forward();
DROP INDEX audit_events_at;
CREATE INDEX audit_events_at ON audit_events (at);
ALTER TABLE connector_runs ADD FOREIGN KEY (instance_id) REFERENCES connector_instances (id);
DROP TRIGGER connector_instances_kept ON connector_instances;
DROP FUNCTION connec_instances_kept;
