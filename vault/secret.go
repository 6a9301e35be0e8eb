package vault

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
)

// Redacted is what a Secret renders as, everywhere.
const Redacted = "[REDACTED]"

// Secret holds secret bytes that cannot be printed, logged or marshalled by
// accident: String, GoString, every fmt verb, MarshalJSON, MarshalText and
// slog all render [REDACTED]. Expose is the one way to the bytes.
//
// A Secret is a handle: copies share the bytes, so Wipe on any copy wipes
// them for all. The zero Secret is empty. A Secret is not safe for
// concurrent Wipe and Expose.
//
// fmt does not call Format on an unexported field of another struct; it
// walks the value by reflection instead, and on a bad verb it dereferences
// one pointer. So the bytes sit two pointers away from Secret, and fmt
// prints an address there, never the bytes. Dumpers that follow every
// pointer with unsafe (go-spew, some pretty printers) are out of reach of
// any type: keep them away from values that hold Secrets.
type Secret struct {
	p *holder
}

// holder is the second pointer between a Secret and its bytes.
type holder struct {
	b *[]byte
}

func newSecret(b []byte) Secret { return Secret{p: &holder{b: &b}} }

// NewSecret returns a Secret holding a copy of b. The caller keeps b and
// should wipe it (clear(b)) once done with it.
func NewSecret(b []byte) Secret {
	return newSecret(slices.Clone(b))
}

// SecretString returns a Secret holding the bytes of s. The string itself
// cannot be wiped; prefer NewSecret where the secret arrives as bytes.
func SecretString(s string) Secret {
	return newSecret([]byte(s))
}

// Expose returns the plaintext bytes. The name marks every call site that
// handles plaintext. The slice is the Secret's own storage: do not keep or
// modify it past the Secret's use, and do not pass it anywhere that logs.
// It is nil for the zero Secret and after Wipe.
func (s Secret) Expose() []byte {
	if s.p == nil {
		return nil
	}
	return *s.p.b
}

// Len reports the length of the secret in bytes (which is not secret).
func (s Secret) Len() int { return len(s.Expose()) }

// Wipe zeroes the bytes (best effort: copies made elsewhere are out of its
// reach) and empties the Secret, and every copy of it.
func (s Secret) Wipe() {
	if s.p == nil {
		return
	}
	clear(*s.p.b)
	*s.p.b = nil
}

// String implements fmt.Stringer.
func (Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return Redacted }

// Format implements fmt.Formatter: every verb and flag renders [REDACTED].
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// Fields are a credential's secret fields by name (for example "token", or
// "username" and "password"). Printed or marshalled, the names show and the
// values render [REDACTED].
type Fields map[string]Secret

// Names returns the field names, sorted. Names are not secret.
func (f Fields) Names() []string {
	names := make([]string, 0, len(f))
	for k := range f {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// Wipe wipes every value.
func (f Fields) Wipe() {
	for _, s := range f {
		s.Wipe()
	}
}

// ValidFieldName reports whether name may name a secret field: 1 to 64
// characters of ASCII letters, digits, '_', '-' and '.'.
func ValidFieldName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}
