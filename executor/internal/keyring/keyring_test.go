package keyring

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/connec/connec/vault"
)

type kind struct {
	name   string
	hybrid bool
}

var kinds = []kind{{"hybrid", true}, {"x25519", false}}

const plain = "hunter2-s3cr3t-VALUE"

var (
	adA = vault.AD{CredentialID: "8f14e45f-ceea-467a-9b9e-0c2b1c6d7e01", InstanceID: "c9f0f895-fb98-4b91-a3c5-7d3b0c1e2f02", Version: 1}
	adB = vault.AD{CredentialID: "45c48cce-2e2d-4fbd-aa1a-2c3e4f5a6b03", InstanceID: "d3d94468-02a4-4b2a-9c1d-8e7f6a5b4c04", Version: 1}
)

func fieldsFor(v string) vault.Fields {
	return vault.Fields{"token": vault.SecretString(v), "username": vault.SecretString("alice")}
}

// newKeyFile writes a fresh key file and returns its path and recipient.
func newKeyFile(t testing.TB, hybrid bool) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys", "connec.key")
	r, err := vault.GenerateKeyFile(path, hybrid)
	if err != nil {
		t.Fatal(err)
	}
	return path, r
}

func load(t testing.TB, path string, opts ...Option) *Keyring {
	t.Helper()
	k, err := Load(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seal(t testing.TB, recipient string, f vault.Fields, ad vault.AD) vault.Sealed {
	t.Helper()
	s, err := vault.NewSealer(recipient)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal(f, ad)
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

func mustOpen(t testing.TB, k *Keyring, s vault.Sealed, ad vault.AD) vault.Fields {
	t.Helper()
	f, err := k.Open(s, ad)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return f
}

func wantToken(t testing.TB, f vault.Fields, want string) {
	t.Helper()
	if got := string(f["token"].Expose()); got != want || string(f["username"].Expose()) != "alice" || len(f) != 2 {
		t.Fatalf("opened fields %v: token %q, want %q", f.Names(), got, want)
	}
}

// noSecrets fails if err's text holds a secret or key material.
func noSecrets(t testing.TB, err error, keyFile string) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, plain) || strings.Contains(msg, "AGE-SECRET-KEY") {
		t.Fatalf("error carries a secret: %s", msg)
	}
	if keyFile != "" {
		data, _ := os.ReadFile(keyFile)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "AGE-SECRET-KEY") && strings.Contains(strings.ToUpper(msg), line[20:50]) {
				t.Fatalf("error carries key material: %s", msg)
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			path, r := newKeyFile(t, k.hybrid)
			kr := load(t, path)
			if kr.Recipient() != r || kr.KeyID() != vault.KeyID(r) {
				t.Fatalf("Recipient/KeyID = %s/%s, want %s/%s", kr.Recipient(), kr.KeyID(), r, vault.KeyID(r))
			}
			if got := kr.KeyIDs(); len(got) != 1 || got[0] != kr.KeyID() {
				t.Fatalf("KeyIDs = %v", got)
			}
			binary := []byte{0, 0xff, '"', '\\', '\n', 0x80}
			in := fieldsFor(plain)
			in["binary"] = vault.NewSecret(binary)
			sealed := seal(t, kr.Recipient(), in, adA)
			out := mustOpen(t, kr, sealed, adA)
			if len(out) != 3 || string(out["token"].Expose()) != plain || !bytes.Equal(out["binary"].Expose(), binary) {
				t.Fatalf("round trip lost data: %v", out.Names())
			}
			// Upper-case UUIDs name the same row.
			upper := vault.AD{CredentialID: strings.ToUpper(adA.CredentialID), InstanceID: strings.ToUpper(adA.InstanceID), Version: 1}
			kr.ForgetAll()
			if got := mustOpen(t, kr, sealed, upper); string(got["token"].Expose()) != plain {
				t.Fatal("upper-case UUIDs did not open the row")
			}
			out.Wipe()
		})
	}
}

