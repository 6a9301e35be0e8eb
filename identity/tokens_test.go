package identity_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
)

func TestCreateToken(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	alice, _ := s.CreateUser(ctx, "alice")
	eng, _ := s.CreateGroup(ctx, "eng")
	tests := []struct {
		name      string
		subject   callctx.Subject
		tokName   string
		ttl       time.Duration
		wantErr   fault.Type
		wantField string
	}{
		{"no expiry", alice.Subject(), "", 0, "", ""},
		{"named, 720h", alice.Subject(), "laptop", 720 * time.Hour, "", ""},
		{"upper-case subject", callctx.Subject("user:" + strings.ToUpper(alice.ID.String())), "", time.Minute, "", ""},
		{"group subject", eng.Subject(), "", 0, fault.InvalidArgument, "subject"},
		{"unknown user", callctx.UserSubject(uuid.New()), "", 0, fault.NotFound, ""},
		{"malformed subject", "alice", "", 0, fault.InvalidArgument, "subject"},
		{"bad name", alice.Subject(), "my laptop", 0, fault.InvalidArgument, "name"},
		{"negative ttl", alice.Subject(), "", -time.Second, fault.InvalidArgument, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, tok, err := s.CreateToken(ctx, tt.subject, tt.tokName, tt.ttl)
			if tt.wantErr != "" {
				wantFault(t, err, tt.wantErr, tt.wantField)
				if plain != "" {
					t.Fatalf("token returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(plain, identity.TokenPrefix) {
				t.Fatalf("token %q lacks prefix %q", plain, identity.TokenPrefix)
			}
			raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(plain, identity.TokenPrefix))
			if err != nil || len(raw) != 32 {
				t.Fatalf("token %q is not 32 bytes of unpadded base64url: %v", plain, err)
			}
			if tok.ID == uuid.Nil || tok.Subject != alice.Subject() || tok.Name != tt.tokName || !tok.RevokedAt.IsZero() {
				t.Fatalf("token metadata = %+v", tok)
			}
			if tt.ttl == 0 && !tok.ExpiresAt.IsZero() {
				t.Fatalf("expires_at = %v, want none", tok.ExpiresAt)
			}
			if tt.ttl > 0 && tok.ExpiresAt.Sub(tok.CreatedAt) != tt.ttl {
				t.Fatalf("expires %v after creation, want %v", tok.ExpiresAt.Sub(tok.CreatedAt), tt.ttl)
			}
		})
	}
	t.Run("tokens differ", func(t *testing.T) {
		a, _, err := s.CreateToken(ctx, alice.Subject(), "", 0)
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := s.CreateToken(ctx, alice.Subject(), "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if a == b {
			t.Fatal("two tokens are equal")
		}
	})
}

