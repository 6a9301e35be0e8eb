-- +goose Up
-- Invocations read an instance and its credential row from an in-process
-- cache on each server. Every change to either table is announced on
-- connec_instance with the instance id (a TRUNCATE with '*': all), so every
-- server sharing the database drops what it holds for that instance.
-- +goose StatementBegin
CREATE FUNCTION connec_instance_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('connec_instance', OLD.id::text);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id) THEN
        PERFORM pg_notify('connec_instance', NEW.id::text);
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER connector_instances_changed AFTER INSERT OR UPDATE OR DELETE ON connector_instances
    FOR EACH ROW EXECUTE FUNCTION connec_instance_changed();

-- +goose StatementBegin
CREATE FUNCTION connec_instance_credential_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('connec_instance', OLD.instance_id::text);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.instance_id IS DISTINCT FROM OLD.instance_id) THEN
        PERFORM pg_notify('connec_instance', NEW.instance_id::text);
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER connector_credentials_instance_changed AFTER INSERT OR UPDATE OR DELETE ON connector_credentials
    FOR EACH ROW EXECUTE FUNCTION connec_instance_credential_changed();

-- +goose StatementBegin
CREATE FUNCTION connec_instances_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('connec_instance', '*');
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER connector_instances_truncated AFTER TRUNCATE ON connector_instances
    FOR EACH STATEMENT EXECUTE FUNCTION connec_instances_truncated();
CREATE TRIGGER connector_credentials_truncated AFTER TRUNCATE ON connector_credentials
    FOR EACH STATEMENT EXECUTE FUNCTION connec_instances_truncated();

-- A cache may be a notification behind the database. The commit that lets an
-- invocation act on what it read (a send's or async run's dispatch row, a
-- cached read's result row) runs this in the same transaction, so it commits
-- only if the instance is enabled and the credential the call used (if any)
-- is still that instance's, active, unexpired and at the version used.
-- Otherwise it raises, and the SQLSTATE says why (connec maps each one):
--   CNI01 instance disabled, CNI02 instance uninstalled (or gone),
--   CNC01 credential revoked (or gone), CNC02 credential disabled,
--   CNC03 credential expired, CNC04 credential rotated since it was read.
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

-- +goose Down
DROP FUNCTION connec_invoke_guard;
DROP TRIGGER connector_credentials_truncated ON connector_credentials;
DROP TRIGGER connector_instances_truncated ON connector_instances;
DROP FUNCTION connec_instances_truncated;
DROP TRIGGER connector_credentials_instance_changed ON connector_credentials;
DROP FUNCTION connec_instance_credential_changed;
DROP TRIGGER connector_instances_changed ON connector_instances;
DROP FUNCTION connec_instance_changed;
