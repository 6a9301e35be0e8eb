package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// FuzzDecodeBody feeds arbitrary request bodies and content types to the
// REST body decoder for each request shape: it never panics, and refuses
// with invalid_argument only.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"echo","display_name":"x"}`, `{"kind":"bearer","secret":{"token":"t"}}`, `{"subject":"user:x","resource":"**","action":"*"}`,
		``, `[]`, `{"a":1}{"b":2}`, `{"display_name":7}`, `{"limits":{"per_subject":{"requests":"x"}}}`, "{\"x\":\"\xff\"}",
	} {
		f.Add([]byte(s), "application/json")
	}
	f.Add([]byte(`{}`), "text/plain")
	f.Add([]byte(`{}`), "application/problem+json; charset=utf-8")
	f.Fuzz(func(t *testing.T, body []byte, ctype string) {
		targets := []func() any{
			func() any { return &core.InstallInput{} },
			func() any { return &core.CredentialInput{} },
			func() any { return &authz.Rule{} },
			func() any { return &map[string]any{} },
		}
		for _, mk := range targets {
			r := httptest.NewRequest(http.MethodPost, "/v1/x", bytes.NewReader(body))
			if ctype != "" {
				r.Header.Set("Content-Type", ctype)
			}
			if err := decodeBody(httptest.NewRecorder(), r, mk(), false); err != nil && fault.As(err).Type != fault.InvalidArgument {
				t.Fatalf("refused with %v", err)
			}
		}
	})
}
