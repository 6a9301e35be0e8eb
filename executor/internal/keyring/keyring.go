// Package keyring is the only place in connec that unseals credentials. It
// loads the key-encryption identities (age private keys) from the key file,
// unwraps data keys, opens vault-sealed ciphertext against the row it belongs
// to, and rewraps data keys to the current key for rotation.
//
// Go's internal rule lets only packages under executor import it,
// and internal/archtest fails the tests if any other package imports it or
// calls age's decrypting or identity-parsing functions.
//
// Unwrapping a DEK (one age decryption; the hybrid ML-KEM-768 + X25519 kind
// is the slower one) is kept off the hot path by a DEK cache keyed by
// (credential id, version, key id), bounded in entries (LRU) and in time
// (TTL); evicted DEKs are wiped. A cached DEK is used only for the same
// wrapped DEK bytes it came from, so a row resealed under the same version
// is never opened with a stale key. The service calls Forget on each
// connec_credential notification.
//
// Built with GOEXPERIMENT=runtimesecret, Load, Open and Rewrap run inside
// runtime/secret.Do, which erases their stack, registers and temporary heap
// allocations (age's and the JSON decoder's copies included). It has a fixed
// cost: a cached Open measured about 40µs instead of about 3µs.
package keyring

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/google/uuid"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/connec/connec/vault"
)

// Sentinel errors. Messages name key ids, credential ids and paths, never a
// secret value or key material.
var (
	ErrUnknownKeyID = errors.New("keyring: unknown key id")
	ErrTampered     = errors.New("keyring: sealed credential failed authentication (altered, swapped with another row's, or opened with the wrong credential id, version or instance id)")
	ErrNoIdentities = errors.New("keyring: key file holds no identities")
	// ErrInsecureKeyFile is vault's: both packages check the same file.
	ErrInsecureKeyFile = vault.ErrInsecureKeyFile
)

// Defaults for the DEK cache.
const (
	DefaultCacheSize = 1024
	DefaultCacheTTL  = 5 * time.Minute
)

// maxKeyFileSize bounds what Load reads (a hybrid identity is ~2.5 KB).
const maxKeyFileSize = 1 << 20

// Option configures a Keyring.
type Option func(*options)

type options struct {
	cacheSize int
	cacheTTL  time.Duration
	now       func() time.Time
}

// WithCacheSize bounds the DEK cache to n entries; n <= 0 disables it.
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = n } }

// WithCacheTTL sets how long a DEK stays cached after it was unwrapped
// (using it does not extend that); d <= 0 disables the cache.
func WithCacheTTL(d time.Duration) Option { return func(o *options) { o.cacheTTL = d } }

// withClock replaces time.Now for the cache (tests).
func withClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

type key struct {
	identity  age.Identity
	recipient string
	keyID     string
}

// Keyring holds the identities of one key file and a DEK cache. It is safe
// for concurrent use. Its identities are fixed at Load; to pick up a rotated
// key file, Load again and swap (and ForgetAll on the old one to wipe its
// cache at once).
type Keyring struct {
	keys    map[string]*key // by key id
	order   []string        // key ids in file order, without duplicates
	current *key            // the last identity in the file
	cache   *dekCache       // nil when disabled

	onUnwrap func() // test hook, called on every age unwrap
}

// Load reads every identity in the age key file at path (hybrid
// "AGE-SECRET-KEY-PQ-1…" and X25519 "AGE-SECRET-KEY-1…" lines; '#' comments
// and blank lines are skipped). The last identity is the current one, used
// for new seals and as Rewrap's target. The file must be a regular file that
// group and others cannot access.
func Load(path string, opts ...Option) (*Keyring, error) {
	o := options{cacheSize: DefaultCacheSize, cacheTTL: DefaultCacheTTL, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	if !hasIdentityLine(data) {
		return nil, fmt.Errorf("%w: %s", ErrNoIdentities, path)
	}
	var ids []age.Identity
	protect(func() { ids, err = age.ParseIdentities(bytes.NewReader(data)) })
	if err != nil {
		// age keeps key material out of its parse errors.
		return nil, fmt.Errorf("keyring: parse key file %s: %w", path, err)
	}
	k := &Keyring{keys: make(map[string]*key, len(ids))}
	for i, id := range ids {
		var recipient string
		switch id := id.(type) {
		case *age.HybridIdentity:
			recipient = id.Recipient().String()
		case *age.X25519Identity:
			recipient = id.Recipient().String()
		default:
			return nil, fmt.Errorf("keyring: key file %s: identity %d is of unsupported type %T", path, i+1, id)
		}
		kid := vault.KeyID(recipient)
		if _, dup := k.keys[kid]; dup {
			// The same key twice: keep one entry, but let its position
			// (last wins) decide which is current.
			k.order = removeString(k.order, kid)
		}
		k.keys[kid] = &key{identity: id, recipient: recipient, keyID: kid}
		k.order = append(k.order, kid)
	}
	k.current = k.keys[k.order[len(k.order)-1]]
	if o.cacheSize > 0 && o.cacheTTL > 0 {
		k.cache = newDEKCache(o.cacheSize, o.cacheTTL, o.now)
	}
	return k, nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keyring: key file %s does not exist; generate one first: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: open key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: stat key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("keyring: key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; run: chmod 600 %s", ErrInsecureKeyFile, path, perm, path)
	}
	if st.Size() > maxKeyFileSize {
		return nil, fmt.Errorf("keyring: key file %s is %d bytes, over the %d byte limit", path, st.Size(), maxKeyFileSize)
	}
	data := make([]byte, 0, st.Size()+1)
	for {
		n, err := f.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			clear(data)
			return nil, fmt.Errorf("keyring: read key file: %w", err)
		}
		if len(data) == cap(data) {
			// The file grew while being read; refuse rather than realloc
			// (which would leave an unwiped copy behind).
			clear(data)
			return nil, fmt.Errorf("keyring: key file %s changed while being read", path)
		}
	}
}

