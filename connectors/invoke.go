package connectors

import (
	"context"
	"encoding/json"
	"regexp"
	"time"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/fault"
)

var operationRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}(\.[a-z][a-z0-9_-]{0,63})+$`)

// maxTimeout bounds what a caller may ask for, before the operation's own cap.
const maxTimeout = 10 * time.Minute

// Invoke runs one operation on one instance for the caller on ctx, scoped to
// the task context on ctx. Policy is checked for the operation's kind
// (connector.read or connector.send) on that operation of that instance.
//
// Durability: a read-kind operation's audit row commits after it runs and
// before its result is returned; a send-kind operation's decision row commits
// before it runs (so nothing is sent unaudited) and its outcome row after.
func (s *Service) Invoke(ctx context.Context, in InvokeInput) (InvokeResult, error) {
	c, err := s.begin(ctx, ToolOpInvoke, authz.ActionRead)
	if err != nil {
		return InvokeResult{}, err
	}
	if !operationRe.MatchString(in.Operation) {
		return InvokeResult{}, c.invalid(ctx, fault.Invalid("operation", "operation must be a namespace.operation name"))
	}
	c.ev.Operation = in.Operation
	if in.TimeoutMS < 0 || time.Duration(in.TimeoutMS)*time.Millisecond > maxTimeout {
		return InvokeResult{}, c.invalid(ctx, fault.Invalid("timeout_ms", "timeout_ms must be between 0 and %d", maxTimeout.Milliseconds()))
	}
	if len(in.Arguments) == 0 || string(in.Arguments) == "null" {
		in.Arguments = json.RawMessage(`{}`)
	}
	inst, err := c.lookup(ctx, in.InstanceID, false, s.pool)
	if err != nil {
		return InvokeResult{}, err
	}
	ct, ok := s.reg.Type(inst.Type)
	op, opOK := (*CompiledOp)(nil), false
	if ok {
		op, opOK = ct.Op(in.Operation)
	}
	if opOK && op.Kind == KindSend {
		c.ev.Action = authz.ActionSend
	} else if opOK && op.Kind == KindAdmin {
		c.ev.Action = authz.ActionAdmin
	}
	if err := c.decide(ctx, authz.OperationResource(inst.Owner, inst.Type, inst.ID.UUID(), in.Operation)); err != nil {
		return InvokeResult{}, err
	}
	// From here on the caller may act on this operation of this instance, so
	// telling it about the instance's state reveals nothing it may not know.
	if !ok || !opOK {
		return InvokeResult{}, c.deny(ctx, fault.Invalid("operation", "connector type %s has no operation %q", inst.Type, in.Operation), "unknown operation")
	}
	switch inst.State {
	case StateEnabled:
	case StateUninstalled:
		return InvokeResult{}, c.deny(ctx, fault.New(fault.PolicyDenied, "connector instance is uninstalled"), "instance uninstalled")
	default:
		return InvokeResult{}, c.deny(ctx, fault.New(fault.PolicyDenied, "connector instance is disabled"), "instance disabled")
	}
	if inst.ProjectID != "" && c.ev.Task.ProjectID != inst.ProjectID {
		return InvokeResult{}, c.deny(ctx, fault.New(fault.PolicyDenied, "connector instance is scoped to another project"), "project scope mismatch")
	}
	if err := validateAgainst(op.In, in.Arguments, "arguments"); err != nil {
		return InvokeResult{}, c.deny(ctx, err, "invalid argument: arguments do not match the operation's input schema")
	}

	cred, err := liveCredential(ctx, s.pool, inst.ID)
	if err != nil {
		return InvokeResult{}, c.fail(ctx, err)
	}
	if cred == nil && ct.Spec.CredentialRequired {
		return InvokeResult{}, c.fail(ctx, fault.New(fault.CredentialMissing, "the instance has no credential; create one with %s", ToolCredentialCreate))
	}

	if op.Kind != KindRead {
		// Nothing leaves for the outside world before its decision is on disk.
		pre := c.ev
		pre.Status = audit.StatusOK
		pre.Reason = c.ev.Reason + " (dispatched)"
		pre.Duration = s.now().Sub(c.start)
		if err := s.audit.Record(ctx, pre); err != nil {
			s.log.ErrorContext(ctx, "audit write failed before send", "err", err)
			return InvokeResult{}, fault.Wrap(fault.Unavailable, err, "audit trail unavailable")
		}
	}
	started := s.now()
	res, err := s.runner.Execute(ctx, ExecRequest{Type: ct, Op: op, Instance: inst, Args: in.Arguments,
		Timeout: time.Duration(in.TimeoutMS) * time.Millisecond, Credential: cred})
	if err != nil {
		return InvokeResult{}, c.fail(ctx, err)
	}
	if res.Redacted {
		c.ev.Reason += "; credential material redacted from the result"
	}
	out := InvokeResult{InstanceID: inst.ID, Operation: op.Name, Output: res.Output, Truncated: res.Truncated,
		DurationMS: s.now().Sub(started).Milliseconds()}
	if err := c.ok(ctx); err != nil {
		return InvokeResult{}, err
	}
	return out, nil
}
