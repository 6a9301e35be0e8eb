package connectors

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"sync"

	"github.com/connec/connec/internal/platform/jsonschema"
)

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
func (r *Registry) Register(d Driver) error { return r.put(d, false) }

// Replace compiles d's type and puts it in place of the type of that name
// (a type changed at run time: an MCP server's approved tools), returning
// the driver it replaced.
func (r *Registry) Replace(d Driver) (Driver, error) {
	old, ok := r.Type(d.Spec().Name)
	if !ok {
		return nil, fmt.Errorf("connector type %s is not registered", d.Spec().Name)
	}
	if err := r.put(d, true); err != nil {
		return nil, err
	}
	return old.Driver, nil
}

// Remove takes the named type out (a type removed at run time), returning
// its driver.
func (r *Registry) Remove(name string) (Driver, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.types[name]
	if !ok {
		return nil, false
	}
	delete(r.types, name)
	return t.Driver, true
}

func (r *Registry) put(d Driver, replace bool) error {
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
	if _, dup := r.types[spec.Name]; dup && !replace {
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
