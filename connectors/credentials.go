package connectors

import (
	"context"

	"github.com/connec/connec/internal/db"
)

// revokeAllCredentials revokes every live credential of an instance (on
// uninstall). The row trigger announces each change so executors drop any
// cached key material at once.
func revokeAllCredentials(ctx context.Context, q db.Querier, id InstanceID) error {
	_, err := q.Exec(ctx, `UPDATE connector_credentials SET state = 'revoked', revoked_at = now(), updated_at = now()
WHERE instance_id = $1 AND state <> 'revoked'`, string(id))
	return db.Map(err)
}
