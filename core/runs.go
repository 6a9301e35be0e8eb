package core

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/commit"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
)

// Run tool names.
const (
	ToolRunList   = "connector.run.list"
	ToolRunGet    = "connector.run.get"
	ToolRunCancel = "connector.run.cancel"
)

// Run states.
const (
	RunPending   = "pending"
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunCanceled  = "canceled"
)

// IdempotencyTTL is how long an idempotency key holds.
const IdempotencyTTL = 24 * time.Hour

// Run is one invocation's history row.
type Run struct {
	ID             string              `json:"id"`
	InstanceID     InstanceID          `json:"instance_id"`
	ConnectorType  string              `json:"connector_type"`
	Operation      string              `json:"operation"`
	Kind           connectors.Kind     `json:"kind"`
	Subject        callctx.Subject     `json:"subject"`
	RequestID      string              `json:"request_id"`
	Task           callctx.TaskContext `json:"task"`
	Status         string              `json:"status"`
	Async          bool                `json:"async"`
	ErrorType      string              `json:"error_type,omitempty"`
	ErrorMessage   string              `json:"error_message,omitempty"`
	ProviderStatus int                 `json:"provider_status,omitempty"`
	Attempts       int                 `json:"attempts"`
	BytesIn        int                 `json:"bytes_in"`
	BytesOut       int                 `json:"bytes_out"`
	Truncated      bool                `json:"truncated"`
	Redacted       bool                `json:"redacted"`
	IdempotencyKey string              `json:"idempotency_key,omitempty"`
	Result         json.RawMessage     `json:"result,omitempty" jsonschema:"The operation's output, kept for async and idempotent runs."`
	CreatedAt      time.Time           `json:"created_at"`
	StartedAt      *time.Time          `json:"started_at,omitempty"`
	FinishedAt     *time.Time          `json:"finished_at,omitempty"`
	DurationMS     *float64            `json:"duration_ms,omitempty"`
	// CancelRequestedAt is when someone asked for this (async) run to stop;
	// its status says what happened then.
	CancelRequestedAt *time.Time `json:"cancel_requested_at,omitempty"`
}

const runCols = `id::text, instance_id::text, connector_type, operation, kind, subject, request_id,
 COALESCE(task_id::text,''), COALESCE(project_id::text,''), COALESCE(run_id::text,''), COALESCE(job_id::text,''), COALESCE(agent_id,''),
 status, async, COALESCE(error_type,''), COALESCE(error_message,''), COALESCE(provider_status,0), attempts, bytes_in, bytes_out,
 truncated, redacted, COALESCE(idempotency_key,''), result, created_at, started_at, finished_at, duration_us,
 cancel_requested_at`

// scanRun reads runCols, then any extra columns selected after them.
func scanRun(row pgx.Row, extra ...any) (Run, error) {
	var r Run
	var inst, sub string
	var dur *int64
	err := row.Scan(append([]any{&r.ID, &inst, &r.ConnectorType, &r.Operation, &r.Kind, &sub, &r.RequestID,
		&r.Task.TaskID, &r.Task.ProjectID, &r.Task.RunID, &r.Task.JobID, &r.Task.AgentID,
		&r.Status, &r.Async, &r.ErrorType, &r.ErrorMessage, &r.ProviderStatus, &r.Attempts, &r.BytesIn, &r.BytesOut,
		&r.Truncated, &r.Redacted, &r.IdempotencyKey, &r.Result, &r.CreatedAt, &r.StartedAt, &r.FinishedAt, &dur,
		&r.CancelRequestedAt}, extra...)...)
	r.InstanceID, r.Subject = InstanceID(inst), callctx.Subject(sub)
	if dur != nil {
		ms := float64(*dur) / 1000
		r.DurationMS = &ms
	}
	return r, err
}

