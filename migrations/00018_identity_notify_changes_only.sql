-- +goose Up
-- A new token, user or group changes no principal anyone holds: only
-- changes and removals of those (and any change of membership) are
-- announced, so that minting a token (an orchestrator does, per task) no
-- longer has every server forget every remembered token and re-read every
-- resource subscriber. A new membership is announced: it adds a group.
DROP TRIGGER api_tokens_changed ON api_tokens;
DROP TRIGGER users_changed ON users;
DROP TRIGGER groups_changed ON groups;
CREATE TRIGGER api_tokens_changed AFTER UPDATE OR DELETE OR TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION connec_identity_changed();
CREATE TRIGGER users_changed AFTER UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION connec_identity_changed();
CREATE TRIGGER groups_changed AFTER UPDATE OR DELETE OR TRUNCATE ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION connec_identity_changed();

-- +goose Down
DROP TRIGGER api_tokens_changed ON api_tokens;
DROP TRIGGER users_changed ON users;
DROP TRIGGER groups_changed ON groups;
CREATE TRIGGER api_tokens_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION connec_identity_changed();
CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION connec_identity_changed();
CREATE TRIGGER groups_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION connec_identity_changed();
