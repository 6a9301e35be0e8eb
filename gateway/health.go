package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Check is one readiness condition /readyz tests. Run returns nil when the
// condition holds; its error text is shown (so it must be safe for anyone
// who can reach /readyz: no addresses, no secrets).
type Check struct {
	Name string
	Run  func(ctx context.Context) error
	// Warn, when set, reports a problem that does not make the server
	// unready (one connector instance crash-looping, say): a non-empty
	// text is shown as the check's warning. Same rules as Run's errors.
	Warn func(ctx context.Context) string
}

// DatabaseCheck holds while ping reaches the database.
func DatabaseCheck(ping func(ctx context.Context) error) Check {
	return Check{Name: "database", Run: func(ctx context.Context) error {
		if err := ping(ctx); err != nil {
			return fmt.Errorf("database unreachable")
		}
		return nil
	}}
}

// MigrationsCheck holds while the schema is at the latest version this
// binary knows (status is migrations.Status on the pool).
func MigrationsCheck(status func(ctx context.Context) (current, latest int64, err error)) Check {
	return Check{Name: "migrations", Run: func(ctx context.Context) error {
		cur, latest, err := status(ctx)
		if err != nil {
			return fmt.Errorf("schema version unreadable")
		}
		if cur != latest {
			return fmt.Errorf("schema at version %d, this binary expects %d", cur, latest)
		}
		return nil
	}}
}

// KeyCheck holds while a credential key is loaded (loaded reports
// Executor.Recipient() != "").
func KeyCheck(loaded func() bool) Check {
	return Check{Name: "credential_key", Run: func(context.Context) error {
		if !loaded() {
			return fmt.Errorf("no credential key loaded")
		}
		return nil
	}}
}

// readyTimeout bounds all of /readyz's checks together.
const readyTimeout = 5 * time.Second

// Readiness is the body of /readyz.
type Readiness struct {
	Status string        `json:"status"` // "ready" or "not_ready"
	Checks []CheckResult `json:"checks"`
}

// CheckResult is one check's outcome.
type CheckResult struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Detail  string `json:"detail,omitempty"`
	Warning string `json:"warning,omitempty"`
}

// readyz answers 200 when every check holds, 503 otherwise. It needs no
// token: load balancers call it.
func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	out := Readiness{Status: "ready", Checks: []CheckResult{}}
	for _, c := range g.checks {
		res := CheckResult{Name: c.Name, OK: true}
		if c.Run != nil {
			if err := c.Run(ctx); err != nil {
				res.OK, res.Detail, out.Status = false, err.Error(), "not_ready"
				g.log.WarnContext(ctx, "readiness check failed", "check", c.Name, "err", err)
			}
		}
		if c.Warn != nil && res.OK {
			res.Warning = c.Warn(ctx)
		}
		out.Checks = append(out.Checks, res)
	}
	status := http.StatusOK
	if out.Status != "ready" {
		status = http.StatusServiceUnavailable
	}
	body, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
