package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/jsonschema"
	"github.com/connec/connec/internal/platform/jsontext"
)

// argumentsSchema is a tool's compiled input schema: what the tool declares
// is exactly what it accepts, and a violation is reported in the caller's
// terms (the argument's path and what is wrong with it), never as a Go type.
type argumentsSchema struct{ compiled *jsonschema.Schema }

func compileArguments(raw json.RawMessage) argumentsSchema {
	s, err := jsonschema.Compile(raw)
	if err != nil {
		panic(fmt.Sprintf("tool input schema does not compile: %v", err))
	}
	return argumentsSchema{compiled: s}
}

// decode checks raw tool arguments against the tool's schema and decodes
// them strictly into v. Every failure is an invalid_argument error naming
// the argument.
func (a argumentsSchema) decode(raw json.RawMessage, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = json.RawMessage(`{}`)
	}
	if raw[0] != '{' {
		return fault.Invalid("arguments", "arguments must be a JSON object")
	}
	// PostgreSQL cannot store NUL in text, and no name, key or filter needs
	// one: refuse it here, naming where it is, rather than fail deep down.
	if path, ok := jsontext.NULAt(raw); ok {
		return fault.Invalid(path, "argument %s must not contain NUL characters (\\u0000)", path)
	}
	if err := a.compiled.Validate(raw); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) && len(ve.Violations) > 0 {
			return violation(ve.Violations[0])
		}
		return fault.Invalid("arguments", "arguments must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// The schema admitted it, so the Go type is stricter than the schema
		// says: a defect, but the caller still gets a plain answer.
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fault.Invalid(te.Field, "argument %s has the wrong type", te.Field)
		}
		return fault.Invalid("arguments", "arguments do not match the tool's input schema")
	}
	if _, err := dec.Token(); err != io.EOF {
		return fault.Invalid("arguments", "arguments must be a single JSON object")
	}
	return nil
}

// violation turns a schema violation into an invalid_argument error: the
// field is the argument's dotted path.
func violation(v jsonschema.Violation) error {
	field := strings.ReplaceAll(strings.Trim(v.Path, "/"), "/", ".")
	msg := v.Message
	if rest, ok := strings.CutPrefix(msg, "missing property "); ok {
		name := strings.Trim(rest, "'")
		return fault.Invalid(jsontext.Join(field, name), "argument %s is required", jsontext.Join(field, name))
	}
	if rest, ok := strings.CutPrefix(msg, "missing properties "); ok {
		names := strings.Split(rest, ", ")
		name := strings.Trim(names[0], "'")
		return fault.Invalid(jsontext.Join(field, name), "argument %s is required", jsontext.Join(field, name))
	}
	if rest, ok := strings.CutPrefix(msg, "additional properties "); ok {
		name, _, _ := strings.Cut(strings.TrimPrefix(rest, "'"), "'")
		return fault.Invalid(jsontext.Join(field, name), "unknown argument %q", jsontext.Join(field, name))
	}
	if field == "" {
		return fault.Invalid("arguments", "arguments: %s", msg)
	}
	return fault.Invalid(field, "argument %s: %s", field, msg)
}
