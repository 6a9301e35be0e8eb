-- +goose Up
-- The audit trail becomes several hash chains, one per writer, so that
-- servers sharing the database no longer queue on one chain-head row.
--
-- A chain is held by one writer at a time (a connec server, or an operator
-- command), under a lease it renews: holder and held_until. Only the holder
-- appends, and every append moves the chain's head here in the same
-- transaction, conditionally on where the holder left it — so a writer whose
-- lease ran out and whose chain another writer took over cannot append to it
-- any more. A chain whose holder stopped (released it, or its lease ran out)
-- is taken over by the next writer that needs one, which continues it from
-- its head; so there are about as many chains as writers ever ran at once.
-- Chains are numbered 1, 2, … without gaps; the single chain of earlier
-- versions is chain 1 and continues there.
CREATE TABLE audit_chains (
    id          bigint PRIMARY KEY CHECK (id >= 1),
    head_seq    bigint NOT NULL DEFAULT 0 CHECK (head_seq >= 0),
    head_hash   bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex') CHECK (length(head_hash) = 32),
    holder      uuid,
    held_until  timestamptz,
    holder_info text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);
INSERT INTO audit_chains (id, head_seq, head_hash) SELECT 1, seq, hash FROM audit_chain_head;

-- A head only moves forward (renewing a lease leaves it where it is), and a
-- chain is never removed.
-- +goose StatementBegin
CREATE FUNCTION connec_audit_chain_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'an audit chain''s head only moves forward and a chain is never removed (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
-- +goose StatementEnd
CREATE TRIGGER audit_chains_forward BEFORE UPDATE ON audit_chains
    FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.head_seq < OLD.head_seq
        OR (NEW.head_seq = OLD.head_seq AND NEW.head_hash IS DISTINCT FROM OLD.head_hash))
    EXECUTE FUNCTION connec_audit_chain_forward();
CREATE TRIGGER audit_chains_no_delete BEFORE DELETE ON audit_chains
    FOR EACH ROW EXECUTE FUNCTION connec_audit_chain_forward();
CREATE TRIGGER audit_chains_no_truncate BEFORE TRUNCATE ON audit_chains
    FOR EACH STATEMENT EXECUTE FUNCTION connec_audit_append_only();

-- A row's place in the trail is its chain and its position there
-- (chain_seq, gap-free per chain), both covered by its hash from hash
-- version 3 on. Rows written before have chain 1 and no chain_seq: their
-- position is their seq, which their hash covers. seq stays the order rows
-- are listed and paged in, one number for the whole trail, drawn from a
-- sequence as each row is inserted (so no writer waits for another for it).
ALTER TABLE audit_events ADD COLUMN chain bigint NOT NULL DEFAULT 1, ADD COLUMN chain_seq bigint;
CREATE SEQUENCE audit_events_seq;
SELECT setval('audit_events_seq', GREATEST(h.seq, 1), h.seq > 0) FROM audit_chain_head h;

