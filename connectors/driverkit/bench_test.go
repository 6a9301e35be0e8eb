package driverkit_test

import (
	"strings"
	"testing"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/vault"
)

func bearer() connectors.Invocation {
	return connectors.Invocation{CredentialKind: "bearer", Findings: &connectors.Findings{},
		Credential: vault.Fields{"token": vault.SecretString("tok_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")}}
}

// The redactor an invocation with a bearer token builds (the executor
// builds one per call with a credential; a network driver one more).
func BenchmarkRedactorBuild(b *testing.B) {
	inv := bearer()
	for b.Loop() {
		driverkit.ForInvocation(inv).Wipe()
	}
}

// The final pass over a small clean result (echo's), per call.
func BenchmarkRedactorJSONSmall(b *testing.B) {
	r := driverkit.ForInvocation(bearer())
	doc := []byte(`{"message":"hello","operation":"echo.read","credential_kind":"bearer"}`)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		_, _, _ = r.JSON(doc)
	}
}

// A 1 MiB HTML body full of escapes (every decoded reading is scanned).
func BenchmarkRedactorText1MiB(b *testing.B) {
	r := driverkit.ForInvocation(bearer())
	doc := []byte(strings.Repeat("<p>hello &amp; world %20 \\n QmFzaWMg</p>\n", 1<<20/42))
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		_ = r.Bytes(doc)
	}
}
