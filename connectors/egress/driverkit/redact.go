// Package driverkit holds what connector drivers that reach the network
// share: credential redaction, the mapping of network errors to connec's
// fault types, and connections bound to the invocation's context.
package driverkit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/connec/connec/vault"
)

// Redacted replaces every credential occurrence.
const Redacted = vault.Redacted

// minBase64Value is the shortest value whose base64 forms are matched.
const minBase64Value = 6

// Redactor replaces credential values, and the usual encodings of them,
// with [REDACTED]. For each value it knows it also matches the value's URL
// query and path escapes, HTML and JSON escapes and, for values of at least
// 6 bytes, its base64 forms (standard and URL alphabets, padded and not).
// Values are matched whatever their length, so a very short credential
// field (a username such as "bob") is redacted wherever it appears. A nil
// *Redactor redacts nothing.
type Redactor struct {
	needles [][]byte // longest first
	max     int
	found   atomic.Bool
}

// Found reports whether r has replaced anything so far: drivers tell the
// executor (Invocation.Findings) so the audit row records it.
func (r *Redactor) Found() bool { return r != nil && r.found.Load() }

// NewRedactor returns a redactor for every field of a credential (nil
// fields are fine) and for extra values, such as a derived "user:password"
// whose base64 goes into a Basic Authorization header.
func NewRedactor(fields vault.Fields, extra ...[]byte) *Redactor {
	r := &Redactor{}
	for _, name := range fields.Names() {
		r.Add(fields[name].Expose())
	}
	for _, e := range extra {
		r.Add(e)
	}
	return r
}

// Add makes r redact v and its encodings. Empty values are ignored. r keeps
// copies; Wipe clears them.
func (r *Redactor) Add(v []byte) {
	if len(v) == 0 {
		return
	}
	s := string(v)
	forms := [][]byte{
		slices.Clone(v),
		[]byte(url.QueryEscape(s)),
		[]byte(url.PathEscape(s)),
		[]byte(html.EscapeString(s)),
		jsonEscape(s, true),
		jsonEscape(s, false),
	}
	// The base64 of a very short value is a short, common string: matching
	// it would mangle unrelated text.
	if len(v) >= minBase64Value {
		forms = append(forms,
			[]byte(base64.StdEncoding.EncodeToString(v)),
			[]byte(base64.RawStdEncoding.EncodeToString(v)),
			[]byte(base64.URLEncoding.EncodeToString(v)),
			[]byte(base64.RawURLEncoding.EncodeToString(v)))
	}
	for _, f := range forms {
		if len(f) == 0 || slices.ContainsFunc(r.needles, func(n []byte) bool { return bytes.Equal(n, f) }) {
			clear(f)
			continue
		}
		r.needles = append(r.needles, f)
		r.max = max(r.max, len(f))
	}
	slices.SortStableFunc(r.needles, func(a, b []byte) int { return len(b) - len(a) })
}

func jsonEscape(s string, escapeHTML bool) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	_ = enc.Encode(s)
	b := bytes.TrimSpace(buf.Bytes())
	if len(b) >= 2 {
		b = b[1 : len(b)-1]
	}
	return slices.Clone(b)
}

// MaxLen is the length of the longest value r matches: read this many
// bytes past a cut so that Cut sees any value crossing it.
func (r *Redactor) MaxLen() int {
	if r == nil {
		return 0
	}
	return r.max
}

// Empty reports whether r redacts nothing.
func (r *Redactor) Empty() bool { return r == nil || len(r.needles) == 0 }

// Bytes returns b with every known value replaced. It returns b itself
// when nothing matches.
func (r *Redactor) Bytes(b []byte) []byte {
	if r == nil {
		return b
	}
	for _, n := range r.needles {
		if bytes.Contains(b, n) {
			b = bytes.ReplaceAll(b, n, []byte(Redacted))
			r.found.Store(true)
		}
	}
	return b
}

// String returns s with every known value replaced.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	for _, n := range r.needles {
		if strings.Contains(s, string(n)) {
			s = strings.ReplaceAll(s, string(n), Redacted)
			r.found.Store(true)
		}
	}
	return s
}

// Contains reports whether b holds any known value.
func (r *Redactor) Contains(b []byte) bool {
	if r == nil {
		return false
	}
	for _, n := range r.needles {
		if bytes.Contains(b, n) {
			return true
		}
	}
	return false
}

// Cut returns the first n bytes of b, redacted. The cut moves back to a
// UTF-8 boundary and to the start of any known value that crosses it, so
// no fragment of a value survives. b should extend MaxLen bytes past n
// when the source has them.
func (r *Redactor) Cut(b []byte, n int) []byte {
	if len(b) <= n {
		return r.Bytes(b)
	}
	cut := n
	for cut > 0 && cut > n-utf8.UTFMax && !utf8.RuneStart(b[cut]) {
		cut--
	}
	if r != nil {
		for moved := true; moved; {
			moved = false
			for _, nd := range r.needles {
				lo := max(0, cut-len(nd)+1)
				hi := min(len(b), cut+len(nd)-1)
				if lo >= hi {
					continue
				}
				if i := bytes.Index(b[lo:hi], nd); i >= 0 {
					cut = lo + i
					moved = true
				}
			}
		}
	}
	return r.Bytes(slices.Clone(b[:cut]))
}

// Value redacts a decoded JSON value (as from json.Decoder with UseNumber):
// strings, object keys, and numbers whose text holds a value (which become
// the string [REDACTED]). It returns a new value; v is not changed.
func (r *Redactor) Value(v any) any {
	if r.Empty() {
		return v
	}
	switch x := v.(type) {
	case string:
		return r.String(x)
	case json.Number:
		if s := r.String(string(x)); s != string(x) {
			return s
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.Value(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[r.String(k)] = r.Value(e)
		}
		return out
	default:
		return v
	}
}

// Error returns err with its text redacted. errors.Is and errors.As still
// see err's chain.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := r.String(msg)
	if red == msg {
		if _, ok := err.(*redactedError); ok {
			return err
		}
	}
	return &redactedError{msg: red, err: err}
}

// Wipe clears the values r holds; r redacts nothing afterwards.
func (r *Redactor) Wipe() {
	if r == nil {
		return
	}
	for _, n := range r.needles {
		clear(n)
	}
	r.needles, r.max = nil, 0
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