// runStart is the run record of a call as it is dispatched.
func runStart(id string, c *call, inst Instance, op *connectors.CompiledOp, status string, async bool, key string, args json.RawMessage) *commit.RunStart {
	r := &commit.RunStart{ID: id, InstanceID: string(inst.ID), ConnectorType: inst.Type, Operation: op.Name, Kind: string(op.Kind),
		Subject: c.p.Subject, RequestID: c.ev.RequestID, Task: c.ev.Task, Status: status, Async: async, BytesIn: len(args),
		// An open run carries this server's lease (if it holds one), so
		// that another server fails it should this one stop (lease.go).
		ServerID: c.s.leaseID()}
	if key != "" {
		e := time.Now().Add(IdempotencyTTL)
		r.IdempotencyKey, r.IdempotencyExpires, r.ArgsHash = key, &e, canonicalHash(args)
	}
	return r
}

// canonicalHash is the SHA-256 of a JSON document's canonical form (keys
// sorted, no insignificant space), so the same arguments written another
// way hash the same.
func canonicalHash(raw json.RawMessage) []byte {
	var v any
	if err := json.Unmarshal(raw, &v); err == nil {
		if b, err := json.Marshal(v); err == nil {
			raw = b
		}
	}
	sum := sha256.Sum256(raw)
	return sum[:]
}

// runOutcome is what finishing a run records.
type runOutcome struct {
	status    string
	err       error
	res       connectors.ExecResult
	keep      bool // store the result (idempotent or async runs)
	bytesIn   int
	startedAt time.Time
}

// runFinish is a run's outcome as recorded.
func runFinish(id string, o runOutcome) *commit.RunFinish {
	f := &commit.RunFinish{ID: id, Status: o.status, Attempts: o.res.Attempts, BytesOut: len(o.res.Output),
		Truncated: o.res.Truncated, Redacted: o.res.Redacted, StartedAt: o.startedAt}
	if o.err != nil {
		pub := fault.PublicOf(o.err)
		f.ErrorType, f.ErrorMessage = string(pub.Type), pub.Message
	}
	if o.keep && o.err == nil {
		f.Result = o.res.Output
	}
	return f
}

func statusOf(err error) string {
	switch {
	case err == nil:
		return RunSucceeded
	case errors.Is(err, context.Canceled) || errors.Is(err, errCanceled):
		return RunCanceled
	default:
		return RunFailed
	}
}

var errCanceled = fault.New(fault.Conflict, "run canceled on request")

// runs tracks the async runs this server executes, so a cancel (local or
// announced by another server) reaches them.
type runs struct {
	mu      sync.Mutex
	cancels map[string]context.CancelFunc
	wg      sync.WaitGroup
}

func (r *runs) add(id string, cancel context.CancelFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancels == nil {
		r.cancels = map[string]context.CancelFunc{}
	}
	r.cancels[id] = cancel
}

func (r *runs) done(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.cancels, id)
}

