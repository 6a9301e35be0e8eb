package commit

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/callctx"
)

// Unit is one call's share of a group commit: its audit event, and
// optionally the guard that must hold for any of it to be written and the
// run record it starts or finishes. Everything in a unit commits together
// or not at all.
type Unit struct {
	Event audit.Event
	// Guard, if set, lets the unit commit only while what the call was
	// decided with is still so in the database.
	Guard *Guard
	// Start records a run as it is dispatched; Finish records its outcome.
	Start  *RunStart
	Finish *RunFinish
}

// Guard is what a call was decided with and must still hold when its
// decision row commits. Zero fields are not checked.
type Guard struct {
	// Instance must be enabled.
	Instance string
	// Credential, if set, must still be Instance's, active, unexpired and
	// at Version.
	Credential *CredentialRef
	// PolicyVersion must still be the policy's version (the call was
	// decided under it).
	PolicyVersion int64
	// Token must still be valid: not revoked, not expired, not deleted.
	Token string
	// User must still exist and not be disabled.
	User string
}

// CredentialRef names a credential at the version a call used.
type CredentialRef struct {
	ID      string
	Version int
}

// RunStart is a run record as its call is dispatched.
type RunStart struct {
	ID            string
	InstanceID    string
	ConnectorType string
	Operation     string
	Kind          string
	Subject       callctx.Subject
	RequestID     string
	Task          callctx.TaskContext
	// Status is pending (async) or running.
	Status string
	Async  bool
	// IdempotencyKey, with its expiry and the hash of the arguments it
	// pins, when the caller gave one (see Writer.Reserve).
	IdempotencyKey     string
	IdempotencyExpires *time.Time
	ArgsHash           []byte
	BytesIn            int
	// ServerID is the lease of the server that runs it, so that another
	// server fails it should this one stop ("" without a lease).
	ServerID string
}

// RunFinish is a run's outcome. It changes only a run still pending or
// running: one already failed (its server was taken for stopped) stays so.
type RunFinish struct {
	ID           string
	Status       string
	ErrorType    string
	ErrorMessage string
	Attempts     int
	BytesOut     int
	Truncated    bool
	Redacted     bool
	// Result is kept for idempotent and async runs (nil otherwise).
	Result    json.RawMessage
	StartedAt time.Time
}

// Refusal is why a guard refused a unit.
type Refusal string

// Refusals, in the order the guard checks them.
const (
	InstanceDisabled    Refusal = "instance_disabled"
	InstanceUninstalled Refusal = "instance_uninstalled"
	CredentialRevoked   Refusal = "credential_revoked"
	CredentialDisabled  Refusal = "credential_disabled"
	CredentialExpired   Refusal = "credential_expired"
	CredentialRotated   Refusal = "credential_rotated"
	PolicyMoved         Refusal = "policy_moved"
	TokenRevoked        Refusal = "token_revoked"
	TokenExpired        Refusal = "token_expired"
	UserGone            Refusal = "user_gone"
	UserDisabled        Refusal = "user_disabled"
)

// Refused is the error of a unit its guard refused: nothing of it was
// written.
type Refused struct{ Reason Refusal }

func (r *Refused) Error() string { return fmt.Sprintf("commit refused: %s", r.Reason) }
