// Package fault defines connec's stable error types and the one error value
// that crosses every boundary: a Type a caller can rely on, a message safe to
// show, and the internal cause kept for logs and errors.Is only.
package fault

import (
	"errors"
	"fmt"
)

// Type is a stable, documented error class returned to callers.
type Type string

// The stable error types. Callers switch on these; never rename one.
const (
	InvalidArgument    Type = "invalid_argument"
	NotFound           Type = "not_found"
	PolicyDenied       Type = "policy_denied"
	Conflict           Type = "conflict"
	Unavailable        Type = "unavailable"
	Internal           Type = "internal"
	Unauthenticated    Type = "unauthenticated"
	CredentialRevoked  Type = "credential_revoked"
	CredentialExpired  Type = "credential_expired"
	CredentialDisabled Type = "credential_disabled"
	CredentialMissing  Type = "credential_missing"
	Validation         Type = "validation_error"
	Timeout            Type = "timeout"
	Permanent          Type = "permanent"
	Transient          Type = "transient"
	QuotaExceeded      Type = "quota_exceeded"
	ResponseTooLarge   Type = "response_too_large"
)

// Types lists every stable error type, in the order the documentation gives them.
func Types() []Type {
	return []Type{InvalidArgument, NotFound, PolicyDenied, Conflict, Unavailable, Internal, Unauthenticated,
		CredentialRevoked, CredentialDisabled, CredentialExpired, CredentialMissing, Validation, Timeout, Permanent,
		Transient, QuotaExceeded, ResponseTooLarge}
}

// Sentinels for errors.Is. Each matches any *Error of the same Type.
var (
	ErrInvalidArgument   = &Error{Type: InvalidArgument}
	ErrNotFound          = &Error{Type: NotFound}
	ErrPolicyDenied      = &Error{Type: PolicyDenied}
	ErrConflict          = &Error{Type: Conflict}
	ErrUnavailable       = &Error{Type: Unavailable}
	ErrInternal          = &Error{Type: Internal}
	ErrUnauthenticated   = &Error{Type: Unauthenticated}
	ErrCredentialRevoked = &Error{Type: CredentialRevoked}
	ErrCredentialExpired = &Error{Type: CredentialExpired}
	ErrValidation        = &Error{Type: Validation}
	ErrTimeout           = &Error{Type: Timeout}
	ErrTransient         = &Error{Type: Transient}
	ErrPermanent         = &Error{Type: Permanent}
	ErrResponseTooLarge  = &Error{Type: ResponseTooLarge}
	ErrQuotaExceeded     = &Error{Type: QuotaExceeded}
)

// Error is connec's error. Message and Details are shown to callers; Cause is
// not: it is for logs and errors.Is/As.
type Error struct {
	Type    Type
	Message string
	Details map[string]any
	Cause   error
}

// Error renders the type, the public message and, for logs, the cause.
func (e *Error) Error() string {
	msg := string(e.Type)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap exposes the internal cause to errors.Is/As.
func (e *Error) Unwrap() error { return e.Cause }

// Is reports whether target is an *Error sentinel of the same Type.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Cause == nil && t.Details == nil && t.Type == e.Type
}

// New returns an error of type t with a public message.
func New(t Type, format string, args ...any) *Error {
	return &Error{Type: t, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of type t with a public message and an internal cause.
func Wrap(t Type, cause error, format string, args ...any) *Error {
	return &Error{Type: t, Message: fmt.Sprintf(format, args...), Cause: cause}
}

// Invalid is shorthand for an invalid_argument error naming the bad field.
func Invalid(field, format string, args ...any) *Error {
	e := New(InvalidArgument, format, args...)
	if field != "" {
		e.Details = map[string]any{"field": field}
	}
	return e
}

// DetailMCPCode is the Details key of the JSON-RPC error code an MCP
// server refused a request with, where the MCP spec defines that code as
// the caller's own answer (a client capability the server requires,
// -32021): an MCP caller is answered with that code rather than a tool
// error.
const DetailMCPCode = "mcp_code"

// DetailRequiredCapabilities is the Details key, beside DetailMCPCode
// -32021, of the client capabilities the server requires (an object).
const DetailRequiredCapabilities = "required_capabilities"

// MCPCode returns the code err carries under DetailMCPCode, if any, and
// its details.
func MCPCode(err error) (int, map[string]any, bool) {
	var fe *Error
	if !errors.As(err, &fe) {
		return 0, nil, false
	}
	switch c := fe.Details[DetailMCPCode].(type) {
	case int:
		return c, fe.Details, true
	case float64: // read back from JSON
		return int(c), fe.Details, c == float64(int(c))
	}
	return 0, nil, false
}

// WithDetails returns a copy of e carrying details.
func (e *Error) WithDetails(d map[string]any) *Error {
	c := *e
	c.Details = d
	return &c
}

// As converts any error into an *Error: connec errors pass through, anything
// else becomes internal with a generic message (its text stays in Cause).
func As(err error) *Error {
	if err == nil {
		return nil
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return &Error{Type: Internal, Message: "internal error", Cause: err}
}

// Public is the caller-safe view of an error: type, message, details.
type Public struct {
	Type    Type           `json:"type"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

// PublicOf returns what a caller may see of err. The cause never appears.
func PublicOf(err error) Public {
	fe := As(err)
	msg := fe.Message
	if msg == "" {
		msg = defaultMessage(fe.Type)
	}
	return Public{Type: fe.Type, Message: msg, Details: fe.Details}
}

func defaultMessage(t Type) string {
	switch t {
	case NotFound:
		return "not found"
	case PolicyDenied:
		return "denied by policy"
	case Unavailable:
		return "service unavailable, try again"
	case Unauthenticated:
		return "authentication required"
	case Conflict:
		return "conflict with current state"
	case InvalidArgument:
		return "invalid argument"
	default:
		return "internal error"
	}
}

// Describe says what a stable error type means to a caller, for the
// documentation.
func Describe(t Type) string {
	return descriptions[t]
}

var descriptions = map[Type]string{
	InvalidArgument:    "the input is malformed or names something that cannot be; nothing changed",
	NotFound:           "no such instance, credential or run",
	PolicyDenied:       "policy does not allow it (default deny); a caller without rights cannot tell a missing thing from a forbidden one",
	Conflict:           "the current state forbids it (a live credential exists, an idempotency key was used with other arguments, a run still pending)",
	Unavailable:        "the database, the policy or the audit trail cannot be reached (the message says whether the operation ran); try again",
	Internal:           "a defect; the audit row and the server log have the request id",
	Unauthenticated:    "no valid token",
	CredentialRevoked:  "the instance's credential was revoked",
	CredentialDisabled: "the instance's credential is disabled",
	CredentialExpired:  "the instance's credential has expired",
	CredentialMissing:  "the operation needs a credential and the instance has none",
	Validation:         "an operation's arguments or result do not match its schema",
	Timeout:            "the operation did not finish within its timeout",
	Permanent:          "the connector's service refused or failed in a way retrying will not fix",
	Transient:          "the connector's service failed in a way a retry may fix",
	QuotaExceeded:      "over a rate limit (details say when to retry)",
	ResponseTooLarge:   "the operation's result is over the size cap",
}