// CancelLocal cancels an async run if this server executes it. The
// database's connec_run_cancel notification calls it on every server.
func (s *Service) CancelLocal(id string) {
	s.async.mu.Lock()
	cancel := s.async.cancels[id]
	s.async.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// CancelAll cancels every async run this server executes (at shutdown), and
// makes outcomes still being retried give up after their next attempt.
func (s *Service) CancelAll() {
	s.stopping.Store(true)
	s.async.mu.Lock()
	defer s.async.mu.Unlock()
	for _, cancel := range s.async.cancels {
		cancel()
	}
}

// Wait blocks until every async run this server started has finished and
// every outcome has been recorded (or, after CancelAll, given up on).
func (s *Service) Wait() {
	s.async.wg.Wait()
	s.settling.Wait()
}

// RunFilter selects runs for connector.run.list.
type RunFilter struct {
	InstanceID string `json:"instance_id,omitempty" jsonschema:"Every run of this instance (you need a right on it); without it, your own runs." schema:"format=uuid"`
	TaskID     string `json:"task_id,omitempty" jsonschema:"Task this call runs for (also accepted in _meta[\"connec.dev/task\"]); lists that task's runs." schema:"format=uuid"`
	Status     string `json:"status,omitempty" schema:"enum=pending|running|succeeded|failed|canceled"`
	Limit      int    `json:"limit,omitempty" schema:"minimum=1,maximum=200"`
	Cursor     string `json:"cursor,omitempty" jsonschema:"Page: the next_cursor of the previous page (the last run id seen)." schema:"format=uuid"`
}

// ListRuns returns run history the caller may see: every run of an instance
// it holds any right on (with instance_id), or its own runs (without).
// Newest first; page with cursor = the last run id seen. Without a task
// filter, the call's own task context (if any) filters.
func (s *Service) ListRuns(ctx context.Context, f RunFilter) ([]Run, error) {
	c, err := s.begin(ctx, ToolRunList, authz.ActionRead)
	if err != nil {
		return nil, err
	}
	if f.Limit == 0 {
		f.Limit = defaultRunPage
	}
	if f.TaskID == "" {
		f.TaskID = callctx.TaskFrom(ctx).TaskID
	}
	if f.Limit < 1 || f.Limit > 200 {
		return nil, c.invalid(ctx, fault.Invalid("limit", "limit must be 1..200"))
	}
	if f.Status != "" && !contains([]string{RunPending, RunRunning, RunSucceeded, RunFailed, RunCanceled}, f.Status) {
		return nil, c.invalid(ctx, fault.Invalid("status", "status must be pending, running, succeeded, failed or canceled"))
	}
	for name, v := range map[string]*string{"task_id": &f.TaskID, "cursor": &f.Cursor} {
		if *v == "" {
			continue
		}
		u, err := uuid.Parse(*v)
		if err != nil || len(*v) != 36 {
			return nil, c.invalid(ctx, fault.Invalid(name, "%s must be a uuid", name))
		}
		*v = u.String()
	}
	// Runs follow the rights on their instance, the caller's own included:
	// the listing covers one instance the caller holds a right on, or the
	// caller's runs on the instances it still holds a right on.
	subject := string(c.p.Subject)
	var instances []string
	operations := []string{}
	if f.InstanceID != "" {
		inst, err := c.lookup(ctx, f.InstanceID, false, s.pool)
		if err != nil {
			return nil, err
		}
		if err := c.decideAny(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID())); err != nil {
			return nil, err
		}
		instances, subject = []string{string(inst.ID)}, ""
	} else {
		if instances, operations, err = s.ownRunTargets(ctx, c); err != nil {
			return nil, c.deny(ctx, err, "policy evaluation failed")
		}
		c.ev.Reason = "own runs of operations the subject still holds rights on"
	}
	if f.Cursor != "" {
		// Paging starts from a run of this same listing; any other id, of
		// a run that does not exist or one the caller may not see, is
		// refused alike.
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM connector_runs WHERE id = $1::uuid AND `+runTargets+`
 AND ($4 = '' OR subject = $4)`, f.Cursor, instances, operations, subject).Scan(&n); err != nil {
			return nil, c.fail(ctx, db.Map(err))
		}
		if n == 0 {
			return nil, c.invalid(ctx, fault.Invalid("cursor", "cursor must be the id of a run in this listing (the last run of the previous page)"))
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT `+runCols+` FROM connector_runs
WHERE `+runTargets+` AND ($4 = '' OR subject = $4)
  AND ($5 = '' OR task_id = NULLIF($5,'')::uuid) AND ($6 = '' OR status = $6)
  AND ($1 = '' OR (created_at, id) < (SELECT created_at, id FROM connector_runs WHERE id = NULLIF($1,'')::uuid))
ORDER BY created_at DESC, id DESC LIMIT $7`, f.Cursor, instances, operations, subject, f.TaskID, f.Status, f.Limit)
	if err != nil {
		return nil, c.fail(ctx, db.Map(err))
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Run, error) { return scanRun(r) })
	if err != nil {
		return nil, c.fail(ctx, db.Map(err))
	}
	if list == nil {
		list = []Run{}
	}
	return list, c.ok(ctx)
}

// runTargets selects runs by $2 (instance ids) and, when $3 is not empty,
// by (instance id, operation) pairs from $2 and $3 alike.
const runTargets = `(CASE WHEN COALESCE(cardinality($3::text[]), 0) = 0 THEN instance_id = ANY($2::uuid[])
 ELSE (instance_id, operation) IN (SELECT * FROM unnest($2::uuid[], $3::text[])) END)`

