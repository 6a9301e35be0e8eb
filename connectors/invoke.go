package connectors

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/db"
	"github.com/connec/connec/internal/metrics"
)

var operationRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}(\.[a-z][a-z0-9_-]{0,63})+$`)

// maxTimeout bounds what a caller may ask for, before the operation's own cap.
const maxTimeout = 10 * time.Minute

// Invoke runs one operation on one instance for the caller on ctx, scoped to
// the task context on ctx. Policy is checked for the operation's kind
// (connector.read or connector.send) on that operation of that instance.
//
// Durability: a read-kind operation's audit and run rows commit after it
// runs and before its result is returned; a send-kind operation's decision
// row and running run row commit before it runs (so nothing is sent
// unaudited) and its outcome rows after. Audit and run rows are written in
// the audit writer's group commit, with synchronous_commit on.
//
// Freshness: with WithNotify the instance and its credential row may come
// from memory, up to one change notification behind the database. So the
// commit that lets a send or async run start, and the commit that lets a
// cached read's result out, also checks in the database that the instance
// is enabled and the credential used is still active, unexpired and at
// that version (migrations.InvokeGuardSQL); if not, the call is refused with the
// same error an up-to-date read gives, and nothing is sent or returned.
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
	var cached bool
	inst, cr, err := c.lookupWith(ctx, in.InstanceID, func(id InstanceID) (Instance, *credRow, error) {
		i, r, hit, err := s.instanceForInvoke(ctx, id)
		if err == nil && hit && s.wouldRefuse(i, r) {
			// A refusal is never made on memory alone: the instance or its
			// credential may have been re-enabled elsewhere, the
			// announcement still on its way. (Allows are checked by the
			// guard at commit.)
			s.instances.Invalidate(id)
			i, r, hit, err = s.instanceForInvoke(ctx, id)
		}
		cached = hit
		return i, r, err
	})
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
	if err := s.checkPrivateNetwork(ctx, c, ct, inst); err != nil {
		return InvokeResult{}, err
	}
	if err := validateAgainst(op.In, in.Arguments, "arguments"); err != nil {
		return InvokeResult{}, c.deny(ctx, err, "invalid argument: arguments do not match the operation's input schema")
	}

	if in.IdempotencyKey != "" && (op.Kind == KindRead || len(in.IdempotencyKey) > 200 || strings.TrimSpace(in.IdempotencyKey) != in.IdempotencyKey) {
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

	req := ExecRequest{Type: ct, Op: op, Instance: inst, Args: in.Arguments,
		Timeout: time.Duration(in.TimeoutMS) * time.Millisecond, Credential: cred}
	// Time-ordered (UUIDv7): each run row's primary-key entry lands at the
	// index's right edge, not on a random page of it.
	runID := uuid.Must(uuid.NewV7()).String()
	c.ev.Reason += " (run " + runID + ")"
	if op.Async {
		return s.startAsync(ctx, c, runID, req)
	}
	if op.Kind == KindRead {
		return s.runRead(ctx, c, runID, req, cached)
	}
	return s.runSend(ctx, c, runID, req, in.IdempotencyKey)
}

// runRead executes a read-kind operation, then commits its run row and
// audit row together before the result is returned. If the instance and
// credential came from the cache, that commit also checks they are still
// usable, and the result is withheld if not.
func (s *Service) runRead(ctx context.Context, c *call, runID string, req ExecRequest, cached bool) (InvokeResult, error) {
	started := s.now()
	res, err := s.runner.Execute(ctx, req)
	o := runOutcome{status: statusOf(err), err: err, res: res, bytesIn: len(req.Args), startedAt: started}
	stmts := runInsertDone(runID, c, req.Instance, req.Op, o)
	if cached {
		stmts = append([]audit.Stmt{guardStmt(req.Instance.ID, req.Credential)}, stmts...)
	}
	return s.finish(ctx, c, runID, req, o, stmts)
}

// runSend executes a send-kind operation. Its decision row and running run
// row commit before it executes, so nothing leaves unaudited, and only if
// the instance is still enabled and the credential still active at the
// version used, so nothing leaves on a credential revoked anywhere before
// that commit; with an idempotency key the database decides which call
// executes, and a repeat returns the first outcome.
func (s *Service) runSend(ctx context.Context, c *call, runID string, req ExecRequest, key string) (InvokeResult, error) {
	pre := c.ev
	pre.Decision, pre.Status = audit.Allow, audit.StatusOK
	pre.Reason = c.ev.Reason + " dispatched"
	pre.Duration = s.now().Sub(c.start)
	guard := guardStmt(req.Instance.ID, req.Credential)
	start := runStart(runID, c, req.Instance, req.Op, RunRunning, false, key, len(req.Args))
	if key != "" {
		first, err := s.reserve(ctx, pre, guard, start, req.Instance.ID, key)
		if st := asStale(err); st != nil {
			return InvokeResult{}, c.refuseStale(ctx, st, req.Instance.ID, "not dispatched")
		}
		if err != nil {
			return InvokeResult{}, c.fail(ctx, err)
		}
		if first != nil {
			return s.replay(ctx, c, *first)
		}
	} else if err := s.audit.Record(ctx, pre, guard, start); err != nil {
		if st := asStale(err); st != nil {
			return InvokeResult{}, c.refuseStale(ctx, st, req.Instance.ID, "not dispatched")
		}
		s.log.ErrorContext(ctx, "audit write failed before send", "err", err)
		return InvokeResult{}, fault.Wrap(fault.Unavailable, err, "audit trail unavailable")
	}
	started := s.now()
	res, err := s.runner.Execute(ctx, req)
	o := runOutcome{status: statusOf(err), err: err, res: res, keep: key != "", bytesIn: len(req.Args), startedAt: started}
	return s.finish(ctx, c, runID, req, o, []audit.Stmt{runFinish(runID, o)})
}

// reserve claims an idempotency key for this call in the same transaction
// as its decision row, after guard holds. It returns the earlier run if the
// key is taken.
func (s *Service) reserve(ctx context.Context, pre audit.Event, guard, start audit.Stmt, inst InstanceID, key string) (*Run, error) {
	var first *Run
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, guard.SQL, guard.Args...); err != nil {
			return db.Map(err)
		}
		// A key past its TTL is free again.
		if _, err := tx.Exec(ctx, `UPDATE connector_runs SET idempotency_key = NULL
