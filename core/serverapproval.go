package core

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/internal/platform/db"
)

// catalogDecision decides a change of the catalog: connector.admin on it.
func catalogDecision(ctx context.Context) func(c *call) error {
	return func(c *call) error { return c.decide(ctx, authz.ResourceCatalog) }
}

// approvalDecision decides an approval of server name's tools as they are
// now: connector.admin on the catalog, or on every live instance of the
// server. An approval binds every instance of the server (the definition,
// and the schema arguments are checked against, is the type's), so an
// instance's administrator may approve only where it administers them all;
// the first instance it does not is the refusal audited.
func (s *Service) approvalDecision(ctx context.Context, name string) func(c *call) error {
	return func(c *call) error {
		d, err := s.authz.Decide(ctx, authz.Request{Subject: c.p.Subject, Action: c.ev.Action, Resource: authz.ResourceCatalog, Task: c.ev.Task})
		if err != nil || d.Allowed {
			return c.decide(ctx, authz.ResourceCatalog) // (records the failure, or the allow)
		}
		typ := ""
		if s.servers != nil {
			servers, err := s.servers.Servers(ctx)
			if err != nil {
				return c.fail(ctx, err)
			}
			for _, r := range servers {
				if r.Name == name {
					typ = r.Type
				}
			}
		}
		if typ == "" {
			return c.decide(ctx, authz.ResourceCatalog) // no such server: the catalog's
		}
		rows, err := s.pool.Query(ctx, `SELECT owner, id::text FROM connector_instances WHERE type = $1 AND state <> 'uninstalled' ORDER BY id`, typ)
		if err != nil {
			return c.fail(ctx, db.Map(err))
		}
		type inst struct{ owner, id string }
		var insts []inst
		for rows.Next() {
			var i inst
			if err := rows.Scan(&i.owner, &i.id); err != nil {
				rows.Close()
				return c.fail(ctx, db.Map(err))
			}
			insts = append(insts, i)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return c.fail(ctx, db.Map(err))
		}
		if len(insts) == 0 {
			return c.decide(ctx, authz.ResourceCatalog) // no instance to administer: the catalog's
		}
		for _, i := range insts {
			id, err := uuid.Parse(i.id)
			if err != nil {
				return c.fail(ctx, err)
			}
			if err := c.decide(ctx, authz.InstanceResource(callctx.Subject(i.owner), typ, id)); err != nil {
				return err
			}
		}
		c.ev.Reason = fmt.Sprintf("%s; connector.admin on each of the %d instances of %s", c.ev.Reason, len(insts), typ)
		return nil
	}
}
