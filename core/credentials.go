package core

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/vault"
)

// Credential tool names.
const (
	ToolCredentialCreate  = "connector.credential.create"
	ToolCredentialRotate  = "connector.credential.rotate"
	ToolCredentialRevoke  = "connector.credential.revoke"
	ToolCredentialDisable = "connector.credential.disable"
	ToolCredentialEnable  = "connector.credential.enable"
	ToolCredentialList    = "connector.credential.list"
	ToolCredentialGet     = "connector.credential.get"
)

// Credential states.
const (
	CredentialActive   = "active"
	CredentialDisabled = "disabled"
	CredentialRevoked  = "revoked"
)

// maxSecretFieldBytes bounds one secret field.
const maxSecretFieldBytes = 16 << 10

// Sealer seals credential secrets to the current key-encryption key. It can
// only encrypt; opening is the executor's alone.
type Sealer interface {
	Seal(fields vault.Fields, ad vault.AD) (vault.Sealed, error)
	KeyID() string
}

// WithSealer sets the sealer credentials are written with.
func WithSealer(s Sealer) Option { return func(svc *Service) { svc.sealer = s } }

// Credential is a credential's metadata. The secret is write-only: nothing
// that returns a Credential ever carries it.
type Credential struct {
	ID         string     `json:"id"`
	InstanceID InstanceID `json:"instance_id"`
	Kind       string     `json:"kind"`
	State      string     `json:"state"`
	Version    int        `json:"version"`
	Fields     []string   `json:"fields"`
	KeyID      string     `json:"key_id"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	Expired    bool       `json:"expired"`
}

// CredentialInput is what connector.credential.create takes.
type CredentialInput struct {
	InstanceID string            `json:"instance_id" jsonschema:"Connector instance id." schema:"format=uuid"`
	Kind       string            `json:"kind" jsonschema:"Credential kind; the type's catalog entry lists the kinds it accepts." schema:"enum=api_key|basic|bearer|header|login|query"`
	Secret     map[string]string `json:"secret" jsonschema:"Secret fields of the credential kind (bearer: token; basic|login: username, password; header|query: value; api_key: key). Write-only: never returned, logged or audited." schema:"values.minLength=1,values.maxLength=16384"`
	ExpiresAt  *time.Time        `json:"expires_at,omitempty" jsonschema:"When the credential stops working (it then behaves as disabled, with error credential_expired)."`
}

// RotateInput is what connector.credential.rotate takes.
type RotateInput struct {
	CredentialID string            `json:"credential_id" jsonschema:"Credential id." schema:"format=uuid"`
	Secret       map[string]string `json:"secret" jsonschema:"The new secret fields of the credential's kind. Write-only: never returned, logged or audited." schema:"values.minLength=1,values.maxLength=16384"`
	ExpiresAt    *time.Time        `json:"expires_at,omitempty" jsonschema:"When the credential stops working (it then behaves as disabled, with error credential_expired)."`
}

const credentialCols = `id::text, instance_id::text, kind, state, version, fields, key_id, expires_at, created_by,
 created_at, updated_at, revoked_at, COALESCE(expires_at <= now(), false)`

func scanCredential(row pgx.Row) (Credential, error) {
	var c Credential
	var inst string
	err := row.Scan(&c.ID, &inst, &c.Kind, &c.State, &c.Version, &c.Fields, &c.KeyID, &c.ExpiresAt, &c.CreatedBy,
		&c.CreatedAt, &c.UpdatedAt, &c.RevokedAt, &c.Expired)
	c.InstanceID = InstanceID(inst)
	return c, err
}

// secretFields checks a secret against its kind and converts it to vault
// fields at once, so plaintext lives in as few places as possible. The
// messages name fields, never values.
func secretFields(kind string, secret map[string]string) (vault.Fields, error) {
	want, ok := connectors.CredentialKinds[kind]
	if !ok {
		return nil, fault.Invalid("kind", "unknown credential kind %q", kind)
	}
	if len(secret) == 0 {
		return nil, fault.Invalid("secret", "secret is required: fields %s", strings.Join(want, ", "))
	}
	for name := range secret {
		if !contains(want, name) {
			// The unknown name is not repeated: a misplaced secret may be it.
			return nil, fault.Invalid("secret", "secret has a field credential kind %s does not have (fields: %s)", kind, strings.Join(want, ", "))
		}
	}
	fields := make(vault.Fields, len(want))
	for _, name := range want {
		v, ok := secret[name]
		if !ok || v == "" {
			fields.Wipe()
			return nil, fault.Invalid("secret", "secret field %q is required for kind %s", name, kind)
		}
		if len(v) > maxSecretFieldBytes || !utf8.ValidString(v) {
			fields.Wipe()
			return nil, fault.Invalid("secret", "secret field %q must be valid UTF-8 of at most %d bytes", name, maxSecretFieldBytes)
		}
		fields[name] = vault.SecretString(v)
	}
	return fields, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Service) checkExpiry(t *time.Time) error {
	if t != nil && !t.After(s.now()) {
		return fault.Invalid("expires_at", "expires_at must be in the future")
	}
	return nil
}

// CreateCredential seals a new credential for an instance. An instance has
// at most one live (active or disabled) credential; rotate it instead.
func (s *Service) CreateCredential(ctx context.Context, in CredentialInput) (Credential, error) {
	c, err := s.begin(ctx, ToolCredentialCreate, authz.ActionAdmin)
	if err != nil {
		return Credential{}, err
	}
	if s.sealer == nil {
		return Credential{}, c.fail(ctx, fault.New(fault.Unavailable, "no key is loaded for sealing credentials"))
	}
	if err := s.checkExpiry(in.ExpiresAt); err != nil {
		return Credential{}, c.invalid(ctx, err)
	}
	fields, err := secretFields(in.Kind, in.Secret)
	if err != nil {
		return Credential{}, c.invalid(ctx, err)
	}
	defer fields.Wipe()
	inst, err := c.lookup(ctx, in.InstanceID, false, s.pool)
	if err != nil {
		return Credential{}, err
	}
	if err := c.decide(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID())); err != nil {
		return Credential{}, err
	}
	ct, ok := s.reg.Type(inst.Type)
	if !ok || !contains(ct.Spec.CredentialKinds, in.Kind) {
		kinds := []string{}
		if ok {
			kinds = ct.Spec.CredentialKinds
		}
		return Credential{}, c.deny(ctx, fault.Invalid("kind", "connector type %s accepts credential kinds [%s], not %q", inst.Type, strings.Join(kinds, ", "), in.Kind), "invalid argument: credential kind")
	}
	if inst.State == StateUninstalled {
		return Credential{}, c.fail(ctx, fault.New(fault.Conflict, "connector instance %s is uninstalled", inst.ID))
	}
	id := uuid.NewString()
	sealed, err := s.sealer.Seal(fields, vault.AD{CredentialID: id, InstanceID: string(inst.ID), Version: 1})
	if err != nil {
		return Credential{}, c.fail(ctx, fault.Wrap(fault.Internal, err, "could not seal the credential"))
	}
	c.ev.Reason += " (credential " + id + ")"
	var out Credential
	err = c.change(ctx, func(tx pgx.Tx) error {
		out, err = scanCredential(tx.QueryRow(ctx, `INSERT INTO connector_credentials
 (id, instance_id, kind, fields, ciphertext, wrapped_dek, key_id, expires_at, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING `+credentialCols,
			id, string(inst.ID), in.Kind, fields.Names(), sealed.Ciphertext, sealed.WrappedDEK, sealed.KeyID, in.ExpiresAt, string(c.p.Subject)))
		if err != nil {
			if errors.Is(db.Map(err), fault.ErrConflict) {
				return fault.New(fault.Conflict, "instance %s already has a live credential: rotate it, or revoke it first", inst.ID)
			}
			return db.Map(err)
		}
		return nil
	})
	s.forget(inst.ID)
	return out, err
}

// lookupCredential resolves a credential id to its row and instance for a
// call, with the same rule as instances: a subject without rights cannot
// tell a missing credential from a forbidden one.
func (c *call) lookupCredential(ctx context.Context, raw string) (Credential, Instance, error) {
	u, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		return Credential{}, Instance{}, c.invalid(ctx, fault.Invalid("credential_id", "credential_id must be a uuid"))
	}
	cred, err := scanCredential(c.s.pool.QueryRow(ctx, `SELECT `+credentialCols+` FROM connector_credentials WHERE id = $1`, u.String()))
	if errors.Is(db.Map(err), fault.ErrNotFound) {
		if derr := c.decide(ctx, authz.InstanceResource("unknown", "unknown", uuid.Nil)); derr != nil {
			return Credential{}, Instance{}, derr
		}
		return Credential{}, Instance{}, c.fail(ctx, fault.New(fault.NotFound, "credential %s not found", u))
	}
	if err != nil {
		return Credential{}, Instance{}, c.fail(ctx, db.Map(err))
	}
	inst, err := getInstance(ctx, c.s.pool, cred.InstanceID, false)
	if err != nil {
		return Credential{}, Instance{}, c.fail(ctx, err)
	}
	c.target(inst)
	c.ev.Reason = "credential " + cred.ID
	return cred, inst, nil
}

// RotateCredential replaces a credential's secret: same credential id, same
// instance id, version + 1. Cached data keys for it are dropped everywhere.
func (s *Service) RotateCredential(ctx context.Context, in RotateInput) (Credential, error) {
	c, err := s.begin(ctx, ToolCredentialRotate, authz.ActionAdmin)
	if err != nil {
		return Credential{}, err
	}
	if s.sealer == nil {
		return Credential{}, c.fail(ctx, fault.New(fault.Unavailable, "no key is loaded for sealing credentials"))
	}
	if err := s.checkExpiry(in.ExpiresAt); err != nil {
		return Credential{}, c.invalid(ctx, err)
	}
	cred, inst, err := c.lookupCredential(ctx, in.CredentialID)
	if err != nil {
		return Credential{}, err
	}
	if err := c.decide(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID())); err != nil {
		return Credential{}, err
	}
	fields, err := secretFields(cred.Kind, in.Secret)
	if err != nil {
		return Credential{}, c.deny(ctx, err, "invalid argument: secret")
	}
	defer fields.Wipe()
	var out Credential
	err = c.change(ctx, func(tx pgx.Tx) error {
		var state string
		var version int
		if err := tx.QueryRow(ctx, `SELECT state, version FROM connector_credentials WHERE id = $1 FOR UPDATE`, cred.ID).Scan(&state, &version); err != nil {
			return db.Map(err)
		}
		if state == CredentialRevoked {
			return fault.New(fault.Conflict, "credential %s is revoked; create a new one", cred.ID)
		}
		sealed, err := s.sealer.Seal(fields, vault.AD{CredentialID: cred.ID, InstanceID: string(inst.ID), Version: version + 1})
		if err != nil {
			return fault.Wrap(fault.Internal, err, "could not seal the credential")
		}
		out, err = scanCredential(tx.QueryRow(ctx, `UPDATE connector_credentials SET version = version + 1, ciphertext = $2,
 wrapped_dek = $3, key_id = $4, fields = $5, expires_at = COALESCE($6, expires_at), updated_at = now()
WHERE id = $1 RETURNING `+credentialCols, cred.ID, sealed.Ciphertext, sealed.WrappedDEK, sealed.KeyID, fields.Names(), in.ExpiresAt))
		return db.Map(err)
	})
	s.forget(inst.ID)
	return out, err
}

// RevokeCredential deactivates a credential at once and for good: the very
// next invocation on this server fails, and on any other server sharing the
// database no send is dispatched and no result is returned with it from the
// moment it commits (see Invoke).
func (s *Service) RevokeCredential(ctx context.Context, id string) (Credential, error) {
	return s.setCredentialState(ctx, ToolCredentialRevoke, id, CredentialRevoked)
}

// DisableCredential deactivates a credential until it is enabled again.
func (s *Service) DisableCredential(ctx context.Context, id string) (Credential, error) {
	return s.setCredentialState(ctx, ToolCredentialDisable, id, CredentialDisabled)
}

// EnableCredential reactivates a disabled credential.
func (s *Service) EnableCredential(ctx context.Context, id string) (Credential, error) {
	return s.setCredentialState(ctx, ToolCredentialEnable, id, CredentialActive)
}

func (s *Service) setCredentialState(ctx context.Context, tool, id, state string) (Credential, error) {
	c, err := s.begin(ctx, tool, authz.ActionAdmin)
	if err != nil {
		return Credential{}, err
	}
	cred, inst, err := c.lookupCredential(ctx, id)
	if err != nil {
		return Credential{}, err
	}
	if err := c.decide(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID())); err != nil {
		return Credential{}, err
	}
	var out Credential
	err = c.change(ctx, func(tx pgx.Tx) error {
		var cur string
		if err := tx.QueryRow(ctx, `SELECT state FROM connector_credentials WHERE id = $1 FOR UPDATE`, cred.ID).Scan(&cur); err != nil {
			return db.Map(err)
		}
		if cur == CredentialRevoked && state != CredentialRevoked {
			return fault.New(fault.Conflict, "credential %s is revoked; revocation is final", cred.ID)
		}
		out, err = scanCredential(tx.QueryRow(ctx, `UPDATE connector_credentials SET state = $2, updated_at = now(),
 revoked_at = CASE WHEN $2 = 'revoked' THEN COALESCE(revoked_at, now()) ELSE revoked_at END
WHERE id = $1 RETURNING `+credentialCols, cred.ID, state))
		return db.Map(err)
	})
	s.forget(inst.ID)
	return out, err
}

// ListCredentials returns the metadata of an instance's credentials.
func (s *Service) ListCredentials(ctx context.Context, instanceID string) ([]Credential, error) {
	c, err := s.begin(ctx, ToolCredentialList, authz.ActionAdmin)
	if err != nil {
		return nil, err
	}
	inst, err := c.lookup(ctx, instanceID, false, s.pool)
	if err != nil {
		return nil, err
	}
	if err := c.decide(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID())); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+credentialCols+` FROM connector_credentials WHERE instance_id = $1 ORDER BY created_at, id`, string(inst.ID))
	if err != nil {
		return nil, c.fail(ctx, db.Map(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Credential, error) { return scanCredential(r) })
	if err != nil {
		return nil, c.fail(ctx, db.Map(err))
	}
	if err := c.ok(ctx); err != nil {
		return nil, err
	}
	if out == nil {
		out = []Credential{}
	}
	return out, nil
}

// GetCredential returns one credential's metadata.
func (s *Service) GetCredential(ctx context.Context, id string) (Credential, error) {
	c, err := s.begin(ctx, ToolCredentialGet, authz.ActionAdmin)
	if err != nil {
		return Credential{}, err
	}
	cred, inst, err := c.lookupCredential(ctx, id)
	if err != nil {
		return Credential{}, err
	}
	if err := c.decide(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID())); err != nil {
		return Credential{}, err
	}
	if err := c.ok(ctx); err != nil {
		return Credential{}, err
	}
	return cred, nil
}

// credRow is the instance's most relevant credential row as read for an
// invocation: the live one if any, else the latest revoked one. It holds
// nothing that depends on when it was read (it may be cached): expiry is
// decided at each use against the caller's clock.
type credRow struct {
	id, kind, state, keyID *string
	version                *int
	ciphertext, wrapped    []byte
	expiresAt              *time.Time
}

const (
	credRowCols  = `c.id::text, c.kind, c.state, c.version, c.ciphertext, c.wrapped_dek, c.key_id, c.expires_at`
	credRowOrder = `ORDER BY (c.state = 'revoked'), c.updated_at DESC LIMIT 1`
)

func (r *credRow) dest() []any {
	return []any{&r.id, &r.kind, &r.state, &r.version, &r.ciphertext, &r.wrapped, &r.keyID, &r.expiresAt}
}

// credentialExpired is the refusal state of an active credential past its
// expiry (not a stored state).
const credentialExpired = "expired"

// credentialRefusal is what an invocation answers when the instance's
// credential is revoked, disabled or expired.
func credentialRefusal(state string) *fault.Error {
	switch state {
	case CredentialRevoked:
		return fault.New(fault.CredentialRevoked, "the instance's credential was revoked")
	case CredentialDisabled:
		return fault.New(fault.CredentialDisabled, "the instance's credential is disabled")
	default:
		return fault.New(fault.CredentialExpired, "the instance's credential has expired")
	}
}

// live turns the row into a usable sealed credential, nil when the instance
// has none, or the error that says why it cannot be used at now.
func (r *credRow) live(inst InstanceID, now time.Time) (*connectors.SealedCredential, error) {
	if r.id == nil {
		return nil, nil
	}
	if err := r.refusal(now); err != nil {
		return nil, err
	}
	return &connectors.SealedCredential{ID: *r.id, InstanceID: string(inst), Kind: *r.kind, Version: *r.version,
		Sealed: vault.Sealed{Ciphertext: r.ciphertext, WrappedDEK: r.wrapped, KeyID: *r.keyID}}, nil
}

// refusal is why the credential in r cannot be used at now (revoked,
// disabled, expired), or nil. r must name a credential.
func (r *credRow) refusal(now time.Time) error {
	switch {
	case *r.state == CredentialRevoked:
		return credentialRefusal(CredentialRevoked)
	case *r.state == CredentialDisabled:
		return credentialRefusal(CredentialDisabled)
	case r.expiresAt != nil && !now.Before(*r.expiresAt):
		return credentialRefusal(credentialExpired)
	}
	return nil
}

// revokeAllCredentials revokes every live credential of an instance (on
// uninstall). The row trigger announces each change so executors drop any
// cached key material at once.
func revokeAllCredentials(ctx context.Context, q db.Querier, id InstanceID) error {
	_, err := q.Exec(ctx, `UPDATE connector_credentials SET state = 'revoked', revoked_at = now(), updated_at = now()
WHERE instance_id = $1 AND state <> 'revoked'`, string(id))
	return db.Map(err)
}
