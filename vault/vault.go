// Package vault seals connector credentials for storage; it cannot unseal
// them. Its one job is to turn a credential's secret fields into ciphertext
// that only the executor's keyring can open.
//
// # Envelope
//
// Each Seal call draws a fresh random 256-bit data key (DEK) and:
//
//   - encodes the fields canonically: a JSON object with the field names
//     sorted and each value base64 (the exact bytes json.Marshal gives for a
//     map[string][]byte), so any byte string survives and equal fields encode
//     equally;
//   - seals that with XChaCha20-Poly1305 under the DEK. Ciphertext is the
//     24-byte random nonce followed by the AEAD output;
//   - authenticates, as associated data, the row the secret belongs to
//     (AD.Bytes: "connec/cred/v1", a zero byte, the credential id and the
//     instance id as 16 raw UUID bytes each, the version as 8 big-endian
//     bytes). A ciphertext copied into another row, or replayed at another
//     version, fails to open;
//   - wraps the DEK with age to the key-encryption key (KEK) recipient: the
//     wrapped DEK is an age file whose payload is the 32-byte DEK.
//
// The database stores Sealed as is: ciphertext, wrapped_dek and key_id (KeyID
// of the recipient, so rotation can find the rows still under an old key).
//
// # Seal only
//
// vault holds only the public recipient. Reading identities, unwrapping a
// DEK and opening ciphertext live in executor/internal/keyring,
// which Go's internal rule and internal/archtest keep out of every other
// package. The key file helpers here write new identities (generation is the
// one moment vault sees private key material) but never parse one.
//
// # Key kind: hybrid post-quantum by default
//
// connec defaults to age's hybrid ML-KEM-768 + X25519 keys (recipients
// "age1pq1…", GenerateKeyFile with hybrid=true). Wrapped DEKs sit in the
// database and its backups for years, so an adversary who copies them today
// could unwrap X25519-only DEKs once a cryptographically relevant quantum
// computer exists ("harvest now, decrypt later"). The hybrid KEM keeps the
// X25519 guarantee if ML-KEM were ever broken, and the ML-KEM guarantee
// against a quantum adversary. The costs are small here: a wrapped DEK of
// about 1.7 KB instead of about 230 bytes, and a slower unwrap that the
// keyring's DEK cache takes off the hot path. X25519 ("age1…") stays
// supported for operators who need interoperability with older age tooling.
// The symmetric layer (XChaCha20-Poly1305, 256-bit keys) needs no change for
// post-quantum security.
//
// # Secrets in memory
//
// Secret and Fields render as [REDACTED] in every printing, logging and
// marshalling path. Wiping is best effort: Go may have copied bytes (strings,
// the age and AEAD internals) where no wipe reaches. Built with
// GOEXPERIMENT=runtimesecret, sealing and key generation run inside
// runtime/secret.Do, which also erases their stack, registers and
// temporary heap allocations.
package vault

import "errors"

// DEKSize is the size in bytes of a data key.
const DEKSize = 32

// Sentinel errors. Messages never contain secret values or key material.
var (
	ErrInvalidAD        = errors.New("vault: invalid associated data")
	ErrNoFields         = errors.New("vault: no secret fields to seal")
	ErrInvalidFieldName = errors.New("vault: invalid field name")
	ErrInvalidRecipient = errors.New("vault: invalid recipient")
	ErrKeyFileExists    = errors.New("vault: key file already exists")
	ErrInsecureKeyFile  = errors.New("vault: key file is accessible to group or others")
)
