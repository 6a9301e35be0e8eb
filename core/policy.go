package core

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
	"github.com/connec/connec/internal/platform/db"
)

// Policy tool names.
const (
	ToolPolicyList  = "connector.policy.list"
	ToolPolicyAllow = "connector.policy.allow"
	ToolPolicyDeny  = "connector.policy.deny"
	// ToolPolicyAdd is the REST route that adds either; the rule is recorded
	// under ToolPolicyAllow or ToolPolicyDeny.
	ToolPolicyAdd     = "connector.policy.add"
	ToolPolicyRemove  = "connector.policy.remove"
	ToolPolicyExplain = "connector.policy.explain"
)

// RuleStore manages policy rules inside a caller's transaction, so a rule
// change and its audit row commit together.
type RuleStore interface {
	AddRule(ctx context.Context, q db.Querier, r authz.Rule) (bool, error)
	RemoveRule(ctx context.Context, q db.Querier, r authz.Rule) (bool, error)
	ListRules(ctx context.Context, q db.Querier, subject string) ([]authz.Rule, error)
	Refresh(ctx context.Context) error
}

// WithRuleStore enables the policy tools.
func WithRuleStore(r RuleStore) Option { return func(s *Service) { s.rules = r } }

// RuleChange is the result of adding or removing a rule.
type RuleChange struct {
	Rule    authz.Rule `json:"rule"`
	Changed bool       `json:"changed"`
	Version int64      `json:"policy_version,omitempty"`
}

// ExplainInput asks how policy decides one request.
type ExplainInput struct {
	Subject  string              `json:"subject" jsonschema:"user:<name|uuid>, group:<name|uuid> or a user name."`
	Action   string              `json:"action" schema:"enum=@actions"`
	Resource string              `json:"resource" jsonschema:"A concrete resource, e.g. connectors/user:<name|uuid>/echo/<instance-id>/echo.read." schema:"minLength=1,maxLength=512"`
	Task     callctx.TaskContext `json:"task,omitzero" jsonschema:"Task context to decide with."`
}

// Explanation is the decision and the rule behind it.
type Explanation struct {
	Allowed       bool     `json:"allowed"`
	Reason        string   `json:"reason"`
	Rule          []string `json:"rule,omitempty"`
	PolicyVersion int64    `json:"policy_version"`
}

func (s *Service) policyCall(ctx context.Context, tool string) (*call, error) {
	c, err := s.begin(ctx, tool, authz.ActionPolicyAdmin)
	if err != nil {
		return nil, err
	}
	if s.rules == nil {
		return nil, c.fail(ctx, fault.New(fault.Unavailable, "policy management is not available on this server"))
	}
	return c, nil
}

// ListRules lists policy rules, optionally of one subject.
func (s *Service) ListRules(ctx context.Context, subject string) ([]authz.Rule, error) {
	c, err := s.policyCall(ctx, ToolPolicyList)
	if err != nil {
		return nil, err
	}
	if subject != "" {
		sub, err := callctx.ParseSubject(subject)
		if err != nil {
			return nil, c.invalid(ctx, fault.Invalid("subject", "subject must be user:<uuid> or group:<uuid>"))
		}
		subject = string(sub)
	}
	if err := c.decide(ctx, authz.ResourcePolicy); err != nil {
		return nil, err
	}
	rules, err := s.rules.ListRules(ctx, s.pool, subject)
	if err != nil {
		return nil, c.fail(ctx, err)
	}
	if rules == nil {
		rules = []authz.Rule{}
	}
	return rules, c.ok(ctx)
}