func TestADMismatch(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			path, r := newKeyFile(t, k.hybrid)
			sealed := seal(t, r, fieldsFor(plain), adA)
			wrong := map[string]vault.AD{
				"credential id": {CredentialID: adB.CredentialID, InstanceID: adA.InstanceID, Version: 1},
				"instance id":   {CredentialID: adA.CredentialID, InstanceID: adB.InstanceID, Version: 1},
				"version":       {CredentialID: adA.CredentialID, InstanceID: adA.InstanceID, Version: 2},
				"ids swapped":   {CredentialID: adA.InstanceID, InstanceID: adA.CredentialID, Version: 1},
			}
			for _, warm := range []bool{false, true} {
				kr := load(t, path)
				if warm {
					// The right DEK is cached for adA: a wrong AD must still fail.
					mustOpen(t, kr, sealed, adA)
				}
				for name, ad := range wrong {
					f, err := kr.Open(sealed, ad)
					if !errors.Is(err, ErrTampered) || f != nil {
						t.Errorf("warm=%v %s: fields %v, err %v; want ErrTampered", warm, name, f, err)
						continue
					}
					noSecrets(t, err, path)
				}
			}
			if _, err := load(t, path).Open(sealed, vault.AD{}); !errors.Is(err, vault.ErrInvalidAD) {
				t.Errorf("invalid AD: %v", err)
			}
		})
	}
}

func TestSwappedRowsFail(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			path, r := newKeyFile(t, k.hybrid)
			a := seal(t, r, fieldsFor(plain), adA)
			b := seal(t, r, fieldsFor("the-other-rows-secret"), adB)
			swaps := map[string]vault.Sealed{
				"ciphertext from B":  {Ciphertext: b.Ciphertext, WrappedDEK: a.WrappedDEK, KeyID: a.KeyID},
				"wrapped DEK from B": {Ciphertext: a.Ciphertext, WrappedDEK: b.WrappedDEK, KeyID: a.KeyID},
				"whole row B":        b,
			}
			for _, warm := range []bool{false, true} {
				kr := load(t, path)
				if warm {
					mustOpen(t, kr, a, adA)
					mustOpen(t, kr, b, adB)
				}
				for name, s := range swaps {
					f, err := kr.Open(s, adA)
					if !errors.Is(err, ErrTampered) || f != nil {
						t.Errorf("warm=%v %s: fields %v, err %v; want ErrTampered", warm, name, f, err)
						continue
					}
					if strings.Contains(err.Error(), "the-other-rows-secret") {
						t.Fatal("error carries the other row's secret")
					}
					noSecrets(t, err, path)
				}
				// Both rows still open as themselves.
				wantToken(t, mustOpen(t, kr, a, adA), plain)
				wantToken(t, mustOpen(t, kr, b, adB), "the-other-rows-secret")
			}
		})
	}
}

func TestCorruptedFails(t *testing.T) {
	path, r := newKeyFile(t, false)
	kr := load(t, path)
	s := seal(t, r, fieldsFor(plain), adA)
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
	for name, bad := range map[string]vault.Sealed{
		"nonce":          {Ciphertext: flip(s.Ciphertext, 0), WrappedDEK: s.WrappedDEK, KeyID: s.KeyID},
		"body":           {Ciphertext: flip(s.Ciphertext, 30), WrappedDEK: s.WrappedDEK, KeyID: s.KeyID},
		"tag":            {Ciphertext: flip(s.Ciphertext, len(s.Ciphertext)-1), WrappedDEK: s.WrappedDEK, KeyID: s.KeyID},
		"short":          {Ciphertext: s.Ciphertext[:20], WrappedDEK: s.WrappedDEK, KeyID: s.KeyID},
		"empty":          {WrappedDEK: s.WrappedDEK, KeyID: s.KeyID},
		"wrapped DEK":    {Ciphertext: s.Ciphertext, WrappedDEK: flip(s.WrappedDEK, len(s.WrappedDEK)-3), KeyID: s.KeyID},
		"no wrapped DEK": {Ciphertext: s.Ciphertext, KeyID: s.KeyID},
	} {
		kr.ForgetAll()
		if _, err := kr.Open(bad, adA); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: %v, want ErrTampered", name, err)
		}
	}
	// A wrapped payload that is not exactly a DEK.
	rec, _ := age.ParseX25519Recipient(r)
	for _, n := range []int{0, 31, 33, 64} {
		var buf bytes.Buffer
		w, _ := age.Encrypt(&buf, rec)
		_, _ = w.Write(make([]byte, n))
		_ = w.Close()
		if _, err := kr.Open(vault.Sealed{Ciphertext: s.Ciphertext, WrappedDEK: buf.Bytes(), KeyID: s.KeyID}, adA); !errors.Is(err, ErrTampered) {
			t.Errorf("%d-byte payload: %v", n, err)
		}
	}
}

