// Package audit keeps connec's audit trail: one append-only, hash-chained
// row for every call, allowed or denied, saying who, what, on which
// instance, for which task, the decision and its outcome — never arguments,
// results or secrets. A call whose row cannot be written fails.
//
// The trail is several hash chains, one per writer, so servers sharing a
// database never wait for each other to append (chain.go): each row's hash
// covers a canonical encoding of all its fields, its chain and position
// there, and the previous row's hash in that chain (row.go); each chain's
// head is kept in audit_chains. Verify walks every chain together and names
// the first broken link; Export writes rows as JSON Lines; List pages them;
// EnsurePartitions keeps the monthly partitions. Rows are written by
// package commit, the group commit that writes them with the run records
// and guards of the calls they describe.
package audit

import (
	"errors"
	"time"

	"github.com/connec/connec/callctx"
)

// Decision values.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Status values.
const (
	StatusOK    = "ok"
	StatusError = "error"
)

// Errors.
var (
	// ErrInvalidEvent: the event cannot be stored as given.
	ErrInvalidEvent = errors.New("audit: invalid event")
	// ErrChainBroken: Verify found a broken link (see Report.Err).
	ErrChainBroken = errors.New("audit: chain broken")
	// ErrMalformedRow: a stored row cannot be encoded (e.g. a non-uuid id).
	ErrMalformedRow = errors.New("audit: malformed row")
	// ErrUnknownHashVersion: a row names a hash version this build lacks.
	ErrUnknownHashVersion = errors.New("audit: unknown hash version")
	// ErrPartitionBlocked: a month's partition cannot be created because
	// rows for that month already sit in the default partition (they stay
	// there, fully part of the chain; later months are unaffected).
	ErrPartitionBlocked = errors.New("audit: rows for the month are in the default partition")
)

// Event is one audit row as a caller describes it. It never holds
// arguments, results or secrets. At is set to the current time when zero;
// it is stored with microsecond precision.
type Event struct {
	At            time.Time
	RequestID     string
	Transport     string
	Subject       callctx.Subject
	Groups        []callctx.Subject
	Action        string
	Tool          string
	ConnectorType string
	InstanceID    string
	Operation     string
	Resource      string
	Decision      string
	Reason        string
	PolicyVersion int64
	Task          callctx.TaskContext
	Status        string
	ErrorType     string
	Duration      time.Duration
	// Count is how many calls the row stands for (0 means 1). Only failed
	// authentications are aggregated (identity/authlimit): one row per
	// source and interval, its count the refusals it stands for.
	Count int64
}
