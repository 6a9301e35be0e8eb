package core

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
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
	Handle        string          `json:"handle" jsonschema:"Short stable name, unique among the owner's live instances; it does not change when the display name does."`
	DisplayName   string          `json:"display_name"`
	Owner         callctx.Subject `json:"owner"`
	ProjectID     string          `json:"project_id,omitempty"`
	Config        json.RawMessage `json:"config" jsonschema:"The instance configuration (the type's config schema); never holds a credential." schema:"type=object"`
	Limits        Limits          `json:"limits"`
	State         string          `json:"state"`
	CreatedBy     callctx.Subject `json:"created_by"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	UninstalledAt *time.Time      `json:"uninstalled_at,omitempty"`
}

// RenameInput is what connector.instance.rename takes.
type RenameInput struct {
	InstanceID  string `json:"instance_id" jsonschema:"Connector instance id." schema:"format=uuid"`
	DisplayName string `json:"display_name" jsonschema:"The new display name; the handle stays." schema:"minLength=1,maxLength=200"`
}

// InstallInput is what connector.instance.install takes.
type InstallInput struct {
	Type        string          `json:"type" jsonschema:"Connector type name from connector.catalog.list." schema:"minLength=1,maxLength=200"`
	DisplayName string          `json:"display_name" schema:"minLength=1,maxLength=200"`
	Handle      string          `json:"handle,omitempty" jsonschema:"Short stable name, unique among the owner's live instances: lowercase letters, digits and single hyphens, starting with a letter (e.g. work-mail). It stays when the display name changes. Derived from display_name when omitted (with -2, -3, … if taken)." schema:"minLength=1,maxLength=40"`
	Owner       string          `json:"owner,omitempty" jsonschema:"Owner subject: user:<uuid> or group:<uuid>. Defaults to the caller."`
	ProjectID   string          `json:"project_id,omitempty" jsonschema:"Scope the instance to one project: it may then only be invoked with that project_id in the task context." schema:"format=uuid"`
	Config      json.RawMessage `json:"config,omitempty" jsonschema:"Instance configuration, validated against the type's config schema." schema:"type=object"`
	Limits      *Limits         `json:"limits,omitempty" jsonschema:"Rate limits enforced across every server: {per_subject|per_instance: {requests, window_seconds}}."`
	Enable      bool            `json:"enable,omitempty" jsonschema:"Enable the instance at once."`
}

// Limits are an instance's rate limits, enforced across every server
// sharing the database. A zero limit means none.
type Limits struct {
	PerSubject  *RateLimit `json:"per_subject,omitempty"`
	PerInstance *RateLimit `json:"per_instance,omitempty"`
}

// RateLimit allows Requests invocations per window of WindowSeconds.
type RateLimit struct {
	Requests      int `json:"requests" schema:"minimum=1,maximum=1000000"`
	WindowSeconds int `json:"window_seconds" schema:"minimum=1,maximum=86400"`
}

// ListInput filters connector.instance.list.
type ListInput struct {
	Owner              string `json:"owner,omitempty" jsonschema:"Only instances of this owner subject."`
	ProjectID          string `json:"project_id,omitempty" jsonschema:"Only instances scoped to this project." schema:"format=uuid"`
	Type               string `json:"type,omitempty" jsonschema:"Only instances of this connector type."`
	IncludeUninstalled bool   `json:"include_uninstalled,omitempty" jsonschema:"Also list uninstalled (tombstoned) instances."`
}

// InvokeInput is what connector.op.invoke takes.
type InvokeInput struct {
	InstanceID string          `json:"instance_id" jsonschema:"Connector instance id." schema:"format=uuid"`
	Operation  string          `json:"operation" jsonschema:"Operation name, e.g. echo.read." schema:"minLength=1,maxLength=200"`
	Arguments  json.RawMessage `json:"arguments,omitempty" jsonschema:"Operation arguments, validated against the operation's input schema." schema:"type=object"`
	TimeoutMS  int64           `json:"timeout_ms,omitempty" jsonschema:"Ask for a shorter timeout than the operation's cap." schema:"minimum=1,maximum=600000"`
	// IdempotencyKey makes a send-kind operation execute at most once per
	// instance within IdempotencyTTL; a repeat returns the first outcome.
	IdempotencyKey string `json:"idempotency_key,omitempty" jsonschema:"Send-kind operations only: execute at most once per instance within 24h; a repeat returns the first outcome." schema:"minLength=1,maxLength=200"`
}

// InvokeResult is an operation's validated output.
type InvokeResult struct {
	RunID      string          `json:"run_id"`
	Status     string          `json:"status"`
	InstanceID InstanceID      `json:"instance_id"`
	Operation  string          `json:"operation"`
	Output     json.RawMessage `json:"output,omitempty" jsonschema:"The operation's output, valid against its output schema (absent while an async run is pending)."`
	Truncated  bool            `json:"truncated,omitempty"`
	Replayed   bool            `json:"replayed,omitempty"`
	DurationMS int64           `json:"duration_ms"`
}

// CatalogType is one entry of connector.catalog.list.
type CatalogType = connectors.TypeSpec