// ChangeRule adds (remove false) or removes a rule. The change and its
// audit row commit in one transaction, and take effect on this server at
// once and on every other server through the database's notification.
//
// A rule that could never match (authz.Rule.ValidateIn, against the
// registry) is refused with invalid_argument naming the field: as a deny
// it would fail open. One already stored that way (before validation was
// this strict, or by SQL) can still be removed, exactly as stored.
func (s *Service) ChangeRule(ctx context.Context, tool string, r authz.Rule, remove bool) (RuleChange, error) {
	c, err := s.policyCall(ctx, tool)
	if err != nil {
		return RuleChange{}, err
	}
	invalid := r.ValidateIn(s.reg)
	if invalid != nil && !remove {
		return RuleChange{}, c.invalid(ctx, invalid)
	}
	if err := c.decide(ctx, authz.ResourcePolicy); err != nil {
		return RuleChange{}, err
	}
	verb := "add"
	if remove {
		verb = "remove"
	}
	c.ev.Reason = fmt.Sprintf("%s; %s rule: %s %s %s %s cond=%q", c.ev.Reason, verb, r.Effect, r.Subject, r.Action, r.Resource, r.Cond)
	if invalid != nil {
		c.ev.Reason += " (a stored rule that fails validation: " + fault.PublicOf(invalid).Message + ")"
	}
	out := RuleChange{Rule: r}
	err = c.change(ctx, func(tx pgx.Tx) error {
		var err error
		if remove {
			out.Changed, err = s.rules.RemoveRule(ctx, tx, r)
			if err == nil && invalid != nil && !out.Changed {
				return invalid // not stored, and could never have been added
			}
		} else {
			out.Changed, err = s.rules.AddRule(ctx, tx, r)
		}
		return err
	})
	if err != nil {
		return RuleChange{}, err
	}
	if err := s.rules.Refresh(ctx); err != nil {
		s.log.WarnContext(ctx, "policy refresh after a change failed; the watcher will catch up", "err", err)
	}
	if v, ok := s.authz.(interface{ Version() int64 }); ok {
		out.Version = v.Version()
	}
	return out, nil
}

// Explain says how policy decides a request for any subject: which rule
// decided and why. It is for administrators debugging policy. The subject,
// and the owner in the resource, may be given by name as in the CLI
// (user:<name>, group:<name>, a bare user name); they are resolved only
// once the caller is known to be an administrator, so nobody else learns
// which names exist.
func (s *Service) Explain(ctx context.Context, in ExplainInput) (Explanation, error) {
	c, err := s.policyCall(ctx, ToolPolicyExplain)
	if err != nil {
		return Explanation{}, err
	}
	if in.Subject == "" {
		return Explanation{}, c.invalid(ctx, fault.Invalid("subject", "subject is required: user:<name|uuid>, group:<name|uuid> or a user name"))
	}
	if !authz.IsAction(in.Action) {
		return Explanation{}, c.invalid(ctx, fault.Invalid("action", "unknown action %q", in.Action))
	}
	if in.Resource == "" {
		return Explanation{}, c.invalid(ctx, fault.Invalid("resource", "resource is required"))
	}
	task, err := in.Task.Validate()
	if err != nil {
		return Explanation{}, c.invalid(ctx, fault.Invalid("task", "task: %v", err))
	}
	if err := c.decide(ctx, authz.ResourcePolicy); err != nil {
		return Explanation{}, err
	}
	resolve := func(ref string) (callctx.Subject, error) { return identity.ResolveSubject(ctx, s.pool, ref) }
	sub, err := resolve(in.Subject)
	if err != nil {
		return Explanation{}, c.fail(ctx, asInvalid("subject", err))
	}
	if in.Resource, err = authz.ResolveNames(in.Resource, resolve); err != nil {
		return Explanation{}, c.fail(ctx, asInvalid("resource", err))
	}
	d, err := s.authz.Decide(ctx, authz.Request{Subject: sub, Action: in.Action, Resource: in.Resource, Task: task})
	if err != nil {
		return Explanation{}, c.fail(ctx, fault.Wrap(fault.Unavailable, err, "policy could not be evaluated"))
	}
	return Explanation{Allowed: d.Allowed, Reason: d.Reason, Rule: d.Rule, PolicyVersion: d.PolicyVersion}, c.ok(ctx)
}

// asInvalid turns a name that does not resolve (not found, or not a name)
// into invalid_argument on field; other failures (the database) pass.
func asInvalid(field string, err error) error {
	switch fault.As(err).Type {
	case fault.NotFound, fault.InvalidArgument:
		return fault.Invalid(field, "%s: %s", field, fault.PublicOf(err).Message)
	}
	return err
}
