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
	var hexBuf []byte // scratch: needle copies what it keeps
	for _, f := range textForms(v) {
		r.needle(f)
		hexBuf = hex.AppendEncode(hexBuf[:0], f)
		r.needle(hexBuf)
		upper := bytes.ToUpper(hexBuf)
		r.needle(upper)
		clear(upper)
		// The whole encoding of the form alone, padding included (the
		// common case: an upstream echoing the value itself)...
		hexBuf = base64.StdEncoding.AppendEncode(hexBuf[:0], f)
		r.needle(hexBuf)
		hexBuf = base64.URLEncoding.AppendEncode(hexBuf[:0], f)
		r.needle(hexBuf)
		// ...and, inside the encoding of any longer text, the part that
		// depends on the form alone, also inside base64 of that base64.
		var s cores
		s.each(0, f, func(c []byte) {
			s.each(1, c, r.needle)
			r.needle(c)
		})
		s.wipe()
		clear(f)
	}
	clear(hexBuf)
}

// needle makes r match a copy of n, kept in r's arena.
func (r *Redactor) needle(n []byte) {
	if len(n) < minNeedle {
		return
	}
	if len(r.arena) == 0 || cap(r.arena[len(r.arena)-1])-len(r.arena[len(r.arena)-1]) < len(n) {
		r.arena = append(r.arena, make([]byte, 0, max(arenaChunk, len(n))))
	}
	chunk := &r.arena[len(r.arena)-1]
	at := len(*chunk)
	*chunk = append(*chunk, n...)
	r.m.add((*chunk)[at:len(*chunk):len(*chunk)])
}

// arenaChunk is the size of the blocks needles are kept in: one
// allocation for many needles, and one place to wipe.
const arenaChunk = 4096

// plainByte reports bytes that no escaping scheme changes.
func plainByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}

// textForms returns v as it may appear in text: as is, URL query- and
// path-escaped, HTML-escaped and JSON-escaped (with and without <>&
// escaped). Their own encodings are matched too (an upstream may base64 a
// URL it received). The forms are new slices the caller clears.
func textForms(v []byte) [][]byte {
	out := [][]byte{slices.Clone(v)}
	if !slices.ContainsFunc(v, func(c byte) bool { return !plainByte(c) }) {
		return out // every form is v itself
	}
	s := string(v)
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

// cores computes, for each base64 alphabet and each of the three
// alignments a value may have inside a longer text, the part of that
// text's base64 that depends on the value's bytes alone: it appears in the
// encoding of any text containing the value at that alignment, padded or
// not. The URL alphabet's core is the standard one with '+' and '/'
// swapped for '-' and '_', given only when it differs. Two levels of
// scratch space let a core's own cores be computed inside the callback.
type cores struct {
	in, out, url [2][]byte
}

// each calls f with each core of v, a slice valid only during the call.
func (s *cores) each(level int, v []byte, f func([]byte)) {
	for a := range 3 {
		in := append(s.in[level][:0], make([]byte, a)...)
		in = append(in, v...)
		s.in[level] = in
		out := base64.RawStdEncoding.AppendEncode(s.out[level][:0], in)
		s.out[level] = out
		// Character i covers bits [6i, 6i+6); v holds bits [8a, 8(a+len(v))).
		start, end := (8*a+5)/6, 8*(a+len(v))/6
		if end-start < minCore {
			continue
		}
		c := out[start:end:end]
		f(c)
		if slices.ContainsFunc(c, func(ch byte) bool { return ch == '+' || ch == '/' }) {
			u := append(s.url[level][:0], c...)
			s.url[level] = u
			for i, ch := range u {
				switch ch {
				case '+':
					u[i] = '-'
				case '/':
					u[i] = '_'
				}
			}
			f(u)
		}
	}
}

func (s *cores) wipe() {
	for l := range 2 {
		clear(s.in[l][:cap(s.in[l])])
		clear(s.out[l][:cap(s.out[l])])
		clear(s.url[l][:cap(s.url[l])])
	}
}
