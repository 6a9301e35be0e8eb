// Package executor runs connector operations. It is the only package that
// unseals credentials (through its internal keyring), and every operation,
// whatever the transport, passes through Execute: credential unsealing,
// timeout cap, execution, redaction of credential material, output
// validation and size cap.
package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/executor/internal/keyring"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/jsonschema"
	"github.com/connec/connec/vault"
)

// DefaultMaxResultBytes caps an operation's result.
const DefaultMaxResultBytes = 1 << 20

// Executor runs operations for the connectors service.
type Executor struct {
	log      *slog.Logger
	maxBytes int
	keyFile  string
	keys     *keyring.Keyring
}

// Option configures an Executor.
type Option func(*Executor)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(e *Executor) { e.log = l } }

// WithMaxResultBytes caps result size.
func WithMaxResultBytes(n int) Option { return func(e *Executor) { e.maxBytes = n } }

// WithKeyFile loads the key-encryption identities from an age identity file.
// Without it the executor runs operations that need no credential only.
func WithKeyFile(path string) Option { return func(e *Executor) { e.keyFile = path } }

// New returns an executor.
func New(opts ...Option) (*Executor, error) {
	e := &Executor{log: slog.Default(), maxBytes: DefaultMaxResultBytes}
	for _, o := range opts {
		o(e)
	}
	if e.keyFile != "" {
		kr, err := keyring.Load(e.keyFile)
		if err != nil {
			return nil, fmt.Errorf("load key file: %w", err)
		}
		e.keys = kr
	}
	return e, nil
}

// Recipient returns the public age recipient new credentials are sealed
// to, and its key id ("" without a key file). Both are public.
func (e *Executor) Recipient() (recipient, keyID string) {
	if e.keys == nil {
		return "", ""
	}
	return e.keys.Recipient(), e.keys.KeyID()
}

// KeyIDs lists the key ids the loaded key file holds.
func (e *Executor) KeyIDs() []string {
	if e.keys == nil {
		return nil
	}
	return e.keys.KeyIDs()
}

// Forget drops any cached data key of a credential (on rotate, revoke,
// disable; announced by the database on every server).
func (e *Executor) Forget(credentialID string) {
	if e.keys != nil {
		e.keys.Forget(credentialID)
	}
}

// ForgetAll drops every cached data key.
func (e *Executor) ForgetAll() {
	if e.keys != nil {
		e.keys.ForgetAll()
	}
}

// Execute runs req under its timeout and validates what comes back.
func (e *Executor) Execute(ctx context.Context, req connectors.ExecRequest) (connectors.ExecResult, error) {
	inv := connectors.Invocation{
		InstanceID: string(req.Instance.ID),
		Config:     req.Instance.Config,
		Operation:  req.Op.Name,
		Args:       req.Args,
	}
	if req.Credential != nil {
		fields, err := e.open(ctx, req.Credential)
		if err != nil {
			return connectors.ExecResult{}, err
		}
		defer fields.Wipe()
		inv.Credential = fields
		inv.CredentialKind = req.Credential.Kind
	}
	timeout := req.Op.Timeout
	if req.Timeout > 0 && req.Timeout < timeout {
		timeout = req.Timeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := req.Type.Driver.Invoke(rctx, inv)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(rctx.Err(), context.DeadlineExceeded) {
			return connectors.ExecResult{}, fault.Wrap(fault.Timeout, err, "operation did not finish within %s", timeout)
		}
		var fe *fault.Error
		if errors.As(err, &fe) {
			return connectors.ExecResult{}, redactError(fe, inv.Credential)
		}
		return connectors.ExecResult{}, fault.Wrap(fault.Permanent, err, "operation failed")
	}
	if len(out) > e.maxBytes {
		return connectors.ExecResult{}, fault.New(fault.ResponseTooLarge, "operation result is %d bytes, over the %d byte cap", len(out), e.maxBytes)
	}
	out, redacted, err := Redact(out, inv.Credential)
	if err != nil {
		return connectors.ExecResult{}, fault.Wrap(fault.Validation, err, "operation result is not valid JSON")
	}
	if redacted {
		e.log.WarnContext(ctx, "credential material found in an operation result and redacted",
			"type", req.Type.Spec.Name, "operation", req.Op.Name, "instance", req.Instance.ID)
	}
	if err := req.Op.Out.Validate(out); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			e.log.WarnContext(ctx, "connector returned an invalid result", "type", req.Type.Spec.Name, "operation", req.Op.Name, "violations", fmt.Sprint(ve.Violations))
		}
		return connectors.ExecResult{}, fault.Wrap(fault.Validation, err, "operation result does not match its output schema")
	}
	return connectors.ExecResult{Output: out, Redacted: redacted}, nil
}

func (e *Executor) open(ctx context.Context, c *connectors.SealedCredential) (vault.Fields, error) {
	if e.keys == nil {
		return nil, fault.New(fault.Unavailable, "no key file is loaded; credentials cannot be opened")
	}
	fields, err := e.keys.Open(c.Sealed, c.AD())
	if err != nil {
		// The keyring's errors name ids, never secrets or key material.
		e.log.ErrorContext(ctx, "credential could not be opened", "credential", c.ID, "key_id", c.Sealed.KeyID, "err", err)
		return nil, fault.Wrap(fault.Internal, err, "the instance's credential could not be opened")
	}
	return fields, nil
}

// redactError keeps a driver's error message from carrying credential
// material to the caller.
func redactError(fe *fault.Error, fields vault.Fields) error {
	msg := RedactString(fe.Message, fields)
	if msg == fe.Message {
		return fe
	}
	c := *fe
	c.Message = msg
	return &c
}

var _ connectors.Runner = (*Executor)(nil)