// hasIdentityLine reports whether data has a line that is neither blank nor
// a comment. It slices data in place: no copy of a key line is made.
func hasIdentityLine(data []byte) bool {
	for line := range bytes.Lines(data) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 && line[0] != '#' {
			return true
		}
	}
	return false
}

func removeString(s []string, v string) []string {
	out := s[:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// Recipient returns the current (last) identity's public recipient, to build
// the vault.Sealer for new seals.
func (k *Keyring) Recipient() string { return k.current.recipient }

// KeyID returns the current identity's key id.
func (k *Keyring) KeyID() string { return k.current.keyID }

// KeyIDs returns the key ids of every identity, in file order (the last is
// the current one). Rows under any other key id cannot be opened.
func (k *Keyring) KeyIDs() []string { return append([]string(nil), k.order...) }

// DerivedKeys returns a 32-byte key for purpose derived from each identity
// (HKDF-SHA256 over its private key encoding; purpose is the info), the
// current identity's first. A derived key reveals nothing of the identity
// and opens no credential: it lets every server holding the same key file
// agree on a secret (a MAC key) without storing one anywhere.
func (k *Keyring) DerivedKeys(purpose string) [][]byte {
	order := []string{k.current.keyID}
	for _, kid := range k.order {
		if kid != k.current.keyID {
			order = append(order, kid)
		}
	}
	out := make([][]byte, 0, len(order))
	for _, kid := range order {
		var secret []byte
		switch id := k.keys[kid].identity.(type) {
		case *age.HybridIdentity:
			secret = []byte(id.String())
		case *age.X25519Identity:
			secret = []byte(id.String())
		}
		key, err := hkdf.Key(sha256.New, secret, nil, "connec derived key: "+purpose, 32)
		clear(secret)
		if err == nil {
			out = append(out, key)
		}
	}
	return out
}

// Open unseals s for the row ad names and returns its fields, which the
// caller must Wipe when done. It fails with ErrUnknownKeyID if no identity
// in the key file has s.KeyID, and with ErrTampered if the wrapped DEK does
// not open under that key or the ciphertext does not authenticate under the
// DEK and ad — as when a row's ciphertext or wrapped DEK was swapped with
// another row's. It never returns another row's secret.
func (k *Keyring) Open(s vault.Sealed, ad vault.AD) (vault.Fields, error) {
	adBytes, err := ad.Bytes()
	if err != nil {
		return nil, err
	}
	kk, ok := k.keys[s.KeyID]
	if !ok {
		return nil, k.unknown(s.KeyID)
	}
	var fields vault.Fields
	protect(func() { fields, err = k.open(kk, s, ad, adBytes) })
	return fields, err
}

func (k *Keyring) open(kk *key, s vault.Sealed, ad vault.AD, adBytes []byte) (vault.Fields, error) {
	var dek [vault.DEKSize]byte
	defer clear(dek[:])
	var (
		ck     cacheKey
		fp     [32]byte
		cached bool
	)
	if k.cache != nil {
		ck = cacheKey{cred: uuid.MustParse(ad.CredentialID), version: ad.Version, keyID: kk.keyID} // ad.Bytes validated it
		fp = sha256.Sum256(s.WrappedDEK)
		cached = k.cache.get(ck, fp, &dek)
	}
	if !cached {
		if err := k.unwrap(kk, s.WrappedDEK, &dek); err != nil {
			return nil, fmt.Errorf("%w: credential %s version %d: %w", ErrTampered, ad.CredentialID, ad.Version, err)
		}
	}
	fields, err := openCiphertext(&dek, s.Ciphertext, adBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: credential %s version %d: %w", ErrTampered, ad.CredentialID, ad.Version, err)
	}
	if !cached && k.cache != nil {
		k.cache.put(ck, fp, &dek)
	}
	return fields, nil
}

var (
	errCiphertextShort = errors.New("ciphertext too short")
	errCiphertextAuth  = errors.New("ciphertext does not authenticate with this data key and row")
	errPlaintextFormat = errors.New("plaintext is not a canonical field encoding")
	errDEKSize         = errors.New("wrapped payload is not a data key")
)

// openCiphertext opens nonce || AEAD(fields) and decodes the fields.
func openCiphertext(dek *[vault.DEKSize]byte, ct, adBytes []byte) (vault.Fields, error) {
	aead, err := chacha20poly1305.NewX(dek[:])
	if err != nil {
		return nil, err
	}
	if len(ct) < aead.NonceSize()+aead.Overhead() {
		return nil, errCiphertextShort
	}
	plaintext, err := aead.Open(nil, ct[:aead.NonceSize()], ct[aead.NonceSize():], adBytes)
	if err != nil {
		return nil, errCiphertextAuth
	}
	defer clear(plaintext)
	return decodeFields(plaintext)
}

// decodeFields inverts vault's canonical encoding: a JSON object of base64
// values. Decoded bytes are copied into Secrets and wiped.
func decodeFields(plaintext []byte) (vault.Fields, error) {
	var raw map[string][]byte
	if err := json.Unmarshal(plaintext, &raw); err != nil || len(raw) == 0 {
		return nil, errPlaintextFormat // the json error may quote plaintext
	}
	fields := make(vault.Fields, len(raw))
	for name, b := range raw {
		fields[name] = vault.NewSecret(b)
		clear(b)
	}
	return fields, nil
}

// unwrap decrypts a wrapped DEK with kk's identity into dek.
func (k *Keyring) unwrap(kk *key, wrapped []byte, dek *[vault.DEKSize]byte) error {
	if k.onUnwrap != nil {
		k.onUnwrap()
	}
	r, err := age.Decrypt(bytes.NewReader(wrapped), kk.identity)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		if errors.As(err, &noMatch) {
			return fmt.Errorf("wrapped data key is not wrapped to key %s", kk.keyID)
		}
		return fmt.Errorf("unwrap data key with key %s: %w", kk.keyID, err)
	}
	// One byte more than a DEK, to tell a longer payload from a DEK.
	var buf [vault.DEKSize + 1]byte
	defer clear(buf[:])
	n, err := io.ReadFull(r, buf[:])
	switch {
	case err == io.ErrUnexpectedEOF && n == vault.DEKSize:
	case err == nil || err == io.EOF || err == io.ErrUnexpectedEOF:
		return errDEKSize
	default:
		return fmt.Errorf("unwrap data key with key %s: %w", kk.keyID, err)
	}
	copy(dek[:], buf[:vault.DEKSize])
	return nil
}

// Rewrap unwraps wrappedDEK with the identity fromKeyID names and wraps the
// DEK again to the current recipient, for key rotation: the row's ciphertext
// is unchanged, and its wrapped_dek and key_id become newWrapped and
// newKeyID. The DEK is wiped before Rewrap returns.
func (k *Keyring) Rewrap(wrappedDEK []byte, fromKeyID string) (newWrapped []byte, newKeyID string, err error) {
	from, ok := k.keys[fromKeyID]
	if !ok {
		return nil, "", k.unknown(fromKeyID)
	}
	protect(func() {
		var dek [vault.DEKSize]byte
		defer clear(dek[:])
		if err = k.unwrap(from, wrappedDEK, &dek); err != nil {
			err = fmt.Errorf("%w: %w", ErrTampered, err)
			return
		}
		newWrapped, err = wrapDEK(dek[:], k.current.identity)
	})
	if err != nil {
		return nil, "", err
	}
	return newWrapped, k.current.keyID, nil
}

// wrapDEK encrypts dek as an age file to id's recipient: the same format
// vault.Sealer writes.
func wrapDEK(dek []byte, id age.Identity) ([]byte, error) {
	var r age.Recipient
	switch id := id.(type) {
	case *age.HybridIdentity:
		r = id.Recipient()
	case *age.X25519Identity:
		r = id.Recipient()
	default:
		return nil, fmt.Errorf("keyring: identity of unsupported type %T", id)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		return nil, fmt.Errorf("keyring: wrap data key: %w", err)
	}
	if _, err := w.Write(dek); err != nil {
		return nil, fmt.Errorf("keyring: wrap data key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("keyring: wrap data key: %w", err)
	}
	return buf.Bytes(), nil
}

func (k *Keyring) unknown(keyID string) error {
	return fmt.Errorf("%w %q: the key file holds %s (was the key removed before its rows were rewrapped?)",
		ErrUnknownKeyID, keyID, strings.Join(k.order, ", "))
}

// Forget drops every cached DEK of the credential (all versions and keys)
// and wipes it. Call it on each connec_credential notification.
func (k *Keyring) Forget(credentialID string) {
	if k.cache != nil {
		k.cache.forget(credentialID)
	}
}

// ForgetAll drops and wipes every cached DEK (on a lost notification
// connection, or before dropping the Keyring).
func (k *Keyring) ForgetAll() {
	if k.cache != nil {
		k.cache.forgetAll()
	}
}