func TestUnknownKeyID(t *testing.T) {
	path, _ := newKeyFile(t, true)
	_, other := newKeyFile(t, true)
	kr := load(t, path)
	s := seal(t, other, fieldsFor(plain), adA)
	_, err := kr.Open(s, adA)
	if !errors.Is(err, ErrUnknownKeyID) || !strings.Contains(err.Error(), s.KeyID) || !strings.Contains(err.Error(), kr.KeyID()) {
		t.Fatalf("err = %v; want ErrUnknownKeyID naming %s and the held %s", err, s.KeyID, kr.KeyID())
	}
	noSecrets(t, err, path)

	// A key id the file holds, on a DEK wrapped to another key: the key_id
	// column was altered.
	s.KeyID = kr.KeyID()
	if _, err := kr.Open(s, adA); !errors.Is(err, ErrTampered) {
		t.Fatalf("mislabelled key id: %v", err)
	}
	if _, _, err := kr.Rewrap(s.WrappedDEK, "kek-0000000000000000"); !errors.Is(err, ErrUnknownKeyID) {
		t.Fatalf("Rewrap from unknown key: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()

	_, err := Load(filepath.Join(dir, "missing.key"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: %v", err)
	}

	path, _ := newKeyFile(t, true)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if !errors.Is(err, ErrInsecureKeyFile) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %o: %v", mode, err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Errorf("mode 0400: %v", err)
	}

	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, content := range map[string]string{"empty": "", "comments": "# created: now\n# public key: age1x\n\n"} {
		if _, err := Load(write(name, content)); !errors.Is(err, ErrNoIdentities) {
			t.Errorf("%s file: %v, want ErrNoIdentities", name, err)
		}
	}
	// A damaged key line: the error names the line, not its content.
	data, _ := os.ReadFile(path)
	damaged := strings.Replace(string(data), "AGE-SECRET-KEY-PQ-1", "AGE-SECRET-KEY-PQ-1QQ", 1)
	_, err = Load(write("damaged", damaged))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("damaged key: %v", err)
	} else {
		noSecrets(t, err, path)
	}
	if _, err := Load(write("recipient", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n")); err == nil {
		t.Error("a recipients file loaded as identities")
	}
	if _, err := Load(dir); err == nil {
		t.Error("a directory loaded")
	}
}

// lastIdentityOnly writes a key file holding only the last identity of src.
func lastIdentityOnly(t *testing.T, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndex(string(data), "# created:")
	dst := filepath.Join(t.TempDir(), "new-only.key")
	if err := os.WriteFile(dst, data[i:], 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestKeyRotationMultiIdentity(t *testing.T) {
	for _, from := range kinds {
		for _, to := range kinds {
			t.Run(from.name+"_to_"+to.name, func(t *testing.T) {
				path, oldR := newKeyFile(t, from.hybrid)
				old := load(t, path)
				sealed := seal(t, old.Recipient(), fieldsFor(plain), adA)
				if sealed.KeyID != vault.KeyID(oldR) {
					t.Fatal("sealed under an unexpected key")
				}

				// Live rotation: append a new identity; it becomes current.
				newR, err := vault.AppendIdentity(path, to.hybrid)
				if err != nil {
					t.Fatal(err)
				}
				both := load(t, path)
				if both.Recipient() != newR || both.KeyID() != vault.KeyID(newR) {
					t.Fatalf("current key is %s, want the appended %s", both.KeyID(), vault.KeyID(newR))
				}
				if ids := both.KeyIDs(); len(ids) != 2 || ids[0] != vault.KeyID(oldR) || ids[1] != vault.KeyID(newR) {
					t.Fatalf("KeyIDs = %v", ids)
				}
				// Rows under the old key still open.
				wantToken(t, mustOpen(t, both, sealed, adA), plain)

				// Rewrap moves the row to the new key; ciphertext unchanged.
				w, kid, err := both.Rewrap(sealed.WrappedDEK, sealed.KeyID)
				if err != nil {
					t.Fatal(err)
				}
				if kid != vault.KeyID(newR) || bytes.Equal(w, sealed.WrappedDEK) {
					t.Fatalf("Rewrap gave key %s", kid)
				}
				moved := vault.Sealed{Ciphertext: sealed.Ciphertext, WrappedDEK: w, KeyID: kid}
				wantToken(t, mustOpen(t, both, moved, adA), plain)

				// The old identity can go: a keyring holding only the new
				// one opens the moved row, and not the unmoved one.
				newOnly := load(t, lastIdentityOnly(t, path))
				if newOnly.KeyID() != kid || len(newOnly.KeyIDs()) != 1 {
					t.Fatalf("new-only keyring holds %v", newOnly.KeyIDs())
				}
				wantToken(t, mustOpen(t, newOnly, moved, adA), plain)
				if _, err := newOnly.Open(sealed, adA); !errors.Is(err, ErrUnknownKeyID) {
					t.Fatalf("unmoved row with the old key gone: %v", err)
				}
				// The keyring from before the rotation cannot open the moved row.
				if _, err := old.Open(moved, adA); !errors.Is(err, ErrUnknownKeyID) {
					t.Fatalf("old keyring on moved row: %v", err)
				}
				// Rewrapping garbage fails as tampering, not silently.
				if _, _, err := both.Rewrap(sealed.Ciphertext, sealed.KeyID); !errors.Is(err, ErrTampered) {
					t.Fatalf("Rewrap of garbage: %v", err)
				}
			})
		}
	}
}

func TestDuplicateIdentity(t *testing.T) {
	path, r := newKeyFile(t, false)
	data, _ := os.ReadFile(path)
	r2, err := vault.AppendIdentity(path, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write(data) // the first identity again, last
	_ = f.Close()
	kr := load(t, path)
	if ids := kr.KeyIDs(); len(ids) != 2 || ids[0] != vault.KeyID(r2) || ids[1] != vault.KeyID(r) || kr.KeyID() != vault.KeyID(r) {
		t.Fatalf("KeyIDs = %v, current %s", ids, kr.KeyID())
	}
}

// counting returns a keyring whose unwraps are counted.
func counting(t *testing.T, path string, opts ...Option) (*Keyring, *atomic.Int64) {
	kr := load(t, path, opts...)
	var n atomic.Int64
	kr.onUnwrap = func() { n.Add(1) }
	return kr, &n
}

func TestCacheHitAvoidsUnwrap(t *testing.T) {
	path, r := newKeyFile(t, true)
	kr, unwraps := counting(t, path)
	a := seal(t, r, fieldsFor(plain), adA)
	b := seal(t, r, fieldsFor("b"), adB)

	for range 5 {
		wantToken(t, mustOpen(t, kr, a, adA), plain)
	}
	if n := unwraps.Load(); n != 1 {
		t.Fatalf("%d unwraps for 5 opens, want 1", n)
	}
	mustOpen(t, kr, b, adB)
	if n := unwraps.Load(); n != 2 {
		t.Fatalf("%d unwraps, want 2", n)
	}

	// Forget drops only that credential; any spelling of its UUID works.
	kr.Forget(strings.ToUpper(adA.CredentialID))
	mustOpen(t, kr, b, adB)
	if n := unwraps.Load(); n != 2 {
		t.Fatalf("Forget(A) dropped B: %d unwraps", n)
	}
	mustOpen(t, kr, a, adA)
	if n := unwraps.Load(); n != 3 {
		t.Fatalf("after Forget: %d unwraps, want 3", n)
	}
	kr.Forget("not-a-uuid") // harmless

	// Each version is its own entry.
	a2ad := adA
	a2ad.Version = 2
	a2 := seal(t, r, fieldsFor("v2"), a2ad)
	wantToken(t, mustOpen(t, kr, a2, a2ad), "v2")
	wantToken(t, mustOpen(t, kr, a, adA), plain)
	if n := unwraps.Load(); n != 4 {
		t.Fatalf("%d unwraps, want 4", n)
	}

	// A row resealed under the same version (and no notification) is not
	// opened with the stale DEK.
	resealed := seal(t, r, fieldsFor("resealed"), adA)
	wantToken(t, mustOpen(t, kr, resealed, adA), "resealed")
	if n := unwraps.Load(); n != 5 {
		t.Fatalf("%d unwraps, want 5", n)
	}

	kr.ForgetAll()
	if kr.cache.count() != 0 {
		t.Fatal("ForgetAll left entries")
	}
	mustOpen(t, kr, b, adB)
	if n := unwraps.Load(); n != 6 {
		t.Fatalf("after ForgetAll: %d unwraps, want 6", n)
	}
}

func TestCacheTTL(t *testing.T) {
	path, r := newKeyFile(t, false)
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	kr, unwraps := counting(t, path, WithCacheTTL(time.Hour), withClock(clock))
	a := seal(t, r, fieldsFor(plain), adA)
	mustOpen(t, kr, a, adA)
	advance(59 * time.Minute)
	mustOpen(t, kr, a, adA)
	if n := unwraps.Load(); n != 1 {
		t.Fatalf("within TTL: %d unwraps", n)
	}
	advance(time.Minute) // use did not extend the TTL
	mustOpen(t, kr, a, adA)
	if n := unwraps.Load(); n != 2 {
		t.Fatalf("after TTL: %d unwraps, want 2", n)
	}
}

func TestCacheTTLWipesIdleEntries(t *testing.T) {
	path, r := newKeyFile(t, false)
	kr := load(t, path, WithCacheTTL(20*time.Millisecond))
	mustOpen(t, kr, seal(t, r, fieldsFor(plain), adA), adA)
	e := kr.cache.lru.Front().Value.(*cacheEntry)
	deadline := time.Now().Add(5 * time.Second)
	for kr.cache.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle entry outlived its TTL")
		}
		time.Sleep(5 * time.Millisecond)
	}
	kr.cache.mu.Lock()
	defer kr.cache.mu.Unlock()
	if e.dek != [vault.DEKSize]byte{} {
		t.Fatal("expired DEK not wiped")
	}
}

func TestCacheSizeBound(t *testing.T) {
	path, r := newKeyFile(t, false)
	kr, unwraps := counting(t, path, WithCacheSize(2))
	ads := []vault.AD{adA, adB, {CredentialID: "6512bd43-d9ca-4b6e-8f1a-2b3c4d5e6f05", InstanceID: adA.InstanceID, Version: 1}}
	var sealed []vault.Sealed
	for _, ad := range ads {
		sealed = append(sealed, seal(t, r, fieldsFor(plain), ad))
	}
	mustOpen(t, kr, sealed[0], ads[0])
	first := kr.cache.lru.Front().Value.(*cacheEntry)
	mustOpen(t, kr, sealed[1], ads[1])
	mustOpen(t, kr, sealed[0], ads[0]) // A is now most recent; B is least
	mustOpen(t, kr, sealed[2], ads[2]) // evicts B
	if n := kr.cache.count(); n != 2 {
		t.Fatalf("cache holds %d, bound 2", n)
	}
	if n := unwraps.Load(); n != 3 {
		t.Fatalf("%d unwraps, want 3", n)
	}
	mustOpen(t, kr, sealed[0], ads[0])
	if n := unwraps.Load(); n != 3 {
		t.Fatal("LRU evicted the recently used entry")
	}
	mustOpen(t, kr, sealed[1], ads[1]) // B was evicted: unwrap again, evicting C
	if n := unwraps.Load(); n != 4 {
		t.Fatalf("%d unwraps, want 4", n)
	}
	// Evicted DEKs are wiped.
	kr.Forget(ads[0].CredentialID)
	if first.dek != [vault.DEKSize]byte{} {
		t.Fatal("forgotten DEK not wiped")
	}
}

func TestCacheDisabled(t *testing.T) {
	path, r := newKeyFile(t, false)
	a := seal(t, r, fieldsFor(plain), adA)
	for _, opt := range []Option{WithCacheSize(0), WithCacheTTL(0)} {
		kr, unwraps := counting(t, path, opt)
		mustOpen(t, kr, a, adA)
		mustOpen(t, kr, a, adA)
		kr.Forget(adA.CredentialID)
		kr.ForgetAll()
		if n := unwraps.Load(); n != 2 {
			t.Fatalf("disabled cache: %d unwraps, want 2", n)
		}
	}
}

func TestConcurrentOpen(t *testing.T) {
	path, r := newKeyFile(t, true)
	kr := load(t, path, WithCacheSize(2))
	ads := []vault.AD{adA, adB, {CredentialID: "6512bd43-d9ca-4b6e-8f1a-2b3c4d5e6f05", InstanceID: adA.InstanceID, Version: 7}}
	var sealed []vault.Sealed
	for i, ad := range ads {
		sealed = append(sealed, seal(t, r, fieldsFor(strings.Repeat("x", i+1)), ad))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				j := (g + i) % len(ads)
				f, err := kr.Open(sealed[j], ads[j])
				if err != nil {
					t.Error(err)
					return
				}
				if string(f["token"].Expose()) != strings.Repeat("x", j+1) {
					t.Error("wrong secret under concurrency")
					return
				}
				f.Wipe()
				switch i % 10 {
				case 3:
					kr.Forget(ads[j].CredentialID)
				case 7:
					kr.ForgetAll()
				}
			}
		})
	}
	wg.Wait()
}

