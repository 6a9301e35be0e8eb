package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// NUL characters (which PostgreSQL cannot store in text) are refused as
// invalid_argument naming where they are, in bodies and query strings, and
// change nothing; never internal/500.
func TestNULRefusedAsInvalidArgument(t *testing.T) {
	e := newEnv(t)
	_, tok := e.admin("root")
	id := e.must(http.StatusCreated, "POST", "/v1/connector-instances", tok, map[string]any{"type": "echo", "display_name": "ok"}).id(t)
	before := e.count(`SELECT count(*) FROM connector_instances`)
	for _, tc := range []struct {
		name, method, path string
		body               any
		field              string
	}{
		{"display_name", "POST", "/v1/connector-instances", map[string]any{"type": "echo", "display_name": "a\x00b"}, "display_name"},
		{"config string", "POST", "/v1/connector-instances", map[string]any{"type": "echo", "display_name": "c", "config": map[string]any{"prefix": "\x00"}}, "config.prefix"},
		{"query filter", "GET", "/v1/connector-instances?owner=" + url.QueryEscape("user:\x00"), nil, "owner"},
		{"run filter", "GET", "/v1/connector-runs?instance_id=" + url.QueryEscape(id+"\x00"), nil, "instance_id"},
		{"audit filter", "GET", "/v1/audit-events?tool=" + url.QueryEscape("x\x00"), nil, "tool"},
		{"credential secret", "POST", "/v1/connector-instances/" + id + "/credentials", map[string]any{"kind": "bearer", "secret": map[string]any{"token": "t\x00"}}, "secret.token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tok, tc.body)
			p := problem(t, r, http.StatusBadRequest, "invalid_argument")
			if !strings.Contains(p.Detail, "NUL") {
				t.Fatalf("detail %q does not say NUL", p.Detail)
			}
			if f, _ := p.Details["field"].(string); f != tc.field {
				t.Fatalf("field %q, want %q", f, tc.field)
			}
		})
	}
	if n := e.count(`SELECT count(*) FROM connector_instances`); n != before {
		t.Fatalf("instances changed: %d, was %d", n, before)
	}
}
