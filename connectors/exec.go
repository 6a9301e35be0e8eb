package connectors

import (
	"context"
	"encoding/json"
	"time"

	"github.com/connec/connec/vault"
)

// ExecRequest is one operation for the executor to run.
type ExecRequest struct {
	Type *CompiledType
	Op   *CompiledOp
	// InstanceID and Config name the instance the operation runs on.
	InstanceID string
	Config     json.RawMessage
	Args       json.RawMessage
	// Timeout is what the caller asked for; the executor caps it at the
	// operation's declared timeout.
	Timeout time.Duration
	// Credential is the instance's live credential, still sealed; nil when
	// the instance has none.
	Credential *SealedCredential
	// Progress, if set, receives the progress the driver reports (the
	// executor redacts its messages first).
	Progress Progress
	// Elicit, if set, asks the caller's user (the executor redacts the
	// request first).
	Elicit Elicit
	// Log, if set, receives the log messages the driver passes on (the
	// executor redacts them first).
	Log Log
	// Input is the round of a multi round-trip call, if it is one.
	Input *InputRound
	// Watch, for a watch operation, is its caller's side (the executor
	// redacts the URIs it reports first).
	Watch *Watch
}

// ExecResult is a validated, capped operation result.
type ExecResult struct {
	Output    json.RawMessage
	Truncated bool
	// Redacted is set when credential material was found in the result
	// and replaced; the audit row records it.
	Redacted bool
	// Attempts counts executions (read-kind operations retry transient
	// failures within their timeout).
	Attempts int
}

// Runner runs operations; executor implements it. It is the only
// component that ever sees a credential in plaintext.
type Runner interface {
	Execute(ctx context.Context, req ExecRequest) (ExecResult, error)
}

// CredentialKinds maps each credential kind to the secret fields it holds.
// A connector type lists the kinds it accepts.
var CredentialKinds = map[string][]string{
	"bearer":  {"token"},
	"header":  {"value"},
	"query":   {"value"},
	"api_key": {"key"},
	"basic":   {"username", "password"},
	"login":   {"username", "password"},
}

// IdentifierFields are the credential fields that name an account rather
// than prove it (a username). Redaction matches them only inside the
// values derived from them (user:password and its encodings), never alone:
// a short username such as "api" would otherwise shred unrelated text (a
// path /api/echo).
var IdentifierFields = map[string]bool{"username": true}

// SealedCredential is a live credential as the executor needs it: sealed.
type SealedCredential struct {
	ID         string
	InstanceID string
	Kind       string
	Version    int
	Sealed     vault.Sealed
}

// AD returns the associated data binding the ciphertext to its row.
func (c SealedCredential) AD() vault.AD {
	return vault.AD{CredentialID: c.ID, InstanceID: c.InstanceID, Version: c.Version}
}
