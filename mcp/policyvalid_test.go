package mcp_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/core"
	cmcp "github.com/connec/connec/mcp"
)

// A rule that can match nothing is refused by connector.policy.allow, .deny
// and .remove with invalid_argument naming the field, and changes nothing
// (a deny that matches nothing would fail open); a stored rule of that kind
// can still be removed exactly as it is stored; explain takes subjects by
// name as the CLI does.
func TestRulesThatCanMatchNothingAreRefused(t *testing.T) {
	e := newEnv(t)
	admin, adminTok := e.user("root", true)
	e.allow(admin, authz.ResourcePolicy, authz.ActionPolicyAdmin, "")
	alice, aliceTok := e.user("alice", false)
	bob, _ := e.user("bob", true)
	if _, err := e.app.AddGroup(context.Background(), "ops"); err != nil {
		t.Fatal(err)
	}
	ad := e.client(transports[2], adminTok)
	al := e.client(transports[1], aliceTok)
	id := decodeID(t, mustOK(t, al, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "e", "enable": true}, nil))
	upper := "user:" + strings.ToUpper(alice.ID().String())

	before := e.count(`SELECT count(*) FROM casbin_rule`)
	for _, tc := range []struct{ resource, action, field string }{
		{"connectors/" + upper + "/**", authz.ActionSend, "resource"},
		{"connectors/user:alice/**", authz.ActionSend, "resource"},
		{"Connectors/**", authz.ActionSend, "resource"},
		{"connectors/*/echo/" + id + "/echo.reed", authz.ActionRead, "resource"},
		{"connectors/*/nosuchtype/**", authz.ActionRead, "resource"},
		{"x", authz.ActionRead, "resource"},
		{"connectors/*/echo/*/echo.send", authz.ActionRead, "action"}, // sends are decided under connector.send
		{authz.ResourceCatalog, authz.ActionSend, "action"},
	} {
		for _, tool := range []string{core.ToolPolicyAllow, core.ToolPolicyDeny, core.ToolPolicyRemove} {
			o := mustFail(t, ad, tool, map[string]any{"subject": string(bob), "resource": tc.resource, "action": tc.action}, nil, "invalid_argument")
			if o.Error.Details["field"] != tc.field {
				t.Errorf("%s %s %s: field %v, want %s (%s)", tool, tc.action, tc.resource, o.Error.Details["field"], tc.field, o.Error.Message)
			}
		}
	}
	if after := e.count(`SELECT count(*) FROM casbin_rule`); after != before {
		t.Fatalf("refused rules changed the policy: %d -> %d rows", before, after)
	}

	// A rule stored before validation was strict is removed as stored.
	legacy := authz.Rule{Subject: string(bob), Resource: "connectors/user:alice/**", Action: authz.ActionSend, Effect: authz.EffectDeny}
	if _, err := e.app.Pool.Exec(context.Background(), `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4) VALUES ('p', $1, $2, $3, '', $4)`,
		legacy.Subject, legacy.Resource, legacy.Action, legacy.Effect); err != nil {
		t.Fatal(err)
	}
	out := mustOK(t, ad, core.ToolPolicyRemove, map[string]any{"subject": legacy.Subject, "resource": legacy.Resource, "action": legacy.Action, "effect": "deny"}, nil)
	if !strings.Contains(string(out), `"changed":true`) {
		t.Fatalf("remove stored invalid rule: %s", out)
	}
	if n := e.count(`SELECT count(*) FROM casbin_rule WHERE v1 = $1`, legacy.Resource); n != 0 {
		t.Fatalf("stored invalid rule still there (%d)", n)
	}
	if rows := e.audit("tool = $1 AND status = 'ok' AND reason LIKE '%fails validation%'", core.ToolPolicyRemove); len(rows) != 1 {
		t.Fatalf("removal of a stored invalid rule audited as %+v", rows)
	}

	// Explain takes the subject forms the CLI takes: user:<name>, a bare
	// user name, group:<name>, as well as ids; names in the resource's
	// owner too.
	res := "connectors/" + string(alice) + "/echo/" + id + "/echo.read"
	for _, sub := range []string{string(alice), "user:alice", "alice", upper} {
		for _, r := range []string{res, "connectors/user:alice/echo/" + id + "/echo.read"} {
			raw := mustOK(t, ad, core.ToolPolicyExplain, map[string]any{"subject": sub, "action": authz.ActionRead, "resource": r}, nil)
			var ex core.Explanation
			if err := json.Unmarshal(raw, &ex); err != nil || !ex.Allowed {
				t.Errorf("explain %s on %s: %s", sub, r, raw)
			}
		}
	}
	raw := mustOK(t, ad, core.ToolPolicyExplain, map[string]any{"subject": "group:ops", "action": authz.ActionRead, "resource": res}, nil)
	if !strings.Contains(string(raw), `"allowed":false`) {
		t.Errorf("explain group:ops: %s", raw)
	}
	for _, sub := range []string{"user:nobody", "nobody", "group:nobody", "role:x"} {
		o := mustFail(t, ad, core.ToolPolicyExplain, map[string]any{"subject": sub, "action": authz.ActionRead, "resource": res}, nil, "invalid_argument")
		if o.Error.Details["field"] != "subject" {
			t.Errorf("explain %s: field %v (%s)", sub, o.Error.Details["field"], o.Error.Message)
		}
	}
}

// The policy tools offer exactly the actions authz knows (connector.audit.read
// was missing from a hand-written list).
func TestPolicyToolActionsAreAuthzActions(t *testing.T) {
	want := map[string][]string{
		core.ToolPolicyAllow:   append([]string{authz.AnyAction}, authz.Actions...),
		core.ToolPolicyDeny:    append([]string{authz.AnyAction}, authz.Actions...),
		core.ToolPolicyRemove:  append([]string{authz.AnyAction}, authz.Actions...),
		core.ToolPolicyExplain: authz.Actions,
	}
	for _, tool := range cmcp.Inventory() {
		w, ok := want[tool.Def.Name]
		if !ok {
			continue
		}
		var s struct {
			Properties struct {
				Action struct {
					Enum []string `json:"enum"`
				} `json:"action"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(tool.Def.RawInputSchema, &s); err != nil {
			t.Fatal(err)
		}
		got := slices.Sorted(slices.Values(s.Properties.Action.Enum))
		if !slices.Equal(got, slices.Sorted(slices.Values(w))) {
			t.Errorf("%s: action enum %v, want %v", tool.Def.Name, got, w)
		}
		delete(want, tool.Def.Name)
	}
	if len(want) > 0 {
		t.Errorf("tools not in the inventory: %v", want)
	}
}
