package vault_test

import (
	"testing"

	"github.com/connec/connec/vault"
)

func BenchmarkSeal(b *testing.B) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			_, recipient := newIdentity(b, k.hybrid)
			s, err := vault.NewSealer(recipient)
			if err != nil {
				b.Fatal(err)
			}
			fields := testFields()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Seal(fields, testAD); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
