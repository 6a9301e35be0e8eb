-- +goose Up
-- Identity changes are announced so servers may answer authentication from
-- memory: any change to tokens, users, groups or membership, whoever makes it
-- (a server, the CLI, plain SQL), tells every server to forget every cached
-- principal. Identity changes are rare, so dropping the whole cache is the
-- simplest thing that cannot be wrong. Notifications are sent at commit.
-- +goose StatementBegin
CREATE FUNCTION connec_identity_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('connec_identity', '');
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER api_tokens_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION connec_identity_changed();
CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION connec_identity_changed();
CREATE TRIGGER groups_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION connec_identity_changed();
CREATE TRIGGER group_members_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON group_members
    FOR EACH STATEMENT EXECUTE FUNCTION connec_identity_changed();

-- +goose Down
DROP TRIGGER group_members_changed ON group_members;
DROP TRIGGER groups_changed ON groups;
DROP TRIGGER users_changed ON users;
DROP TRIGGER api_tokens_changed ON api_tokens;
DROP FUNCTION connec_identity_changed;
