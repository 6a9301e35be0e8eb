package app

import (
	"context"
	"net/http"

	"github.com/connec/connec/gateway"
	"github.com/connec/connec/migrations"
)

// GatewayConfig is the User API Gateway's configuration over this core:
// the REST API under /v1, the web UI under /ui, /metrics and /readyz
// (database reachable, schema current, credential key loaded, and — when
// OpenClaw plugins are installed — their sandbox available, with
// crash-looping plugin instances as a warning).
func (a *App) GatewayConfig() gateway.Config {
	checks := []gateway.Check{
		gateway.DatabaseCheck(a.Pool.Ping),
		gateway.MigrationsCheck(func(ctx context.Context) (int64, int64, error) { return migrations.Status(ctx, a.Pool) }),
		gateway.KeyCheck(func() bool { r, _ := a.Executor.Recipient(); return r != "" }),
	}
	return gateway.Config{
		Service:        a.Service,
		Auth:           a.Identity,
		Names:          a.Identity,
		Log:            a.Log,
		Checks:         append(checks, a.openclawChecks()...),
		InstanceHealth: a.instanceHealth,
	}
}

// mountGateway adds the User API Gateway to mux.
func (a *App) mountGateway(mux *http.ServeMux) {
	gateway.New(a.GatewayConfig()).Mount(mux)
}
