package engine

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
)

// ModelConf is the Casbin model whose semantics every decision has. The
// engine does not run Casbin: it computes what a Casbin enforcer over this
// model computes (see evaluate), and the differential tests hold it to that
// with Casbin as the oracle.
//
// A request is (sub, obj, act, tctx): the calling subject, the concrete
// resource name, the action, and the task facts of the call (see condMatch).
// A policy rule is (sub, obj, act, cond, eft), stored in casbin_rule as
// v0..v4 with ptype "p". Group membership is ptype "g" (user, group),
// mirrored from group_members by a trigger.
//
// A rule matches when its subject is the caller or one of the caller's
// groups, its resource pattern glob-matches the resource, its action equals
// the requested one (or is "*"), and its condition holds for the call's task
// context. The request is allowed only if some allow rule matches and no
// deny rule does; with no matching rule it is denied (default deny).
//
// The action comparison comes first in the matcher because it is the
// cheapest and most selective test; the evaluator short-circuits "&&".
const ModelConf = `
[request_definition]
r = sub, obj, act, tctx

[policy_definition]
p = sub, obj, act, cond, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = (r.act == p.act || p.act == "*") && g(r.sub, p.sub) && globMatch(r.obj, p.obj) && condMatch(r.tctx, p.cond)
`

// Actions a rule can grant or deny. AnyAction in a rule matches every action;
// it is never a requested action.
const (
	ActionRead        = "connector.read"
	ActionSend        = "connector.send"
	ActionAdmin       = "connector.admin"
	ActionCatalogRead = "connector.catalog.read"
	ActionPolicyAdmin = "connector.policy.admin"
	ActionAuditRead   = "connector.audit.read"
	// ActionTokenMint lets a subject (an orchestrator) mint short-lived
	// tokens bound to a task context, on tokens/<user>.
	ActionTokenMint = "connector.token.mint"
	AnyAction       = "*"
)

// Actions lists every action, in a stable order (new ones are appended).
var Actions = []string{ActionRead, ActionSend, ActionAdmin, ActionCatalogRead, ActionPolicyAdmin, ActionAuditRead, ActionTokenMint}

// IsAction reports whether a is one of the action constants (not AnyAction).
func IsAction(a string) bool {
	return slices.Contains(Actions, a)
}

// Rule effects.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

// Resource names. A request names one concrete resource; a rule names a
// pattern (see below).
//
//	catalog                                              the connector catalog
//	policy                                               policy administration
//	audit                                                the audit trail (connector.audit.read)
//	network/private                                      installing instances that reach private networks (connector.admin)
//	tokens/user:<uuid>                                   minting task-bound tokens for that user (connector.token.mint)
//	connectors/<owner>                                   where <owner> installs instances
//	connectors/<owner>/<type>/<instance-uuid>            one installed instance
//	connectors/<owner>/<type>/<instance-uuid>/<op>       one operation on an instance
//
// <owner> is a subject ("user:<uuid>" or "group:<uuid>"), <type> a connector
// type name and <op> an operation name; both are identifiers that contain no
// "/", no whitespace and no glob metacharacter (* ? [ ] { } \).
//
// Rule patterns use Casbin's globMatch (github.com/bmatcuk/doublestar/v4):
// "*" matches within one segment, "?" one character, "{a,b}" alternatives,
// and a trailing "/**" matches zero or more further segments, so it also
// matches the name before it. One pattern therefore covers an owner and
// everything beneath it:
//
//	connectors/user:U/**               owner U itself, all its instances and operations
//	connectors/user:U/echo/**          every echo instance of U and their operations
//	connectors/user:U/echo/I           instance I only (not its operations)
//	connectors/user:U/echo/I/*         every operation of instance I (not I itself)
//	connectors/user:U/echo/I/send      one operation
//	connectors/*/echo/*/send           the send operation of every echo instance of every owner
//	**                                 everything
//
// "**" must be a whole segment: "connectors/user:U**" is the same as
// "connectors/user:U*" and does not cross "/".
//
// A rule's pattern must be able to match one of these names (see
// Rule.ValidateIn): only "*" within a segment and a trailing "/**" are
// accepted in new rules, owners and instance ids as canonical uuids, and
// an action some matched name is decided under (grammar.go lists them).
const (
	ResourceCatalog = "catalog"
	ResourcePolicy  = "policy"
	ResourceAudit   = "audit"
	// ResourcePrivateNetwork is what an installer needs connector.admin on
	// to install an instance whose configuration reaches loopback, private
	// or link-local addresses (allow_private_network): an owner could
	// otherwise point an instance at internal services.
	ResourcePrivateNetwork = "network/private"
	resourceConnectors     = "connectors"
	resourceTokens         = "tokens"
)

