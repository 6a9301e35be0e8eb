package core

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"sync"
)

// The operation catalog: every management operation connec serves, once.
// An entry names the operation, its input and output Go types (their JSON
// Schemas are generated from them), the policy actions that make it
// visible, the action a refused call is audited under, its REST route, and
// the use case it runs. MCP tool definitions, the REST routes, the OpenAPI
// document and the README's tables are all derived from it; transports loop
// over it and translate, and name no action of their own.

// Hints describe what an operation does, for clients (MCP tool
// annotations) and the documentation.
type Hints struct {
	Title       string
	ReadOnly    bool
	Destructive bool
	Idempotent  bool
	// OpenWorld: the operation reaches outside connec (a connector's
	// service); whether it is destructive or idempotent then depends on
	// the connector operation, so Destructive and Idempotent say nothing.
	OpenWorld bool
}

// Surface is where an operation is served.
type Surface uint8

// Surfaces.
const (
	OnMCP Surface = 1 << iota
	OnREST
	Everywhere = OnMCP | OnREST
)

// Body says whether a REST route takes a JSON request body.
type Body uint8

// Request bodies.
const (
	NoBody Body = iota
	// OptionalBody: nothing, or a JSON object (action endpoints accept {}).
	OptionalBody
	RequiredBody
)

// Route is an operation's REST binding. Path parameters are named after
// the input's fields (/v1/connector-instances/{instance_id}); Query lists
// the input fields read from the query string; the body holds the rest.
type Route struct {
	Method, Path string
	Query        []string
	Body         Body
	// Hide answers a policy refusal as 404: the URL names one resource,
	// whose existence is not told to those who may not see it.
	Hide bool
	// Created answers 201 (with Location, when set: a path template
	// filled from the output's fields).
	Created  bool
	Location string
	// Status, when set, picks the success status from the output.
	Status func(out any) int
	// Pages: the output is a page (Pager) and ?format=jsonl streams every
	// page from the cursor on.
	Pages bool
	// Example is a request body the documentation shows (and its tests
	// check against the body's schema).
	Example string
}

// Pager is an output that is one page of a longer list.
type Pager interface {
	Items() []any
	Next() string
}

// Entry is one operation of the catalog.
type Entry struct {
	Name        string
	Description string
	Hints       Hints
	Surfaces    Surface
	// Actions: any of them may make the operation usable; a subject
	// holding none of them does not see it.
	Actions []string
	// RefuseAs is the action a call refused before it reached the use case
	// (malformed input) is audited under.
	RefuseAs string
	// Resource, when the operation acts on one fixed resource (catalog,
	// policy), narrows visibility to rules that reach it.
	Resource string
	// Checks says, for the documentation, what the use case decides: the
	// action and the resource it is checked on.
	Checks string
	// MayAsk: the operation may ask the caller's user while it runs (an
	// MCP server's tool does), so transports let it.
	MayAsk bool
	Route  *Route
	// In and Out are the Go types of the input and the output; InSchema
	// and OutSchema their JSON Schemas (2020-12).
	In, Out             reflect.Type
	InSchema, OutSchema json.RawMessage

	args argumentsSchema
	run  func(ctx context.Context, s *Service, raw json.RawMessage) (any, error)
}

// On reports whether e is served on surface.
func (e *Entry) On(surface Surface) bool { return e.Surfaces&surface != 0 }

// Call decodes raw input strictly against the entry's schema and runs the
// use case. Input that does not decode is refused and audited before any
// use case runs.
func (e *Entry) Call(ctx context.Context, s *Service, raw json.RawMessage) (any, error) {
	return e.run(ctx, s, raw)
}

// Refuse audits a call a transport refused before decoding it (a body of
// the wrong media type, an unknown query parameter) and returns the error
// to answer.
func (e *Entry) Refuse(ctx context.Context, s *Service, err error) error {
	if aerr := s.Refuse(ctx, e.Name, e.RefuseAs, err); aerr != nil {
		return aerr
	}
	return err
}

// op declares an entry whose input is In and output Out.
func op[In, Out any](e Entry, fn func(s *Service, ctx context.Context, in In) (Out, error)) *Entry {
	e.In, e.Out = reflect.TypeFor[In](), reflect.TypeFor[Out]()
	e.InSchema, e.OutSchema = mustInputSchema[In](), mustSchema[Out]()
	if e.RefuseAs == "" {
		e.RefuseAs = e.Actions[0]
	}
	if e.Surfaces == 0 {
		e.Surfaces = Everywhere
	}
	e.args = compileArguments(e.InSchema)
	name, refuseAs := e.Name, e.RefuseAs
	e.run = func(ctx context.Context, s *Service, raw json.RawMessage) (any, error) {
		var in In
		if err := e.args.decode(raw, &in); err != nil {
			return nil, s.Refuse(ctx, name, refuseAs, err)
		}
		return fn(s, ctx, in)
	}
	return &e
}

var (
	catalogOnce sync.Once
	catalog     []*Entry
	byName      map[string]*Entry
)

// Catalog returns every management operation, in a stable order (the
// order of the documentation). Callers must not modify the entries.
func Catalog() []*Entry {
	catalogOnce.Do(func() {
		catalog = entries()
		byName = map[string]*Entry{}
		for _, e := range catalog {
			if _, dup := byName[e.Name]; dup {
				panic("catalog: " + e.Name + " declared twice")
			}
			byName[e.Name] = e
		}
	})
	return slices.Clip(catalog)
}

// Lookup returns the catalog entry named name.
func Lookup(name string) (*Entry, bool) {
	Catalog()
	e, ok := byName[name]
	return e, ok
}

// Instructions tells an agent where to start, naming operations as the
// transport spells them (name).
func Instructions(name func(string) string) string {
	return "connec is the governed door to connector instances: list types with " + name(ToolCatalogList) +
		", install and manage instances with " + name("connector.instance.*") + ", and run operations with " + name(ToolOpInvoke) + "."
}