-- The writer appends in one transaction (package commit) and learns that
-- its chain moved or was taken over from this, which undoes it.
-- +goose StatementBegin
CREATE FUNCTION connec_audit_chain_moved(chain bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit chain % is not where its writer left it, or no longer its writer''s', chain
        USING ERRCODE = 'CA002';
END $$;
-- +goose StatementEnd

-- A guard that no longer holds ends the commit the same way, naming the
-- refusal (message) and the unit it refused (detail).
-- +goose StatementBegin
CREATE FUNCTION connec_commit_refused(k integer, refusal text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', refusal USING ERRCODE = 'CA003', DETAIL = k::text;
END $$;
-- +goose StatementEnd

-- What the one chain head and the commit's separate guards needed is gone:
-- the guards are the commit's first statement now.
DROP TABLE audit_chain_head;
DROP FUNCTION connec_audit_head_forward;
DROP FUNCTION connec_audit_head_moved;
DROP FUNCTION connec_invoke_guard;
DROP FUNCTION connec_decision_guard;

-- +goose Down
-- Earlier versions cannot verify rows of several chains (hash version 3):
-- going back is refused once there are any, rather than leave a trail they
-- would call broken.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT FROM audit_events WHERE hash_version >= 3) THEN
        RAISE EXCEPTION 'the audit trail holds rows of hash version 3 (several chains), which earlier versions cannot verify';
    END IF;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION connec_decision_guard(decided bigint, token uuid, usr uuid) RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    cur bigint;
    trevoked boolean;
    texpired boolean;
    udisabled boolean;
BEGIN
    SELECT version INTO cur FROM policy_version;
    IF cur IS DISTINCT FROM decided THEN
        RAISE EXCEPTION 'policy is at version %, the call was decided under %', cur, decided USING ERRCODE = 'CNP01';
    END IF;
    IF token IS NOT NULL THEN
        SELECT revoked_at IS NOT NULL, COALESCE(expires_at <= now(), false) INTO trevoked, texpired
            FROM api_tokens WHERE id = token;
        IF NOT FOUND OR trevoked THEN
            RAISE EXCEPTION 'token % is revoked or gone', token USING ERRCODE = 'CNT01';
        ELSIF texpired THEN
            RAISE EXCEPTION 'token % has expired', token USING ERRCODE = 'CNT02';
        END IF;
    END IF;
    IF usr IS NOT NULL THEN
        SELECT disabled_at IS NOT NULL INTO udisabled FROM users WHERE id = usr;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'user % is gone', usr USING ERRCODE = 'CNT03';
        ELSIF udisabled THEN
            RAISE EXCEPTION 'user % is disabled', usr USING ERRCODE = 'CNT04';
        END IF;
    END IF;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION connec_invoke_guard(inst uuid, cred uuid, ver integer) RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    ist text;
    cst text;
    cver integer;
    cexpired boolean;
BEGIN
    SELECT state INTO ist FROM connector_instances WHERE id = inst;
    IF ist = 'disabled' THEN
        RAISE EXCEPTION 'connector instance % is disabled', inst USING ERRCODE = 'CNI01';
    ELSIF ist IS DISTINCT FROM 'enabled' THEN
        RAISE EXCEPTION 'connector instance % is uninstalled', inst USING ERRCODE = 'CNI02';
    END IF;
    IF cred IS NULL THEN
        RETURN;
    END IF;
    SELECT state, version, COALESCE(expires_at <= now(), false) INTO cst, cver, cexpired
        FROM connector_credentials WHERE id = cred AND instance_id = inst;
    IF NOT FOUND OR cst = 'revoked' THEN
        RAISE EXCEPTION 'credential % is revoked', cred USING ERRCODE = 'CNC01';
    ELSIF cst = 'disabled' THEN
        RAISE EXCEPTION 'credential % is disabled', cred USING ERRCODE = 'CNC02';
    ELSIF cexpired THEN
        RAISE EXCEPTION 'credential % has expired', cred USING ERRCODE = 'CNC03';
    ELSIF cver IS DISTINCT FROM ver THEN
        RAISE EXCEPTION 'credential % is at version %, not %', cred, cver, ver USING ERRCODE = 'CNC04';
    END IF;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION connec_audit_head_moved(from_seq bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit chain head moved since seq %', from_seq USING ERRCODE = 'CA001';
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION connec_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.seq > OLD.seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_chain_head only moves forward (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
-- +goose StatementEnd
CREATE TABLE audit_chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint NOT NULL CHECK (seq >= 0),
    hash      bytea NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO audit_chain_head (seq, hash) SELECT head_seq, head_hash FROM audit_chains WHERE id = 1;
CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE ON audit_chain_head
    FOR EACH ROW WHEN (NEW.seq <= OLD.seq) EXECUTE FUNCTION connec_audit_head_forward();
CREATE TRIGGER audit_chain_head_no_delete BEFORE DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION connec_audit_head_forward();
CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION connec_audit_append_only();
DROP FUNCTION connec_audit_chain_moved;
DROP FUNCTION connec_commit_refused;
DROP SEQUENCE audit_events_seq;
ALTER TABLE audit_events DROP COLUMN chain_seq, DROP COLUMN chain;
DROP TABLE audit_chains;
DROP FUNCTION connec_audit_chain_forward;
