package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/fault"
)

// A rule whose resource pattern can match no resource name (or whose action
// is never asked on what it names) is refused, naming the field: a deny that
// silently matches nothing fails open.
func TestRuleResourceGrammar(t *testing.T) {
	t.Parallel()
	u := randUser()
	g := randGroup()
	inst := uuid.NewString()
	upper := "user:" + strings.ToUpper(u.ID().String())
	own := OwnerResource(u)
	for _, tc := range []struct {
		resource, action, field string // field "" : accepted
	}{
		// Accepted: every documented form.
		{"**", AnyAction, ""},
		{"*", ActionCatalogRead, ""},
		{ResourceCatalog, ActionCatalogRead, ""},
		{ResourcePolicy, ActionPolicyAdmin, ""},
		{ResourceAudit, ActionAuditRead, ""},
		{ResourcePrivateNetwork, ActionAdmin, ""},
		{"network/**", ActionAdmin, ""},
		{"catalog/**", ActionCatalogRead, ""},
		{"connectors/**", ActionSend, ""},
		{"connectors/*", ActionAdmin, ""},
		{"connectors/user:*/**", ActionRead, ""},
		{"connectors/group:*", ActionAdmin, ""},
		{own, ActionAdmin, ""},
		{own + "/**", AnyAction, ""},
		{"connectors/" + string(g) + "/**", ActionRead, ""},
		{own + "/echo/**", ActionRead, ""},
		{own + "/echo/" + inst, ActionAdmin, ""},
		{own + "/echo/" + inst, ActionAuditRead, ""},
		{own + "/echo/" + inst + "/*", ActionSend, ""},
		{own + "/echo/" + inst + "/echo.read", ActionRead, ""},
		{"connectors/*/echo/*/send", ActionSend, ""},
		{"connectors/*/*/*/echo.*", AnyAction, ""},
		// * within an id: accepted where it can match a canonical id.
		{own + "*", ActionAdmin, ""},
		{"connectors/user:" + u.ID().String()[:8] + "*", ActionAdmin, ""},
		{"connectors/*:" + u.ID().String(), ActionAdmin, ""},
		{own + "/echo/" + inst[:8] + "*", ActionRead, ""},
		{own + "/e*/" + inst, ActionRead, ""},
		// Minting task-bound tokens, for users only.
		{TokenResource(u), ActionTokenMint, ""},
		{"tokens/**", ActionTokenMint, ""},
		{"tokens/user:*", ActionTokenMint, ""},
		{TokenResource(u), ActionRead, "action"},
		{"tokens/" + string(g), ActionTokenMint, "resource"},
		{"tokens", ActionTokenMint, "resource"},
		{TokenResource(u) + "/x", ActionTokenMint, "resource"},
		{"tokens/" + upper, ActionTokenMint, "resource"},

		// The review's examples.
		{"connectors/" + upper + "/**", ActionSend, "resource"},
		{"connectors/user:alice/**", ActionSend, "resource"},
		{"Connectors/**", ActionSend, "resource"},
		{"x", ActionRead, "resource"},
		// Unknown prefixes and parts below a resource that has none.
		{"connector/**", ActionRead, "resource"},
		{"catalogs", ActionCatalogRead, "resource"},
		{"catalog/x", ActionCatalogRead, "resource"},
		{"network", ActionAdmin, "resource"},
		{"network/public", ActionAdmin, "resource"},
		{"network/private/x", ActionAdmin, "resource"},
		{"connectors", ActionAdmin, "resource"},
		// Owners and instance ids: canonical ids, globs only whole.
		{"connectors/alice", ActionAdmin, "resource"},
		{"connectors/role:" + u.ID().String(), ActionAdmin, "resource"},
		{"connectors/user:alice*", ActionAdmin, "resource"},
		{"connectors/user:" + strings.ToUpper(u.ID().String()[:8]) + "*", ActionAdmin, "resource"},
		{"connectors/user:*-*-*-*-*-*", ActionAdmin, "resource"},
		{own + "/echo", ActionRead, "resource"},
		{own + "/echo/not-a-uuid", ActionRead, "resource"},
		{own + "/echo/" + strings.ToUpper(inst), ActionRead, "resource"},
		{own + "/echo/x*", ActionRead, "resource"},
		{own + "/echo/" + inst + "/echo.read/x", ActionRead, "resource"},
		// Only * within a segment and a trailing /**.
		{"connectors/**/echo.send", ActionSend, "resource"},
		{own + "**", ActionAdmin, "resource"},
		{own + "/{echo,http}/**", ActionRead, "resource"},
		{own + "/ech?/**", ActionRead, "resource"},
		{own + "/[e]cho/**", ActionRead, "resource"},
		{"{catalog,policy}", ActionCatalogRead, "resource"},
		// Actions never asked on what the pattern names.
		{ResourceCatalog, ActionRead, "action"},
		{ResourcePolicy, ActionAdmin, "action"},
		{ResourceAudit, ActionPolicyAdmin, "action"},
		{ResourcePrivateNetwork, ActionRead, "action"},
		{"*", ActionSend, "action"},
		{own, ActionRead, "action"},
		{own + "/**", ActionCatalogRead, "action"},
		{own + "/echo/" + inst, ActionPolicyAdmin, "action"},
		{own + "/echo/" + inst + "/echo.read", ActionAuditRead, "action"},
	} {
		r := Rule{Subject: string(u), Resource: tc.resource, Action: tc.action, Effect: EffectDeny}
		err := r.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s %s refused: %v", tc.action, tc.resource, err)
			}
			continue
		}
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Type != fault.InvalidArgument {
			t.Errorf("%s %s: %v, want invalid_argument", tc.action, tc.resource, err)
			continue
		}
		if fe.Details["field"] != tc.field {
			t.Errorf("%s %s: field %v, want %s (%v)", tc.action, tc.resource, fe.Details["field"], tc.field, err)
		}
	}
}

