-- +goose Up
-- Identity: users, groups, membership, API tokens (stored as hashes only).
CREATE TABLE users (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    is_local_operator boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_name_ci ON users (lower(name));
CREATE UNIQUE INDEX users_one_local_operator ON users (is_local_operator) WHERE is_local_operator;

CREATE TABLE groups (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX groups_name_ci ON groups (lower(name));

CREATE TABLE group_members (
    group_id   uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Tokens authenticate users only; they go when their user goes.
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    subject      text NOT NULL GENERATED ALWAYS AS ('user:' || user_id::text) STORED,
    token_hash   bytea NOT NULL UNIQUE,
    name         text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_subject ON api_tokens (subject);

-- Policy rules, Casbin layout. ptype p: v0 subject, v1 resource, v2 action,
-- v3 condition, v4 effect. ptype g: v0 member, v1 group (mirrored from
-- group_members by trigger, so membership has one source of truth).
CREATE TABLE casbin_rule (
    id    bigserial PRIMARY KEY,
    ptype text NOT NULL,
    v0    text NOT NULL DEFAULT '',
    v1    text NOT NULL DEFAULT '',
    v2    text NOT NULL DEFAULT '',
    v3    text NOT NULL DEFAULT '',
    v4    text NOT NULL DEFAULT '',
    v5    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT casbin_rule_unique UNIQUE (ptype, v0, v1, v2, v3, v4, v5)
);
CREATE INDEX casbin_rule_v0 ON casbin_rule (ptype, v0);

-- The policy version: bumped and announced on every change to casbin_rule,
-- whoever made it, in the same transaction as the change.
CREATE TABLE policy_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO policy_version (version) VALUES (1);

-- +goose StatementBegin
CREATE FUNCTION connec_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v bigint;
BEGIN
    UPDATE policy_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('connec_policy', v::text);
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER casbin_rule_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON casbin_rule
    FOR EACH STATEMENT EXECUTE FUNCTION connec_policy_changed();

-- +goose StatementBegin
CREATE FUNCTION connec_membership_mirror() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER group_members_mirror AFTER INSERT OR DELETE ON group_members
    FOR EACH ROW EXECUTE FUNCTION connec_membership_mirror();

-- Catalog: connector types registered in code, synced here at start.
CREATE TABLE connector_types (
    name        text PRIMARY KEY,
    version     text NOT NULL,
    description text NOT NULL,
    spec        jsonb NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now()
);

-- Instances: stable ids, never reused; uninstall leaves a tombstone.
CREATE TABLE connector_instances (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    type           text NOT NULL REFERENCES connector_types (name),
    display_name   text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    owner          text NOT NULL CHECK (owner ~ '^(user|group):[0-9a-f-]{36}$'),
    project_id     uuid,
    config         jsonb NOT NULL DEFAULT '{}',
    state          text NOT NULL DEFAULT 'disabled' CHECK (state IN ('enabled', 'disabled', 'uninstalled')),
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    uninstalled_at timestamptz
);
CREATE INDEX connector_instances_owner ON connector_instances (owner) WHERE state <> 'uninstalled';

-- Credentials: ciphertext only. The secret is sealed with a per-version data
-- key (DEK); the DEK is wrapped with age to the key-encryption key named by
-- key_id. Plaintext and KEK material never enter the database.
CREATE TABLE connector_credentials (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    instance_id uuid NOT NULL REFERENCES connector_instances (id),
    kind        text NOT NULL,
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled', 'revoked')),
    version     integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    fields      text[] NOT NULL DEFAULT '{}',
    ciphertext  bytea NOT NULL,
    wrapped_dek bytea NOT NULL,
    key_id      text NOT NULL,
    expires_at  timestamptz,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE UNIQUE INDEX connector_credentials_one_live ON connector_credentials (instance_id) WHERE state <> 'revoked';
CREATE INDEX connector_credentials_key_id ON connector_credentials (key_id);

-- Any change to a credential row is announced so every server drops cached
-- data keys for it at once.
-- +goose StatementBegin
CREATE FUNCTION connec_credential_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('connec_credential', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER connector_credentials_changed AFTER UPDATE OR DELETE ON connector_credentials
    FOR EACH ROW EXECUTE FUNCTION connec_credential_changed();

-- Audit trail: one row per call, allowed or denied, and every management
-- change. Append-only and tamper-evident: rows form a hash chain in seq
-- order (hash = SHA-256 over a versioned canonical encoding of every field
-- plus the previous row's hash; computed by connec, see package audit), and
-- the connec role cannot UPDATE, DELETE or TRUNCATE them. seq is assigned
-- gap-free under the chain lock: the single audit_chain_head row, locked FOR
-- UPDATE in the same transaction as the insert, which also serialises several
-- connec servers sharing one database.
CREATE TABLE audit_chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint NOT NULL CHECK (seq >= 0),
    hash      bytea NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO audit_chain_head (seq, hash) VALUES (0, decode(repeat('00', 32), 'hex'));

-- Partitioned by month on at; connec creates the current and next month's
-- partitions (audit.EnsurePartitions) and the default partition catches any
-- row no month partition takes, so an insert never fails for want of one.
-- Optional text fields are NULL, never '', so each row has one encoding.
CREATE TABLE audit_events (
    seq            bigint NOT NULL CHECK (seq >= 1),
    at             timestamptz NOT NULL,
    request_id     text NOT NULL,
    transport      text NOT NULL,
    subject        text NOT NULL,
    subject_groups text[] NOT NULL,
    action         text NOT NULL,
    tool           text NOT NULL,
    connector_type text CHECK (connector_type <> ''),
    instance_id    uuid,
    operation      text CHECK (operation <> ''),
    resource       text CHECK (resource <> ''),
    decision       text NOT NULL CHECK (decision IN ('allow', 'deny')),
    reason         text NOT NULL,
    policy_version bigint,
    task_id        uuid,
    project_id     uuid,
    run_id         uuid,
    job_id         uuid,
    agent_id       text CHECK (agent_id <> ''),
    status         text NOT NULL CHECK (status IN ('ok', 'error')),
    error_type     text CHECK (error_type <> ''),
    duration_us    bigint NOT NULL CHECK (duration_us >= 0),
    hash_version   smallint NOT NULL,
    prev_hash      bytea NOT NULL,
    hash           bytea NOT NULL,
    PRIMARY KEY (seq, at)
) PARTITION BY RANGE (at);
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_instance ON audit_events (instance_id, at);
CREATE INDEX audit_events_task ON audit_events (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX audit_events_subject ON audit_events (subject, at);

-- +goose StatementBegin
CREATE FUNCTION connec_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
-- +goose StatementEnd
-- Row triggers on the partitioned table are cloned onto every partition,
-- present and future, so statements aimed at a partition are refused too.
-- Statement triggers fire only for the table named, so the parent refuses
-- even statements matching no row, and TRUNCATE is refused per partition
-- (audit.EnsurePartitions adds it to each month it creates).
CREATE TRIGGER audit_events_append_only_row BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION connec_audit_append_only();
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION connec_audit_append_only();
CREATE TRIGGER audit_events_default_no_truncate BEFORE TRUNCATE ON audit_events_default
    FOR EACH STATEMENT EXECUTE FUNCTION connec_audit_append_only();

-- The head only moves forward and never goes away.
-- +goose StatementBegin
CREATE FUNCTION connec_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.seq > OLD.seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_chain_head only moves forward (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
-- +goose StatementEnd
CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE OR DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION connec_audit_head_forward();
CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION connec_audit_append_only();

-- +goose Down
DROP TABLE audit_events;
DROP TABLE audit_chain_head;
DROP FUNCTION connec_audit_head_forward;
DROP FUNCTION connec_audit_append_only;
DROP TABLE connector_credentials;
DROP FUNCTION connec_credential_changed;
DROP TABLE connector_instances;
DROP TABLE connector_types;
DROP TABLE group_members;
DROP FUNCTION connec_membership_mirror;
DROP TABLE casbin_rule;
DROP FUNCTION connec_policy_changed;
DROP TABLE policy_version;
DROP TABLE api_tokens;
DROP TABLE groups;
DROP TABLE users;
