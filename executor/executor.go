// Package executor runs connector operations. It is the only package that
// unseals credentials (through its internal keyring), and every operation,
// whatever the transport, passes through Execute: credential unsealing,
// timeout cap, execution, redaction of credential material, output
// validation and size cap.
package executor

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/executor/internal/keyring"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/jsonschema"
	"github.com/connec/connec/internal/platform/retry"
	"github.com/connec/connec/vault"
)

// DefaultMaxResultBytes caps an operation's result.
const DefaultMaxResultBytes = 4 << 20

// Executor runs operations for the connectors service.
type Executor struct {
	log      *slog.Logger
	maxBytes int
	keyFile  string
	keys     *keyring.Keyring

	guardsMu sync.Mutex
	guards   map[guardKey]*egress.Guard
}

// guardKey names an instance's egress guard: its id, type and the exact
// configuration the guard was built from.
type guardKey struct {
	instance, typ string
	config        [sha256.Size]byte
}

// maxGuards bounds the guards kept (and their idle connections).
const maxGuards = 1024

// guard returns the instance's egress guard, reusing one built for the same
// instance and configuration so its connections are kept alive across
// calls. Guards hold no credential.
func (e *Executor) guard(req connectors.ExecRequest) (*egress.Guard, error) {
	key := guardKey{instance: req.InstanceID, typ: req.Type.Spec.Name, config: sha256.Sum256(req.Config)}
	e.guardsMu.Lock()
	g, ok := e.guards[key]
	e.guardsMu.Unlock()
	if ok {
		return g, nil
	}
	g, err := egress.ForInstance(req.Type.Spec.EgressHosts, req.Type.Driver, req.Config, egress.Options{})
	if err != nil {
		return nil, err
	}
	e.guardsMu.Lock()
	defer e.guardsMu.Unlock()
	if e.guards == nil || len(e.guards) >= maxGuards {
		for _, old := range e.guards {
			old.CloseIdleConnections()
		}
		e.guards = map[guardKey]*egress.Guard{}
	}
	if prev, ok := e.guards[key]; ok {
		return prev, nil
	}
	e.guards[key] = g
	return g, nil
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

// DerivedKeys returns a key for purpose derived from each key of the key
// file, the current key's first (nil without a key file): the servers of
// one deployment derive the same keys, and nothing derived opens a
// credential.
func (e *Executor) DerivedKeys(purpose string) [][]byte {
	if e.keys == nil {
		return nil
	}
	return e.keys.DerivedKeys(purpose)
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
		InstanceID: req.InstanceID,
		Config:     req.Config,
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
	// The driver reaches only the hosts its type declares, narrowed by the
	// instance's configuration, checked at dial time and on redirects.
	guard, err := e.guard(req)
	if err != nil {
		return connectors.ExecResult{}, fault.Wrap(fault.Permanent, err, "the instance's network configuration is not allowed")
	}
	inv.Egress = guard
	inv.Findings = &connectors.Findings{}
	defer inv.Findings.Wipe()
	// Progress and elicitation reach the caller only while the execution
	// runs: after it, the credential is wiped and could not be redacted.
	var live sync.Mutex
	ended := false
	defer func() { live.Lock(); ended = true; live.Unlock() }() // before the wipes
	if req.Progress != nil {
		// A progress message leaves before the result's redaction:
		// redacted on its own, by what the driver has declared so far.
		inv.Progress = func(progress, total float64, message string) {
			live.Lock()
			defer live.Unlock()
			if ended {
				return
			}
			if message != "" {
				red := driverkit.ForInvocation(inv)
				message = red.String(message)
				red.Wipe()
			}
			req.Progress(progress, total, message)
		}
	}
	inv.Input = req.Input
	if req.Log != nil {
		// A log message leaves before the result's redaction: redacted on
		// its own, like progress.
		inv.Log = func(level, logger string, data json.RawMessage) {
			live.Lock()
			defer live.Unlock()
			if ended {
				return
			}
			red := driverkit.ForInvocation(inv)
			clean, _, err := Redact(data, red)
			logger = red.String(logger)
			red.Wipe()
			if err != nil {
				return // not JSON: not passed on
			}
			req.Log(level, logger, clean)
		}
	}
	if req.Watch != nil {
		// An update leaves before the result's redaction: its URI is
		// redacted on its own, like a progress message.
		w := *req.Watch
		updated := w.Updated
		w.Updated = func(uri string) {
			live.Lock()
			defer live.Unlock()
			if ended || updated == nil {
				return
			}
			red := driverkit.ForInvocation(inv)
			uri = red.String(uri)
			red.Wipe()
			updated(uri)
		}
		inv.Watch = &w
	}
	if req.Elicit != nil {
		// What the driver asks the user leaves before the result's
		// redaction: redacted on its own, like progress.
		inv.Elicit = func(ctx context.Context, request json.RawMessage) (json.RawMessage, error) {
			live.Lock()
			if ended {
				live.Unlock()
				return nil, fault.New(fault.Unavailable, "the operation has ended")
			}
			red := driverkit.ForInvocation(inv)
			clean, _, err := Redact(request, red)
			red.Wipe()
			live.Unlock() // the user's answer may take long: not held meanwhile
			if err != nil {
				return nil, fault.Wrap(fault.Validation, err, "an elicitation request is not valid JSON")
			}
			return req.Elicit(ctx, clean)
		}
	}

	timeout := req.Op.Timeout
	if req.Timeout > 0 && req.Timeout < timeout {
		timeout = req.Timeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, attempts, err := e.invoke(rctx, req, inv)
	// The final redaction, over whatever the driver returns: the
	// credential's secret fields, what its kind's authentication derives
	// from them ("Bearer <token>", "user:password") and what the driver
	// declared it sent, in every encoding driverkit matches.
	red := driverkit.ForInvocation(inv)
	defer red.Wipe()
	if err != nil {
		// A read that failed transiently and ran out of time retrying is
		// reported as the service's failure, not as our timeout.
		retried := attempts > 1 && errors.Is(err, fault.ErrTransient)
		if !retried && (errors.Is(err, context.DeadlineExceeded) || errors.Is(rctx.Err(), context.DeadlineExceeded)) {
			return connectors.ExecResult{Attempts: attempts}, fault.Wrap(fault.Timeout, redactCause(err, red), "operation did not finish within %s", timeout)
		}
		var fe *fault.Error
		if errors.As(err, &fe) {
			return connectors.ExecResult{Attempts: attempts}, redactError(fe, red)
		}
		return connectors.ExecResult{Attempts: attempts}, fault.Wrap(fault.Permanent, redactCause(err, red), "operation failed")
	}
	if len(out) > e.maxBytes {
		return connectors.ExecResult{}, fault.New(fault.ResponseTooLarge, "operation result is %d bytes, over the %d byte cap", len(out), e.maxBytes)
	}
	out, redacted, err := Redact(out, red)
	if err != nil {
		return connectors.ExecResult{}, fault.Wrap(fault.Validation, err, "operation result is not valid JSON")
	}
	// Drivers that redact on their own (http, mail, openclaw) say so.
	redacted = redacted || inv.Findings.Redacted()
	if redacted {
		e.log.WarnContext(ctx, "credential material found in an operation result and redacted",
			"type", req.Type.Spec.Name, "operation", req.Op.Name, "instance", req.InstanceID)
		if req.Op.SaysRedacted {
			if out, err = markRedacted(out); err != nil {
				return connectors.ExecResult{}, fault.Wrap(fault.Validation, err, "operation result is not a JSON object")
			}
		}
	}
	if err := req.Op.Out.Validate(out); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			e.log.WarnContext(ctx, "connector returned an invalid result", "type", req.Type.Spec.Name, "operation", req.Op.Name, "violations", fmt.Sprint(ve.Violations))
		}
		return connectors.ExecResult{}, fault.Wrap(fault.Validation, err, "operation result does not match its output schema")
	}
	return connectors.ExecResult{Output: out, Redacted: redacted, Attempts: attempts}, nil
}

// invoke calls the driver; a read-kind operation that fails transiently is
// retried with exponential backoff while its timeout allows (no wait that
// would end past the deadline). Send-kind operations are never retried
// here: a retry could send twice. When the deadline cuts a retry short,
// the earlier transient failure is the answer: the service kept failing,
// it was not slow.
func (e *Executor) invoke(ctx context.Context, req connectors.ExecRequest, inv connectors.Invocation) ([]byte, int, error) {
	// Waits of 50–100ms, doubling up to 3.2–6.4s.
	b := retry.Backoff{Min: 100 * time.Millisecond, Max: 6400 * time.Millisecond}
	var last error
	for attempt := 1; ; attempt++ {
		out, err := req.Type.Driver.Invoke(ctx, inv)
		if err != nil && last != nil && ctx.Err() != nil {
			return nil, attempt, last
		}
		if err == nil || req.Op.Kind != connectors.KindRead || !errors.Is(err, fault.ErrTransient) {
			return out, attempt, err
		}
		last = err
		wait := b.Next()
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return out, attempt, err
		}
		if retry.Sleep(ctx, wait) != nil {
			return nil, attempt, err
		}
	}
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

var _ connectors.Runner = (*Executor)(nil)
