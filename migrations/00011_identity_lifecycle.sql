-- +goose Up
-- Users and groups can be disabled: kept, with their tokens, rules and
-- memberships, but granting nothing until enabled again.
--
-- A disabled user authenticates nowhere (identity reads disabled_at; the
-- change is announced on connec_identity by the users_changed trigger), and
-- the commit that lets an operation start refuses it even on a server that
-- has not heard yet (connec_decision_guard raises CNT04).
--
-- A disabled group's members hold none of its rules: its membership links
-- (casbin_rule ptype g) are taken out of the policy while it is disabled and
-- put back when it is enabled. That is a policy change like any other: it
-- bumps the policy version, so the same commit check (CNP01) makes every
-- server decide again at once.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
ALTER TABLE groups ADD COLUMN disabled_at timestamptz;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION connec_membership_mirror() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO casbin_rule (ptype, v0, v1)
            SELECT 'g', 'user:' || NEW.user_id, 'group:' || NEW.group_id
            FROM groups WHERE id = NEW.group_id AND disabled_at IS NULL
            ON CONFLICT DO NOTHING;
        RETURN NEW;
    END IF;
    DELETE FROM casbin_rule WHERE ptype = 'g' AND v0 = 'user:' || OLD.user_id AND v1 = 'group:' || OLD.group_id;
    RETURN OLD;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION connec_group_state_mirror() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.disabled_at IS NOT NULL THEN
        DELETE FROM casbin_rule WHERE ptype = 'g' AND v1 = 'group:' || NEW.id;
    ELSE
        INSERT INTO casbin_rule (ptype, v0, v1)
            SELECT 'g', 'user:' || m.user_id, 'group:' || m.group_id FROM group_members m WHERE m.group_id = NEW.id
            ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER groups_state_mirror AFTER UPDATE OF disabled_at ON groups
    FOR EACH ROW WHEN ((OLD.disabled_at IS NULL) IS DISTINCT FROM (NEW.disabled_at IS NULL))
    EXECUTE FUNCTION connec_group_state_mirror();

-- The decision guard of migration 00008, which also refuses a disabled
-- user: CNT04.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION connec_decision_guard(decided bigint, token uuid, usr uuid) RETURNS void LANGUAGE plpgsql STABLE AS $$
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

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION connec_decision_guard(decided bigint, token uuid, usr uuid) RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE
    cur bigint;
    trevoked boolean;
    texpired boolean;
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
    IF usr IS NOT NULL AND NOT EXISTS (SELECT FROM users WHERE id = usr) THEN
        RAISE EXCEPTION 'user % is gone', usr USING ERRCODE = 'CNT03';
    END IF;
END $$;
-- +goose StatementEnd
DROP TRIGGER groups_state_mirror ON groups;
DROP FUNCTION connec_group_state_mirror;
-- Disabled groups' links come back before the column that hid them goes.
INSERT INTO casbin_rule (ptype, v0, v1)
    SELECT 'g', 'user:' || m.user_id, 'group:' || m.group_id FROM group_members m
    ON CONFLICT DO NOTHING;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION connec_membership_mirror() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO casbin_rule (ptype, v0, v1) VALUES ('g', 'user:' || NEW.user_id, 'group:' || NEW.group_id)
            ON CONFLICT DO NOTHING;
        RETURN NEW;
    END IF;
    DELETE FROM casbin_rule WHERE ptype = 'g' AND v0 = 'user:' || OLD.user_id AND v1 = 'group:' || OLD.group_id;
    RETURN OLD;
END $$;
-- +goose StatementEnd
ALTER TABLE groups DROP COLUMN disabled_at;
ALTER TABLE users DROP COLUMN disabled_at;
