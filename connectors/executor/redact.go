package executor

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/connec/connec/vault"
)

// minRedactLen is the shortest secret value searched for: shorter values
// (a one-letter username) would redact ordinary text and protect nothing.
const minRedactLen = 4

// Redact replaces every occurrence of any credential field value inside the
// strings (and object keys) of a JSON document with vault.Redacted, and
// reports whether it replaced anything. It decodes and re-encodes, so a
// secret escaped differently in the JSON text is still found.
func Redact(doc json.RawMessage, fields vault.Fields) (json.RawMessage, bool, error) {
	secrets := needles(fields)
	if len(secrets) == 0 {
		return doc, false, nil
	}
	if absent(doc, secrets) {
		return doc, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false, err
	}
	changed := false
	v = walk(v, secrets, &changed)
	if !changed {
		return doc, false, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, false, err
	}
	return json.RawMessage(bytes.TrimRight(buf.Bytes(), "\n")), true, nil
}

// RedactString replaces credential field values inside s.
func RedactString(s string, fields vault.Fields) string {
	for _, n := range needles(fields) {
		s = strings.ReplaceAll(s, n, vault.Redacted)
	}
	return s
}

// absent reports, cheaply, that no secret can be in doc: the text has no
// \u escape, every secret is made only of characters JSON never escapes,
// and none occurs in the raw text. Anything else takes the full decode-and-scan path.
func absent(doc []byte, secrets []string) bool {
	// Any character may be written as a \u escape.
	if bytes.Contains(doc, []byte(`\u`)) {
		return false
	}
	for _, n := range secrets {
		for i := 0; i < len(n); i++ {
			c := n[i]
			if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '/' || c == '<' || c == '>' || c == '&' {
				return false
			}
		}
		if bytes.Contains(doc, []byte(n)) {
			return false
		}
	}
	return true
}

func needles(fields vault.Fields) []string {
	var out []string
	for _, f := range fields {
		if b := f.Expose(); len(b) >= minRedactLen {
			out = append(out, string(b))
		}
	}
	return out
}

func walk(v any, secrets []string, changed *bool) any {
	switch x := v.(type) {
	case string:
		return redactIn(x, secrets, changed)
	case []any:
		for i := range x {
			x[i] = walk(x[i], secrets, changed)
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[redactIn(k, secrets, changed)] = walk(val, secrets, changed)
		}
		return out
	default:
		return v
	}
}

func redactIn(s string, secrets []string, changed *bool) string {
	for _, n := range secrets {
		if strings.Contains(s, n) {
			s = strings.ReplaceAll(s, n, vault.Redacted)
			*changed = true
		}
	}
	return s
}
