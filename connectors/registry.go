package connectors

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connec/connec/internal/platform/jsonschema"
	"github.com/connec/connec/vault"
)

// Kind is what an operation does, and so which action policy checks.
type Kind string

// Operation kinds.
const (
	KindRead  Kind = "read"
	KindSend  Kind = "send"
	KindAdmin Kind = "admin"
)

// Action is the policy action an invocation of an operation of kind k is
// decided under: connector.read, connector.send or connector.admin (the
// core checks that these are its actions).
func (k Kind) Action() string {
	switch k {
	case KindSend, KindAdmin:
		return "connector." + string(k)
	}
	return "connector.read"
}

// Operation declares one operation of a connector type.
type Operation struct {
	Name        string          `json:"name"`
	Kind        Kind            `json:"kind"`
	Description string          `json:"description"`
	Input       json.RawMessage `json:"input_schema" jsonschema:"JSON Schema of the operation's arguments."`
	Output      json.RawMessage `json:"output_schema" jsonschema:"JSON Schema of the operation's output."`
	// Timeout caps one execution; a caller may ask for less, never more.
	Timeout time.Duration `json:"-"`
	// TimeoutMS is Timeout as shown in the catalog.
	TimeoutMS int64 `json:"timeout_ms"`
	// Async operations return a run id at once; connector.run.get reports
	// their progress and result.
	Async bool `json:"async,omitempty"`
}

// TypeSpec declares a connector type: its operations, configuration,
// accepted credential kinds and the hosts it may reach.
type TypeSpec struct {
	Name            string          `json:"name"`
	Version         string          `json:"version"`
	Description     string          `json:"description"`
	Operations      []Operation     `json:"operations"`
	ConfigSchema    json.RawMessage `json:"config_schema" jsonschema:"JSON Schema of an instance's configuration."`
	CredentialKinds []string        `json:"credential_kinds"`
	// CredentialRequired refuses invocations of instances without a live
	// credential.
	CredentialRequired bool     `json:"credential_required"`
	EgressHosts        []string `json:"egress_hosts"`
}

// Invocation is what a driver receives for one operation. Credential holds
// unsealed secret fields and is set only by the executor.
type Invocation struct {
	InstanceID string
	Config     json.RawMessage
	Operation  string
	Args       json.RawMessage
	// CredentialKind names the kind of Credential ("" when none).
	CredentialKind string
	Credential     vault.Fields
	// Egress is the only way a driver may reach the network: it refuses
	// hosts the type and the instance do not allow.
	Egress Egress
	// Findings collects what the driver reports about this invocation
	// (e.g. that it redacted credential material), for the audit row.
	Findings *Findings
}

// Findings is what a driver reports about one invocation: whether it
// redacted credential material, and the values it derived from the
// credential and sent.
type Findings struct {
	redacted atomic.Bool
	mu       sync.Mutex
	sent     []vault.Secret
}

// Sent declares a value the driver derived from the credential and sends
// (an Authorization header's value, a user:password pair, an AUTH PLAIN
// blob): the executor redacts it, and its encodings, from the result and
// from errors as it does the credential's own fields. f keeps a copy,
// wiped when the invocation ends.
func (f *Findings) Sent(v []byte) {
	if f == nil || len(v) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, vault.NewSecret(v))
}

// SentValues returns the values declared with Sent.
func (f *Findings) SentValues() []vault.Secret {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

// Wipe wipes the values declared with Sent.
func (f *Findings) Wipe() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sent {
		s.Wipe()
	}
	f.sent = nil
}

// MarkRedacted records that the driver replaced credential material.
func (f *Findings) MarkRedacted() {
	if f != nil {
		f.redacted.Store(true)
	}
}

// Redacted reports whether the driver replaced credential material.
func (f *Findings) Redacted() bool { return f != nil && f.redacted.Load() }

// Egress makes a driver's outbound connections, checked against the
// instance's allowlist at dial time (after DNS resolution, and again on
// every redirect).
type Egress interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	// HTTPClient returns a client whose every connection and redirect goes
	// through DialContext's checks.
	HTTPClient() *http.Client
}

// Driver implements a connector type. Only the executor calls Invoke.
type Driver interface {
	Spec() TypeSpec
	Invoke(ctx context.Context, inv Invocation) (json.RawMessage, error)
}

// CompiledType is a registered type with its schemas compiled once.
type CompiledType struct {
	Spec   TypeSpec
	Driver Driver
	Config *jsonschema.Schema
	ops    map[string]*CompiledOp
	// actions maps each operation to the action it is decided under.
	actions map[string]string
}

