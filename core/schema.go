package core

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/fault"
)

// Operation schemas are generated from the Go types the handlers decode and
// return, never written by hand, so a schema cannot disagree with what the
// code accepts or sends (a hand-glued schema once said "required": null,
// which the official TypeScript SDK rejects).
//
// Field tags:
//   - json: the property name; fields without omitempty are required.
//   - jsonschema: the property's description (github.com/google/jsonschema-go).
//   - schema: comma-separated constraints: format=uuid, enum=a|b (or
//     enum=@name, a list kept in code, see enumSets), minLength=1,
//     maxLength=200, minimum=1, maximum=200, pattern=…, type=object (replaces
//     the inferred type). A "values." prefix applies a constraint to a map's
//     values or a slice's items instead.

// typeSchemas override what jsonschema-go infers for types whose JSON is not
// their Go shape.
var typeSchemas = map[reflect.Type]*jsonschema.Schema{
	reflect.TypeFor[json.RawMessage](): {},
	reflect.TypeFor[time.Time]():       {Type: "string", Format: "date-time"},
	reflect.TypeFor[fault.Type]():      {Type: "string", Enum: faultTypes()},
	reflect.TypeFor[audit.Hash]():      {Type: "string", Pattern: "^[0-9a-f]*$", Description: "SHA-256, hex."},
}

// enumSets are the value lists a schema tag names as enum=@name instead of
// spelling them out, so that a tool's schema follows the list the server
// checks against (a hand-written copy once lacked connector.audit.read).
var enumSets = map[string]func() []string{
	"actions":      func() []string { return authz.Actions },
	"rule-actions": func() []string { return append([]string{authz.AnyAction}, authz.Actions...) },
}

func faultTypes() []any {
	var out []any
	for _, t := range fault.Types() {
		out = append(out, string(t))
	}
	return out
}

// schemaOf returns the JSON Schema (2020-12) of values of type t.
func schemaOf(t reflect.Type) (*jsonschema.Schema, error) {
	s, err := jsonschema.ForType(t, &jsonschema.ForOptions{TypeSchemas: typeSchemas})
	if err != nil {
		return nil, err
	}
	if err := constrain(t, s); err != nil {
		return nil, fmt.Errorf("schema of %s: %w", t, err)
	}
	return s, nil
}

// mustSchema is schemaOf for the operation catalog, whose types are fixed at
// compile time: a type that cannot be described is a programming error the
// tests meet at once.
func mustSchema[T any]() json.RawMessage {
	s, err := schemaOf(reflect.TypeFor[T]())
	if err != nil {
		panic(err)
	}
	singleTyped(s)
	raw, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return raw
}

// mustInputSchema is mustSchema for arguments: optional fields are left out
// rather than sent as null, so the schema admits no null (several model
// providers reject type unions in tool parameters).
func mustInputSchema[T any]() json.RawMessage {
	s, err := schemaOf(reflect.TypeFor[T]())
	if err != nil {
		panic(err)
	}
	dropNull(s)
	raw, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return raw
}

func dropNull(s *jsonschema.Schema) {
	if s == nil {
		return
	}
	if len(s.Types) > 0 {
		var keep []string
		for _, t := range s.Types {
			if t != "null" {
				keep = append(keep, t)
			}
		}
		s.Types = keep
		if len(keep) == 1 {
			s.Type, s.Types = keep[0], nil
		}
	}
	for _, p := range s.Properties {
		dropNull(p)
	}
	dropNull(s.Items)
	dropNull(s.AdditionalProperties)
}