// testCatalog is a Catalog of fixed types: type -> operation -> action.
type testCatalog map[string]map[string]string

func (c testCatalog) ConnectorTypes() []string {
	var out []string
	for t := range c {
		out = append(out, t)
	}
	return out
}

func (c testCatalog) Operations(t string) map[string]string { return c[t] }

// With a catalog, a rule names only connector types and operations that
// exist, and an operation under the action it is decided with.
func TestRuleCatalogNames(t *testing.T) {
	t.Parallel()
	cat := testCatalog{
		"echo": {"echo.read": ActionRead, "echo.send": ActionSend},
		"http": {"http.get": ActionRead, "http.post": ActionSend},
	}
	own := OwnerResource(randUser())
	for _, tc := range []struct {
		resource, action, field string
	}{
		{"connectors/*/echo/*/echo.read", ActionRead, ""},
		{"connectors/*/http/*/http.post", ActionSend, ""},
		{"connectors/*/*/*/*.post", ActionSend, ""},
		{"connectors/*/e*/**", ActionRead, ""},
		{own + "/echo/**", ActionAdmin, ""},
		{"connectors/*/*/*/*", AnyAction, ""},
		{"connectors/*/echo/*/echo.reed", ActionRead, "resource"},
		{"connectors/*/echo/*/send", ActionSend, "resource"},
		{"connectors/*/echo/*/http.get", ActionRead, "resource"},
		{"connectors/*/*/*/*.nothing", ActionRead, "resource"},
		{"connectors/*/ech/**", ActionRead, "resource"},
		{"connectors/*/x*/**", ActionRead, "resource"},
		// Operations are decided under the action of their kind only.
		{"connectors/*/http/*/http.post", ActionRead, "action"},
		{"connectors/*/*/*/*.post", ActionRead, "action"},
		{"connectors/*/echo/*/echo.read", ActionAdmin, "action"},
	} {
		err := Rule{Subject: string(randUser()), Resource: tc.resource, Action: tc.action, Effect: EffectDeny}.ValidateIn(cat)
		var fe *fault.Error
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s %s refused: %v", tc.action, tc.resource, err)
		case tc.field == "":
		case !errors.As(err, &fe) || fe.Type != fault.InvalidArgument || fe.Details["field"] != tc.field:
			t.Errorf("%s %s: %v, want invalid_argument on %s", tc.action, tc.resource, err, tc.field)
		}
	}
}
