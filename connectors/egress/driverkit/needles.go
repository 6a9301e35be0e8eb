package driverkit

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html"
	"net/url"
	"slices"

	"github.com/connec/connec/vault"
)

// minCore is the shortest base64 run matched: a shorter one is too common
// a string to redact.
const minCore = 6

// Derived returns the values the standard authentication of a credential
// kind derives from its fields and sends: "Bearer <token>" for bearer;
// "<username>:<password>", its Basic header value and the SASL PLAIN
// "\x00<username>\x00<password>" for basic and login. The caller clears
// them (clear) when done.
func Derived(kind string, fields vault.Fields) [][]byte {
	get := func(name string) []byte { return fields[name].Expose() }
	switch kind {
	case "bearer":
		if t := get("token"); len(t) > 0 {
			return [][]byte{append([]byte("Bearer "), t...)}
		}
	case "basic", "login":
		u, p := get("username"), get("password")
		if len(p) == 0 {
			return nil
		}
		pair := slices.Concat(u, []byte(":"), p)
		basic := append([]byte("Basic "), base64.StdEncoding.AppendEncode(nil, pair)...)
		plain := slices.Concat([]byte{0}, u, []byte{0}, p)
		return [][]byte{pair, basic, plain}
	}
	return nil
}

// add makes r match v and its encodings (see Redactor).
func (r *Redactor) add(v []byte) {
	if len(v) < minValue {
		return
	}
	for _, known := range r.values {
		if bytes.Equal(known, v) {
			return
		}
	}
	r.values = append(r.values, slices.Clone(v))
	for _, f := range textForms(v) {
		r.needle(slices.Clone(f))
		r.needle([]byte(hex.EncodeToString(f)))
		r.needle(bytes.ToUpper([]byte(hex.EncodeToString(f))))
		// The whole encoding of the form alone, padding included (the
		// common case: an upstream echoing the value itself)...
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			r.needle(enc.AppendEncode(nil, f))
		}
		// ...and, inside the encoding of any longer text, the part that
		// depends on the form alone, also inside base64 of that base64.
		for _, c := range cores(f) {
			for _, c2 := range cores(c) {
				r.needle(c2)
			}
			r.needle(c)
		}
		clear(f)
	}
}

func (r *Redactor) needle(n []byte) {
	if !r.m.add(n) {
		clear(n)
	}
}

// textForms returns v as it may appear in text: as is, URL query- and
// path-escaped, HTML-escaped and JSON-escaped (with and without <>&
// escaped). Their own encodings are matched too (an upstream may base64 a
// URL it received).
func textForms(v []byte) [][]byte {
	s := string(v)
	out := [][]byte{slices.Clone(v)}
	for _, f := range []string{url.QueryEscape(s), url.PathEscape(s), html.EscapeString(s), jsonEscape(s, true), jsonEscape(s, false)} {
		if !slices.ContainsFunc(out, func(o []byte) bool { return string(o) == f }) {
			out = append(out, []byte(f))
		}
	}
	return out
}

func jsonEscape(s string, escapeHTML bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	_ = enc.Encode(s)
	b := bytes.TrimSpace(buf.Bytes())
	if len(b) >= 2 {
		b = b[1 : len(b)-1]
	}
	return string(b)
}

// cores returns, for each base64 alphabet and each of the three
// alignments v may have inside a longer text, the part of that text's
// base64 that depends on v's bytes alone: it appears in the encoding of
// any text containing v at that alignment, padded or not.
func cores(v []byte) [][]byte {
	var out [][]byte
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for a := range 3 {
			buf := make([]byte, a+len(v))
			copy(buf[a:], v)
			s := enc.AppendEncode(nil, buf)
			clear(buf)
			// Character i covers bits [6i, 6i+6); v holds bits [8a, 8(a+len(v))).
			start, end := (8*a+5)/6, 8*(a+len(v))/6
			if end-start >= minCore {
				out = append(out, slices.Clone(s[start:end]))
			}
			clear(s)
		}
	}
	return out
}
