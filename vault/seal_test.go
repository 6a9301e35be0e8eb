package vault_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/connec/connec/vault"
)

type kind struct {
	name   string
	hybrid bool
}

var kinds = []kind{{"hybrid", true}, {"x25519", false}}

// newIdentity returns a fresh identity and its recipient string. Tests may
// hold identities; the package under test never does.
func newIdentity(t testing.TB, hybrid bool) (age.Identity, string) {
	t.Helper()
	if hybrid {
		id, err := age.GenerateHybridIdentity()
		if err != nil {
			t.Fatal(err)
		}
		return id, id.Recipient().String()
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id, id.Recipient().String()
}

var testAD = vault.AD{
	CredentialID: "8f14e45f-ceea-467a-9b9e-0c2b1c6d7e01",
	InstanceID:   "c9f0f895-fb98-4b91-a3c5-7d3b0c1e2f02",
	Version:      3,
}

func testFields() vault.Fields {
	return vault.Fields{
		"token":    vault.SecretString(plain),
		"username": vault.SecretString("alice"),
		"binary":   vault.NewSecret([]byte{0, 0xff, '"', '\\', '\n', 0x80}),
	}
}

func TestREQ_CONNEC_0104_CiphertextWithKeyID(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			_, recipient := newIdentity(t, k.hybrid)
			s, err := vault.NewSealer(recipient)
			if err != nil {
				t.Fatal(err)
			}
			sealed, err := s.Seal(testFields(), testAD)
			if err != nil {
				t.Fatal(err)
			}

			// The key id names the KEK, stably and publicly.
			if sealed.KeyID == "" || sealed.KeyID != s.KeyID() || sealed.KeyID != vault.KeyID(recipient) {
				t.Fatalf("KeyID = %q, sealer %q, KeyID(recipient) %q", sealed.KeyID, s.KeyID(), vault.KeyID(recipient))
			}
			if !strings.HasPrefix(sealed.KeyID, "kek-") || len(sealed.KeyID) != len("kek-")+16 {
				t.Fatalf("KeyID %q is not kek-<16 hex>", sealed.KeyID)
			}
			if strings.Contains(sealed.KeyID, recipient) {
				t.Fatal("KeyID embeds the recipient")
			}

			// Nothing of the plaintext, in any encoding, is in what is stored.
			for _, stored := range [][]byte{sealed.Ciphertext, sealed.WrappedDEK, []byte(sealed.KeyID)} {
				for _, needle := range []string{plain, base64.StdEncoding.EncodeToString([]byte(plain)), "alice", "token", "username"} {
					if bytes.Contains(stored, []byte(needle)) {
						t.Fatalf("stored bytes contain %q", needle)
					}
				}
			}
			// Fresh DEK and nonce each time: sealing again gives other bytes.
			again, err := s.Seal(testFields(), testAD)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(again.Ciphertext, sealed.Ciphertext) || bytes.Equal(again.WrappedDEK, sealed.WrappedDEK) ||
				bytes.Equal(again.Ciphertext[:24], sealed.Ciphertext[:24]) {
				t.Fatal("two seals share ciphertext, nonce or wrapped DEK")
			}
			t.Logf("%s: ciphertext %d bytes, wrapped DEK %d bytes, key id %s", k.name, len(sealed.Ciphertext), len(sealed.WrappedDEK), sealed.KeyID)
		})
	}
}

// TestEnvelopeFormat opens a Sealed by hand, following the package doc, so
// the format is pinned independently of the keyring that implements it.
func TestEnvelopeFormat(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			id, recipient := newIdentity(t, k.hybrid)
			s, err := vault.NewSealer(recipient)
			if err != nil {
				t.Fatal(err)
			}
			fields := testFields()
			sealed, err := s.Seal(fields, testAD)
			if err != nil {
				t.Fatal(err)
			}
			r, err := age.Decrypt(bytes.NewReader(sealed.WrappedDEK), id)
			if err != nil {
				t.Fatal(err)
			}
			dek, err := io.ReadAll(r)
			if err != nil || len(dek) != vault.DEKSize {
				t.Fatalf("DEK: %d bytes, %v", len(dek), err)
			}
			aead, err := chacha20poly1305.NewX(dek)
			if err != nil {
				t.Fatal(err)
			}
			ad := []byte("connec/cred/v1\x00")
			ad = append(ad, 0x8f, 0x14, 0xe4, 0x5f, 0xce, 0xea, 0x46, 0x7a, 0x9b, 0x9e, 0x0c, 0x2b, 0x1c, 0x6d, 0x7e, 0x01)
			ad = append(ad, 0xc9, 0xf0, 0xf8, 0x95, 0xfb, 0x98, 0x4b, 0x91, 0xa3, 0xc5, 0x7d, 0x3b, 0x0c, 0x1e, 0x2f, 0x02)
			ad = binary.BigEndian.AppendUint64(ad, 3)
			if got, _ := testAD.Bytes(); !bytes.Equal(got, ad) {
				t.Fatalf("AD.Bytes = %x, want %x", got, ad)
			}
			pt, err := aead.Open(nil, sealed.Ciphertext[:24], sealed.Ciphertext[24:], ad)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]byte{}
			for name, v := range fields {
				want[name] = v.Expose()
			}
			wantJSON, _ := json.Marshal(want)
			if !bytes.Equal(pt, wantJSON) {
				t.Fatalf("plaintext is not json.Marshal of the fields:\n got %s\nwant %s", pt, wantJSON)
			}
		})
	}
}