// ownRunTargets returns the (instance, operation) pairs the caller has runs
// of and still holds a right on (on the instance, or on that operation).
func (s *Service) ownRunTargets(ctx context.Context, c *call) (instances, operations []string, err error) {
	rows, err := s.pool.Query(ctx, `SELECT i.id::text, i.type, i.owner, r.operation FROM connector_instances i
JOIN (SELECT DISTINCT instance_id, operation FROM connector_runs WHERE subject = $1) r ON r.instance_id = i.id`, string(c.p.Subject))
	if err != nil {
		return nil, nil, db.Map(err)
	}
	type target struct {
		in Instance
		op string
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (target, error) {
		var t target
		var id, owner string
		err := r.Scan(&id, &t.in.Type, &owner, &t.op)
		t.in.ID, t.in.Owner = InstanceID(id), callctx.Subject(owner)
		return t, err
	})
	if err != nil {
		return nil, nil, db.Map(err)
	}
	instances, operations = []string{}, []string{}
	for _, t := range all {
		ok, err := s.mayReadRunsOf(ctx, c.p.Subject, t.in, t.op, c.ev.Task)
		if err != nil {
			return nil, nil, fault.Wrap(fault.Unavailable, err, "policy could not be evaluated")
		}
		if ok {
			instances, operations = append(instances, string(t.in.ID)), append(operations, t.op)
		}
	}
	if len(instances) == 0 {
		// No pair at all must select nothing (an empty list of operations
		// would mean "any operation").
		instances, operations = []string{}, []string{""}
	}
	return instances, operations, nil
}

// mayReadRunsOf reports whether sub may see runs of operation op on in: any
// right on the instance, or on that operation.
func (s *Service) mayReadRunsOf(ctx context.Context, sub callctx.Subject, in Instance, op string, task callctx.TaskContext) (bool, error) {
	if ok, err := s.mayActOn(ctx, sub, in, task); ok || err != nil {
		return ok, err
	}
	res := authz.OperationResource(in.Owner, in.Type, in.ID.UUID(), op)
	for _, a := range readActions {
		d, err := s.authz.Decide(ctx, authz.Request{Subject: sub, Action: a, Resource: res, Task: task})
		if err != nil || d.Allowed {
			return d.Allowed, err
		}
	}
	return false, nil
}

// decideRun allows the call if the caller holds any right on the run's
// instance, or on the run's operation there.
func (c *call) decideRun(ctx context.Context, inst Instance, op string) error {
	ok, err := c.s.mayActOn(ctx, c.p.Subject, inst, c.ev.Task)
	if err != nil {
		return c.deny(ctx, fault.Wrap(fault.Unavailable, err, "policy could not be evaluated"), "policy evaluation failed")
	}
	if ok {
		return c.decideAny(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID()))
	}
	return c.decideAny(ctx, authz.OperationResource(inst.Owner, inst.Type, inst.ID.UUID(), op))
}

// lookupRun loads a run for a call; like instances, a run the caller may not
// see answers the same as a missing one.
func (c *call) lookupRun(ctx context.Context, raw string) (Run, Instance, error) {
	u, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		return Run{}, Instance{}, c.invalid(ctx, fault.Invalid("run_id", "run_id must be a uuid"))
	}
	r, err := scanRun(c.s.pool.QueryRow(ctx, `SELECT `+runCols+` FROM connector_runs WHERE id = $1`, u.String()))
	if err != nil {
		if errors.Is(db.Map(err), fault.ErrNotFound) {
			if derr := c.decide(ctx, authz.InstanceResource("unknown", "unknown", uuid.Nil)); derr != nil {
				return Run{}, Instance{}, derr
			}
			return Run{}, Instance{}, c.fail(ctx, fault.New(fault.NotFound, "run %s not found", u))
		}
		return Run{}, Instance{}, c.fail(ctx, db.Map(err))
	}
	inst, err := getInstance(ctx, c.s.pool, r.InstanceID, false)
	if err != nil {
		return Run{}, Instance{}, c.fail(ctx, err)
	}
	c.target(inst)
	c.ev.Operation = r.Operation
	return r, inst, nil
}

