// Package executor runs connector operations. It is the only package that
// unseals credentials (through its internal keyring), and every operation,
// whatever the transport, passes through Execute: timeout cap, execution,
// output validation and size cap.
package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/jsonschema"
)

// DefaultMaxResultBytes caps an operation's result.
const DefaultMaxResultBytes = 1 << 20

// Executor runs operations for the connectors service.
type Executor struct {
	log      *slog.Logger
	maxBytes int
}

// Option configures an Executor.
type Option func(*Executor)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(e *Executor) { e.log = l } }

// WithMaxResultBytes caps result size.
func WithMaxResultBytes(n int) Option { return func(e *Executor) { e.maxBytes = n } }

// New returns an executor.
func New(opts ...Option) *Executor {
	e := &Executor{log: slog.Default(), maxBytes: DefaultMaxResultBytes}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Execute runs req under its timeout and validates what comes back.
func (e *Executor) Execute(ctx context.Context, req connectors.ExecRequest) (connectors.ExecResult, error) {
	timeout := req.Op.Timeout
	if req.Timeout > 0 && req.Timeout < timeout {
		timeout = req.Timeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := req.Type.Driver.Invoke(rctx, connectors.Invocation{
		InstanceID: string(req.Instance.ID),
		Config:     req.Instance.Config,
		Operation:  req.Op.Name,
		Args:       req.Args,
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(rctx.Err(), context.DeadlineExceeded) {
			return connectors.ExecResult{}, fault.Wrap(fault.Timeout, err, "operation did not finish within %s", timeout)
		}
		var fe *fault.Error
		if errors.As(err, &fe) {
			return connectors.ExecResult{}, err
		}
		return connectors.ExecResult{}, fault.Wrap(fault.Permanent, err, "operation failed")
	}
	if len(out) > e.maxBytes {
		return connectors.ExecResult{}, fault.New(fault.ResponseTooLarge, "operation result is %d bytes, over the %d byte cap", len(out), e.maxBytes)
	}
	if err := req.Op.Out.Validate(out); err != nil {
		var ve *jsonschema.ValidationError
		msg := "operation result does not match its output schema"
		if errors.As(err, &ve) {
			e.log.WarnContext(ctx, "connector returned an invalid result", "type", req.Type.Spec.Name, "operation", req.Op.Name, "violations", fmt.Sprint(ve.Violations))
		}
		return connectors.ExecResult{}, fault.Wrap(fault.Validation, err, "%s", msg)
	}
	return connectors.ExecResult{Output: out}, nil
}

var _ connectors.Runner = (*Executor)(nil)
