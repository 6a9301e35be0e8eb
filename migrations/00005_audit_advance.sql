-- +goose Up
-- The audit writer appends a group commit in one round trip: it remembers
-- the chain head its last commit left, links the new rows after it in
-- memory, and sends its statements, this call and the insert together. The
-- call moves the head only if it is still where the writer left it (taking
-- the head row's lock, the chain lock, for the rest of the transaction);
-- if another writer moved it meanwhile, it raises CA001 and the whole
-- transaction rolls back, and the writer re-reads the head under the lock.
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

-- +goose Down
DROP FUNCTION connec_audit_advance;
