package authz

import (
	"github.com/google/uuid"

	"github.com/connec/connec/authz/engine"
	"github.com/connec/connec/callctx"
)

// The policy vocabulary, defined in authz/engine (see there).
type (
	// Request is one authorization question.
	Request = engine.Request
	// Decision is the answer to a Request.
	Decision = engine.Decision
	// Rule is one policy rule.
	Rule = engine.Rule
	// Cond is a parsed rule condition on the task context.
	Cond = engine.Cond
	// Catalog is what rule validation knows of connector types.
	Catalog = engine.Catalog
)

// Actions, effects, resources and reasons (see authz/engine).
const (
	ActionRead        = engine.ActionRead
	ActionSend        = engine.ActionSend
	ActionAdmin       = engine.ActionAdmin
	ActionCatalogRead = engine.ActionCatalogRead
	ActionPolicyAdmin = engine.ActionPolicyAdmin
	ActionAuditRead   = engine.ActionAuditRead
	ActionTokenMint   = engine.ActionTokenMint
	AnyAction         = engine.AnyAction

	EffectAllow = engine.EffectAllow
	EffectDeny  = engine.EffectDeny

	ResourceCatalog        = engine.ResourceCatalog
	ResourcePolicy         = engine.ResourcePolicy
	ResourceAudit          = engine.ResourceAudit
	ResourcePrivateNetwork = engine.ResourcePrivateNetwork

	ReasonDefaultDeny = engine.ReasonDefaultDeny
)

// Actions lists every action, in a stable order.
var Actions = engine.Actions

// ErrInvalidCond: a condition does not follow the Cond grammar.
var ErrInvalidCond = engine.ErrInvalidCond

// IsAction reports whether a is one of the action constants.
func IsAction(a string) bool { return engine.IsAction(a) }

// TokenResource names the minting of task-bound tokens for user.
func TokenResource(user callctx.Subject) string { return engine.TokenResource(user) }

// OwnerResource names the place where owner installs instances.
func OwnerResource(owner callctx.Subject) string { return engine.OwnerResource(owner) }

// InstanceResource names one instance.
func InstanceResource(owner callctx.Subject, connectorType string, instance uuid.UUID) string {
	return engine.InstanceResource(owner, connectorType, instance)
}

// OperationResource names one operation on an instance.
func OperationResource(owner callctx.Subject, connectorType string, instance uuid.UUID, operation string) string {
	return engine.OperationResource(owner, connectorType, instance, operation)
}

// ParseCond parses and validates a condition.
func ParseCond(s string) (Cond, error) { return engine.ParseCond(s) }

// ResolveNames rewrites the names a person may write in a resource (an
// owner by name, an instance id in another case) into canonical form.
func ResolveNames(resource string, resolve func(ref string) (callctx.Subject, error)) (string, error) {
	return engine.ResolveNames(resource, resolve)
}
