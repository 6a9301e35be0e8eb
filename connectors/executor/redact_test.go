package executor

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/connec/connec/vault"
)

func TestRedact(t *testing.T) {
	fields := vault.Fields{"token": vault.SecretString("s3cr3t-T0KEN"), "user": vault.SecretString("bob")}
	tricky := vault.Fields{"token": vault.SecretString(`a"b<c>/d`)}
	esc, _ := json.Marshal(map[string]string{"v": `x a"b<c>/d y`})
	cases := []struct {
		name     string
		doc      string
		fields   vault.Fields
		redacted bool
	}{
		{"clean", `{"message":"hello"}`, fields, false},
		{"plain", `{"message":"the token is s3cr3t-T0KEN"}`, fields, true},
		{"as a key", `{"s3cr3t-T0KEN":1}`, fields, true},
		{"unicode-escaped", `{"m":"\u0073\u0033cr3t-T0KEN"}`, fields, true},
		{"short values are not searched", `{"m":"bob"}`, fields, false},
		{"escaped specials", string(esc), tricky, true},
		{"no credential", `{"m":"s3cr3t-T0KEN"}`, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, red, err := Redact(json.RawMessage(tc.doc), tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			if red != tc.redacted {
				t.Fatalf("redacted = %v, want %v (%s)", red, tc.redacted, out)
			}
			if tc.redacted && (strings.Contains(string(out), "s3cr3t") || strings.Contains(string(out), `a\"b`) || !strings.Contains(string(out), vault.Redacted)) {
				t.Fatalf("not redacted: %s", out)
			}
		})
	}
}