// TokenResource names the minting of task-bound tokens for user:
// "tokens/user:<uuid>".
func TokenResource(user callctx.Subject) string {
	return resourceTokens + "/" + string(user)
}

// OwnerResource names the place where owner installs instances:
// "connectors/<owner>".
func OwnerResource(owner callctx.Subject) string {
	return resourceConnectors + "/" + string(owner)
}

// InstanceResource names one instance:
// "connectors/<owner>/<type>/<instance-uuid>".
func InstanceResource(owner callctx.Subject, connectorType string, instance uuid.UUID) string {
	return OwnerResource(owner) + "/" + connectorType + "/" + instance.String()
}

// OperationResource names one operation on an instance:
// "connectors/<owner>/<type>/<instance-uuid>/<operation>".
func OperationResource(owner callctx.Subject, connectorType string, instance uuid.UUID, operation string) string {
	return InstanceResource(owner, connectorType, instance) + "/" + operation
}

// globMeta are the characters with a meaning in a rule pattern.
const globMeta = `*?[]{}\`

// badASCII marks the ASCII bytes a resource name segment must not contain:
// controls, space, DEL and the glob metacharacters.
var badASCII = func() (t [utf8.RuneSelf]bool) {
	for c := range utf8.RuneSelf {
		t[c] = c <= ' ' || c == 0x7f || strings.IndexByte(globMeta, byte(c)) >= 0
	}
	return t
}()

// checkResourceName reports why name is not a concrete resource name: every
// segment non-empty, not "." or "..", and free of whitespace, control
// characters and glob metacharacters. It runs on every decision, so it is
// one pass without allocation.
func checkResourceName(name string) error {
	if name == "" {
		return fmt.Errorf("resource is empty")
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '/' {
			switch seg := name[start:i]; seg {
			case "":
				return fmt.Errorf("resource %q has an empty segment", name)
			case ".", "..":
				return fmt.Errorf("resource %q has a %q segment", name, seg)
			}
			start = i + 1
			continue
		}
		if c := name[i]; c < utf8.RuneSelf {
			if badASCII[c] {
				return fmt.Errorf("resource %q contains whitespace, a control or a glob metacharacter", name)
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(name[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("resource %q contains whitespace, a control character or invalid UTF-8", name)
		}
		i += size - 1
	}
	return nil
}

// checkPattern reports why p is not a usable rule resource pattern.
func checkPattern(p string) error {
	if p == "" {
		return fmt.Errorf("resource pattern is required")
	}
	if hasSpaceOrControl(p) {
		return fmt.Errorf("resource pattern %q contains whitespace or a control character", p)
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("resource pattern %q has an empty segment (leading, trailing or doubled \"/\")", p)
		case ".", "..":
			return fmt.Errorf("resource pattern %q has a %q segment", p, seg)
		}
	}
	if !doublestar.ValidatePattern(p) {
		return fmt.Errorf("resource pattern %q is not a valid glob", p)
	}
	return nil
}

// isCanonicalUUID reports whether s is a uuid in lower-case 8-4-4-4-12 form.
func isCanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// CanonicalSubject returns s as "user:<uuid>" or "group:<uuid>" in
// canonical form, without allocating when it already is.
func CanonicalSubject(s callctx.Subject) (string, error) {
	kind, id, ok := strings.Cut(string(s), ":")
	if ok && (kind == callctx.KindUser || kind == callctx.KindGroup) && isCanonicalUUID(id) {
		return string(s), nil
	}
	sub, err := callctx.ParseSubject(string(s))
	return string(sub), err
}

func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0
}
