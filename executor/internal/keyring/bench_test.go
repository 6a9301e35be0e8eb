package keyring

import (
	"testing"

	"github.com/connec/connec/vault"
)

func benchOpen(b *testing.B, opts ...Option) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			path, r := newKeyFile(b, k.hybrid)
			kr := load(b, path, opts...)
			sealed := seal(b, r, fieldsFor(plain), adA)
			mustOpen(b, kr, sealed, adA).Wipe()
			b.ReportAllocs()
			for b.Loop() {
				f, err := kr.Open(sealed, adA)
				if err != nil {
					b.Fatal(err)
				}
				f.Wipe()
			}
		})
	}
}

// BenchmarkOpenCold pays an age unwrap on every call (cache disabled).
func BenchmarkOpenCold(b *testing.B) { benchOpen(b, WithCacheSize(0)) }

// BenchmarkOpenCached finds the DEK in the cache: the hot path.
func BenchmarkOpenCached(b *testing.B) { benchOpen(b) }

func BenchmarkRewrap(b *testing.B) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			path, r := newKeyFile(b, k.hybrid)
			kr := load(b, path)
			sealed := seal(b, r, vault.Fields{"token": vault.SecretString(plain)}, adA)
			for b.Loop() {
				if _, _, err := kr.Rewrap(sealed.WrappedDEK, sealed.KeyID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