// GetRun returns one run: its status and, for async or idempotent runs,
// its result.
func (s *Service) GetRun(ctx context.Context, id string) (Run, error) {
	c, err := s.begin(ctx, ToolRunGet, authz.ActionRead)
	if err != nil {
		return Run{}, err
	}
	r, inst, err := c.lookupRun(ctx, id)
	if err != nil {
		return Run{}, err
	}
	// A run follows the rights on its instance, the caller's own run too.
	if err := c.decideRun(ctx, inst, r.Operation); err != nil {
		return Run{}, err
	}
	return r, c.ok(ctx)
}

// CancelRun asks the server executing a pending or running async run to
// stop it; that server records what happened (canceled, or the outcome the
// operation had already reached). A synchronous run cannot be canceled: it
// ends with the call that started it, and its record must say what that
// call did. The caller must have started the run or hold connector.admin on
// its instance.
func (s *Service) CancelRun(ctx context.Context, id string) (Run, error) {
	c, err := s.begin(ctx, ToolRunCancel, authz.ActionAdmin)
	if err != nil {
		return Run{}, err
	}
	r, inst, err := c.lookupRun(ctx, id)
	if err != nil {
		return Run{}, err
	}
	// Another's run needs connector.admin on its instance; one's own, any
	// right still held there.
	if r.Subject != c.p.Subject {
		err = c.decide(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID()))
	} else {
		err = c.decideRun(ctx, inst, r.Operation)
	}
	if err != nil {
		return Run{}, err
	}
	if !r.Async {
		return Run{}, c.fail(ctx, fault.New(fault.Conflict, "run %s is synchronous: only asynchronous runs can be canceled (a synchronous run ends with the call that started it)", r.ID))
	}
	var out Run
	err = c.change(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = scanRun(tx.QueryRow(ctx, `UPDATE connector_runs SET cancel_requested_at = COALESCE(cancel_requested_at, clock_timestamp()),
 cancel_requested_by = COALESCE(cancel_requested_by, $2) WHERE id = $1 AND status IN ('pending','running') RETURNING `+runCols, r.ID, string(c.p.Subject)))
		if errors.Is(db.Map(err), fault.ErrNotFound) {
			return fault.New(fault.Conflict, "run %s already finished (%s)", r.ID, r.Status)
		}
		return db.Map(err)
	})
	if err == nil {
		s.CancelLocal(r.ID)
	}
	return out, err
}

// checkLimits counts this invocation against the instance's rate limits
// (per subject and per instance), in PostgreSQL so every server shares the
// count. It returns quota_exceeded with a retry-after when a limit is hit.
func (s *Service) checkLimits(ctx context.Context, inst Instance, sub callctx.Subject) error {
	type window struct {
		key string
		l   *RateLimit
	}
	var ws []window
	if l := inst.Limits.PerInstance; l != nil {
		ws = append(ws, window{"i:" + string(inst.ID), l})
	}
	if l := inst.Limits.PerSubject; l != nil {
		ws = append(ws, window{"s:" + string(inst.ID) + ":" + string(sub), l})
	}
	now := s.now()
	for _, w := range ws {
		size := time.Duration(w.l.WindowSeconds) * time.Second
		start := now.Truncate(size)
		var n int
		err := s.pool.QueryRow(ctx, `WITH gc AS (DELETE FROM connector_rate_windows WHERE key = $1 AND window_start < $2)
INSERT INTO connector_rate_windows (key, window_start, count) VALUES ($1, $2, 1)
ON CONFLICT (key, window_start) DO UPDATE SET count = connector_rate_windows.count + 1 RETURNING count`, w.key, start).Scan(&n)
		if err != nil {
			return db.Map(err)
		}
		if n > w.l.Requests {
			retry := start.Add(size).Sub(now)
			scope := "instance"
			if strings.HasPrefix(w.key, "s:") {
				scope = "subject"
			}
			return fault.New(fault.QuotaExceeded, "rate limit of %d per %ds per %s reached; retry in %s", w.l.Requests, w.l.WindowSeconds, scope, retry.Round(time.Millisecond)).
				WithDetails(map[string]any{"retry_after_ms": retry.Milliseconds(), "scope": scope})
		}
	}
	return nil
}
