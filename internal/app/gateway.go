package app

import (
	"context"
	"net/http"

	"github.com/connec/connec/gateway"
	"github.com/connec/connec/migrations"
)

// mountGateway adds the User API Gateway to mux: the REST API under /v1,
// the web UI under /ui, /metrics and /readyz (database reachable, schema
// current, credential key loaded). Run and audit views come from the core
// (gateway.ServiceHistory).
func (a *App) mountGateway(mux *http.ServeMux) {
	gateway.New(gateway.Config{
		Service: a.Service,
		History: gateway.ServiceHistory(a.Service),
		Auth:    a.Identity,
		Names:   a.Identity,
		Log:     a.Log,
		Checks: []gateway.Check{
			gateway.DatabaseCheck(a.Pool.Ping),
			gateway.MigrationsCheck(func(ctx context.Context) (int64, int64, error) { return migrations.Status(ctx, a.Pool) }),
			gateway.KeyCheck(func() bool { r, _ := a.Executor.Recipient(); return r != "" }),
		},
	}).Mount(mux)
}
