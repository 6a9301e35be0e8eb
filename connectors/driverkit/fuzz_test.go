package driverkit_test

import (
	"strings"
	"testing"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/vault"
)

// Any text, escapes broken or not, goes through the redactor without a
// panic, and what comes out never holds the secret as it is, nor a cut
// that keeps a piece of it.
func FuzzRedactorText(f *testing.F) {
	const secret = "s3cr3t/+=tok"
	for _, seed := range []string{"", secret, "%73%33cr3t%2f%2B%3Dtok", `\u0073\u0033cr3t\/+=tok`, "&#x73;&#51;cr3t&sol;&plus;&equals;tok",
		"&#", "%", `\u`, `\ud800\`, "&#x110000;", "czNjcjN0Lys9dG9r", strings.Repeat("&amp;", 10)} {
		f.Add(seed, 3)
	}
	f.Fuzz(func(t *testing.T, text string, n int) {
		r := driverkit.NewRedactor(vault.Fields{"token": vault.SecretString(secret)})
		if out := r.String(text); strings.Contains(out, secret) {
			t.Fatalf("String(%q) = %q keeps the secret", text, out)
		}
		if n < 0 || n > len(text) {
			return
		}
		if out := string(r.Cut([]byte(text), n)); strings.Contains(out, secret) || len(out) > n && !strings.Contains(out, driverkit.Redacted) {
			t.Fatalf("Cut(%q, %d) = %q", text, n, out)
		}
	})
}