WHERE instance_id = $1 AND idempotency_key = $2 AND idempotency_expires_at < now()`, string(inst), key); err != nil {
			return db.Map(err)
		}
		tag, err := tx.Exec(ctx, start.SQL+
			` ON CONFLICT (instance_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING`, start.Args...)
		if err != nil {
			return db.Map(err)
		}
		if tag.RowsAffected() == 0 {
			r, err := scanRun(tx.QueryRow(ctx, `SELECT `+runCols+` FROM connector_runs WHERE instance_id = $1 AND idempotency_key = $2`, string(inst), key))
			if err != nil {
				return db.Map(err)
			}
			first = &r
			return nil
		}
		return s.audit.Write(ctx, tx, pre)
	})
	return first, err
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
	default:
		t := fault.Type(r.ErrorType)
		if t == "" {
			t = fault.Permanent
		}
		return InvokeResult{}, c.fail(ctx, fault.New(t, "%s (replayed from run %s)", r.ErrorMessage, r.ID).WithDetails(map[string]any{"run_id": r.ID, "replayed": true}))
	}
}

// finish commits the run row and the outcome audit row in one transaction
// (grouped with concurrent calls) and only then lets the result go.
func (s *Service) finish(ctx context.Context, c *call, runID string, req ExecRequest, o runOutcome, stmts []audit.Stmt) (InvokeResult, error) {
	if o.res.Redacted {
		c.ev.Reason += "; credential material redacted from the result"
	}
	c.ev.Duration = s.now().Sub(c.start)
	c.ev.Decision = audit.Allow
	if o.err != nil {
		c.ev.Status, c.ev.ErrorType = audit.StatusError, string(fault.As(o.err).Type)
	} else {
		c.ev.Status = audit.StatusOK
	}
	status := "ok"
	if o.err != nil {
		status = c.ev.ErrorType
	}
	err := s.audit.Record(ctx, c.ev, stmts...)
	if st := asStale(err); st != nil {
		return InvokeResult{}, c.refuseStale(ctx, st, req.Instance.ID, "result withheld")
	}
	metrics.ObserveInvocation(req.Type.Spec.Name, req.Op.Name, status, s.now().Sub(o.startedAt))
	if err != nil {
		s.log.ErrorContext(ctx, "audit write failed; result withheld", "tool", c.ev.Tool, "err", err)
		return InvokeResult{}, fault.Wrap(fault.Unavailable, err, "audit trail unavailable")
	}
	if o.err != nil {
		return InvokeResult{}, o.err
	}
	return InvokeResult{RunID: runID, Status: RunSucceeded, InstanceID: req.Instance.ID, Operation: req.Op.Name, Output: o.res.Output,
		Truncated: o.res.Truncated, DurationMS: s.now().Sub(o.startedAt).Milliseconds()}, nil
}

// startAsync records a pending run with its decision row (guarded as a
// send's dispatch is) and returns its id at once; the operation runs in the
// background on this server and connector.run.get reports its progress and
// result.
func (s *Service) startAsync(ctx context.Context, c *call, runID string, req ExecRequest) (InvokeResult, error) {
	pre := c.ev
	pre.Decision, pre.Status = audit.Allow, audit.StatusOK
	pre.Reason = c.ev.Reason + " started asynchronously"
	pre.Duration = s.now().Sub(c.start)
	if err := s.audit.Record(ctx, pre, guardStmt(req.Instance.ID, req.Credential),
		runStart(runID, c, req.Instance, req.Op, RunPending, true, "", len(req.Args))); err != nil {
		if st := asStale(err); st != nil {
			return InvokeResult{}, c.refuseStale(ctx, st, req.Instance.ID, "not started")
		}
		return InvokeResult{}, fault.Wrap(fault.Unavailable, err, "audit trail unavailable")
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
		res, err := s.runner.Execute(rctx, req)
		if rctx.Err() != nil && err != nil {
			err = errCanceled
		}
		o := runOutcome{status: statusOf(err), err: err, res: res, keep: true, bytesIn: len(req.Args), startedAt: started}
		if _, ferr := s.finish(context.WithoutCancel(rctx), c, runID, req, o, []audit.Stmt{runFinish(runID, o)}); ferr != nil && !errors.Is(ferr, err) {
			s.log.ErrorContext(rctx, "async run: record outcome", "run", runID, "err", ferr)
		}
	}()
	return InvokeResult{RunID: runID, Status: RunPending, InstanceID: req.Instance.ID, Operation: req.Op.Name}, nil
}
