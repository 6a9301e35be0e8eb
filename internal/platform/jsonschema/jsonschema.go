// Package jsonschema compiles JSON Schemas once and validates JSON documents
// against them, reporting violations as short, caller-safe messages.
package jsonschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	js "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// Schema is a compiled schema together with its source document.
type Schema struct {
	raw      json.RawMessage
	compiled *js.Schema
}

var seq atomic.Int64

// Compile compiles a schema document (draft 2020-12 unless it says otherwise).
func Compile(raw json.RawMessage) (*Schema, error) {
	doc, err := js.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema is not JSON: %w", err)
	}
	c := js.NewCompiler()
	c.DefaultDraft(js.Draft2020)
	c.AssertFormat()
	loc := fmt.Sprintf("mem://connec/schema-%d.json", seq.Add(1))
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("compile schema: %w", err)
	}
	return &Schema{raw: raw, compiled: s}, nil
}

// MustCompile is Compile for schemas written in code.
func MustCompile(raw string) *Schema {
	s, err := Compile(json.RawMessage(raw))
	if err != nil {
		panic(err)
	}
	return s
}

// Raw returns the schema document.
func (s *Schema) Raw() json.RawMessage { return s.raw }

// Violation is one place where a document breaks the schema.
type Violation struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// ValidationError lists the violations found.
type ValidationError struct{ Violations []Violation }

func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		parts = append(parts, v.Path+": "+v.Message)
	}
	return strings.Join(parts, "; ")
}

// ErrNotJSON is returned when the document does not parse.
var ErrNotJSON = errors.New("document is not valid JSON")

// Validate checks doc against the schema. It returns *ValidationError listing
// violations, or ErrNotJSON.
func (s *Schema) Validate(doc json.RawMessage) error {
	v, err := js.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return ErrNotJSON
	}
	if err := s.compiled.Validate(v); err != nil {
		var ve *js.ValidationError
		if !errors.As(err, &ve) {
			return fmt.Errorf("validate: %w", err)
		}
		return &ValidationError{Violations: flatten(ve)}
	}
	return nil
}

// message says what is wrong without repeating the document's value: the
// library's own messages quote it for pattern, format and content
// keywords, and the value may be a secret or a configuration value that
// must stay out of errors and audit rows.
func message(e *js.OutputError) string {
	switch k := e.Kind.(type) {
	case *kind.Pattern:
		return fmt.Sprintf("does not match pattern %s", strconv.Quote(k.Want))
	case *kind.Format:
		return fmt.Sprintf("is not a valid %s", k.Want)
	case *kind.ContentEncoding:
		return fmt.Sprintf("is not %s encoded", k.Want)
	case *kind.ContentMediaType:
		return fmt.Sprintf("is not of media type %s", k.Want)
	}
	return e.String()
}

func flatten(ve *js.ValidationError) []Violation {
	out := ve.BasicOutput()
	var vs []Violation
	seen := map[string]bool{}
	for _, u := range out.Errors {
		if u.Error == nil {
			continue
		}
		msg := message(u.Error)
		// Skip the wrapper entries that only say "validation failed".
		if strings.HasPrefix(msg, "validation failed") {
			continue
		}
		path := u.InstanceLocation
		if path == "" {
			path = "/"
		}
		k := path + "\x00" + msg
		if seen[k] {
			continue
		}
		seen[k] = true
		vs = append(vs, Violation{Path: path, Message: msg})
	}
	if len(vs) == 0 {
		vs = append(vs, Violation{Path: "/", Message: "does not match the schema"})
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Path < vs[j].Path })
	if len(vs) > 20 {
		vs = vs[:20]
	}
	return vs
}
