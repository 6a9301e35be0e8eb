package vault

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"filippo.io/age"
	"github.com/google/uuid"
	"golang.org/x/crypto/chacha20poly1305"
)

// adPrefix versions the associated-data encoding (and so the envelope).
const adPrefix = "connec/cred/v1"

// AD is the row a sealed credential belongs to, authenticated as associated
// data: a ciphertext opens only with the AD it was sealed with.
type AD struct {
	CredentialID string // connector_credentials.id (a UUID)
	InstanceID   string // connector_credentials.instance_id (a UUID)
	Version      int    // connector_credentials.version, >= 1
}

// Bytes returns the canonical encoding of ad: "connec/cred/v1", a zero byte,
// the credential id and the instance id as 16 raw bytes each, and the version
// as 8 big-endian bytes. Every field has a fixed size, so the encoding is
// unambiguous, and UUIDs are compared by value, not by spelling.
func (ad AD) Bytes() ([]byte, error) {
	cred, inst, err := ad.parse()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(adPrefix)+1+16+16+8)
	b = append(b, adPrefix...)
	b = append(b, 0)
	b = append(b, cred[:]...)
	b = append(b, inst[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(ad.Version))
	return b, nil
}

// Validate reports whether ad can be encoded.
func (ad AD) Validate() error {
	_, _, err := ad.parse()
	return err
}

func (ad AD) parse() (cred, inst uuid.UUID, err error) {
	if cred, err = uuid.Parse(ad.CredentialID); err != nil {
		return cred, inst, fmt.Errorf("%w: credential id %q is not a UUID", ErrInvalidAD, ad.CredentialID)
	}
	if inst, err = uuid.Parse(ad.InstanceID); err != nil {
		return cred, inst, fmt.Errorf("%w: instance id %q is not a UUID", ErrInvalidAD, ad.InstanceID)
	}
	if ad.Version < 1 {
		return cred, inst, fmt.Errorf("%w: version %d is not >= 1", ErrInvalidAD, ad.Version)
	}
	return cred, inst, nil
}

// Sealed is a sealed credential as stored: it holds no plaintext and no key
// material in the clear.
type Sealed struct {
	Ciphertext []byte // nonce || XChaCha20-Poly1305(DEK, fields, AD)
	WrappedDEK []byte // age file, to the KEK recipient, holding the DEK
	KeyID      string // KeyID of the KEK recipient
}

// KeyID returns the stable, public identifier of a KEK recipient: "kek-" and
// the first 16 hex digits of the SHA-256 of its canonical string (as age's
// Recipient.String prints it; NewSealer canonicalizes).
func KeyID(recipient string) string {
	sum := sha256.Sum256([]byte(recipient))
	return "kek-" + hex.EncodeToString(sum[:8])
}

// Sealer seals credentials to one KEK recipient. It holds only the public
// key, so it can seal but never unseal. It is safe for concurrent use.
type Sealer struct {
	recipient age.Recipient
	canonical string
	keyID     string
}

// NewSealer returns a Sealer for an age recipient: hybrid post-quantum
// ("age1pq1…", the default kind) or X25519 ("age1…").
func NewSealer(recipient string) (*Sealer, error) {
	recipient = strings.TrimSpace(recipient)
	var (
		r         age.Recipient
		canonical string
	)
	switch {
	case strings.HasPrefix(recipient, "age1pq1"):
		h, err := age.ParseHybridRecipient(recipient)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidRecipient, err)
		}
		r, canonical = h, h.String()
	case strings.HasPrefix(recipient, "age1"):
		x, err := age.ParseX25519Recipient(recipient)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidRecipient, err)
		}
		r, canonical = x, x.String()
	case strings.HasPrefix(strings.ToUpper(recipient), "AGE-SECRET-KEY-"):
		// Never echo it: it is a private key.
		return nil, fmt.Errorf("%w: got a private key; pass the public key (age1pq1… or age1…)", ErrInvalidRecipient)
	default:
		return nil, fmt.Errorf("%w: want an age hybrid (age1pq1…) or X25519 (age1…) public key", ErrInvalidRecipient)
	}
	return &Sealer{recipient: r, canonical: canonical, keyID: KeyID(canonical)}, nil
}

// Recipient returns the canonical recipient string.
func (s *Sealer) Recipient() string { return s.canonical }

// KeyID returns the recipient's KeyID, which Seal stamps on every Sealed.
func (s *Sealer) KeyID() string { return s.keyID }

// Seal encrypts fields for the row named by ad under a fresh DEK and wraps
// the DEK to the recipient. The DEK and the encoded plaintext are wiped
// before Seal returns; fields are left to the caller.
func (s *Sealer) Seal(fields Fields, ad AD) (Sealed, error) {
	adBytes, err := ad.Bytes()
	if err != nil {
		return Sealed{}, err
	}
	if len(fields) == 0 {
		return Sealed{}, ErrNoFields
	}
	for name := range fields {
		if !ValidFieldName(name) {
			return Sealed{}, fmt.Errorf("%w: %q (want 1-64 of A-Z a-z 0-9 _ - .)", ErrInvalidFieldName, name)
		}
	}
	var out Sealed
	protect(func() { out, err = s.seal(fields, adBytes) })
	return out, err
}

func (s *Sealer) seal(fields Fields, adBytes []byte) (Sealed, error) {
	dek := make([]byte, DEKSize)
	defer clear(dek)
	_, _ = rand.Read(dek) // crypto/rand.Read never fails (it crashes the program instead)

	plaintext := encodeFields(fields)
	defer clear(plaintext)

	aead, err := chacha20poly1305.NewX(dek)
	if err != nil {
		return Sealed{}, fmt.Errorf("vault: data key cipher: %w", err)
	}
	ct := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	_, _ = rand.Read(ct)
	ct = aead.Seal(ct, ct[:aead.NonceSize()], plaintext, adBytes)

	wrapped, err := wrapDEK(dek, s.recipient)
	if err != nil {
		return Sealed{}, err
	}
	return Sealed{Ciphertext: ct, WrappedDEK: wrapped, KeyID: s.keyID}, nil
}

// wrapDEK encrypts dek to r as an age file.
func wrapDEK(dek []byte, r age.Recipient) ([]byte, error) {
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		return nil, fmt.Errorf("vault: wrap data key: %w", err)
	}
	if _, err := w.Write(dek); err != nil {
		return nil, fmt.Errorf("vault: wrap data key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("vault: wrap data key: %w", err)
	}
	return buf.Bytes(), nil
}

// encodeFields returns the canonical encoding of f: a JSON object, names
// sorted, values base64 — byte for byte what json.Marshal gives for the
// same map[string][]byte, written into one buffer of exact size so no
// partial copy of the plaintext is left behind to wipe. Names must be valid.
func encodeFields(f Fields) []byte {
	names := f.Names()
	n := 2 + max(len(names)-1, 0)
	for _, k := range names {
		n += len(k) + 5 + base64.StdEncoding.EncodedLen(f[k].Len())
	}
	buf := make([]byte, 0, n)
	buf = append(buf, '{')
	for i, k := range names {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '"')
		buf = append(buf, k...)
		buf = append(buf, '"', ':', '"')
		buf = base64.StdEncoding.AppendEncode(buf, f[k].Expose())
		buf = append(buf, '"')
	}
	return append(buf, '}')
}