// TestDerivedKeys checks the keys servers derive to agree on a secret: the
// same key file gives the same keys, another file or purpose others, the
// current identity's key comes first after a rotation and the older one
// stays, and no derived key contains its identity's encoding.
func TestDerivedKeys(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			path, _ := newKeyFile(t, kind.hybrid)
			a, b := load(t, path).DerivedKeys("state"), load(t, path).DerivedKeys("state")
			if len(a) != 1 || len(a[0]) != 32 || !bytes.Equal(a[0], b[0]) {
				t.Fatalf("one file, two loads: %x %x", a, b)
			}
			if other := load(t, path).DerivedKeys("other"); bytes.Equal(other[0], a[0]) {
				t.Fatal("two purposes, one key")
			}
			otherPath, _ := newKeyFile(t, kind.hybrid)
			if c := load(t, otherPath).DerivedKeys("state"); bytes.Equal(c[0], a[0]) {
				t.Fatal("two key files, one key")
			}
			if _, err := vault.AppendIdentity(path, kind.hybrid); err != nil {
				t.Fatal(err)
			}
			rotated := load(t, path).DerivedKeys("state")
			if len(rotated) != 2 || bytes.Equal(rotated[0], a[0]) || !bytes.Equal(rotated[1], a[0]) {
				t.Fatalf("after rotation: %x (before %x)", rotated, a)
			}
			file, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range rotated {
				if bytes.Contains(file, k) {
					t.Fatal("a derived key is in the key file")
				}
			}
		})
	}
}