// singleTyped spells each nullable schema, {"type": ["null", T], …}, as
// {"anyOf": [{"type": T, …}, {"type": "null"}]}: the same in 2020-12, but
// clients that map tool schemas onto a single-type dialect (the OpenAPI
// subset some model providers take) reject type arrays, and the MCP
// Inspector's portability check flags them.
func singleTyped(s *jsonschema.Schema) {
	if s == nil {
		return
	}
	for _, m := range []map[string]*jsonschema.Schema{s.Properties, s.PatternProperties, s.Defs, s.Definitions} {
		for _, x := range m {
			singleTyped(x)
		}
	}
	for _, list := range [][]*jsonschema.Schema{s.AllOf, s.AnyOf, s.OneOf, s.PrefixItems} {
		for _, x := range list {
			singleTyped(x)
		}
	}
	singleTyped(s.Items)
	singleTyped(s.AdditionalProperties)
	if len(s.Types) != 2 || !slices.Contains(s.Types, "null") {
		return
	}
	branch := *s
	branch.Type, branch.Types = s.Types[0], nil
	if branch.Type == "null" {
		branch.Type = s.Types[1]
	}
	branch.Title, branch.Description = "", "" // (said once, outside)
	*s = jsonschema.Schema{Title: s.Title, Description: s.Description, AnyOf: []*jsonschema.Schema{&branch, {Type: "null"}}}
}

// constrain applies the schema tags of t's fields to s, recursively.
func constrain(t reflect.Type, s *jsonschema.Schema) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s == nil || typeSchemas[t] != nil {
		return nil
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return constrain(t.Elem(), s.Items)
	case reflect.Map:
		return constrain(t.Elem(), s.AdditionalProperties)
	case reflect.Struct:
	default:
		return nil
	}
	for _, f := range reflect.VisibleFields(t) {
		if f.Anonymous || !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		p := s.Properties[name]
		if p == nil {
			continue
		}
		if err := constrain(f.Type, p); err != nil {
			return err
		}
		if tag := f.Tag.Get("schema"); tag != "" {
			if err := applyTag(p, tag); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
	}
	return nil
}

func applyTag(s *jsonschema.Schema, tag string) error {
	for _, kv := range strings.Split(tag, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return fmt.Errorf("schema tag %q: want key=value", kv)
		}
		target := s
		if rest, ok := strings.CutPrefix(k, "values."); ok {
			k = rest
			if target = s.Items; target == nil {
				target = s.AdditionalProperties
			}
			if target == nil {
				return fmt.Errorf("schema tag %q: not a list or map", kv)
			}
		}
		if err := setKeyword(target, k, v); err != nil {
			return fmt.Errorf("schema tag %q: %w", kv, err)
		}
	}
	return nil
}

func setKeyword(s *jsonschema.Schema, k, v string) error {
	num := func() (*float64, error) {
		f, err := strconv.ParseFloat(v, 64)
		return &f, err
	}
	length := func() (*int, error) {
		n, err := strconv.Atoi(v)
		return &n, err
	}
	var err error
	switch k {
	case "format":
		s.Format = v
	case "pattern":
		s.Pattern = v
	case "type":
		s.Type, s.Types = v, nil
	case "enum":
		values := strings.Split(v, "|")
		if name, ok := strings.CutPrefix(v, "@"); ok {
			set, ok := enumSets[name]
			if !ok {
				return fmt.Errorf("unknown enum set %q", name)
			}
			values = set()
		}
		s.Enum = nil
		for _, e := range values {
			s.Enum = append(s.Enum, e)
		}
	case "minLength":
		s.MinLength, err = length()
	case "maxLength":
		s.MaxLength, err = length()
	case "minimum":
		s.Minimum, err = num()
	case "maximum":
		s.Maximum, err = num()
	default:
		return fmt.Errorf("unknown keyword %q", k)
	}
	return err
}

// ErrorSchema is the JSON Schema of an error as connec answers it (a
// fault.Public, or null).
func ErrorSchema() json.RawMessage {
	var s map[string]json.RawMessage
	if err := json.Unmarshal(mustSchema[*fault.Public](), &s); err != nil {
		panic(err)
	}
	s["description"] = json.RawMessage(`"What went wrong (status error): a stable type, a message, details."`)
	raw, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return raw
}

// SchemaOf returns the JSON Schema (2020-12) connec generates for values of
// type t, as the catalog's schemas are generated (for documents that name
// types of their own, such as the REST API's problem details).
func SchemaOf(t reflect.Type) (json.RawMessage, error) {
	s, err := schemaOf(t)
	if err != nil {
		return nil, err
	}
	singleTyped(s)
	return json.Marshal(s)
}
