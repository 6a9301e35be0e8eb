package core

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/commit"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity/authlimit"
	"github.com/connec/connec/internal/platform/db"
	"github.com/connec/connec/internal/platform/metrics"
	"github.com/connec/connec/internal/platform/pgnotify"
)

// Authorizer is the one decision function every call passes.
type Authorizer interface {
	Decide(ctx context.Context, r authz.Request) (authz.Decision, error)
	MayAttemptOn(ctx context.Context, s callctx.Subject, resource string, actions ...string) (bool, error)
	// Refresh loads the current policy now (a dispatch found the one a
	// call was decided under has moved).
	Refresh(ctx context.Context) error
	// Version is the version of the policy decisions are made under.
	Version() int64
}

// Service is the core every transport calls.
type Service struct {
	pool         *pgxpool.Pool
	reg          *connectors.Registry
	authz        Authorizer
	audit        *commit.Writer
	runner       connectors.Runner
	sealer       Sealer
	rules        RuleStore
	servers      ServerCatalog
	tokens       TokenIssuer
	revoke       TokenRevoker
	forgetTokens func()
	async        runs
	lease        lease
	// settling counts outcomes being recorded behind their results;
	// stopping makes their retries give up (shutdown).
	settling sync.WaitGroup
	stopping atomic.Bool
	log      *slog.Logger
	now      func() time.Time

	// guard limits and aggregates failed authentications (AuthGuard).
	authCfg authlimit.Config
	guard   *authlimit.Guard

	// bareToolNames: WithBareInstanceToolNames.
	bareToolNames bool

	// watchers are told of every change to an instance (OnInstanceChange).
	watchMu  sync.Mutex
	watchers []func()

	// hub and instances: the invocation cache (WithNotify); nil without.
	hub       *pgnotify.Hub
	instances *pgnotify.Cache[InstanceID, invokeEntry]
	// toolLists holds each caller's instance tools (InstanceTools), kept
	// true like instances; nil without WithNotify.
	toolLists *pgnotify.Cache[string, toolList]
	// origin tells this service's announcements from other servers'.
	origin string
	// rounds relays rounds of calls waiting on their caller (rounds.go).
	rounds rounds
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the service's logger.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// NewService wires the core.
func NewService(pool *pgxpool.Pool, reg *connectors.Registry, az Authorizer, aw *commit.Writer, runner connectors.Runner, opts ...Option) *Service {
	s := &Service{pool: pool, reg: reg, authz: az, audit: aw, runner: runner, log: slog.Default(), now: time.Now, origin: uuid.NewString(),
		rounds: newRounds()}
	for _, o := range opts {
		o(s)
	}
	if s.authCfg.Log == nil {
		s.authCfg.Log = s.log
	}
	s.guard = authlimit.New(s.authCfg, s.RecordRefusal)
	s.follow()
	s.followServers()
	s.followRounds()
	return s
}

// Registry returns the connector type registry.
func (s *Service) Registry() *connectors.Registry { return s.reg }

// ToolVisible reports whether the caller on ctx holds any allow rule that
// could let it call a tool needing one of actions (on resource, when the
// tool acts on one fixed resource): transports use it to list only the tools
// a subject may call, and to refuse calls to the others. An error means the
// check could not be made (policy unavailable, the request ended): that is
// not a denial, and transports must not report it as one.
func (s *Service) ToolVisible(ctx context.Context, resource string, actions ...string) (bool, error) {
	p, ok := callctx.PrincipalFrom(ctx)
	if !ok {
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	allowed, err := s.authz.MayAttemptOn(ctx, p.Subject, resource, actions...)
	if err != nil {
		s.log.WarnContext(ctx, "tool visibility check failed", "subject", p.Subject, "err", err)
		return false, fault.Wrap(fault.Unavailable, err, "policy cannot be evaluated right now")
	}
	return allowed, nil
}

// call is one audited service call: it gathers the audit row as the call
// proceeds and makes sure exactly one row is written however it ends.
type call struct {
	s     *Service
	start time.Time
	p     callctx.Principal
	ev    audit.Event
}

func (s *Service) begin(ctx context.Context, tool, action string) (*call, error) {
	c := &call{s: s, start: s.now(), ev: audit.Event{
		RequestID: callctx.RequestID(ctx),
		Tool:      tool,
		Action:    action,
		Task:      callctx.TaskFrom(ctx),
	}}
	p, ok := callctx.PrincipalFrom(ctx)
	c.ev.Transport = p.Transport
	if !ok {
		return c, c.deny(ctx, fault.New(fault.Unauthenticated, "authentication required"), "unauthenticated")
	}
	c.p = p
	c.ev.Subject = p.Subject
	c.ev.Groups = p.Groups
	c.ev.Transport = p.Transport
	// The task context the caller's token is bound to wins over what the
	// call claims: the call may only add the fields it leaves open.
	task, err := c.ev.Task.BindTo(p.Bound)
	if err != nil {
		var fe *callctx.FieldError
		field := "_meta"
		if errors.As(err, &fe) {
			field = fe.Field
		}
		return c, c.invalid(ctx, fault.Invalid(field, "task context: %v", err))
	}
	c.ev.Task = task
	return c, nil
}

func (c *call) target(in Instance) {
	c.ev.InstanceID = string(in.ID)
	c.ev.ConnectorType = in.Type
}

// deny records a refused call (bad input, no rights, unauthenticated) and
// returns err, or unavailable if the row could not be written.
func (c *call) deny(ctx context.Context, err error, reason string) error {
	c.ev.Decision = audit.Deny
	c.ev.Reason = reason
	return c.finishStandalone(ctx, err)
}

// fail records an allowed call that then failed.
func (c *call) fail(ctx context.Context, err error) error {
	if c.ev.Decision == "" {
		c.ev.Decision = audit.Allow
	}
	return c.finishStandalone(ctx, err)
}

func (c *call) finishStandalone(ctx context.Context, err error) error {
	c.ev.Status = audit.StatusError
	c.ev.ErrorType = string(fault.As(err).Type)
	c.ev.Duration = c.s.now().Sub(c.start)
	if c.ev.Reason == "" {
		c.ev.Reason = fault.PublicOf(err).Message
	}
	if c.ev.Tool == ToolOpInvoke {
		// Label only with names the registry knows: callers choose the rest.
		typ, op := "unknown", "unknown"
		if ct, ok := c.s.reg.Type(c.ev.ConnectorType); ok {
			typ = ct.Spec.Name
			if _, ok := ct.Op(c.ev.Operation); ok {
				op = c.ev.Operation
			}
		}
		metrics.ObserveInvocation(typ, op, c.ev.ErrorType, 0)
	}
	if aerr := c.s.audit.Record(ctx, c.ev); aerr != nil {
		c.s.log.ErrorContext(ctx, "audit write failed", "tool", c.ev.Tool, "err", aerr)
		return fault.Wrap(fault.Unavailable, aerr, "audit trail unavailable")
	}
	return err
}

// invalid records and returns an invalid-argument refusal.
func (c *call) invalid(ctx context.Context, err error) error {
	return c.deny(ctx, err, "invalid argument: "+fault.PublicOf(err).Message)
}

// decide asks policy about resource. A deny or an evaluation failure is
// recorded and returned as an error; nothing else happens for that call.
func (c *call) decide(ctx context.Context, resource string) error {
	c.ev.Resource = resource
	d, err := c.s.authz.Decide(ctx, authz.Request{Subject: c.p.Subject, Action: c.ev.Action, Resource: resource, Task: c.ev.Task})
	if err != nil {
		return c.deny(ctx, fault.Wrap(fault.Unavailable, err, "policy could not be evaluated"), "policy evaluation failed")
	}
	c.ev.PolicyVersion = d.PolicyVersion
	if !d.Allowed {
		return c.deny(ctx, fault.New(fault.PolicyDenied, "denied by policy"), d.Reason)
	}
	c.ev.Decision = audit.Allow
	c.ev.Reason = d.Reason
	return nil
}

// commit writes the success row inside tx, so a change and its audit row
// commit together or not at all.
func (c *call) commit(ctx context.Context, tx pgx.Tx) error {
	c.ev.Decision = audit.Allow
	c.ev.Status = audit.StatusOK
	c.ev.Duration = c.s.now().Sub(c.start)
	return c.s.audit.Write(ctx, tx, c.ev)
}

// ok records a successful read-only call; it returns once the row is durable.
func (c *call) ok(ctx context.Context) error {
	c.ev.Decision = audit.Allow
	c.ev.Status = audit.StatusOK
	c.ev.Duration = c.s.now().Sub(c.start)
	if err := c.s.audit.Record(ctx, c.ev); err != nil {
		c.s.log.ErrorContext(ctx, "audit write failed", "tool", c.ev.Tool, "err", err)
		return fault.Wrap(fault.Unavailable, err, "audit trail unavailable")
	}
	return nil
}

// change runs fn and the success audit row in one transaction. If fn fails
// the failure is recorded in its own row instead.
func (c *call) change(ctx context.Context, fn func(tx pgx.Tx) error) error {
	err := db.InTx(ctx, c.s.pool, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return c.commit(ctx, tx)
	})
	if err != nil {
		return c.fail(ctx, db.Map(err))
	}
	return nil
}

// lookup loads an instance for a call. A subject that may not act on the
// instance learns nothing about whether it exists: a missing instance is
// decided against a resource no ordinary rule matches, so both answer
// policy_denied, and only a subject with rights over every instance hears
// not_found.
func (c *call) lookup(ctx context.Context, rawID string, forUpdate bool, q db.Querier) (Instance, error) {
	in, _, err := c.lookupWith(ctx, rawID, func(id InstanceID) (Instance, *credRow, error) {
		in, err := getInstance(ctx, q, id, forUpdate)
		return in, nil, err
	})
	return in, err
}

// lookupWith is lookup with the loader chosen by the caller (invocations
// read the credential row with the instance, or from the cache).
func (c *call) lookupWith(ctx context.Context, rawID string, load func(InstanceID) (Instance, *credRow, error)) (Instance, *credRow, error) {
	id, err := parseInstanceID(rawID)
	if err != nil {
		return Instance{}, nil, c.invalid(ctx, err)
	}
	c.ev.InstanceID = string(id)
	in, cr, err := load(id)
	if errors.Is(err, fault.ErrNotFound) {
		if derr := c.decide(ctx, authz.InstanceResource("unknown", "unknown", id.UUID())); derr != nil {
			return Instance{}, nil, derr
		}
		return Instance{}, nil, c.fail(ctx, fault.New(fault.NotFound, "connector instance %s not found", id))
	}
	if err != nil {
		return Instance{}, nil, c.fail(ctx, err)
	}
	c.target(in)
	return in, cr, nil
}

func subjectOf(s string) callctx.Subject { return callctx.Subject(s) }

// Refuse records a call a transport rejected before it reached a service
// method (malformed arguments or task context, an unknown or hidden tool, a
// protocol error) and returns err, or unavailable if no row could be written.
func (s *Service) Refuse(ctx context.Context, tool, action string, err error) error {
	c, berr := s.begin(ctx, tool, action)
	if berr != nil {
		return berr
	}
	if errors.Is(err, fault.ErrPolicyDenied) {
		return c.deny(ctx, err, "tool not permitted for subject")
	}
	return c.invalid(ctx, err)
}

// The registry is the catalog policy rules are checked against.
var _ authz.Catalog = (*connectors.Registry)(nil)
