package gateway

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// FuzzDecodeBody feeds arbitrary request bodies and content types to the
// REST binding of every route that takes a body: it never panics, and
// refuses with invalid_argument only (the entry's own decoder is fuzzed in
// core).
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"echo","display_name":"x"}`, `{"kind":"bearer","secret":{"token":"t"}}`, `{"subject":"user:x","resource":"**","action":"*"}`,
		``, `[]`, `{"a":1}{"b":2}`, `{"display_name":7}`, `{"limits":{"per_subject":{"requests":"x"}}}`, "{\"x\":\"\xff\"}",
	} {
		f.Add([]byte(s), "application/json")
	}
	f.Add([]byte(`{}`), "text/plain")
	f.Add([]byte(`{}`), "application/problem+json; charset=utf-8")
	var entries []*core.Entry
	for _, e := range core.Catalog() {
		if e.Route != nil && e.Route.Body != core.NoBody && e.On(core.OnREST) {
			entries = append(entries, e)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, ctype string) {
		for _, e := range entries {
			r := httptest.NewRequest(e.Route.Method, "/v1/x", bytes.NewReader(body))
			if ctype != "" {
				r.Header.Set("Content-Type", ctype)
			}
			if _, _, err := bind(httptest.NewRecorder(), r, e); err != nil && fault.As(err).Type != fault.InvalidArgument {
				t.Fatalf("%s: refused with %v", e.Name, err)
			}
		}
	})
}