func TestTokenNotStored(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	alice, _ := s.CreateUser(ctx, "alice")
	plain, tok, err := s.CreateToken(ctx, alice.Subject(), "ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.TrimPrefix(plain, identity.TokenPrefix)
	raw, _ := base64.RawURLEncoding.DecodeString(body)

	var rowText string
	var stored []byte
	if err := pool.QueryRow(ctx, `SELECT t::text, t.token_hash FROM api_tokens t WHERE id = $1`, tok.ID).Scan(&rowText, &stored); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{plain, body, body[:16], hex.EncodeToString(raw), hex.EncodeToString(raw[:8])} {
		if strings.Contains(strings.ToLower(rowText), strings.ToLower(secret)) {
			t.Fatalf("api_tokens row %s contains token material %q", rowText, secret)
		}
	}
	if want := sha256.Sum256([]byte(plain)); !bytes.Equal(stored, want[:]) {
		t.Fatalf("token_hash = %x, want sha256 of the token", stored)
	}
	// Nothing in any table of the database holds it either.
	var hits int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM (
			SELECT t::text AS r FROM api_tokens t UNION ALL SELECT u::text FROM users u
			UNION ALL SELECT c::text FROM casbin_rule c UNION ALL SELECT a::text FROM audit_events a) x
		WHERE strpos(r, $1) > 0`, body).Scan(&hits); err != nil {
		t.Fatal(err)
	}
	if hits != 0 {
		t.Fatalf("token found in %d rows", hits)
	}
}

// TestAuthenticate runs against a Store reading the database every time and
// against one following change notifications (each bearer tried twice, so
// the second answer may come from memory): both must answer alike.
func TestAuthenticate(t *testing.T) {
	t.Run("database", func(t *testing.T) {
		s, pool := newStore(t)
		testAuthenticate(t, s, pool)
	})
	t.Run("cached", func(t *testing.T) {
		f := newFollowed(t)
		testAuthenticate(t, f.s, f.pool)
	})
}

func testAuthenticate(t *testing.T, s *identity.Store, pool *pgxpool.Pool) {
	ctx := context.Background()
	alice, _ := s.CreateUser(ctx, "alice")
	bob, _ := s.CreateUser(ctx, "bob")
	var groups []callctx.Subject
	for _, name := range []string{"z", "m", "a"} {
		g, _ := s.CreateGroup(ctx, name)
		if _, err := s.AddMember(ctx, g.ID, alice.ID); err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g.Subject())
	}
	mint := func(t *testing.T, sub callctx.Subject) (string, identity.Token) {
		t.Helper()
		plain, tok, err := s.CreateToken(ctx, sub, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return plain, tok
	}

	good, _ := mint(t, alice.Subject())
	revoked, revokedTok := mint(t, alice.Subject())
	if _, err := s.RevokeToken(ctx, revokedTok.ID); err != nil {
		t.Fatal(err)
	}
	expired, expiredTok := mint(t, alice.Subject())
	if _, err := pool.Exec(ctx, `UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, expiredTok.ID); err != nil {
		t.Fatal(err)
	}
	orphan, _ := mint(t, bob.Subject())
	if _, err := pool.Exec(ctx, `DELETE FROM users WHERE id = $1`, bob.ID); err != nil {
		t.Fatal(err)
	}
	unknown := identity.TokenPrefix + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	body := strings.TrimPrefix(good, identity.TokenPrefix)
	// Flip the last character to one that differs only in the two unused
	// low bits: lenient base64 would decode it to the same bytes.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	sloppyBody := body[:len(body)-1] + string(alphabet[strings.IndexByte(alphabet, body[len(body)-1])^1])
	if a, b := mustDecode(t, body), mustDecode(t, sloppyBody); !bytes.Equal(a, b) {
		t.Fatal("sloppy token does not decode leniently to the same bytes; test is wrong")
	}
	sloppy := identity.TokenPrefix + sloppyBody

	tests := []struct {
		name   string
		bearer string
		cause  error // nil: success
	}{
		{"ok", good, nil},
		{"unknown", unknown, identity.ErrTokenUnknown},
		{"revoked", revoked, identity.ErrTokenRevoked},
		{"expired", expired, identity.ErrTokenExpired},
		{"user deleted (token goes with it)", orphan, identity.ErrTokenUnknown},
		{"empty", "", identity.ErrTokenMalformed},
		{"prefix only", identity.TokenPrefix, identity.ErrTokenMalformed},
		{"no prefix", body, identity.ErrTokenMalformed},
		{"wrong prefix", "xyz_" + body, identity.ErrTokenMalformed},
		{"with scheme", "Bearer " + good, identity.ErrTokenMalformed},
		{"trailing space", good + " ", identity.ErrTokenMalformed},
		{"too long", good + "A", identity.ErrTokenMalformed},
		{"too short", good[:len(good)-1], identity.ErrTokenMalformed},
		{"std base64 alphabet", identity.TokenPrefix + strings.Repeat("+", 43), identity.ErrTokenMalformed},
		{"padded", good[:len(good)-1] + "=", identity.ErrTokenMalformed},
		{"non-canonical last char", sloppy, identity.ErrTokenMalformed},
	}
	cold, _ := mint(t, alice.Subject())
	var messages = map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 {
				authenticateCase(t, s, tt.bearer, tt.cause, alice.Subject(), len(groups), messages)
			}
		})
	}
	if len(messages) != 1 {
		t.Fatalf("failures carry %d distinct public messages, want 1: %v", len(messages), messages)
	}
	t.Run("database failure is not unauthenticated", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.Authenticate(cctx, cold) // never authenticated, so not in memory
		if err == nil || fault.As(err).Type == fault.Unauthenticated {
			t.Fatalf("err = %v, want a database fault", err)
		}
	})
}