// CompiledOp is an operation with compiled schemas.
type CompiledOp struct {
	Operation
	In  *jsonschema.Schema
	Out *jsonschema.Schema
	// SaysRedacted is set when the output declares a top-level boolean
	// "redacted": the executor sets it when any pass redacted, so the
	// result and the run row agree.
	SaysRedacted bool
}

// Op returns the named operation.
func (t *CompiledType) Op(name string) (*CompiledOp, bool) {
	op, ok := t.ops[name]
	return op, ok
}

// Registry holds the connector types compiled into this binary.
type Registry struct {
	mu    sync.RWMutex
	types map[string]*CompiledType
}

// NewRegistry returns a registry holding drivers.
func NewRegistry(drivers ...Driver) (*Registry, error) {
	r := &Registry{types: map[string]*CompiledType{}}
	for _, d := range drivers {
		if err := r.Register(d); err != nil {
			return nil, err
		}
	}
	return r, nil
}

var (
	typeNameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	opNameRe   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}(\.[a-z][a-z0-9_-]{0,63})+$`)
)

// Register compiles and adds a driver's type.
func (r *Registry) Register(d Driver) error {
	spec := d.Spec()
	if !typeNameRe.MatchString(spec.Name) {
		return fmt.Errorf("connector type name %q is not valid", spec.Name)
	}
	ct := &CompiledType{Spec: spec, Driver: d, ops: map[string]*CompiledOp{}, actions: map[string]string{}}
	cfg := spec.ConfigSchema
	if len(cfg) == 0 {
		cfg = json.RawMessage(`{"type":"object","additionalProperties":false}`)
		ct.Spec.ConfigSchema = cfg
	}
	var err error
	if ct.Config, err = jsonschema.Compile(cfg); err != nil {
		return fmt.Errorf("type %s config schema: %w", spec.Name, err)
	}
	for _, k := range spec.CredentialKinds {
		if _, ok := CredentialKinds[k]; !ok {
			return fmt.Errorf("type %s: unknown credential kind %q", spec.Name, k)
		}
	}
	for i, op := range spec.Operations {
		if !opNameRe.MatchString(op.Name) {
			return fmt.Errorf("type %s: operation name %q is not namespace.operation", spec.Name, op.Name)
		}
		if op.Kind != KindRead && op.Kind != KindSend && op.Kind != KindAdmin {
			return fmt.Errorf("type %s: operation %s has kind %q", spec.Name, op.Name, op.Kind)
		}
		if op.Timeout <= 0 {
			return fmt.Errorf("type %s: operation %s needs a timeout cap", spec.Name, op.Name)
		}
		op.TimeoutMS = op.Timeout.Milliseconds()
		ct.Spec.Operations[i] = op
		co := &CompiledOp{Operation: op}
		if co.In, err = jsonschema.Compile(op.Input); err != nil {
			return fmt.Errorf("type %s operation %s input schema: %w", spec.Name, op.Name, err)
		}
		if co.Out, err = jsonschema.Compile(op.Output); err != nil {
			return fmt.Errorf("type %s operation %s output schema: %w", spec.Name, op.Name, err)
		}
		co.SaysRedacted = declaresRedacted(op.Output)
		if _, dup := ct.ops[op.Name]; dup {
			return fmt.Errorf("type %s: operation %s declared twice", spec.Name, op.Name)
		}
		ct.ops[op.Name] = co
		ct.actions[op.Name] = op.Kind.Action()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.types[spec.Name]; dup {
		return fmt.Errorf("connector type %s registered twice", spec.Name)
	}
	r.types[spec.Name] = ct
	return nil
}

// Type returns the named type.
func (r *Registry) Type(name string) (*CompiledType, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.types[name]
	return t, ok
}

// ConnectorTypes returns every type's name (authz.Catalog).
func (r *Registry) ConnectorTypes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.types))
	for name := range r.types {
		out = append(out, name)
	}
	return out
}

// Operations maps each operation of the named type to the action it is
// decided under, nil for an unknown type (authz.Catalog). The map is shared:
// read only.
func (r *Registry) Operations(connectorType string) map[string]string {
	t, ok := r.Type(connectorType)
	if !ok {
		return nil
	}
	return t.actions
}

// Specs returns every type's spec, sorted by name.
func (r *Registry) Specs() []TypeSpec {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]TypeSpec, 0, len(r.types))
	for _, t := range r.types {
		out = append(out, t.Spec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// declaresRedacted reports whether an output schema has a top-level
// boolean "redacted" property.
func declaresRedacted(schema json.RawMessage) bool {
	var s struct {
		Properties map[string]struct {
			Type any `json:"type"`
		} `json:"properties"`
	}
	if json.Unmarshal(schema, &s) != nil {
		return false
	}
	p, ok := s.Properties["redacted"]
	return ok && p.Type == "boolean"
}
