package executor

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/internal/testkit/leaks"
	"github.com/connec/connec/vault"
)

func TestRedact(t *testing.T) {
	red := driverkit.NewRedactor(vault.Fields{"token": vault.SecretString("s3cr3t-T0KEN"), "username": vault.SecretString("bob")})
	tricky := driverkit.NewRedactor(vault.Fields{"token": vault.SecretString(`a"b<c>/d`)})
	esc, _ := json.Marshal(map[string]string{"v": `x a"b<c>/d y`})
	cases := []struct {
		name     string
		doc      string
		red      *driverkit.Redactor
		redacted bool
	}{
		{"clean", `{"message":"hello"}`, red, false},
		{"plain", `{"message":"the token is s3cr3t-T0KEN"}`, red, true},
		{"as a key", `{"s3cr3t-T0KEN":1}`, red, true},
		{"unicode-escaped", `{"m":"\u0073\u0033cr3t-T0KEN"}`, red, true},
		{"a username alone is not searched", `{"m":"bob"}`, red, false},
		{"escaped specials", string(esc), tricky, true},
		{"no credential", `{"m":"s3cr3t-T0KEN"}`, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, red, err := Redact(json.RawMessage(tc.doc), tc.red)
			if err != nil {
				t.Fatal(err)
			}
			if red != tc.redacted {
				t.Fatalf("redacted = %v, want %v (%s)", red, tc.redacted, out)
			}
			if !tc.redacted && string(out) != tc.doc {
				t.Fatalf("unchanged document rewritten: %s", out)
			}
			if tc.redacted && (strings.Contains(string(out), "s3cr3t") || strings.Contains(string(out), `a\"b`) || !strings.Contains(string(out), vault.Redacted)) {
				t.Fatalf("not redacted: %s", out)
			}
		})
	}
}

// The executor's final pass covers, for a driver that does no redaction
// of its own, what the credential's kind derives ("Bearer <token>",
// "user:password") and what the driver declared it sent, in every
// encoding of the corpus.
func TestFinalPassCorpus(t *testing.T) {
	tok := "tok_Q2xvdWQgc2VjcmV0IHRva2Vu/x+y=z"
	pw := "pw_c29tZSBwYXNzd29yZCBoZXJl"
	sig := "v1=" + strings.Repeat("9f", 16)
	orc := leaks.NewOracle(map[string]string{"token": tok, "password": pw, "pair": "api:" + pw, "signature": sig})
	bearer := connectors.Invocation{CredentialKind: "bearer", Credential: vault.Fields{"token": vault.SecretString(tok)}, Findings: &connectors.Findings{}}
	basic := connectors.Invocation{CredentialKind: "basic", Credential: vault.Fields{"username": vault.SecretString("api"), "password": vault.SecretString(pw)},
		Findings: &connectors.Findings{}}
	// A driver declares a signature it computed from the credential.
	driverkit.ForInvocation(basic).Add([]byte(sig))
	for _, tc := range []struct {
		inv      connectors.Invocation
		subjects []string
	}{
		{bearer, []string{"Bearer " + tok, tok}},
		{basic, []string{"api:" + pw, "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("api:"+pw)), "X-Sig: " + sig}},
	} {
		red := driverkit.ForInvocation(tc.inv)
		for _, enc := range leaks.Encodings {
			for _, f := range leaks.Fills {
				for _, s := range tc.subjects {
					doc, _ := json.Marshal(map[string]string{"message": "at /api/echo: " + enc.Encode(f+s) + " end"})
					out, redacted, err := Redact(doc, red)
					if err != nil {
						t.Fatal(err)
					}
					if found := orc.Find(string(out)); found != "" || !redacted || !strings.Contains(string(out), "at /api/echo: ") {
						t.Errorf("%s of %q (fill %q): redacted=%v, %s: %s", enc.Name, s, f, redacted, found, out)
					}
				}
			}
		}
	}
}