func TestADBytes(t *testing.T) {
	base, err := testAD.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	upper := testAD
	upper.CredentialID = strings.ToUpper(upper.CredentialID)
	if got, _ := upper.Bytes(); !bytes.Equal(got, base) {
		t.Fatal("UUID spelling changes the AD")
	}
	for name, ad := range map[string]vault.AD{
		"credential": {CredentialID: "c9f0f895-fb98-4b91-a3c5-7d3b0c1e2f02", InstanceID: testAD.InstanceID, Version: 3},
		"instance":   {CredentialID: testAD.CredentialID, InstanceID: testAD.CredentialID, Version: 3},
		"version":    {CredentialID: testAD.CredentialID, InstanceID: testAD.InstanceID, Version: 4},
		"swapped":    {CredentialID: testAD.InstanceID, InstanceID: testAD.CredentialID, Version: 3},
	} {
		got, err := ad.Bytes()
		if err != nil || bytes.Equal(got, base) {
			t.Errorf("%s: AD bytes equal or error %v", name, err)
		}
	}
	for name, ad := range map[string]vault.AD{
		"empty":        {},
		"bad cred":     {CredentialID: "x", InstanceID: testAD.InstanceID, Version: 1},
		"bad instance": {CredentialID: testAD.CredentialID, InstanceID: "", Version: 1},
		"version 0":    {CredentialID: testAD.CredentialID, InstanceID: testAD.InstanceID, Version: 0},
	} {
		if _, err := ad.Bytes(); !errors.Is(err, vault.ErrInvalidAD) || ad.Validate() == nil {
			t.Errorf("%s: err = %v, want ErrInvalidAD", name, err)
		}
	}
}

func TestNewSealer(t *testing.T) {
	id, recipient := newIdentity(t, true)
	s, err := vault.NewSealer("  " + recipient + "\n")
	if err != nil || s.Recipient() != recipient {
		t.Fatalf("trimmed recipient: %v", err)
	}
	if s.KeyID() != vault.KeyID(recipient) {
		t.Fatal("KeyID differs for a trimmed recipient")
	}

	private := id.(*age.HybridIdentity).String()
	// Change the last checksum character (to one it is not: the key is random).
	last := "q"
	if strings.HasSuffix(recipient, "q") {
		last = "p"
	}
	for name, in := range map[string]string{
		"private key":  private,
		"lower priv":   strings.ToLower(private),
		"empty":        "",
		"ssh":          "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHm",
		"bad checksum": recipient[:len(recipient)-1] + last,
	} {
		_, err := vault.NewSealer(in)
		if !errors.Is(err, vault.ErrInvalidRecipient) {
			t.Errorf("%s: err = %v, want ErrInvalidRecipient", name, err)
			continue
		}
		if strings.Contains(strings.ToUpper(err.Error()), private[20:60]) {
			t.Errorf("%s: error echoes the private key", name)
		}
	}
}

func TestSealRejects(t *testing.T) {
	_, recipient := newIdentity(t, false)
	s, err := vault.NewSealer(recipient)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(nil, testAD); !errors.Is(err, vault.ErrNoFields) {
		t.Errorf("no fields: %v", err)
	}
	if _, err := s.Seal(vault.Fields{"a b": vault.SecretString(plain)}, testAD); !errors.Is(err, vault.ErrInvalidFieldName) {
		t.Errorf("bad name: %v", err)
	} else if strings.Contains(err.Error(), plain) {
		t.Error("error carries the value")
	}
	if _, err := s.Seal(testFields(), vault.AD{}); !errors.Is(err, vault.ErrInvalidAD) {
		t.Errorf("bad AD: %v", err)
	}
}

func TestKeyIDStable(t *testing.T) {
	// Pinned: key ids are stored in the database, so the derivation must not drift.
	const r = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
	if got, want := vault.KeyID(r), "kek-cf7e568231315068"; got != want {
		t.Fatalf("KeyID = %s, want %s", got, want)
	}
	if first, again := vault.KeyID(r), vault.KeyID(r); first != again || first == vault.KeyID(r+"x") {
		t.Fatal("KeyID not a function of the recipient")
	}
}
