package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/internal/platform/db"
)

const instanceCols = `id::text, type, handle, display_name, owner, COALESCE(project_id::text, ''), config, limits, state, created_by, created_at, updated_at, uninstalled_at`

// scanInstance reads instanceCols, then any extra columns into extra.
func scanInstance(row pgx.Row, extra ...any) (Instance, error) {
	var in Instance
	var owner, createdBy string
	err := row.Scan(append([]any{&in.ID, &in.Type, &in.Handle, &in.DisplayName, &owner, &in.ProjectID, &in.Config, &in.Limits, &in.State,
		&createdBy, &in.CreatedAt, &in.UpdatedAt, &in.UninstalledAt}, extra...)...)
	in.Owner = subjectOf(owner)
	in.CreatedBy = subjectOf(createdBy)
	return in, err
}

func getInstance(ctx context.Context, q db.Querier, id InstanceID, forUpdate bool) (Instance, error) {
	sql := `SELECT ` + instanceCols + ` FROM connector_instances WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	in, err := scanInstance(q.QueryRow(ctx, sql, string(id)))
	if err != nil {
		return Instance{}, db.Map(err)
	}
	return in, nil
}

// insertInstance inserts in, or returns errHandleTaken if its owner has a
// live instance with its handle (the statement's failure then ends q's
// transaction: retry in a savepoint).
func insertInstance(ctx context.Context, q db.Querier, in Instance) (Instance, error) {
	row := q.QueryRow(ctx, `INSERT INTO connector_instances (type, handle, display_name, owner, project_id, config, limits, state, created_by)
VALUES ($1, $2, $3, $4, NULLIF($5,'')::uuid, $6, $7, $8, $9) RETURNING `+instanceCols,
		in.Type, in.Handle, in.DisplayName, string(in.Owner), in.ProjectID, in.Config, in.Limits, in.State, string(in.CreatedBy))
	out, err := scanInstance(row)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "connector_instances_owner_handle" {
		return Instance{}, errHandleTaken
	}
	if err != nil {
		return Instance{}, db.Map(err)
	}
	return out, nil
}

// errHandleTaken: the owner has a live instance with that handle.
var errHandleTaken = errors.New("handle taken")

func renameInstance(ctx context.Context, q db.Querier, id InstanceID, displayName string) (Instance, error) {
	row := q.QueryRow(ctx, `UPDATE connector_instances SET display_name = $2, updated_at = now()
WHERE id = $1 RETURNING `+instanceCols, string(id), displayName)
	out, err := scanInstance(row)
	if err != nil {
		return Instance{}, db.Map(err)
	}
	return out, nil
}

func setInstanceState(ctx context.Context, q db.Querier, id InstanceID, state string) (Instance, error) {
	row := q.QueryRow(ctx, `UPDATE connector_instances SET state = $2, updated_at = now(),
 uninstalled_at = CASE WHEN $2 = 'uninstalled' THEN now() ELSE uninstalled_at END
WHERE id = $1 RETURNING `+instanceCols, string(id), state)
	out, err := scanInstance(row)
	if err != nil {
		return Instance{}, db.Map(err)
	}
	return out, nil
}

func listInstances(ctx context.Context, q db.Querier, f ListInput) ([]Instance, error) {
	rows, err := q.Query(ctx, `SELECT `+instanceCols+` FROM connector_instances
WHERE ($1 = '' OR owner = $1) AND ($2 = '' OR project_id = NULLIF($2,'')::uuid) AND ($3 = '' OR type = $3)
  AND ($4 OR state <> 'uninstalled')
ORDER BY created_at, id LIMIT 10000`, f.Owner, f.ProjectID, f.Type, f.IncludeUninstalled)
	if err != nil {
		return nil, db.Map(err)
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		in, err := scanInstance(rows)
		if err != nil {
			return nil, db.Map(err)
		}
		out = append(out, in)
	}
	return out, db.Map(rows.Err())
}

// SyncCatalog writes the registry's types into the catalog table.
func SyncCatalog(ctx context.Context, q db.Querier, reg *connectors.Registry) error {
	for _, spec := range reg.Specs() {
		raw, err := json.Marshal(spec)
		if err != nil {
			return fmt.Errorf("encode type %s: %w", spec.Name, err)
		}
		if _, err := q.Exec(ctx, `INSERT INTO connector_types (name, version, description, spec) VALUES ($1,$2,$3,$4)
ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, description = EXCLUDED.description, spec = EXCLUDED.spec, synced_at = now()`,
			spec.Name, spec.Version, spec.Description, raw); err != nil {
			return fmt.Errorf("sync type %s: %w", spec.Name, db.Map(err))
		}
	}
	return nil
}

// getInstanceForInvoke reads an instance and its credential row in one
// round trip: the invocation hot path.
func getInstanceForInvoke(ctx context.Context, q db.Querier, id InstanceID) (Instance, *credRow, error) {
	var in Instance
	var owner, createdBy string
	var cr credRow
	dest := append([]any{&in.ID, &in.Type, &in.DisplayName, &owner, &in.ProjectID, &in.Config, &in.Limits, &in.State, &createdBy,
		&in.CreatedAt, &in.UpdatedAt, &in.UninstalledAt}, cr.dest()...)
	err := q.QueryRow(ctx, `SELECT i.id::text, i.type, i.display_name, i.owner, COALESCE(i.project_id::text, ''), i.config, i.limits,
 i.state, i.created_by, i.created_at, i.updated_at, i.uninstalled_at, `+credRowCols+`
FROM connector_instances i LEFT JOIN LATERAL (SELECT * FROM connector_credentials c WHERE c.instance_id = i.id `+credRowOrder+`) c ON true
WHERE i.id = $1`, string(id)).Scan(dest...)
	if err != nil {
		return Instance{}, nil, db.Map(err)
	}
	in.Owner, in.CreatedBy = subjectOf(owner), subjectOf(createdBy)
	return in, &cr, nil
}
