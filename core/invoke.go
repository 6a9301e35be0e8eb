package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/commit"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/metrics"
	"github.com/connec/connec/internal/platform/retry"
)

var operationRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}(\.[a-z][a-z0-9_-]{0,63})+$`)

// maxTimeout bounds what a caller may ask for, before the operation's own cap.
const maxTimeout = 10 * time.Minute

// Invoke runs one operation on one instance for the caller on ctx, scoped to
// the task context on ctx. Policy is checked for the operation's kind
// (connector.read or connector.send) on that operation of that instance.
//
// Durability: every operation's decision row and running run row commit
// before it runs — before anything uses a credential, for reads and sends
// alike — and its outcome rows after it runs and before its result is
// returned. They are units of the group commit (package commit), with
// synchronous_commit on.
//
// Freshness: with WithNotify the instance and its credential row may come
// from memory, up to one change notification behind the database. So the
// decision row commits under a guard (guard.go) that checks in the database
// that the instance is enabled, the credential used still active, unexpired
// and at that version, the policy at the version decided under and the
// caller still valid; if not, the call is refused with the same error an
// up-to-date read gives, and nothing is sent or returned.
func (s *Service) Invoke(ctx context.Context, in InvokeInput) (InvokeResult, error) {
	tool := ToolOpInvoke
	if t, ok := InstanceToolOf(ctx); ok {
		tool = t.Name // the row names the tool the caller used
	}
	c, err := s.begin(ctx, tool, authz.ActionRead)
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
	inst, cr, err := c.lookupWith(ctx, in.InstanceID, func(id InstanceID) (Instance, *credRow, error) {
		i, r, hit, err := s.instanceForInvoke(ctx, id)
		if err == nil && hit && s.wouldRefuse(i, r) {
			// A refusal is never made on memory alone: the instance or its
			// credential may have been re-enabled elsewhere, the
			// announcement still on its way. (Allows are checked by the
			// guard at commit.)
			s.instances.Invalidate(id)
			i, r, _, err = s.instanceForInvoke(ctx, id)
		}
		return i, r, err
	})
	if err != nil {
		return InvokeResult{}, err
	}
	ct, ok := s.reg.Type(inst.Type)
	op, opOK := (*connectors.CompiledOp)(nil), false
	if ok {
		op, opOK = ct.Op(in.Operation)
	}
	if opOK && op.Kind == connectors.KindSend {
		c.ev.Action = authz.ActionSend
	} else if opOK && op.Kind == connectors.KindAdmin {
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
	if err := s.checkPrivateNetwork(ctx, c, ct, inst); err != nil {
		return InvokeResult{}, err
	}
	watch, _ := ctx.Value(watchKey{}).(*connectors.Watch)
	switch {
	case op.MCP == connectors.WatchRole && watch == nil:
		// A watch runs only for a caller that keeps it (MCP's
		// resources/subscribe).
		return InvokeResult{}, c.deny(ctx, fault.Invalid("operation", "operation %s is a resource subscription: subscribe to the resource with MCP resources/subscribe", in.Operation),
			"invalid argument: a subscription is made with resources/subscribe")
	case op.MCP != connectors.WatchRole && watch != nil:
		return InvokeResult{}, c.deny(ctx, fault.Invalid("operation", "operation %s is not a resource subscription", in.Operation),
			"invalid argument: not a subscription")
	}
	if err := validateAgainst(op.In, in.Arguments, "arguments"); err != nil {
		return InvokeResult{}, c.deny(ctx, err, "invalid argument: arguments do not match the operation's input schema")
	}

	if in.IdempotencyKey != "" && (op.Kind == connectors.KindRead || len(in.IdempotencyKey) > 200 || strings.TrimSpace(in.IdempotencyKey) != in.IdempotencyKey) {
		return InvokeResult{}, c.deny(ctx, fault.Invalid("idempotency_key", "idempotency_key is for send-kind operations: 1-200 characters without surrounding space"), "invalid argument: idempotency_key")
	}
	// Read with the instance: in this call, or (cached) as of this server's
	// last change notification for it. A change this server made is seen
	// here at once; one made on another server once its notification
	// arrives (milliseconds) — until then the guard in the commit below
	// refuses a send before it runs and withholds a read's result. Expiry
	// is decided now, by this server's clock.
	cred, err := cr.live(inst.ID, s.now())
	if err != nil {
		return InvokeResult{}, c.fail(ctx, err)
	}
	if cred == nil && ct.Spec.CredentialRequired {
		return InvokeResult{}, c.fail(ctx, fault.New(fault.CredentialMissing, "the instance has no credential; create one with %s", ToolCredentialCreate))
	}
	if err := s.checkLimits(ctx, inst, c.p.Subject); err != nil {
		return InvokeResult{}, c.fail(ctx, err)
	}

	req := job{inst: inst, ExecRequest: connectors.ExecRequest{Type: ct, Op: op, InstanceID: string(inst.ID), Config: inst.Config, Args: in.Arguments,
		Timeout: time.Duration(in.TimeoutMS) * time.Millisecond, Credential: cred}}
	if p, ok := ctx.Value(progressKey{}).(connectors.Progress); ok && !op.Async {
		req.Progress = p // an async run has no caller waiting
	}
	if l, ok := ctx.Value(logKey{}).(connectors.Log); ok && !op.Async {
		req.Log = l
	}
	if e, ok := ctx.Value(elicitKey{}).(connectors.Elicit); ok && !op.Async {
		req.Elicit = e
	}
	if r, ok := ctx.Value(inputRoundKey{}).(*connectors.InputRound); ok && !op.Async {
		req.Input = r
	}
	req.Watch = watch
	// Time-ordered (UUIDv7): each run row's primary-key entry lands at the
	// index's right edge, not on a random page of it.
	runID := uuid.Must(uuid.NewV7()).String()
	c.ev.Reason += " (run " + runID + ")"
	if op.Async {
		return s.startAsync(ctx, c, runID, req)
	}
	return s.execute(ctx, c, runID, req, in.IdempotencyKey)
}

// maxRedecide bounds how often one call is decided again because the
// policy moved between its decision and its dispatch.
const maxRedecide = 3

// dispatch commits the call's decision row and its run row (with status)
// before anything uses a credential — for reads and sends alike — as one
// unit of the group commit guarded by what the call was decided with
// (guard.go): if that no longer holds in the database, nothing of the unit
// is written, and the refusal is recorded as the call's only row. A policy
// that moved is decided again. With an idempotency key the database
// decides which call executes, and first is the earlier run to replay.
func (s *Service) dispatch(ctx context.Context, c *call, runID string, req job, status string, key, what string) (first *Run, err error) {
	for attempt := 1; ; attempt++ {
		pre := c.ev
		pre.Decision, pre.Status = audit.Allow, audit.StatusOK
		pre.Reason = c.ev.Reason + " " + what
		pre.Duration = s.now().Sub(c.start)
		u := commit.Unit{Event: pre, Guard: c.guard(req.inst.ID, req.Credential),
			Start: runStart(runID, c, req.inst, req.Op, status, req.Op.Async, key, req.Args)}
		if key != "" {
			first, err = s.reserve(ctx, u)
		} else {
			err = s.audit.Commit(ctx, u)
		}
		if err == nil {
			return first, nil
		}
		reason, st := refusal(err)
		if reason == commit.PolicyMoved && attempt < maxRedecide {
			// Decided under a policy that changed since: decide again
			// under the current one (a deny is recorded by decide).
			if rerr := s.authz.Refresh(ctx); rerr != nil {
				return nil, c.fail(ctx, fault.Wrap(fault.Unavailable, rerr, "policy could not be reloaded"))
			}
			if derr := c.decide(ctx, c.ev.Resource); derr != nil {
				return nil, derr
			}
			if derr := s.checkPrivateNetwork(ctx, c, req.Type, req.inst); derr != nil {
				return nil, derr
			}
			continue
		}
		if st != nil {
			return nil, c.refuseStale(ctx, st, req.inst.ID, "not dispatched")
		}
		if errors.Is(err, fault.ErrConflict) {
			return nil, c.fail(ctx, err) // the idempotency key's refusal
		}
		s.log.ErrorContext(ctx, "decision row could not be written; nothing dispatched", "tool", c.ev.Tool, "err", err)
		return nil, fault.Wrap(fault.Unavailable, err, "audit trail unavailable")
	}
}

// execute dispatches a synchronous operation (read or send), runs it, and
// returns its result once its outcome is recorded (settle).
func (s *Service) execute(ctx context.Context, c *call, runID string, req job, key string) (InvokeResult, error) {
	first, err := s.dispatch(ctx, c, runID, req, RunRunning, key, "dispatched")
	if err != nil {
		return InvokeResult{}, err
	}
	if first != nil {
		return s.replay(ctx, c, *first)
	}
	started := s.now()
	res, err := s.runner.Execute(ctx, req.ExecRequest)
	o := runOutcome{status: statusOf(err), err: err, res: res, keep: key != "", bytesIn: len(req.Args), startedAt: started}
	if serr := s.settle(ctx, c, runID, req, o); serr != nil {
		return InvokeResult{}, serr
	}
	if err != nil {
		return InvokeResult{}, err
	}
	return InvokeResult{RunID: runID, Status: RunSucceeded, InstanceID: req.inst.ID, Operation: req.Op.Name, Output: res.Output,
		Truncated: res.Truncated, DurationMS: s.now().Sub(started).Milliseconds()}, nil
}

// reserve commits u, whose run start claims an idempotency key (package
// commit, Writer.Reserve). If the key is taken it returns the earlier run:
// to replay, when it had the same arguments.
func (s *Service) reserve(ctx context.Context, u commit.Unit) (*Run, error) {
	prior, err := s.audit.Reserve(ctx, u)
	if err != nil || prior == nil {
		return nil, err
	}
	r, err := scanRun(s.pool.QueryRow(ctx, `SELECT `+runCols+` FROM connector_runs WHERE id = $1`, prior.RunID))
	if err != nil {
		return nil, db.Map(err)
	}
	if !bytes.Equal(prior.ArgsHash, u.Start.ArgsHash) {
		return nil, fault.New(fault.Conflict, "idempotency key %q was already used with other arguments (run %s); use a new key for a different call", u.Start.IdempotencyKey, r.ID).
			WithDetails(map[string]any{"run_id": r.ID, "field": "idempotency_key"})
	}
	return &r, nil
}

// replay answers a repeated idempotent call with the first call's outcome.
func (s *Service) replay(ctx context.Context, c *call, r Run) (InvokeResult, error) {
	c.ev.Reason += "; idempotent replay of run " + r.ID
	switch r.Status {
	case RunSucceeded:
		out := InvokeResult{RunID: r.ID, Status: r.Status, InstanceID: r.InstanceID, Operation: r.Operation, Output: r.Result,
			Truncated: r.Truncated, Replayed: true}
		return out, c.ok(ctx)
	case RunPending, RunRunning:
		return InvokeResult{}, c.fail(ctx, fault.New(fault.Conflict, "an invocation with this idempotency key is still running (run %s)", r.ID).
			WithDetails(map[string]any{"run_id": r.ID}))
	case RunCanceled:
		return InvokeResult{}, c.fail(ctx, fault.New(fault.Conflict, "the first invocation with this idempotency key was canceled (run %s); use a new key to try again", r.ID).
			WithDetails(map[string]any{"run_id": r.ID, "replayed": true}))
	default:
		t := fault.Type(r.ErrorType)
		if !slices.Contains(fault.Types(), t) {
			t = fault.Permanent // only documented types leave connec
		}
		return InvokeResult{}, c.fail(ctx, fault.New(t, "%s (replayed from run %s)", r.ErrorMessage, r.ID).WithDetails(map[string]any{"run_id": r.ID, "replayed": true}))
	}
}

// settle records an operation's outcome — its run row and outcome audit
// row, in one transaction — and only then lets its result go. If the
// database cannot take it, the caller gets unavailable (the operation ran;
// its outcome is not yet in the trail) and the write is retried in the
// background until the database returns, so no run stays open while its
// server lives; should this server stop first, another fails the run as
// outcome unknown once this server's lease runs out.
func (s *Service) settle(ctx context.Context, c *call, runID string, req job, o runOutcome) error {
	ev := c.ev
	if o.res.Redacted {
		ev.Reason += "; credential material redacted from the result"
	}
	ev.Duration = s.now().Sub(c.start)
	ev.Decision = audit.Allow
	status := "ok"
	if o.err != nil {
		ev.Status, ev.ErrorType = audit.StatusError, string(fault.As(o.err).Type)
		status = ev.ErrorType
	} else {
		ev.Status = audit.StatusOK
	}
	ran := s.now().Sub(o.startedAt)
	if req.Op.MCP == connectors.WatchRole {
		ran = 0 // a subscription's run lasts as long as it: no operation latency
	}
	metrics.ObserveInvocation(req.Type.Spec.Name, req.Op.Name, status, ran)
	u := commit.Unit{Event: ev, Finish: runFinish(runID, o)}
	err := s.audit.Commit(ctx, u)
	if err == nil {
		return nil
	}
	s.log.ErrorContext(ctx, "outcome of a run not recorded; result withheld, retrying the record", "run", runID, "err", err)
	bg := context.WithoutCancel(ctx)
	s.settling.Add(1)
	go func() {
		defer s.settling.Done()
		b := retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
		for {
			if s.stopping.Load() {
				s.log.ErrorContext(bg, "outcome of a run not recorded before shutdown; another server fails it as outcome unknown once this server's lease runs out", "run", runID)
				return
			}
			_ = retry.Sleep(bg, b.Next()) // bg does not end; CancelAll stops the loop
			if err := s.audit.Commit(bg, u); err == nil {
				s.log.InfoContext(bg, "outcome of a run recorded after the database returned", "run", runID)
				return
			}
		}
	}()
	return fault.Wrap(fault.Unavailable, err, "audit trail unavailable: the operation ran, its outcome is recorded once the database is back")
}

// startAsync records a pending run with its decision row (guarded as a
// send's dispatch is) and returns its id at once; the operation runs in the
// background on this server and connector.run.get reports its progress and
// result.
func (s *Service) startAsync(ctx context.Context, c *call, runID string, req job) (InvokeResult, error) {
	if _, err := s.dispatch(ctx, c, runID, req, RunPending, "", "dispatched asynchronously"); err != nil {
		return InvokeResult{}, err
	}
	// The run outlives the request: it keeps the caller's values, not its
	// cancellation, and ends with its timeout or connector.run.cancel.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.async.add(runID, cancel)
	s.async.wg.Add(1)
	go func() {
		defer s.async.wg.Done()
		defer s.async.done(runID)
		defer cancel()
		started := s.now()
		if _, err := s.pool.Exec(rctx, `UPDATE connector_runs SET status = 'running', started_at = clock_timestamp() WHERE id = $1 AND status = 'pending'`, runID); err != nil {
			s.log.WarnContext(rctx, "async run: mark running", "run", runID, "err", err)
		}
		res, err := s.runner.Execute(rctx, req.ExecRequest)
		if rctx.Err() != nil && err != nil {
			err = errCanceled
		}
		o := runOutcome{status: statusOf(err), err: err, res: res, keep: true, bytesIn: len(req.Args), startedAt: started}
		_ = s.settle(context.WithoutCancel(rctx), c, runID, req, o) // a failure is retried and logged
	}()
	return InvokeResult{RunID: runID, Status: RunPending, InstanceID: req.inst.ID, Operation: req.Op.Name}, nil
}

// job is an operation on its way to the executor, with the instance it
// runs on as the core knows it.
type job struct {
	connectors.ExecRequest
	inst Instance
}
