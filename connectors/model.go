package connectors

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
)

// InstanceID is a connector instance's stable id (a uuid), used in policy
// rules and audit rows. Ids are never reused.
type InstanceID string

// UUID returns the id as a uuid (zero if malformed).
func (id InstanceID) UUID() uuid.UUID {
	u, _ := uuid.Parse(string(id))
	return u
}

// Instance states.
const (
	StateEnabled     = "enabled"
	StateDisabled    = "disabled"
	StateUninstalled = "uninstalled"
)

// Instance is an installed connector.
type Instance struct {
	ID            InstanceID      `json:"id"`
	Type          string          `json:"type"`
	DisplayName   string          `json:"display_name"`
	Owner         callctx.Subject `json:"owner"`
	ProjectID     string          `json:"project_id,omitempty"`
	Config        json.RawMessage `json:"config"`
	Limits        Limits          `json:"limits"`
	State         string          `json:"state"`
	CreatedBy     callctx.Subject `json:"created_by"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	UninstalledAt *time.Time      `json:"uninstalled_at,omitempty"`
}

// InstallInput is what connector.instance.install takes.
type InstallInput struct {
	Type        string          `json:"type"`
	DisplayName string          `json:"display_name"`
	Owner       string          `json:"owner,omitempty"`
	ProjectID   string          `json:"project_id,omitempty"`
	Config      json.RawMessage `json:"config,omitempty"`
	Limits      *Limits         `json:"limits,omitempty"`
	Enable      bool            `json:"enable,omitempty"`
}

// Limits are an instance's rate limits, enforced across every server
// sharing the database. A zero limit means none.
type Limits struct {
	PerSubject  *RateLimit `json:"per_subject,omitempty"`
	PerInstance *RateLimit `json:"per_instance,omitempty"`
}

// RateLimit allows Requests invocations per window of WindowSeconds.
type RateLimit struct {
	Requests      int `json:"requests"`
	WindowSeconds int `json:"window_seconds"`
}

// ListInput filters connector.instance.list.
type ListInput struct {
	Owner              string `json:"owner,omitempty"`
	ProjectID          string `json:"project_id,omitempty"`
	Type               string `json:"type,omitempty"`
	IncludeUninstalled bool   `json:"include_uninstalled,omitempty"`
}

// InvokeInput is what connector.op.invoke takes.
type InvokeInput struct {
	InstanceID string          `json:"instance_id"`
	Operation  string          `json:"operation"`
	Arguments  json.RawMessage `json:"arguments,omitempty"`
	TimeoutMS  int64           `json:"timeout_ms,omitempty"`
	// IdempotencyKey makes a send-kind operation execute at most once per
	// instance within IdempotencyTTL; a repeat returns the first outcome.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// InvokeResult is an operation's validated output.
type InvokeResult struct {
	RunID      string          `json:"run_id"`
	Status     string          `json:"status"`
	InstanceID InstanceID      `json:"instance_id"`
	Operation  string          `json:"operation"`
	Output     json.RawMessage `json:"output,omitempty"`
	Truncated  bool            `json:"truncated,omitempty"`
	Replayed   bool            `json:"replayed,omitempty"`
	DurationMS int64           `json:"duration_ms"`
}

// CatalogType is one entry of connector.catalog.list.
type CatalogType = TypeSpec
