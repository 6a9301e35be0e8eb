// Package driverkit holds what connector drivers that reach the network
// share: credential redaction, the mapping of network errors to connec's
// fault types, and connections bound to the invocation's context.
package driverkit

import (
	"bytes"
	"encoding/json"
	"sync/atomic"
	"unicode/utf8"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/vault"
)

// Redacted replaces every credential occurrence.
const Redacted = vault.Redacted

// Redactor replaces credential values, and the encodings of them an
// upstream may echo back, with [REDACTED]. For each value it knows (see
// needles.go for the exact list) it matches:
//
//   - the value and its URL query and path escapes, HTML escape and JSON
//     escapes;
//   - hex of each of those, lower and upper case;
//   - base64 of each, standard and URL alphabets, padded or not, at all
//     three alignments (so the value is found inside the base64 of a longer
//     text, such as "Bearer <token>" or a JSON dump of request headers), and
//     base64 of that base64 (nested once);
//
// in the text as it is and in its percent-decoded (%XX either case),
// JSON-unescaped (\uXXXX, \/, ...) and HTML-unescaped (&#NN;, &#xHH;,
// &name;) readings, whatever the content type. Which values: every secret
// field of the credential of at least 4 bytes, and every value declared
// with Add (the values a driver derives from the credential and sends,
// such as "Bearer <token>" or "user:password"). Identifier fields
// (connectors.IdentifierFields: a username) are matched only inside the
// values derived from them, so a short username such as "api" does not
// shred unrelated text such as a path /api/echo. A nil *Redactor redacts
// nothing.
//
// Build a Redactor (NewRedactor, ForInvocation, Add) before using it; its
// other methods are safe for concurrent use.
type Redactor struct {
	m        matcher
	arena    [][]byte // the needles' bytes, wiped by Wipe
	values   [][]byte // copies of the values, wiped by Wipe
	findings *connectors.Findings
	found    atomic.Bool
}

// minValue is the shortest credential field matched on its own: shorter
// values (a one-letter password) would redact ordinary text. Values
// derived from it (user:password) are still matched.
const minValue = 4

// Found reports whether r has replaced anything so far: drivers tell the
// executor (Invocation.Findings) so the audit row records it.
func (r *Redactor) Found() bool { return r != nil && r.found.Load() }

// NewRedactor returns a redactor for every secret field of a credential
// (nil fields are fine; identifier fields are left to the derived values)
// and for extra values, such as a derived "user:password".
func NewRedactor(fields vault.Fields, extra ...[]byte) *Redactor {
	r := newRedactor(fields, extra)
	r.m.build()
	return r
}

func newRedactor(fields vault.Fields, extra [][]byte) *Redactor {
	r := &Redactor{}
	for _, name := range fields.Names() {
		if !connectors.IdentifierFields[name] {
			r.add(fields[name].Expose())
		}
	}
	for _, e := range extra {
		r.add(e)
	}
	return r
}

// ForInvocation returns the redactor for one invocation: the credential's
// secret fields, the values its kind's standard authentication derives
// (Derived), and the values declared for the invocation so far. Values
// later given to Add are declared in the invocation's Findings too, so the
// executor's own redaction of the result and errors covers them.
func ForInvocation(inv connectors.Invocation) *Redactor {
	derived := Derived(inv.CredentialKind, inv.Credential)
	r := newRedactor(inv.Credential, derived)
	for _, d := range derived {
		clear(d)
	}
	for _, s := range inv.Findings.SentValues() {
		r.add(s.Expose())
	}
	r.m.build()
	r.findings = inv.Findings
	return r
}

// Add declares a value the driver derived from the credential and sends
// (a header value, an AUTH PLAIN blob): r redacts it and its encodings,
// and so does the executor. Values under 4 bytes are ignored. r keeps
// copies; Wipe clears them.
func (r *Redactor) Add(v []byte) {
	if len(v) < minValue {
		return
	}
	r.add(v)
	r.m.build()
	r.findings.Sent(v)
}

// MaxLen is how many bytes the longest match may occupy in a text, escapes
// included: read this many bytes past a cut so that Cut sees any value
// crossing it.
func (r *Redactor) MaxLen() int {
	if r == nil {
		return 0
	}
	return r.m.max * maxEntity
}

// Empty reports whether r redacts nothing.
func (r *Redactor) Empty() bool { return r == nil || len(r.m.index) == 0 }

func (r *Redactor) spans(b []byte) []span {
	if r == nil {
		return nil
	}
	sp := r.m.spans(b)
	if len(sp) > 0 {
		r.found.Store(true)
	}
	return sp
}

// Bytes returns b with every known value replaced. It returns b itself
// when nothing matches.
func (r *Redactor) Bytes(b []byte) []byte {
	sp := r.spans(b)
	if len(sp) == 0 {
		return b
	}
	return replace(b, sp, Redacted)
}

// String returns s with every known value replaced.
func (r *Redactor) String(s string) string {
	if r.Empty() {
		return s
	}
	sp := r.spans([]byte(s))
	if len(sp) == 0 {
		return s
	}
	return string(replace([]byte(s), sp, Redacted))
}

// Contains reports whether b holds any known value.
func (r *Redactor) Contains(b []byte) bool {
	return r != nil && len(r.m.spans(b)) > 0
}

// Cut returns the first n bytes of b, redacted. The cut moves back to a
// UTF-8 boundary and to the start of any known value (in any of its
// encodings) that crosses it, so no fragment of a value survives. b should
// extend MaxLen bytes past n when the source has them.
func (r *Redactor) Cut(b []byte, n int) []byte {
	if len(b) <= n {
		return r.Bytes(b)
	}
	sp := r.spans(b)
	cut := n
	for moved := true; moved; {
		moved = false
		for cut > 0 && cut > n-utf8.UTFMax && !utf8.RuneStart(b[cut]) {
			cut--
		}
		for _, s := range sp {
			if s.start < cut && cut < s.end {
				cut, moved = s.start, true
			}
		}
	}
	keep := sp[:0:0]
	for _, s := range sp {
		if s.end <= cut {
			keep = append(keep, s)
		}
	}
	return replace(b[:cut], keep, Redacted)
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
	for _, c := range r.arena {
		clear(c[:cap(c)])
	}
	for _, v := range r.values {
		clear(v)
	}
	r.m = matcher{}
	r.arena, r.values = nil, nil
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// JSON redacts a JSON document: its strings, object keys and numbers, as
// Value does, after decoding (so a value escaped differently in the JSON
// text is still found). It returns doc itself, and false, when nothing was
// replaced.
func (r *Redactor) JSON(doc []byte) ([]byte, bool, error) {
	if r.Empty() {
		return doc, false, nil
	}
	// Without a backslash the document's strings are its text as it is,
	// so a scan of the text sees all there is.
	if bytes.IndexByte(doc, '\\') < 0 && !r.Contains(doc) {
		return doc, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false, err
	}
	changed := false
	v = r.walk(v, &changed)
	if !changed {
		return doc, false, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, false, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), true, nil
}

func (r *Redactor) walk(v any, changed *bool) any {
	str := func(s string) string {
		out := r.String(s)
		if out != s {
			*changed = true
		}
		return out
	}
	switch x := v.(type) {
	case string:
		return str(x)
	case json.Number:
		if s := str(string(x)); s != string(x) {
			return s
		}
		return x
	case []any:
		for i := range x {
			x[i] = r.walk(x[i], changed)
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[str(k)] = r.walk(e, changed)
		}
		return out
	default:
		return v
	}
}
