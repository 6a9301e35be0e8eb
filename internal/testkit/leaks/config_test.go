package leaks

import (
	"strings"
	"testing"

	"github.com/connec/connec/core"
)

// TestConfigValuesStayOutOfErrors installs instances of every built-in
// connector type with configurations that are refused, each carrying a
// canary inside a value (a password in a URL's user info, a host name, a
// header value, a sender address). The refusal must say what is wrong in
// the configuration's terms without repeating the value: the canary must
// appear neither in the answer nor in the append-only audit rows nor in
// the logs.
func TestConfigValuesStayOutOfErrors(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("carol")
	c := e.client(tok)
	const canary = "Cfg7canaryQz"
	cases := []struct {
		name, typ string
		config    map[string]any
	}{
		{"http user info", "http", map[string]any{"base_url": "http://user:" + canary + "@127.0.0.1/api"}},
		{"http host", "http", map[string]any{"base_url": "https://" + canary + "!x.example/"}},
		{"http scheme", "http", map[string]any{"base_url": "ftp://" + canary + ".example/"}},
		{"http header value", "http", map[string]any{"base_url": "https://api.example", "headers": map[string]any{"X-Tenant": canary + "\n"}}},
		{"http auth header name", "http", map[string]any{"base_url": "https://api.example", "auth": map[string]any{"style": "header", "header_name": canary + " x"}}},
		{"http auth style", "http", map[string]any{"base_url": "https://api.example", "auth": map[string]any{"style": canary}}},
		{"mattermost user info", "mattermost", map[string]any{"server_url": "https://bot:" + canary + "@chat.example"}},
		{"mattermost host", "mattermost", map[string]any{"server_url": "https://" + canary + "!.example"}},
		{"smtp host", "smtp", map[string]any{"host": canary + "!", "from": "bot@example.com"}},
		{"smtp from", "smtp", map[string]any{"host": "mail.example.com", "from": "not an address " + canary}},
		{"smtp security", "smtp", map[string]any{"host": "mail.example.com", "from": "bot@example.com", "security": canary}},
		{"imap host", "imap", map[string]any{"host": "[" + canary + "]"}},
		{"imap tls name", "imap", map[string]any{"host": "mail.example.com", "tls_server_name": strings.Repeat(canary, 30)}},
		{"echo prefix", "echo", map[string]any{"prefix": strings.Repeat(canary, 10)}},
	}
	for _, tc := range cases {
		a := call(t, c, core.ToolInstanceInstall, map[string]any{"type": tc.typ, "display_name": tc.name, "config": tc.config})
		if a.Status != "error" || a.Error == nil || a.Error.Type != "invalid_argument" {
			t.Errorf("%s: want invalid_argument, got %s", tc.name, a.Wire)
			continue
		}
		t.Logf("%s: %s", tc.name, a.Error.Message)
		// Case-insensitively: host names come back lower-cased.
		if strings.Contains(strings.ToLower(a.Wire), strings.ToLower(canary)) {
			t.Errorf("%s: the answer repeats the configuration's value: %s", tc.name, a.Error.Message)
		}
		if !strings.Contains(a.Error.Message, "config") {
			t.Errorf("%s: the answer does not say the configuration is at fault: %s", tc.name, a.Error.Message)
		}
	}
	for _, row := range e.rows("audit_events") {
		if strings.Contains(strings.ToLower(row), strings.ToLower(canary)) {
			t.Errorf("an audit row repeats a configuration value: %s", row)
		}
	}
	if strings.Contains(strings.ToLower(e.logs.String()), strings.ToLower(canary)) {
		t.Errorf("the logs repeat a configuration value")
	}
}
