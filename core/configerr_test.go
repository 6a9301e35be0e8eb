package core_test

import (
	"strings"
	"testing"

	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/jsonschema"
)

// Should a driver's configuration error repeat a value, Install still
// keeps it out of the answer and the audit row; the schema's own words
// (an enum value such as "header") stay.
func TestConfigErrorsWithoutConfigValues(t *testing.T) {
	config := []byte(`{"base_url":"https://bot:pa%24%24word@api.example/v1","auth":{"style":"header","header_name":"X-Key"},"tags":["internal-db.corp"]}`)
	schema := []byte(`{"properties":{"auth":{"properties":{"style":{"enum":["bearer","header"]}}}}}`)
	err := fault.Invalid("config", `base_url "https://bot:pa%%24%%24word@api.example/v1" (user bot:pa%%24%%24word) is refused; style header; host internal-db.corp`).
		WithDetails(map[string]any{"violations": []jsonschema.Violation{{Path: "/base_url", Message: "password pa$$word is not allowed"}}})
	out := core.WithoutConfigValues(err, config, schema)
	pub := fault.PublicOf(out)
	text := pub.Message
	for _, v := range pub.Details["violations"].([]jsonschema.Violation) {
		text += " " + v.Message
	}
	for _, leak := range []string{"pa%24%24word", "pa$$word", "bot:", "internal-db.corp"} {
		if strings.Contains(text, leak) {
			t.Errorf("%q left in %q", leak, text)
		}
	}
	if !strings.Contains(text, "style header") || !strings.Contains(text, "[REDACTED]") {
		t.Errorf("message = %q", text)
	}
}
