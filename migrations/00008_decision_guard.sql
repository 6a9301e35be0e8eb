-- +goose Up
-- The commit that lets an operation start (its decision row) also checks that
-- what the call was decided with is still current: the policy version it was
-- decided under (a rule or membership change made through any server bumps
-- it), and the API token it authenticated with (not revoked, not expired,
-- not deleted) and its user. Another server may not have heard of such a
-- change yet; this check needs no notification. migrations.DecisionGuardSQL
-- is the plain-SQL fast path; this function only names the refusal:
--   CNP01 the policy moved (the caller decides again and retries);
--   CNT01 the token is revoked or gone; CNT02 it expired; CNT03 the user is gone.
-- +goose StatementBegin
CREATE FUNCTION connec_decision_guard(decided bigint, token uuid, usr uuid) RETURNS void LANGUAGE plpgsql STABLE AS $$
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

-- +goose Down
DROP FUNCTION connec_decision_guard;