// authenticateCase checks one authentication of bearer: alice, with
// nGroups sorted groups, if cause is nil; else an unauthenticated fault with
// cause and no details, whose public message goes into messages.
func authenticateCase(t *testing.T, s *identity.Store, bearer string, cause error, alice callctx.Subject, nGroups int, messages map[string]bool) {
	t.Helper()
	p, err := s.Authenticate(context.Background(), bearer)
	if cause == nil {
		if err != nil {
			t.Fatal(err)
		}
		if p.Subject != alice || p.Name != "alice" || len(p.Groups) != nGroups {
			t.Fatalf("principal = %+v", p)
		}
		for i := 1; i < len(p.Groups); i++ {
			if p.Groups[i-1] >= p.Groups[i] {
				t.Fatalf("groups not sorted: %v", p.Groups)
			}
		}
		return
	}
	wantFault(t, err, fault.Unauthenticated, "")
	if !errors.Is(err, cause) {
		t.Fatalf("err = %v, want cause %v", err, cause)
	}
	if p.Subject != "" {
		t.Fatalf("principal returned with an error: %+v", p)
	}
	pub := fault.PublicOf(err)
	if pub.Details != nil {
		t.Fatalf("details leak: %v", pub.Details)
	}
	messages[pub.Message] = true
}

func TestRevokeAndListTokens(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	alice, _ := s.CreateUser(ctx, "alice")
	bob, _ := s.CreateUser(ctx, "bob")
	plain, a, err := s.CreateToken(ctx, alice.Subject(), "one", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := s.CreateToken(ctx, alice.Subject(), "two", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateToken(ctx, bob.Subject(), "bobs", 0); err != nil {
		t.Fatal(err)
	}

	t.Run("revoke", func(t *testing.T) {
		first, err := s.RevokeToken(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if first.RevokedAt.IsZero() {
			t.Fatal("revoked_at not set")
		}
		again, err := s.RevokeToken(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !again.RevokedAt.Equal(first.RevokedAt) {
			t.Fatalf("second revoke moved revoked_at from %v to %v", first.RevokedAt, again.RevokedAt)
		}
		_, err = s.Authenticate(ctx, plain)
		wantFault(t, err, fault.Unauthenticated, "")
		_, err = s.RevokeToken(ctx, uuid.New())
		wantFault(t, err, fault.NotFound, "")
	})
	t.Run("list", func(t *testing.T) {
		for _, tt := range []struct {
			name    string
			subject callctx.Subject
			want    []string
			wantErr fault.Type
		}{
			{"alice", alice.Subject(), []string{"one", "two"}, ""},
			{"bob", bob.Subject(), []string{"bobs"}, ""},
			{"nobody", callctx.UserSubject(uuid.New()), nil, ""},
			{"malformed", "alice", nil, fault.InvalidArgument},
		} {
			t.Run(tt.name, func(t *testing.T) {
				toks, err := s.ListTokens(ctx, tt.subject)
				if tt.wantErr != "" {
					wantFault(t, err, tt.wantErr, "subject")
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(toks) != len(tt.want) {
					t.Fatalf("tokens = %+v, want names %v", toks, tt.want)
				}
				for i, tok := range toks {
					if tok.Name != tt.want[i] || tok.Subject != tt.subject {
						t.Fatalf("token %d = %+v, want name %q", i, tok, tt.want[i])
					}
				}
			})
		}
		toks, _ := s.ListTokens(ctx, alice.Subject())
		if toks[0].ID != a.ID || toks[0].RevokedAt.IsZero() || toks[1].ID != b.ID || !toks[1].RevokedAt.IsZero() || toks[1].ExpiresAt.IsZero() {
			t.Fatalf("alice's tokens = %+v", toks)
		}
	})
}

// mustDecode decodes unpadded base64url leniently (ignoring unused bits).
func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
